/*
 * Leaks one block on purpose. In a -DTIDE_SANITIZE=ON build the CTest
 * test c/lsan_canary runs it with the C tests' environment and passes
 * only when LeakSanitizer reports the leak: proof that the C tests run
 * with leak detection on (nothing, such as an ASAN_OPTIONS with
 * detect_leaks=0 meant for the busted specs, turned it off).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main(void)
{
    char * volatile  p = malloc(64);

    if (p == NULL) {
        return 1;
    }
    memset(p, 1, 64);
    p = NULL;                   /* the only pointer to the block is gone */
    printf("lsan_canary: leaked 64 bytes\n");
    return 0;
}
