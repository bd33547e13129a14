/*
 * libFuzzer target: the HTTP request reader of the --http endpoint
 * (tide__http_req_feed over http-parser, core/src/http/http.c), fed the
 * input in chunks whose sizes the input's first byte picks; then the
 * --http address parser on the input as a string.
 *
 * The contract: a request is whole (1) or refused (-1, with a status of
 * 400, 413, 414 or 431) or needs more (0); once 1 or -1, it stays so;
 * the target is NUL-terminated and at most TIDE_HTTP_TARGET_MAX bytes.
 */
#include "http/http.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tide__http_req_t   r;
    size_t             chunk, off = 0;
    int                rc = 0, last = 0;
    char               host[256], err[256], *s;
    int                port;

    if (size == 0) {
        return 0;
    }
    chunk = (size_t) (data[0] % 64) + 1;
    tide__http_req_init(&r);
    for (off = 1; off < size; off += chunk) {
        size_t  n = size - off < chunk ? size - off : chunk;

        rc = tide__http_req_feed(&r, (const char *) data + off, n);
        assert(rc >= -1 && rc <= 1);
        if (last != 0) {
            assert(rc == last);
        }
        last = rc;
    }
    if (rc == 0) {
        rc = tide__http_req_eof(&r);
    }
    if (rc < 0) {
        assert(r.status == 400 || r.status == 413 || r.status == 414
               || r.status == 431);
    }
    if (rc == 1) {
        assert(r.tlen <= TIDE_HTTP_TARGET_MAX);
        assert(strlen(r.target) == r.tlen);
        assert(r.method[0] != '\0');
    }

    s = malloc(size);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    if (tide__http_parse_addr(s, host, sizeof(host), &port, err,
                              sizeof(err)) == TIDE_OK) {
        assert(port >= 0 && port <= 65535);
        assert(strlen(host) < sizeof(host));
    } else {
        assert(port == -1);
    }
    free(s);
    return 0;
}
