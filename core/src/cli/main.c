#include "tide.h"
#include <stdio.h>
int main(void) { printf("%s\n", tide_version()); return 0; }
