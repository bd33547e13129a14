/*
 * The HTTP endpoint of `tide run --http ADDR` (/metrics, /health): a TCP
 * server on a libuv loop of its own, with requests parsed by http-parser
 * (Debian's libhttp-parser-dev, the parser Node.js used before llhttp;
 * bookworm has no llhttp package). Nothing here knows what a path means:
 * the supervisor pulls each complete request (tide_http_pop_request) and
 * answers it (tide_http_push_reply), between its other work, so nothing
 * calls into Lua and the answers are built where the numbers are.
 *
 * The loop is separate from the container loop (core/src/container/
 * loop.c) so that this file needs nothing of that one's insides: its
 * backend descriptor (epoll) is readable whenever it has work, and the
 * supervisor watches that descriptor on the container loop and then runs
 * this one without waiting (libuv's documented way of embedding a loop).
 *
 * A scrape must never hurt processing: clients are capped
 * (TIDE_HTTP_CLIENTS_MAX), a request must be whole within CLIENT_MS, its
 * head, target and body are bounded, and every answer closes its
 * connection (a scraper asks every few seconds; keeping connections
 * would only keep descriptors).
 */
#include "tide.h"
#include "http/http.h"
#include "util/errors.h"

#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <uv.h>

/* How long a client may take to send its whole request. */
#define CLIENT_MS 10000

/* How often idle clients are looked for. */
#define SWEEP_MS 1000

/* Connections accepted per turn: a flood cannot hold the poll. */
#define ACCEPTS_PER_TURN 64

/* The read buffer every client shares: reads are handled one at a time. */
#define READ_BYTES 16384

/* ---- The request reader -------------------------------------------- */

static int
on_message_begin(http_parser *p)
{
    tide__http_req_t  *r = p->data;

    r->tlen = 0;
    r->body = 0;
    return 0;
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
    tide__http_req_t  *r = p->data;

    if (len > TIDE_HTTP_TARGET_MAX - r->tlen) {
        r->status = 414;
        return 1;
    }
    memcpy(r->target + r->tlen, at, len);
    r->tlen += len;
    r->target[r->tlen] = '\0';
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    tide__http_req_t  *r = p->data;

    (void) at;
    if (len > TIDE__HTTP_BODY_MAX - r->body) {
        r->status = 413;
        return 1;
    }
    r->body += len;
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    tide__http_req_t  *r = p->data;
    const char        *m = http_method_str((enum http_method) p->method);

    snprintf(r->method, sizeof(r->method), "%s", m);
    r->head = p->method == HTTP_HEAD;
    r->done = 1;
    /* One request per connection: what follows is not read. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings  req_settings = {
    .on_message_begin    = on_message_begin,
    .on_url              = on_url,
    .on_body             = on_body,
    .on_message_complete = on_message_complete,
};

void
tide__http_req_init(tide__http_req_t *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->parser.data = r;
}

int
tide__http_req_feed(tide__http_req_t *r, const char *data, size_t len)
{
    enum http_errno  e;

    if (r->done) {
        return 1;
    }
    if (r->status != 0) {
        return -1;
    }
    if (len == 0) {
        return 0;
    }
    (void) http_parser_execute(&r->parser, &req_settings, data, len);
    if (r->done) {
        return 1;
    }
    e = HTTP_PARSER_ERRNO(&r->parser);
    if (e == HPE_OK) {
        return 0;
    }
    if (r->status == 0) {
        r->status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
    }
    return -1;
}

int
tide__http_req_eof(tide__http_req_t *r)
{
    if (r->done) {
        return 1;
    }
    if (r->status != 0) {
        return -1;
    }
    /* Bytes were parsed when the parser has left its start state; the
     * simplest sign of that which the header exposes is nread. */
    if (r->parser.nread == 0 && r->tlen == 0) {
        return 0;
    }
    r->status = 400;
    return -1;
}

/* ---- Addresses ----------------------------------------------------- */

static int
parse_port(const char *s, int *port)
{
    long  v = 0;

    if (*s == '\0' || strlen(s) > 5) {
        return -1;
    }
    for (; *s != '\0'; s++) {
        if (!isdigit((unsigned char) *s)) {
            return -1;
        }
        v = v * 10 + (*s - '0');
    }
    if (v > 65535) {
        return -1;
    }
    *port = (int) v;
    return 0;
}

int
tide__http_parse_addr(const char *addr, char *host, size_t hostlen,
                      int *port, char *err, size_t errlen)
{
    const char  *colon, *end, *hs;
    size_t       hn;

    *port = -1;
    if (hostlen > 0) {
        host[0] = '\0';
    }
    if (addr == NULL || *addr == '\0') {
        return tide__set_err(err, errlen, TIDE_EINVAL,
                             "an address is needed: PORT or HOST:PORT");
    }
    if (parse_port(addr, port) == 0) {
        if (hostlen < sizeof("127.0.0.1")) {
            return tide__set_err(err, errlen, TIDE_EINVAL, "host too long");
        }
        memcpy(host, "127.0.0.1", sizeof("127.0.0.1"));
        return TIDE_OK;
    }
    if (addr[0] == '[') {
        end = strchr(addr, ']');
        if (end == NULL || end[1] != ':') {
            goto bad;
        }
        hs = addr + 1;
        hn = (size_t) (end - hs);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            goto bad;
        }
        hs = addr;
        hn = (size_t) (colon - addr);
        if (memchr(hs, ':', hn) != NULL) {
            goto bad;           /* an IPv6 address needs its brackets */
        }
    }
    if (parse_port(colon + 1, port) != 0) {
        *port = -1;
        goto bad;
    }
    if (hn == 0) {
        if (addr[0] == '[') {
            goto bad;
        }
        hs = "0.0.0.0";
        hn = 7;
    }
    if (hn + 1 > hostlen) {
        *port = -1;
        return tide__set_err(err, errlen, TIDE_EINVAL,
                             "bad address '%s': host too long", addr);
    }
    memcpy(host, hs, hn);
    host[hn] = '\0';
    return TIDE_OK;

bad:
    *port = -1;
    return tide__set_err(err, errlen, TIDE_EINVAL,
                         "bad address '%s': PORT, HOST:PORT or [IPV6]:PORT "
                         "expected, with PORT from 0 to 65535", addr);
}

const char *
tide__http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default:  return "";
    }
}

/* ---- The server ------------------------------------------------------ */

/* A connected client. The server owns it from accept until its handle's
 * close callback, which frees it. It is on the server's list while open
 * and on the queue between its complete request and tide_http_pop_request. */
typedef struct client_s  client_t;

struct client_s {
    uv_tcp_t          tcp;       /* first: the handle's address is ours */
    tide_http_t      *h;
    client_t         *prev, *next;
    client_t         *qnext;
    uint64_t          deadline;  /* uv_now() by which the request is whole */
    int               queued;
    int               answered;  /* a reply is being written: close after */
    int               closing;
    tide__http_req_t  req;
};

/* A reply being written: its header and body in one allocation. */
typedef struct {
    uv_write_t   w;
    client_t    *c;
    size_t       len;
    char         data[];
} reply_t;

struct tide_http_s {
    uv_loop_t     uv;
    uv_tcp_t      server;
    uv_timer_t    sweep;
    int           nopen;         /* handles initialised, not yet closed */
    int           nclients;
    int           port;
    client_t     *clients;
    client_t     *qhead, *qtail;
    client_t     *current;       /* popped, not yet answered */
    int           nqueued;
    char          rbuf[READ_BYTES];
    int           rbuf_busy;
};

static void
on_handle_close(uv_handle_t *hd)
{
    tide_http_t  *h = hd->data;

    h->nopen--;
}

static void
on_client_close(uv_handle_t *hd)
{
    client_t     *c = hd->data;
    tide_http_t  *h = c->h;

    h->nopen--;
    free(c);
}

static void
unqueue(tide_http_t *h, client_t *c)
{
    client_t  **pp, *prev = NULL;

    if (!c->queued) {
        return;
    }
    for (pp = &h->qhead; *pp != NULL; pp = &(*pp)->qnext) {
        if (*pp == c) {
            *pp = c->qnext;
            if (h->qtail == c) {
                h->qtail = prev;
            }
            break;
        }
        prev = *pp;
    }
    c->qnext = NULL;
    c->queued = 0;
    h->nqueued--;
}

static void
client_close(client_t *c)
{
    tide_http_t  *h = c->h;

    if (c->closing) {
        return;
    }
    c->closing = 1;
    unqueue(h, c);
    if (h->current == c) {
        h->current = NULL;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        h->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    h->nclients--;
    uv_close((uv_handle_t *) &c->tcp, on_client_close);
}

static void
on_write(uv_write_t *w, int status)
{
    reply_t  *r = (reply_t *) w;

    (void) status;
    client_close(r->c);
    free(r);
}

/* Writes a whole answer to 'c' and closes it once written. Returns
 * TIDE_OK or TIDE_ENOMEM (then 'c' is closed). */
static int
client_answer(client_t *c, int status, const char *ctype, const char *body,
              size_t len)
{
    reply_t   *r;
    char       head[512];
    int        n;
    uv_buf_t   b;

    if (c->req.head) {
        /* HEAD: the headers GET would have, no body. */
        n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, tide__http_reason(status), ctype, len);
        len = 0;
    } else {
        n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, tide__http_reason(status), ctype, len);
    }
    if (n < 0 || (size_t) n >= sizeof(head)) {
        client_close(c);
        return TIDE_EINVAL;
    }
    r = malloc(sizeof(*r) + (size_t) n + len);
    if (r == NULL) {
        client_close(c);
        return TIDE_ENOMEM;
    }
    r->c = c;
    r->len = (size_t) n + len;
    memcpy(r->data, head, (size_t) n);
    if (len > 0) {
        memcpy(r->data + n, body, len);
    }
    c->answered = 1;
    uv_read_stop((uv_stream_t *) &c->tcp);
    b = uv_buf_init(r->data, (unsigned int) r->len);
    if (uv_write(&r->w, (uv_stream_t *) &c->tcp, &b, 1, on_write) != 0) {
        free(r);
        client_close(c);
    }
    return TIDE_OK;
}

/* Answers a refused request (400, 413 ...) with a one-line text body. */
static void
client_refuse(client_t *c, int status)
{
    char  body[128];
    int   n;

    n = snprintf(body, sizeof(body), "%d %s\n", status,
                 tide__http_reason(status));
    (void) client_answer(c, status, "text/plain; charset=utf-8", body,
                         (size_t) n);
}

static void
on_alloc(uv_handle_t *hd, size_t size, uv_buf_t *buf)
{
    client_t     *c = hd->data;
    tide_http_t  *h = c->h;

    (void) size;
    if (h->rbuf_busy) {
        *buf = uv_buf_init(NULL, 0);   /* libuv reports UV_ENOBUFS */
        return;
    }
    h->rbuf_busy = 1;
    *buf = uv_buf_init(h->rbuf, sizeof(h->rbuf));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    client_t     *c = s->data;
    tide_http_t  *h = c->h;
    int           rc;

    if (buf->base == h->rbuf) {
        h->rbuf_busy = 0;
    }
    if (c->answered || c->queued || c->closing) {
        return;
    }
    if (nread == 0) {
        return;
    }
    if (nread < 0) {
        rc = tide__http_req_eof(&c->req);
        if (rc < 0 && nread == UV_EOF) {
            /* Half-closed after a partial request: say why. */
            client_refuse(c, c->req.status);
        } else {
            client_close(c);
        }
        return;
    }
    rc = tide__http_req_feed(&c->req, buf->base, (size_t) nread);
    if (rc < 0) {
        client_refuse(c, c->req.status);
    } else if (rc > 0) {
        uv_read_stop(s);
        c->queued = 1;
        if (h->qtail != NULL) {
            h->qtail->qnext = c;
        } else {
            h->qhead = c;
        }
        h->qtail = c;
        h->nqueued++;
    }
}

static void
on_connection(uv_stream_t *server, int status)
{
    tide_http_t  *h = server->data;
    client_t     *c;
    int           i;

    if (status < 0) {
        return;
    }
    for (i = 0; i < ACCEPTS_PER_TURN; i++) {
        c = calloc(1, sizeof(*c));
        if (c == NULL) {
            return;
        }
        if (uv_tcp_init(&h->uv, &c->tcp) != 0) {
            free(c);
            return;
        }
        c->h = h;
        c->tcp.data = c;
        h->nopen++;
        if (uv_accept(server, (uv_stream_t *) &c->tcp) != 0) {
            /* Nothing more waiting: not a client after all. */
            c->closing = 1;
            uv_close((uv_handle_t *) &c->tcp, on_client_close);
            return;
        }
        tide__http_req_init(&c->req);
        c->deadline = uv_now(&h->uv) + CLIENT_MS;
        c->next = h->clients;
        if (h->clients != NULL) {
            h->clients->prev = c;
        }
        h->clients = c;
        h->nclients++;
        if (h->nclients > TIDE_HTTP_CLIENTS_MAX) {
            client_refuse(c, 503);
            continue;
        }
        if (uv_read_start((uv_stream_t *) &c->tcp, on_alloc, on_read) != 0) {
            client_close(c);
        }
    }
}

static void
on_sweep(uv_timer_t *t)
{
    tide_http_t  *h = t->data;
    client_t     *c, *next;
    uint64_t      now = uv_now(&h->uv);

    for (c = h->clients; c != NULL; c = next) {
        next = c->next;
        if (!c->queued && !c->answered && h->current != c
            && now >= c->deadline) {
            client_refuse(c, 408);
        }
    }
}

/* Runs the loop without waiting: twice, so that handles started during
 * the first turn (a new client's read) are registered with the backend
 * before the caller waits on its descriptor. */
static void
turn(tide_http_t *h)
{
    uv_run(&h->uv, UV_RUN_NOWAIT);
    uv_run(&h->uv, UV_RUN_NOWAIT);
}

static void
close_all(tide_http_t *h)
{
    client_t  *c, *next;

    for (c = h->clients; c != NULL; c = next) {
        next = c->next;
        client_close(c);
    }
    if (!uv_is_closing((uv_handle_t *) &h->sweep)) {
        uv_close((uv_handle_t *) &h->sweep, on_handle_close);
    }
    if (!uv_is_closing((uv_handle_t *) &h->server)) {
        uv_close((uv_handle_t *) &h->server, on_handle_close);
    }
    /* Writes in flight end with UV_ECANCELED and free their reply. */
    while (h->nopen > 0) {
        uv_run(&h->uv, UV_RUN_NOWAIT);
    }
    uv_run(&h->uv, UV_RUN_NOWAIT);
    (void) uv_loop_close(&h->uv);
}

static int
bind_error(int uverr, const char *addr, char *err, size_t errlen)
{
    switch (uverr) {
    case UV_EADDRINUSE:
        return tide__set_err(err, errlen, TIDE_EBUSY,
                             "cannot listen on %s: the address is in use "
                             "(another process listens there; pick another "
                             "port)", addr);
    case UV_EADDRNOTAVAIL:
        return tide__set_err(err, errlen, TIDE_EINVAL,
                             "cannot listen on %s: no such address on this "
                             "machine", addr);
    case UV_ENOMEM:
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    default:
        return tide__set_err(err, errlen, TIDE_EIO, "cannot listen on %s: %s",
                             addr, uv_strerror(uverr));
    }
}

int
tide_http_new(tide_http_t **out, const char *addr, char *err, size_t errlen)
{
    tide_http_t              *h;
    char                      host[256];
    int                       port, rc, uverr, namelen;
    struct addrinfo           hints, *res = NULL;
    struct sockaddr_storage   ss;

    if (out == NULL) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "out is NULL");
    }
    *out = NULL;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    rc = tide__http_parse_addr(addr, host, sizeof(host), &port, err, errlen);
    if (rc != TIDE_OK) {
        return rc;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        return tide__set_err(err, errlen, TIDE_EINVAL,
                             "bad address '%s': cannot resolve host '%s': %s",
                             addr, host, gai_strerror(rc));
    }
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (ss.ss_family == AF_INET) {
        ((struct sockaddr_in *) &ss)->sin_port = htons((uint16_t) port);
    } else if (ss.ss_family == AF_INET6) {
        ((struct sockaddr_in6 *) &ss)->sin6_port = htons((uint16_t) port);
    } else {
        return tide__set_err(err, errlen, TIDE_EINVAL,
                             "bad address '%s': not an IP address", addr);
    }

    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    uverr = uv_loop_init(&h->uv);
    if (uverr != 0) {
        free(h);
        return tide__set_err(err, errlen, TIDE_EIO,
                             "cannot make the HTTP loop: %s",
                             uv_strerror(uverr));
    }
    uverr = uv_tcp_init(&h->uv, &h->server);
    if (uverr == 0) {
        h->server.data = h;
        h->nopen++;
        uverr = uv_timer_init(&h->uv, &h->sweep);
        if (uverr == 0) {
            h->sweep.data = h;
            h->nopen++;
        }
    }
    if (uverr == 0) {
        uverr = uv_tcp_bind(&h->server, (const struct sockaddr *) &ss, 0);
    }
    if (uverr == 0) {
        uverr = uv_listen((uv_stream_t *) &h->server, 128, on_connection);
    }
    if (uverr != 0) {
        rc = bind_error(uverr, addr, err, errlen);
        close_all(h);
        free(h);
        return rc;
    }
    namelen = (int) sizeof(ss);
    if (uv_tcp_getsockname(&h->server, (struct sockaddr *) &ss,
                           &namelen) == 0) {
        h->port = ntohs(ss.ss_family == AF_INET6
                        ? ((struct sockaddr_in6 *) &ss)->sin6_port
                        : ((struct sockaddr_in *) &ss)->sin_port);
    }
    uv_timer_start(&h->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    /* The listening socket reaches the backend in the loop's first turn:
     * until then the descriptor would not wake anyone. */
    turn(h);
    *out = h;
    return TIDE_OK;
}

void
tide_http_free(tide_http_t *h)
{
    if (h == NULL) {
        return;
    }
    close_all(h);
    free(h);
}

int
tide_http_get_fd(const tide_http_t *h)
{
    if (h == NULL) {
        return TIDE_EINVAL;
    }
    return uv_backend_fd(&h->uv);
}

int
tide_http_get_port(const tide_http_t *h)
{
    if (h == NULL) {
        return TIDE_EINVAL;
    }
    return h->port;
}

int
tide_http_poll(tide_http_t *h)
{
    if (h == NULL) {
        return TIDE_EINVAL;
    }
    turn(h);
    return h->nqueued;
}

int
tide_http_pop_request(tide_http_t *h, char *buf, size_t *len)
{
    client_t  *c;
    size_t     need;

    if (h == NULL || len == NULL || (buf == NULL && *len > 0)) {
        if (len != NULL) {
            *len = 0;
        }
        return TIDE_EINVAL;
    }
    c = h->qhead;
    if (c == NULL) {
        *len = 0;
        return TIDE_EAGAIN;
    }
    need = strlen(c->req.method) + 1 + c->req.tlen;
    if (need > *len) {
        *len = need;
        return TIDE_ENOBUFS;
    }
    if (h->current != NULL) {
        client_close(h->current);
    }
    unqueue(h, c);
    h->current = c;
    memcpy(buf, c->req.method, strlen(c->req.method));
    buf[strlen(c->req.method)] = ' ';
    memcpy(buf + strlen(c->req.method) + 1, c->req.target, c->req.tlen);
    *len = need;
    return TIDE_OK;
}

int
tide_http_push_reply(tide_http_t *h, int status, const char *ctype,
                     const char *body, size_t len)
{
    client_t    *c;
    const char  *p;
    int          rc;

    if (h == NULL || ctype == NULL || *ctype == '\0'
        || (body == NULL && len > 0) || status < 100 || status > 599
        || h->current == NULL) {
        return TIDE_EINVAL;
    }
    if (strlen(ctype) > 200) {
        return TIDE_EINVAL;
    }
    for (p = ctype; *p != '\0'; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            return TIDE_EINVAL;
        }
    }
    c = h->current;
    h->current = NULL;
    rc = client_answer(c, status, ctype, body, len);
    /* Small answers are written at once; this turn closes the client. */
    turn(h);
    return rc;
}
