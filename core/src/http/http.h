/*
 * Internal parts of the HTTP endpoint (http.c) that have logic of their
 * own, exposed for ctest/test_http.c and fuzz/fuzz_http.c: the request
 * reader over http-parser, and the --http address parser.
 */
#ifndef TIDE_HTTP_HTTP_H
#define TIDE_HTTP_HTTP_H

#include "tide.h"

#include <stddef.h>

#include <http_parser.h>

/* The most body bytes a request may carry (GET and HEAD carry none; a
 * body is read and dropped). */
#define TIDE__HTTP_BODY_MAX (64 * 1024)

/* One request being read. Embedded in a client; no allocation. */
typedef struct tide__http_req_s {
    http_parser           parser;
    int                   done;     /* the whole request is read */
    int                   status;   /* an error answer (400, 413 ...) */
    int                   head;     /* the method is HEAD */
    size_t                body;     /* body bytes seen */
    size_t                tlen;     /* bytes in 'target' */
    char                  method[16];
    char                  target[TIDE_HTTP_TARGET_MAX + 1];
} tide__http_req_t;

/* Makes 'r' ready to read a request. */
void tide__http_req_init(tide__http_req_t *r);

/* Feeds 'len' bytes the client sent. Returns 1 once the whole request is
 * read (bytes after it are ignored), 0 while more are needed, or -1 when
 * the request is refused: r->status is then the answer (400 malformed,
 * 413 body too long, 414 target too long, 431 head too long). Further
 * calls after 1 or -1 return the same. 'data' is not kept. */
int tide__http_req_feed(tide__http_req_t *r, const char *data, size_t len);

/* The client closed its end: returns -1 with r->status 400 when a
 * request was begun and not finished, 0 otherwise (nothing was sent) or
 * 1 when it was finished already. */
int tide__http_req_eof(tide__http_req_t *r);

/* Splits an --http address ("PORT", "HOST:PORT", ":PORT",
 * "[IPV6]:PORT") into 'host' (NUL-terminated; "127.0.0.1" for a bare
 * port, "0.0.0.0" for an empty host) and '*port'. Returns TIDE_OK, or
 * TIDE_EINVAL with a line in 'err'. Resolves nothing. */
int tide__http_parse_addr(const char *addr, char *host, size_t hostlen,
                          int *port, char *err, size_t errlen);

/* The reason phrase of status 'status' ("OK", "Not Found" ...); "" for
 * one it does not know. Static text. */
const char *tide__http_reason(int status);

#endif
