/* File system helpers shared by the subsystems. */
#ifndef TIDE_UTIL_FS_H
#define TIDE_UTIL_FS_H

/* Creates 'path' and its missing parents. Returns 0 or -1 with errno. */
int tide__mkdir_p(const char *path);

#endif
