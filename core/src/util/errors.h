/* Error texts into a caller's buffer, for the functions that take
 * 'char *err, size_t errlen'. */
#ifndef TIDE_UTIL_ERRORS_H
#define TIDE_UTIL_ERRORS_H

#include <stddef.h>

/* Formats the message into err[errlen] (nothing when err is NULL or
 * errlen is 0) and returns 'rc', so that a failure is one statement:
 * return tide__set_err(err, errlen, TIDE_EIO, "...", ...). */
int tide__set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
