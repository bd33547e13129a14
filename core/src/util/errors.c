/* Library identity and error texts. */
#include "tide.h"
#include "util/errors.h"

#include <stdarg.h>
#include <stdio.h>

/* Bump on every change to tide.h; bindings/tide/base.lua checks it. */
#define TIDE_ABI_VERSION 14

int
tide_abi_version(void)
{
    return TIDE_ABI_VERSION;
}

const char *
tide_version(void)
{
    return "0.1.0";
}

const char *
tide_strerror(int rc)
{
    switch (rc) {
    case TIDE_OK:       return "ok";
    case TIDE_EINVAL:   return "invalid argument";
    case TIDE_ENOMEM:   return "out of memory";
    case TIDE_EIO:      return "i/o error";
    case TIDE_ENOENT:   return "not found";
    case TIDE_EEXIST:   return "already exists";
    case TIDE_ECORRUPT: return "corrupt data";
    case TIDE_EAGAIN:   return "nothing to read yet";
    case TIDE_ENOBUFS:  return "buffer too small";
    case TIDE_EBUSY:    return "busy: held by another process";
    case TIDE_ERANGE:   return "out of range";
    case TIDE_ECLOSED:  return "closed by the other end";
    default:            return "unknown error";
    }
}

int
tide__set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list  ap;

    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}
