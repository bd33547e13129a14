/*
 * The HTTP endpoint (core/src/http/http.c): the request reader, the
 * address parser, and a real server on a loopback port answering a
 * client over a socket.
 */
#include "tide.h"
#include "http/http.h"
#include "ctest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int
feed(tide__http_req_t *r, const char *s)
{
    return tide__http_req_feed(r, s, strlen(s));
}

static void
test_request_whole_and_split(void)
{
    tide__http_req_t  r;

    tide__http_req_init(&r);
    ASSERT_EQ(feed(&r, "GET /metr"), 0);
    ASSERT_EQ(feed(&r, "ics?a=1 HTTP/1.1\r\nHost: x\r\n"), 0);
    ASSERT_EQ(feed(&r, "\r\n"), 1);
    ASSERT(strcmp(r.method, "GET") == 0);
    ASSERT(strcmp(r.target, "/metrics?a=1") == 0);
    ASSERT_EQ(r.head, 0);
    /* Bytes after the request are ignored. */
    ASSERT_EQ(feed(&r, "GET /other HTTP/1.1\r\n\r\n"), 1);
    ASSERT(strcmp(r.target, "/metrics?a=1") == 0);

    tide__http_req_init(&r);
    ASSERT_EQ(feed(&r, "HEAD /health HTTP/1.0\r\n\r\n"), 1);
    ASSERT_EQ(r.head, 1);
}

static void
test_request_refused(void)
{
    tide__http_req_t  r;
    char              big[TIDE_HTTP_TARGET_MAX + 64];

    tide__http_req_init(&r);
    ASSERT_EQ(feed(&r, "NOT HTTP AT ALL\r\n\r\n"), -1);
    ASSERT_EQ(r.status, 400);
    ASSERT_EQ(feed(&r, "GET / HTTP/1.1\r\n\r\n"), -1);

    tide__http_req_init(&r);
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    ASSERT_EQ(tide__http_req_feed(&r, big, sizeof(big)), -1);
    ASSERT_EQ(r.status, 414);

    tide__http_req_init(&r);
    ASSERT_EQ(feed(&r, "POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"),
              0);
    memset(big, 'b', sizeof(big));
    for (int i = 0; i < 40; i++) {
        if (tide__http_req_feed(&r, big, sizeof(big)) < 0) {
            break;
        }
    }
    ASSERT_EQ(r.status, 413);

    tide__http_req_init(&r);
    ASSERT_EQ(tide__http_req_eof(&r), 0);
    ASSERT_EQ(feed(&r, "GET / HT"), 0);
    ASSERT_EQ(tide__http_req_eof(&r), -1);
    ASSERT_EQ(r.status, 400);
}

static void
test_parse_addr(void)
{
    char  host[64], err[256];
    int   port;

    ASSERT_OK(tide__http_parse_addr("9100", host, sizeof(host), &port, err,
                                    sizeof(err)));
    ASSERT(strcmp(host, "127.0.0.1") == 0);
    ASSERT_EQ(port, 9100);
    ASSERT_OK(tide__http_parse_addr("0.0.0.0:80", host, sizeof(host), &port,
                                    err, sizeof(err)));
    ASSERT(strcmp(host, "0.0.0.0") == 0);
    ASSERT_EQ(port, 80);
    ASSERT_OK(tide__http_parse_addr(":81", host, sizeof(host), &port, err,
                                    sizeof(err)));
    ASSERT(strcmp(host, "0.0.0.0") == 0);
    ASSERT_OK(tide__http_parse_addr("[::1]:82", host, sizeof(host), &port,
                                    err, sizeof(err)));
    ASSERT(strcmp(host, "::1") == 0);
    ASSERT_EQ(port, 82);
    ASSERT_EQ(tide__http_parse_addr("x", host, sizeof(host), &port, err,
                                    sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(port, -1);
    ASSERT(strstr(err, "bad address 'x'") != NULL);
    ASSERT_EQ(tide__http_parse_addr("65536", host, sizeof(host), &port, err,
                                    sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide__http_parse_addr("h:", host, sizeof(host), &port, err,
                                    sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide__http_parse_addr("::1:80", host, sizeof(host), &port, err,
                                    sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide__http_parse_addr("", host, sizeof(host), &port, err,
                                    sizeof(err)), TIDE_EINVAL);
}

static void
test_new_errors(void)
{
    tide_http_t  *h = (tide_http_t *) 1, *h2 = (tide_http_t *) 1;
    char          err[256], addr[32];

    ASSERT_EQ(tide_http_new(&h, "bogus", err, sizeof(err)), TIDE_EINVAL);
    ASSERT(h == NULL);
    ASSERT_OK(tide_http_new(&h, "0", err, sizeof(err)));
    ASSERT(tide_http_get_port(h) > 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", tide_http_get_port(h));
    ASSERT_EQ(tide_http_new(&h2, addr, err, sizeof(err)), TIDE_EBUSY);
    ASSERT(h2 == NULL);
    ASSERT(strstr(err, "in use") != NULL);
    ASSERT_EQ(tide_http_get_fd(NULL), TIDE_EINVAL);
    ASSERT_EQ(tide_http_poll(NULL), TIDE_EINVAL);
    ASSERT_EQ(tide_http_push_reply(h, 200, "text/plain", "x", 1),
              TIDE_EINVAL);                     /* no current client */
    tide_http_free(h);
    tide_http_free(NULL);
}

/* Polls 'h' until a request is queued (hang guard: 10 s). */
static void
wait_request(tide_http_t *h)
{
    struct pollfd  pfd;

    for (int i = 0; i < 1000; i++) {
        if (tide_http_poll(h) > 0) {
            return;
        }
        pfd.fd = tide_http_get_fd(h);
        pfd.events = POLLIN;
        (void) poll(&pfd, 1, 10);
    }
    ASSERT(0);
}

static void
test_serve(void)
{
    tide_http_t         *h;
    char                 err[256], buf[4096];
    size_t               len;
    int                  fd;
    ssize_t              n, got = 0;
    struct sockaddr_in   sa;
    const char          *req = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";

    ASSERT_OK(tide_http_new(&h, "127.0.0.1:0", err, sizeof(err)));
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t) tide_http_get_port(h));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
    ASSERT_EQ(write(fd, req, strlen(req)), (ssize_t) strlen(req));
    wait_request(h);

    len = 3;
    ASSERT_EQ(tide_http_pop_request(h, buf, &len), TIDE_ENOBUFS);
    ASSERT_EQ(len, strlen("GET /health"));
    len = sizeof(buf);
    ASSERT_OK(tide_http_pop_request(h, buf, &len));
    ASSERT_EQ(len, strlen("GET /health"));
    ASSERT(memcmp(buf, "GET /health", len) == 0);
    len = sizeof(buf);
    ASSERT_EQ(tide_http_pop_request(h, buf, &len), TIDE_EAGAIN);
    ASSERT_EQ(len, 0);

    ASSERT_EQ(tide_http_push_reply(h, 200, "bad\r\nX: y", "", 0),
              TIDE_EINVAL);
    ASSERT_EQ(tide_http_push_reply(h, 99, "text/plain", "", 0), TIDE_EINVAL);
    ASSERT_OK(tide_http_push_reply(h, 503, "application/json", "{}\n", 3));
    for (int i = 0; i < 1000; i++) {
        (void) tide_http_poll(h);
        n = read(fd, buf + got, sizeof(buf) - 1 - (size_t) got);
        if (n <= 0) {
            break;                              /* closed: the whole answer */
        }
        got += n;
    }
    buf[got] = '\0';
    ASSERT(strncmp(buf, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    ASSERT(strstr(buf, "Content-Length: 3\r\n") != NULL);
    ASSERT(strstr(buf, "Connection: close\r\n") != NULL);
    ASSERT(strcmp(buf + got - 3, "{}\n") == 0);
    close(fd);

    /* A malformed request is answered here, never queued. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
    ASSERT_EQ(write(fd, "BAD\r\n\r\n", 7), 7);
    got = 0;
    for (int i = 0; i < 1000 && got == 0; i++) {
        struct pollfd  pfd = { .fd = fd, .events = POLLIN };

        ASSERT_EQ(tide_http_poll(h), 0);
        if (poll(&pfd, 1, 10) > 0) {
            got = read(fd, buf, sizeof(buf) - 1);
        }
    }
    ASSERT(got > 0);
    buf[got] = '\0';
    ASSERT(strncmp(buf, "HTTP/1.1 400 ", 13) == 0);
    close(fd);
    tide_http_free(h);
}

int
main(void)
{
    RUN(test_request_whole_and_split);
    RUN(test_request_refused);
    RUN(test_parse_addr);
    RUN(test_new_errors);
    RUN(test_serve);
    return 0;
}
