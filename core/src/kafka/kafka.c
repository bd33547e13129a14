/*
 * Kafka: the `kafka:` system's client over librdkafka. One tide_kafka_t
 * holds a producer (idempotent, acks=all, the murmur2_random partitioner,
 * so that keys land where `local` puts them) and a consumer (manual
 * assignment, no auto-commit, read_committed) whose group is the job's:
 * readers take one partition each through its own queue, and offsets are
 * committed to the group with the checkpoint in their metadata. With a
 * transactional.id (exactly-once), the producer's records and the input
 * offsets of a commit are one Kafka transaction, opened by the first
 * record after a commit (KIP-447: the offsets carry the group member's
 * metadata, so that a member fenced by a rebalance cannot commit).
 *
 * Threads: librdkafka runs its own; every function here is called from
 * the owner's thread only. Delivery reports are served by rd_kafka_poll
 * and rd_kafka_flush on that thread; the callback only counts.
 */
#include "tide.h"
#include "log/log.h"
#include "util/errors.h"

#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Records polled at once by one reader, at most. */
#define READER_BATCH_MAX 4096

/* Topic handles kept by the producer, at most (a job's outputs, changelogs
 * and dead-letter stream); past them a record gets a handle for the one
 * call, as librdkafka makes for a topic named by a string: a lookup under
 * its write lock each time. */
#define TOPICS_MAX 64

/* Records queued between two serves of the producer's delivery reports
 * (rd_kafka_poll); flush and a full queue serve them too. */
#define POLL_EVERY 256

/* Slots for the end of each partition this client's producer wrote to,
 * as its delivery reports tell (open addressing; a full table stops
 * recording, and the caller asks the broker instead). */
#define ENDS_SLOTS 1024

typedef struct written_s {
    const rd_kafka_topic_t  *rkt;   /* NULL: free */
    int32_t                  partition;
    int64_t                  end;   /* last delivered offset + 1 */
} written_t;

struct tide_kafka_s {
    rd_kafka_t  *prod;              /* ours */
    rd_kafka_t  *cons;              /* ours */
    rd_kafka_t  *member;            /* ours, once subscribed: the group
                                       member; commits go through it */
    rd_kafka_queue_t *mq;           /* ours: the member's event queue */
    rd_kafka_event_t *held;         /* ours: a rebalance not yet done */
    char        *group;             /* ours */
    int          txn;               /* the producer is transactional */
    int          in_txn;            /* a transaction is open */
    int          refs;              /* the owner's (until tide_kafka_free)
                                       and one per reader: the consumer
                                       outlives its readers */
    int64_t      dr_failed;         /* deliveries that failed, in all */
    int64_t      dr_seen;           /* failures reported by flush so far */
    char         dr_err[256];       /* the first failure since dr_seen */
    char         errmsg[512];
    rd_kafka_topic_t *rkts[TOPICS_MAX];  /* ours: the producer's handles */
    int          nrkts;
    int          unpolled;          /* records queued since the last poll */
    written_t    ends[ENDS_SLOTS];
};

struct tide_kreader_s {
    tide_kafka_t        *k;         /* borrowed: outlives the reader */
    rd_kafka_queue_t    *q;         /* ours: the partition's queue */
    char                *topic;     /* ours */
    int32_t              partition;
    int64_t              next;      /* offset of the next record to read */
    rd_kafka_message_t **held;      /* ours: the last batch, until the next */
    int                  nheld;
    char                *hbuf;      /* ours: header blocks of the batch */
    size_t               hcap;
    char                 errmsg[512];
};

/* ---- configuration ------------------------------------------------- */

/* Routes librdkafka's errors through tide's warnings, dropping the notes
 * that a property is for the other client kind (every property is given
 * to both). */
/* Writes one line of the job's log (time, level, text) on stderr, as
 * tide's Lua side does; librdkafka's "[thrd:...]: " prefix is left out. */
static void
log_line(const char *buf)
{
    char        when[32];
    time_t      now = time(NULL);
    struct tm   tm;
    const char *text = buf, *cut;

    cut = strstr(buf, "]: ");
    if (buf[0] == '[' && cut != NULL) {
        text = cut + 3;
    }
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s warn kafka: %s%s\n", when, text,
            strstr(text, "Disconnected") != NULL
            ? "; librdkafka reconnects, and the job goes on" : "");
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void) rk;
    /* Connection failures are retried by librdkafka and reported by the
     * call that waits for the broker, once, not once per attempt. */
    if (level > 3 || strcmp(fac, "CONFWARN") == 0 || strcmp(fac, "FAIL") == 0
        || strstr(buf, "brokers are down") != NULL
        || strstr(buf, "Connection refused") != NULL) {
        return;
    }
    log_line(buf);
}

static written_t *
written_slot(tide_kafka_t *k, const rd_kafka_topic_t *rkt, int32_t p)
{
    size_t  h = ((uintptr_t) rkt >> 4) * 31 + (size_t) p, i;

    for (i = 0; i < ENDS_SLOTS; i++) {
        written_t  *w = &k->ends[(h + i) % ENDS_SLOTS];

        if (w->rkt == NULL || (w->rkt == rkt && w->partition == p)) {
            return w;
        }
    }
    return NULL;
}

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    tide_kafka_t  *k = opaque;

    (void) rk;
    if (!m->err && m->offset >= 0) {
        written_t  *w = written_slot(k, m->rkt, m->partition);

        if (w != NULL) {
            w->rkt = m->rkt;
            w->partition = m->partition;
            if (m->offset + 1 > w->end) {
                w->end = m->offset + 1;
            }
        }
    }
    if (m->err) {
        if (k->dr_failed == k->dr_seen) {
            snprintf(k->dr_err, sizeof(k->dr_err), "%s [%d]: %s",
                     rd_kafka_topic_name(m->rkt), (int) m->partition,
                     rd_kafka_err2str(m->err));
        }
        k->dr_failed++;
    }
}

static int
set(rd_kafka_conf_t *c, const char *key, const char *val, char *err,
    size_t errlen)
{
    char  e[256];

    if (rd_kafka_conf_set(c, key, val, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        return tide__set_err(err, errlen, TIDE_EINVAL,
                             "kafka property %s=%s: %s", key, val, e);
    }
    return TIDE_OK;
}

/* Makes a conf with the user's properties (pairs) over tide's own, then
 * the ones tide must have for 'type'. */
static int
make_conf(rd_kafka_conf_t **out, rd_kafka_type_t type, const char *group,
          const char *const *conf, int nconf, char *err, size_t errlen)
{
    rd_kafka_conf_t  *c = rd_kafka_conf_new();
    int               i, rc;

    *out = NULL;
    if (c == NULL) {
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    rd_kafka_conf_set_log_cb(c, log_cb);
    /* Defaults the user may change. */
    if (type == RD_KAFKA_PRODUCER) {
        rc = set(c, "linger.ms", "5", err, errlen);
        /* A transaction left open by a killed process holds back what
         * read_committed consumers see until the broker aborts it: 10 s,
         * as Kafka Streams under exactly-once, not the 60 s default. */
        if (rc == TIDE_OK) {
            rc = set(c, "transaction.timeout.ms", "10000", err, errlen);
        }
    } else {
        rc = set(c, "fetch.wait.max.ms", "100", err, errlen);
    }
    for (i = 0; rc == TIDE_OK && i < nconf; i++) {
        const char           *key = conf[2 * i], *val = conf[2 * i + 1];
        char                  e[256];
        rd_kafka_conf_res_t   r;

        r = rd_kafka_conf_set(c, key, val, e, sizeof(e));
        if (r == RD_KAFKA_CONF_UNKNOWN) {
            rc = tide__set_err(err, errlen, TIDE_EINVAL,
                               "unknown kafka property '%s' (librdkafka's "
                               "CONFIGURATION.md lists them)", key);
        } else if (r != RD_KAFKA_CONF_OK) {
            rc = tide__set_err(err, errlen, TIDE_EINVAL,
                               "kafka property %s=%s: %s", key, val, e);
        }
    }
    /* What the guarantees need. */
    if (rc == TIDE_OK && type == RD_KAFKA_PRODUCER) {
        rc = set(c, "enable.idempotence", "true", err, errlen);
        if (rc == TIDE_OK) {
            rc = set(c, "acks", "all", err, errlen);
        }
        if (rc == TIDE_OK) {
            rc = set(c, "partitioner", "murmur2_random", err, errlen);
        }
    } else if (rc == TIDE_OK) {
        rc = set(c, "group.id", group, err, errlen);
        if (rc == TIDE_OK) {
            rc = set(c, "enable.auto.commit", "false", err, errlen);
        }
        if (rc == TIDE_OK) {
            rc = set(c, "enable.auto.offset.store", "false", err, errlen);
        }
        if (rc == TIDE_OK) {
            rc = set(c, "enable.partition.eof", "false", err, errlen);
        }
        if (rc == TIDE_OK) {
            rc = set(c, "isolation.level", "read_committed", err, errlen);
        }
    }
    if (rc != TIDE_OK) {
        rd_kafka_conf_destroy(c);
        return rc;
    }
    *out = c;
    return TIDE_OK;
}

static int has_key(const char *const *conf, int nconf, const char *key);
static int txn_begin(tide_kafka_t *k);

int
tide_kafka_new(tide_kafka_t **out, const char *group, const char *const *conf,
               int nconf, char *err, size_t errlen)
{
    tide_kafka_t     *k;
    rd_kafka_conf_t  *c;
    char              e[512];
    int               rc;

    if (out == NULL || group == NULL || group[0] == '\0' || nconf < 0
        || (nconf > 0 && conf == NULL)) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "bad arguments");
    }
    *out = NULL;
    k = calloc(1, sizeof(*k));
    if (k == NULL) {
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    rc = make_conf(&c, RD_KAFKA_PRODUCER, group, conf, nconf, err, errlen);
    if (rc != TIDE_OK) {
        free(k);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_conf_set_opaque(c, k);
    k->group = strdup(group);
    if (k->group == NULL) {
        rd_kafka_conf_destroy(c);
        free(k);
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    k->prod = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    if (k->prod == NULL) {
        rd_kafka_conf_destroy(c);
        free(k->group);
        free(k);
        return tide__set_err(err, errlen, TIDE_EINVAL,
                             "cannot make a kafka producer: %s", e);
    }
    rc = make_conf(&c, RD_KAFKA_CONSUMER, group, conf, nconf, err, errlen);
    if (rc == TIDE_OK) {
        k->cons = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
        if (k->cons == NULL) {
            rd_kafka_conf_destroy(c);
            rc = tide__set_err(err, errlen, TIDE_EINVAL,
                               "cannot make a kafka consumer: %s", e);
        }
    }
    if (rc != TIDE_OK) {
        rd_kafka_destroy(k->prod);
        free(k->group);
        free(k);
        return rc;
    }
    k->txn = has_key(conf, nconf, "transactional.id");
    k->refs = 1;
    *out = k;
    return TIDE_OK;
}

static void kafka_destroy(tide_kafka_t *k);

/* Drops one reference; the last one destroys the client. */
static void
kafka_unref(tide_kafka_t *k)
{
    if (--k->refs == 0) {
        kafka_destroy(k);
    }
}

void
tide_kafka_free(tide_kafka_t *k)
{
    if (k == NULL) {
        return;
    }
    kafka_unref(k);
}

static void
kafka_destroy(tide_kafka_t *k)
{
    int  i;

    if (k->held != NULL) {
        rd_kafka_event_destroy(k->held);
    }
    if (k->member != NULL) {
        /* Leaves the group now: the others take its partitions over. */
        rd_kafka_consumer_close(k->member);
        rd_kafka_queue_destroy(k->mq);
        rd_kafka_destroy(k->member);
    }
    if (k->cons != NULL) {
        rd_kafka_consumer_close(k->cons);
        rd_kafka_destroy(k->cons);
    }
    if (k->prod != NULL && k->in_txn) {
        /* Not committed: aborted now, so that read_committed consumers
         * need not wait for the broker's timeout to read past it. */
        rd_kafka_error_t  *e = rd_kafka_abort_transaction(k->prod, 5000);

        if (e != NULL) {
            rd_kafka_error_destroy(e);
        }
    }
    for (i = 0; i < k->nrkts; i++) {
        rd_kafka_topic_destroy(k->rkts[i]);
    }
    if (k->prod != NULL) {
        /* Whatever was not flushed is dropped: a commit flushes first. */
        rd_kafka_purge(k->prod, RD_KAFKA_PURGE_F_QUEUE
                                | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(k->prod, 1000);
        rd_kafka_destroy(k->prod);
    }
    free(k->group);
    free(k);
}

const char *
tide_kafka_errmsg(const tide_kafka_t *k)
{
    return k != NULL ? k->errmsg : "no kafka client";
}

static int fail(tide_kafka_t *k, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the client's error text and returns 'rc'. */
static int
fail(tide_kafka_t *k, int rc, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(k->errmsg, sizeof(k->errmsg), fmt, ap);
    va_end(ap);
    return rc;
}

/* TIDE_EAGAIN for the errors that pass once the group or the cluster has
 * settled (a rebalance, a coordinator moving or loading, a broker
 * lost), else TIDE_EIO. */
static int
kind_of(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__STATE:
        return TIDE_EAGAIN;
    default:
        return TIDE_EIO;
    }
}

/* ---- metadata and admin -------------------------------------------- */

int
tide_kafka_topic_info(tide_kafka_t *k, const char *topic, int32_t *partitions,
                      int32_t *replication, int timeout_ms)
{
    const struct rd_kafka_metadata  *md;
    rd_kafka_resp_err_t              e;
    int                              i, rc = TIDE_ENOENT;

    if (k == NULL || topic == NULL || partitions == NULL
        || replication == NULL) {
        return TIDE_EINVAL;
    }
    /* All topics: asking for one by name may create it on a broker with
     * auto.create.topics.enable. */
    e = rd_kafka_metadata(k->prod, 1, NULL, &md, timeout_ms);
    if (e) {
        return fail(k, TIDE_EIO, "cannot read the topics from the kafka "
                    "brokers: %s (check kafka.bootstrap.servers and that "
                    "a broker runs)", rd_kafka_err2str(e));
    }
    for (i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic  *t = &md->topics[i];

        if (strcmp(t->topic, topic) != 0) {
            continue;
        }
        if (t->err) {
            rc = fail(k, t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                      ? TIDE_ENOENT : TIDE_EIO, "topic %s: %s", topic,
                      rd_kafka_err2str(t->err));
            break;
        }
        *partitions = t->partition_cnt;
        *replication = t->partition_cnt > 0 ? t->partitions[0].replica_cnt
                                            : 0;
        rc = TIDE_OK;
        break;
    }
    if (rc == TIDE_ENOENT && i == md->topic_cnt) {
        fail(k, TIDE_ENOENT, "no topic '%s' on the kafka cluster", topic);
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

int
tide_kafka_create_topic(tide_kafka_t *k, const char *topic,
                        int32_t partitions, int32_t replication, int compact,
                        int timeout_ms)
{
    rd_kafka_NewTopic_t           *nt;
    rd_kafka_queue_t              *q;
    rd_kafka_AdminOptions_t       *opts;
    rd_kafka_event_t              *ev;
    const rd_kafka_CreateTopics_result_t *res;
    const rd_kafka_topic_result_t **tr;
    size_t                         n;
    char                           e[256];
    int                            rc = TIDE_OK;

    if (k == NULL || topic == NULL || partitions < 1) {
        return TIDE_EINVAL;
    }
    nt = rd_kafka_NewTopic_new(topic, partitions,
                               replication > 0 ? replication : -1, e,
                               sizeof(e));
    if (nt == NULL) {
        return fail(k, TIDE_EINVAL, "topic %s: %s", topic, e);
    }
    if (compact) {
        rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
    }
    q = rd_kafka_queue_new(k->prod);
    opts = rd_kafka_AdminOptions_new(k->prod, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, e,
                                                sizeof(e));
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, e, sizeof(e));
    rd_kafka_CreateTopics(k->prod, &nt, 1, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (ev == NULL) {
        rc = fail(k, TIDE_EIO, "creating topic %s: no answer from the kafka "
                  "cluster", topic);
    } else if (rd_kafka_event_error(ev)) {
        rc = fail(k, TIDE_EIO, "creating topic %s: %s", topic,
                  rd_kafka_event_error_string(ev));
    } else {
        res = rd_kafka_event_CreateTopics_result(ev);
        tr = rd_kafka_CreateTopics_result_topics(res, &n);
        if (n == 1 && rd_kafka_topic_result_error(tr[0])) {
            rd_kafka_resp_err_t  te = rd_kafka_topic_result_error(tr[0]);

            rc = fail(k, te == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS
                      ? TIDE_EEXIST : TIDE_EIO, "creating topic %s: %s",
                      topic, rd_kafka_topic_result_error_string(tr[0]));
        }
    }
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int
tide_kafka_watermarks(tide_kafka_t *k, const char *topic, int32_t partition,
                      int64_t *lo, int64_t *hi, int timeout_ms)
{
    rd_kafka_resp_err_t  e;

    if (k == NULL || topic == NULL || lo == NULL || hi == NULL) {
        return TIDE_EINVAL;
    }
    e = rd_kafka_query_watermark_offsets(k->cons, topic, partition, lo, hi,
                                         timeout_ms);
    if (e) {
        return fail(k, e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                    ? TIDE_ENOENT : kind_of(e), "offsets of %s: %s", topic,
                    rd_kafka_err2str(e));
    }
    return TIDE_OK;
}

/* ---- producing ------------------------------------------------------ */

/* Turns tide's header block (u32 count, then name length, name, value
 * length or -1, value; little-endian) into librdkafka headers. */
static rd_kafka_headers_t *
headers_of(const char *b, int32_t len)
{
    rd_kafka_headers_t  *h;
    uint32_t             n, i, nl;
    int32_t              vl;
    int32_t              at = 4;

    if (b == NULL || len < 4) {
        return NULL;
    }
    memcpy(&n, b, 4);
    h = rd_kafka_headers_new(n < 64 ? n : 64);
    for (i = 0; i < n; i++) {
        const char  *name;

        if (at + 4 > len) {
            break;
        }
        memcpy(&nl, b + at, 4);
        at += 4;
        if (nl > (uint32_t) (len - at)) {
            break;
        }
        name = b + at;
        at += (int32_t) nl;
        if (at + 4 > len) {
            break;
        }
        memcpy(&vl, b + at, 4);
        at += 4;
        if (vl > len - at) {
            break;
        }
        rd_kafka_header_add(h, name, (ssize_t) nl, vl >= 0 ? b + at : NULL,
                            vl >= 0 ? vl : 0);
        at += vl > 0 ? vl : 0;
    }
    return h;
}

/* The producer's handle of 'topic', made on first use and kept until the
 * client is freed; NULL once TOPICS_MAX are kept. Topics are few, so a
 * scan is enough. */
static rd_kafka_topic_t *
topic_of(tide_kafka_t *k, const char *topic)
{
    rd_kafka_topic_t  *rkt;
    int                i;

    for (i = 0; i < k->nrkts; i++) {
        if (strcmp(rd_kafka_topic_name(k->rkts[i]), topic) == 0) {
            return k->rkts[i];
        }
    }
    if (k->nrkts == TOPICS_MAX) {
        return NULL;
    }
    rkt = rd_kafka_topic_new(k->prod, topic, NULL);
    if (rkt != NULL) {
        k->rkts[k->nrkts++] = rkt;
    }
    return rkt;
}

int
tide_kafka_produce(tide_kafka_t *k, const char *topic, int32_t partition,
                   const tide_rec_t *rec)
{
    rd_kafka_headers_t   *h;
    rd_kafka_topic_t     *rkt, *tmp;
    rd_kafka_resp_err_t   e;
    size_t                klen, vlen;
    int32_t               part;
    int                   tries;

    if (k == NULL || topic == NULL || rec == NULL) {
        return TIDE_EINVAL;
    }
    if (k->txn && !k->in_txn) {
        int  rc = txn_begin(k);

        if (rc != TIDE_OK) {
            return rc;
        }
    }
    klen = rec->key != NULL ? (size_t) rec->klen : 0;
    vlen = rec->val != NULL ? (size_t) rec->vlen : 0;
    part = partition >= 0 ? partition : RD_KAFKA_PARTITION_UA;
    rkt = topic_of(k, topic);
    tmp = rkt == NULL ? rd_kafka_topic_new(k->prod, topic, NULL) : NULL;
    if (rkt == NULL && tmp == NULL) {
        return fail(k, TIDE_EIO, "producing to %s: %s", topic,
                    rd_kafka_err2str(rd_kafka_last_error()));
    }
    for (tries = 0; ; tries++) {
        h = headers_of(rec->hdrs, rec->hlen);
        e = rd_kafka_producev(
            k->prod, RD_KAFKA_V_RKT(rkt != NULL ? rkt : tmp),
            RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(rec->key, klen),
            RD_KAFKA_V_VALUE((void *) rec->val, vlen),
            RD_KAFKA_V_TIMESTAMP(rec->ts),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (!e) {
            break;                      /* the message owns h now */
        }
        if (h != NULL) {
            rd_kafka_headers_destroy(h);
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries > 600) {
            break;
        }
        rd_kafka_poll(k->prod, 100);    /* let deliveries drain the queue */
        k->unpolled = 0;
    }
    if (tmp != NULL) {
        rd_kafka_topic_destroy(tmp);    /* a queued record keeps its own */
    }
    if (e) {
        return fail(k, TIDE_EIO, "producing to %s: %s", topic,
                    rd_kafka_err2str(e));
    }
    /* Delivery reports only count (dr_cb): serving them now and then is
     * enough, and a poll per record cost a lock and a queue scan each. */
    if (++k->unpolled >= POLL_EVERY) {
        rd_kafka_poll(k->prod, 0);
        k->unpolled = 0;
    }
    return TIDE_OK;
}

int
tide_kafka_flush(tide_kafka_t *k, int timeout_ms)
{
    rd_kafka_resp_err_t  e;

    if (k == NULL) {
        return TIDE_EINVAL;
    }
    e = rd_kafka_flush(k->prod, timeout_ms);
    if (k->dr_failed != k->dr_seen) {
        snprintf(k->errmsg, sizeof(k->errmsg), "%lld record(s) not "
                 "delivered, first: %s", (long long) (k->dr_failed
                                                      - k->dr_seen),
                 k->dr_err);
        k->dr_seen = k->dr_failed;
        return TIDE_EIO;
    }
    if (e) {
        return fail(k, TIDE_EIO, "records not delivered in time: %s (is a "
                    "kafka broker down?)", rd_kafka_err2str(e));
    }
    return TIDE_OK;
}

int64_t
tide_kafka_written_end(tide_kafka_t *k, const char *topic, int32_t partition)
{
    size_t  i;

    if (k == NULL || topic == NULL) {
        return -1;
    }
    for (i = 0; i < ENDS_SLOTS; i++) {
        written_t  *w = &k->ends[i];

        if (w->rkt != NULL && w->partition == partition
            && strcmp(rd_kafka_topic_name(w->rkt), topic) == 0) {
            return w->end;
        }
    }
    return -1;
}


/* ---- transactions (exactly-once) --------------------------------------- */

/* Takes a transactional call's error: TIDE_OK when none. A retriable one
 * returns TIDE_EAGAIN (the caller tries again); one that needs an abort
 * aborts the transaction; a fatal one (the producer was fenced) leaves it
 * unusable. 'what' names the step in errmsg. */
static int
txn_error(tide_kafka_t *k, rd_kafka_error_t *e, const char *what)
{
    int  rc;

    if (e == NULL) {
        return TIDE_OK;
    }
    if (rd_kafka_error_is_retriable(e)) {
        rc = fail(k, TIDE_EAGAIN, "kafka transaction: %s: %s", what,
                  rd_kafka_error_string(e));
    } else if (rd_kafka_error_txn_requires_abort(e)) {
        rd_kafka_error_t  *a;

        rc = fail(k, TIDE_EIO, "kafka transaction: %s: %s; the transaction "
                  "was aborted", what, rd_kafka_error_string(e));
        a = rd_kafka_abort_transaction(k->prod, 30000);
        if (a != NULL) {
            rd_kafka_error_destroy(a);
        }
        k->in_txn = 0;
    } else if (rd_kafka_error_is_fatal(e)) {
        rc = fail(k, TIDE_EIO, "kafka transaction: %s: %s (fatal: another "
                  "producer with this transactional.id took over)", what,
                  rd_kafka_error_string(e));
        k->in_txn = 0;
    } else {
        rc = fail(k, TIDE_EIO, "kafka transaction: %s: %s", what,
                  rd_kafka_error_string(e));
    }
    rd_kafka_error_destroy(e);
    return rc;
}

static int
txn_begin(tide_kafka_t *k)
{
    int  rc = txn_error(k, rd_kafka_begin_transaction(k->prod), "begin");

    if (rc == TIDE_OK) {
        k->in_txn = 1;
    }
    return rc;
}

int
tide_kafka_txn_init(tide_kafka_t *k, int timeout_ms)
{
    if (k == NULL) {
        return TIDE_EINVAL;
    }
    if (!k->txn) {
        return fail(k, TIDE_EINVAL, "the client has no transactional.id");
    }
    return txn_error(k, rd_kafka_init_transactions(k->prod, timeout_ms),
                     "init");
}

int
tide_kafka_group_meta(tide_kafka_t *k, void *buf, size_t cap, size_t *len)
{
    rd_kafka_consumer_group_metadata_t  *m;
    rd_kafka_error_t                    *e;
    void                                *data = NULL;
    size_t                               size = 0;
    int                                  rc = TIDE_OK;

    if (k == NULL || buf == NULL || len == NULL) {
        return TIDE_EINVAL;
    }
    if (k->member == NULL) {
        return fail(k, TIDE_ENOENT, "not a member of the group");
    }
    m = rd_kafka_consumer_group_metadata(k->member);
    if (m == NULL) {
        return fail(k, TIDE_ENOMEM, "out of memory");
    }
    e = rd_kafka_consumer_group_metadata_write(m, &data, &size);
    rd_kafka_consumer_group_metadata_destroy(m);
    if (e != NULL) {
        rc = fail(k, TIDE_EIO, "group metadata: %s",
                  rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return rc;
    }
    *len = size;
    if (size > cap) {
        rc = TIDE_ENOBUFS;
    } else {
        memcpy(buf, data, size);
    }
    rd_kafka_mem_free(NULL, data);
    return rc;
}

/* Milliseconds left until 'deadline' (at least 1000: one more try). */
static int
left_ms(time_t deadline)
{
    time_t  left = deadline - time(NULL);

    return left > 1 ? (int) left * 1000 : 1000;
}

int
tide_kafka_txn_commit(tide_kafka_t *k, const char *const *topics,
                      const int32_t *partitions, const int64_t *offsets,
                      const char *const *metadata, int n, const void *gmeta,
                      size_t gmlen, int timeout_ms)
{
    rd_kafka_topic_partition_list_t     *l = NULL;
    rd_kafka_consumer_group_metadata_t  *m = NULL;
    rd_kafka_error_t                    *e;
    time_t                               deadline;
    int                                  i, rc = TIDE_OK;

    if (k == NULL || n < 0 || (n > 0 && (topics == NULL
                                         || partitions == NULL
                                         || offsets == NULL))
        || (gmeta == NULL && gmlen > 0) || timeout_ms < 0) {
        return TIDE_EINVAL;
    }
    if (!k->txn) {
        return fail(k, TIDE_EINVAL, "the client has no transactional.id");
    }
    if (n == 0 && !k->in_txn) {
        return TIDE_OK;                 /* nothing read, nothing written */
    }
    if (!k->in_txn) {
        rc = txn_begin(k);
        if (rc != TIDE_OK) {
            return rc;
        }
    }
    deadline = time(NULL) + (timeout_ms + 999) / 1000;
    if (n > 0) {
        if (gmeta != NULL) {
            e = rd_kafka_consumer_group_metadata_read(&m, gmeta, gmlen);
            if (e != NULL) {
                rc = fail(k, TIDE_EINVAL, "group metadata: %s",
                          rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                return rc;
            }
        } else {
            /* Outside the group (a drain): offsets as a simple commit. */
            m = rd_kafka_consumer_group_metadata_new(k->group);
        }
        l = rd_kafka_topic_partition_list_new(n);
        for (i = 0; i < n && rc == TIDE_OK; i++) {
            rd_kafka_topic_partition_t  *tp;

            tp = rd_kafka_topic_partition_list_add(l, topics[i],
                                                   partitions[i]);
            tp->offset = offsets[i];
            if (metadata != NULL && metadata[i] != NULL) {
                tp->metadata_size = strlen(metadata[i]);
                tp->metadata = malloc(tp->metadata_size);
                if (tp->metadata == NULL) {
                    rc = TIDE_ENOMEM;
                } else {
                    memcpy(tp->metadata, metadata[i], tp->metadata_size);
                }
            }
        }
        while (rc == TIDE_OK || rc == TIDE_EAGAIN) {
            e = rd_kafka_send_offsets_to_transaction(k->prod, l, m,
                                                     left_ms(deadline));
            rc = txn_error(k, e, "sending the offsets");
            if (rc != TIDE_EAGAIN || time(NULL) >= deadline) {
                break;
            }
            usleep(100 * 1000);
        }
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_consumer_group_metadata_destroy(m);
        if (rc != TIDE_OK) {
            if (rc == TIDE_EAGAIN || rc == TIDE_ENOMEM) {
                tide_kafka_txn_abort(k, 30000);
            }
            return rc == TIDE_EAGAIN ? TIDE_EIO : rc;
        }
    }
    for (;;) {
        e = rd_kafka_commit_transaction(k->prod, left_ms(deadline));
        rc = txn_error(k, e, "commit");
        if (rc != TIDE_EAGAIN || time(NULL) >= deadline) {
            break;
        }
        usleep(100 * 1000);
    }
    if (rc == TIDE_OK) {
        k->in_txn = 0;
        return TIDE_OK;
    }
    if (rc == TIDE_EAGAIN) {
        tide_kafka_txn_abort(k, 30000);
        return TIDE_EIO;
    }
    return rc;
}

int
tide_kafka_txn_abort(tide_kafka_t *k, int timeout_ms)
{
    char  keep[sizeof(k->errmsg)];
    int   rc;

    if (k == NULL) {
        return TIDE_EINVAL;
    }
    if (!k->txn || !k->in_txn) {
        return TIDE_OK;
    }
    /* The error that led here stays the one errmsg tells. */
    memcpy(keep, k->errmsg, sizeof(keep));
    rc = txn_error(k, rd_kafka_abort_transaction(k->prod, timeout_ms),
                   "abort");
    if (rc == TIDE_OK) {
        k->in_txn = 0;
        memcpy(k->errmsg, keep, sizeof(keep));
    }
    return rc;
}

/* ---- group offsets ---------------------------------------------------- */

int
tide_kafka_commit(tide_kafka_t *k, const char *const *topics,
                  const int32_t *partitions, const int64_t *offsets,
                  const char *const *metadata, int n)
{
    rd_kafka_topic_partition_list_t  *l;
    rd_kafka_resp_err_t               e;
    int                               i, rc = TIDE_OK;

    if (k == NULL || n < 0 || (n > 0 && (topics == NULL
                                         || partitions == NULL
                                         || offsets == NULL))) {
        return TIDE_EINVAL;
    }
    if (n == 0) {
        return TIDE_OK;
    }
    l = rd_kafka_topic_partition_list_new(n);
    for (i = 0; i < n; i++) {
        rd_kafka_topic_partition_t  *tp;

        tp = rd_kafka_topic_partition_list_add(l, topics[i], partitions[i]);
        tp->offset = offsets[i];
        if (metadata != NULL && metadata[i] != NULL) {
            tp->metadata_size = strlen(metadata[i]);
            tp->metadata = malloc(tp->metadata_size);
            if (tp->metadata == NULL) {
                rd_kafka_topic_partition_list_destroy(l);
                return TIDE_ENOMEM;
            }
            memcpy(tp->metadata, metadata[i], tp->metadata_size);
        }
    }
    e = rd_kafka_commit(k->member != NULL ? k->member : k->cons, l, 0);
    if (e) {
        rc = fail(k, kind_of(e), "committing offsets to the kafka group: %s",
                  rd_kafka_err2str(e));
    } else {
        for (i = 0; i < l->cnt; i++) {
            if (l->elems[i].err) {
                rc = fail(k, kind_of(l->elems[i].err), "committing the "
                          "offset of %s: %s", l->elems[i].topic,
                          rd_kafka_err2str(l->elems[i].err));
                break;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int
tide_kafka_committed(tide_kafka_t *k, const char *topic, int32_t partition,
                     int64_t *offset, char *metadata, size_t metalen,
                     int timeout_ms)
{
    rd_kafka_topic_partition_list_t  *l;
    rd_kafka_resp_err_t               e;
    int                               rc = TIDE_OK;

    if (k == NULL || topic == NULL || offset == NULL
        || (metadata == NULL && metalen > 0)) {
        return TIDE_EINVAL;
    }
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    e = rd_kafka_committed(k->member != NULL ? k->member : k->cons, l,
                           timeout_ms);
    if (e || l->elems[0].err) {
        rc = fail(k, kind_of(e ? e : l->elems[0].err), "reading the group's "
                  "offset of %s: %s", topic,
                  rd_kafka_err2str(e ? e : l->elems[0].err));
    } else {
        *offset = l->elems[0].offset;   /* RD_KAFKA_OFFSET_INVALID: none */
        if (metalen > 0) {
            size_t  m = l->elems[0].metadata_size;

            if (m >= metalen) {
                rc = TIDE_ENOBUFS;
            } else {
                memcpy(metadata, l->elems[0].metadata != NULL
                                 ? l->elems[0].metadata : "", m);
                metadata[m] = '\0';
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

/* ---- group membership ------------------------------------------------ */

/* True when the user's pairs set property 'key'. */
static int
has_key(const char *const *conf, int nconf, const char *key)
{
    int  i;

    for (i = 0; i < nconf; i++) {
        if (strcmp(conf[2 * i], key) == 0) {
            return 1;
        }
    }
    return 0;
}

int
tide_kafka_subscribe(tide_kafka_t *k, const char *topic,
                     const char *const *conf, int nconf)
{
    rd_kafka_conf_t                  *c;
    rd_kafka_topic_partition_list_t  *l;
    rd_kafka_resp_err_t               e;
    char                              msg[512];
    int                               rc;

    if (k == NULL || topic == NULL || k->member != NULL || nconf < 0) {
        return TIDE_EINVAL;
    }
    rc = make_conf(&c, RD_KAFKA_CONSUMER, k->group, conf, nconf, msg,
                   sizeof(msg));
    if (rc == TIDE_OK) {
        rc = set(c, "partition.assignment.strategy", "cooperative-sticky",
                 msg, sizeof(msg));
    }
    /* Named after its host and pid, so that kafka-consumer-groups and
     * tide state get say which process holds a task. */
    if (rc == TIDE_OK && !has_key(conf, nconf, "client.id")) {
        char  host[128], id[200];

        if (gethostname(host, sizeof(host)) != 0) {
            strcpy(host, "unknown");
        }
        host[sizeof(host) - 1] = '\0';
        snprintf(id, sizeof(id), "tide-%s-%d", host, (int) getpid());
        rc = set(c, "client.id", id, msg, sizeof(msg));
    }
    /* A process that died is noticed in 10 s rather than librdkafka's
     * 45, unless the user says otherwise. */
    if (rc == TIDE_OK && !has_key(conf, nconf, "session.timeout.ms")) {
        rc = set(c, "session.timeout.ms", "10000", msg, sizeof(msg));
    }
    if (rc != TIDE_OK) {
        if (c != NULL) {
            rd_kafka_conf_destroy(c);
        }
        return fail(k, rc, "%s", msg);
    }
    /* Rebalances come as events, handled between the supervisor's turns:
     * a revoked task is committed before the group hears it is free. */
    rd_kafka_conf_set_events(c, RD_KAFKA_EVENT_REBALANCE
                                | RD_KAFKA_EVENT_ERROR);
    k->member = rd_kafka_new(RD_KAFKA_CONSUMER, c, msg, sizeof(msg));
    if (k->member == NULL) {
        rd_kafka_conf_destroy(c);
        return fail(k, TIDE_EINVAL, "cannot make the group member: %s", msg);
    }
    k->mq = rd_kafka_queue_get_consumer(k->member);
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(k->member, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        return fail(k, TIDE_EIO, "joining group %s: %s", k->group,
                    rd_kafka_err2str(e));
    }
    return TIDE_OK;
}

int
tide_kafka_group_poll(tide_kafka_t *k, int timeout_ms, int32_t *kind,
                      int32_t *parts, int32_t max, int32_t *n)
{
    rd_kafka_event_t  *ev;

    if (k == NULL || k->member == NULL || kind == NULL || parts == NULL
        || n == NULL || max < 1) {
        return TIDE_EINVAL;
    }
    *n = 0;
    *kind = 0;
    if (k->held != NULL) {
        return fail(k, TIDE_EINVAL, "a rebalance is waiting for "
                    "tide_kafka_rebalance_done");
    }
    while ((ev = rd_kafka_queue_poll(k->mq, timeout_ms)) != NULL) {
        timeout_ms = 0;
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_REBALANCE: {
            const rd_kafka_topic_partition_list_t  *l;
            int                                     i;

            l = rd_kafka_event_topic_partition_list(ev);
            *kind = rd_kafka_event_error(ev)
                    == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                    ? TIDE_KAFKA_ASSIGN
                    : (rd_kafka_assignment_lost(k->member)
                       ? TIDE_KAFKA_LOST : TIDE_KAFKA_REVOKE);
            for (i = 0; l != NULL && i < l->cnt && i < max; i++) {
                parts[i] = l->elems[i].partition;
            }
            *n = i;
            k->held = ev;
            return 1;
        }
        case RD_KAFKA_EVENT_ERROR:
            if (rd_kafka_event_error_is_fatal(ev)) {
                fail(k, TIDE_EIO, "kafka group %s: %s", k->group,
                     rd_kafka_event_error_string(ev));
                rd_kafka_event_destroy(ev);
                return TIDE_EIO;
            }
            tide__warn("kafka group %s: %s; retrying", k->group,
                       rd_kafka_event_error_string(ev));
            break;
        default:
            break;                      /* messages: paused, none wanted */
        }
        rd_kafka_event_destroy(ev);
    }
    return 0;
}

int
tide_kafka_rebalance_done(tide_kafka_t *k)
{
    const rd_kafka_topic_partition_list_t  *l;
    rd_kafka_error_t                       *e;
    int                                     rc = TIDE_OK;

    if (k == NULL || k->held == NULL) {
        return TIDE_EINVAL;
    }
    l = rd_kafka_event_topic_partition_list(k->held);
    if (rd_kafka_event_error(k->held) == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        e = rd_kafka_incremental_assign(k->member, l);
        if (e == NULL) {
            /* The member only holds the partitions: workers read them. */
            rd_kafka_pause_partitions(k->member,
                                      (rd_kafka_topic_partition_list_t *) l);
        }
    } else {
        e = rd_kafka_incremental_unassign(k->member, l);
    }
    if (e != NULL) {
        rc = fail(k, TIDE_EIO, "kafka group %s: %s", k->group,
                  rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_event_destroy(k->held);
    k->held = NULL;
    return rc;
}

/* Describes the client's group: *ev holds the answer (the caller
 * destroys it) and *gd its one group. Returns TIDE_OK or TIDE_EIO. */
static int
describe_group(tide_kafka_t *k, int timeout_ms, rd_kafka_event_t **ev,
               const rd_kafka_ConsumerGroupDescription_t **gd)
{
    const char                                      *groups[1];
    rd_kafka_queue_t                                *q;
    const rd_kafka_DescribeConsumerGroups_result_t  *res;
    const rd_kafka_ConsumerGroupDescription_t      **all;
    size_t                                           ng;
    int                                              rc = TIDE_OK;

    groups[0] = k->group;
    q = rd_kafka_queue_new(k->prod);
    rd_kafka_DescribeConsumerGroups(k->prod, groups, 1, NULL, q);
    *ev = rd_kafka_queue_poll(q, timeout_ms);
    rd_kafka_queue_destroy(q);
    if (*ev == NULL || rd_kafka_event_error(*ev)) {
        return fail(k, TIDE_EIO, "describing group %s: %s", k->group,
                    *ev != NULL ? rd_kafka_event_error_string(*ev)
                                : "no answer");
    }
    res = rd_kafka_event_DescribeConsumerGroups_result(*ev);
    all = rd_kafka_DescribeConsumerGroups_result_groups(res, &ng);
    if (ng != 1 || rd_kafka_ConsumerGroupDescription_error(all[0]) != NULL) {
        rc = fail(k, TIDE_EIO, "describing group %s failed", k->group);
    } else {
        *gd = all[0];
    }
    return rc;
}

int
tide_kafka_group_owner(tide_kafka_t *k, const char *topic, int32_t partition,
                       char *who, size_t wholen, int timeout_ms)
{
    rd_kafka_event_t                           *ev = NULL;
    const rd_kafka_ConsumerGroupDescription_t  *gd = NULL;
    size_t                                      m, nm;
    int                                         i, rc;

    if (k == NULL || topic == NULL || who == NULL || wholen == 0) {
        return TIDE_EINVAL;
    }
    who[0] = '\0';
    rc = describe_group(k, timeout_ms, &ev, &gd);
    nm = rc == TIDE_OK ? rd_kafka_ConsumerGroupDescription_member_count(gd)
                       : 0;
    rc = rc == TIDE_OK ? TIDE_ENOENT : rc;
    for (m = 0; m < nm && rc == TIDE_ENOENT; m++) {
        const rd_kafka_MemberDescription_t     *md;
        const rd_kafka_topic_partition_list_t  *l;

        md = rd_kafka_ConsumerGroupDescription_member(gd, m);
        l = rd_kafka_MemberAssignment_partitions(
                rd_kafka_MemberDescription_assignment(md));
        for (i = 0; l != NULL && i < l->cnt; i++) {
            if (l->elems[i].partition == partition
                && strcmp(l->elems[i].topic, topic) == 0) {
                snprintf(who, wholen, "client.id=%s host=%s",
                         rd_kafka_MemberDescription_client_id(md),
                         rd_kafka_MemberDescription_host(md));
                rc = TIDE_OK;
                break;
            }
        }
    }
    if (ev != NULL) {
        rd_kafka_event_destroy(ev);
    }
    return rc;
}

int
tide_kafka_group_assignment(tide_kafka_t *k, const char *topic,
                            int32_t *owner, int32_t nparts,
                            int32_t *members, int32_t *self, int timeout_ms)
{
    rd_kafka_event_t                           *ev = NULL;
    const rd_kafka_ConsumerGroupDescription_t  *gd = NULL;
    const char                                 *mine;
    char                                       *me;
    size_t                                      m, j, nm;
    int                                         i, rc;

    if (k == NULL || topic == NULL || owner == NULL || nparts < 0
        || members == NULL || self == NULL) {
        return TIDE_EINVAL;
    }
    for (i = 0; i < nparts; i++) {
        owner[i] = -1;
    }
    *members = 0;
    *self = -1;
    rc = describe_group(k, timeout_ms, &ev, &gd);
    if (rc != TIDE_OK) {
        if (ev != NULL) {
            rd_kafka_event_destroy(ev);
        }
        return rc;
    }
    me = k->member != NULL ? rd_kafka_memberid(k->member) : NULL;
    nm = rd_kafka_ConsumerGroupDescription_member_count(gd);
    for (m = 0; m < nm; m++) {
        const rd_kafka_MemberDescription_t     *md;
        const rd_kafka_topic_partition_list_t  *l;
        int32_t                                 rank = 0;

        md = rd_kafka_ConsumerGroupDescription_member(gd, m);
        mine = rd_kafka_MemberDescription_consumer_id(md);
        /* Its place among the members in the order of their ids. */
        for (j = 0; j < nm; j++) {
            const char  *other = rd_kafka_MemberDescription_consumer_id(
                                     rd_kafka_ConsumerGroupDescription_member(
                                         gd, j));

            if (strcmp(other, mine) < 0) {
                rank++;
            }
        }
        if (me != NULL && strcmp(me, mine) == 0) {
            *self = rank;
        }
        l = rd_kafka_MemberAssignment_partitions(
                rd_kafka_MemberDescription_assignment(md));
        for (i = 0; l != NULL && i < l->cnt; i++) {
            if (l->elems[i].partition >= 0
                && l->elems[i].partition < nparts
                && strcmp(l->elems[i].topic, topic) == 0) {
                owner[l->elems[i].partition] = rank;
            }
        }
    }
    *members = (int32_t) nm;
    if (me != NULL) {
        rd_kafka_mem_free(k->member, me);
    }
    rd_kafka_event_destroy(ev);
    return TIDE_OK;
}

/* ---- readers ---------------------------------------------------------- */

int
tide_kreader_new(tide_kreader_t **out, tide_kafka_t *k, const char *topic,
                 int32_t partition, int64_t offset)
{
    tide_kreader_t                   *r;
    rd_kafka_topic_partition_list_t  *l;
    rd_kafka_error_t                 *e;

    if (out == NULL || k == NULL || topic == NULL || partition < 0
        || offset < 0) {
        return TIDE_EINVAL;
    }
    *out = NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->topic = strdup(topic)) == NULL) {
        free(r);
        return TIDE_ENOMEM;
    }
    r->k = k;
    r->partition = partition;
    r->next = offset;
    /* The partition's own queue, not forwarded to the consumer's: each
     * reader polls its partition alone. */
    r->q = rd_kafka_queue_get_partition(k->cons, topic, partition);
    if (r->q == NULL) {
        free(r->topic);
        free(r);
        return fail(k, TIDE_ENOENT, "no partition %d of %s",
                    (int) partition, topic);
    }
    rd_kafka_queue_forward(r->q, NULL);
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    e = rd_kafka_incremental_assign(k->cons, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != NULL) {
        fail(k, TIDE_EIO, "reading %s: %s", topic, rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        rd_kafka_queue_destroy(r->q);
        free(r->topic);
        free(r);
        return TIDE_EIO;
    }
    k->refs++;
    *out = r;
    return TIDE_OK;
}

static void
release(tide_kreader_t *r)
{
    int  i;

    for (i = 0; i < r->nheld; i++) {
        rd_kafka_message_destroy(r->held[i]);
    }
    r->nheld = 0;
}

/* Appends the headers of 'm' to r->hbuf as a tide header block; sets
 * rec->hdrs/hlen. Offsets into hbuf are fixed up by the caller once the
 * batch is done (the buffer may move while it grows). */
static int
add_headers(tide_kreader_t *r, rd_kafka_message_t *m, size_t *used,
            tide_rec_t *rec)
{
    rd_kafka_headers_t  *h;
    size_t               need, i, n, start = *used;
    const char          *name;
    const void          *val;
    size_t               vlen;
    uint32_t             u;
    int32_t              s;

    rec->hdrs = NULL;
    rec->hlen = 0;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return TIDE_OK;
    }
    n = rd_kafka_header_cnt(h);
    need = 4;
    for (i = 0; i < n; i++) {
        rd_kafka_header_get_all(h, i, &name, &val, &vlen);
        need += 8 + strlen(name) + (val != NULL ? vlen : 0);
    }
    if (*used + need > r->hcap) {
        size_t  cap = r->hcap > 0 ? r->hcap : 4096;
        char   *b;

        while (cap < *used + need) {
            cap *= 2;
        }
        b = realloc(r->hbuf, cap);
        if (b == NULL) {
            return TIDE_ENOMEM;
        }
        r->hbuf = b;
        r->hcap = cap;
    }
    u = (uint32_t) n;
    memcpy(r->hbuf + *used, &u, 4);
    *used += 4;
    for (i = 0; i < n; i++) {
        rd_kafka_header_get_all(h, i, &name, &val, &vlen);
        u = (uint32_t) strlen(name);
        memcpy(r->hbuf + *used, &u, 4);
        memcpy(r->hbuf + *used + 4, name, u);
        *used += 4 + u;
        s = val != NULL ? (int32_t) vlen : -1;
        memcpy(r->hbuf + *used, &s, 4);
        *used += 4;
        if (val != NULL) {
            memcpy(r->hbuf + *used, val, vlen);
            *used += vlen;
        }
    }
    /* An offset for now: the buffer may still move. */
    rec->hdrs = (const char *) (uintptr_t) (start + 1);
    rec->hlen = (int32_t) (*used - start);
    return TIDE_OK;
}

int
tide_kreader_poll_batch(tide_kreader_t *r, tide_rec_t *recs, int n,
                        int timeout_ms)
{
    rd_kafka_message_t  *msgs[256];
    ssize_t              got;
    size_t               used = 0;
    int                  i, out = 0;

    if (r == NULL || recs == NULL || n < 1) {
        return TIDE_EINVAL;
    }
    release(r);
    if (n > 256) {
        n = 256;
    }
    if (r->held == NULL) {
        r->held = calloc(256, sizeof(*r->held));
        if (r->held == NULL) {
            return TIDE_ENOMEM;
        }
    }
    got = rd_kafka_consume_batch_queue(r->q, timeout_ms, msgs, (size_t) n);
    if (got < 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "reading %s [%d]: %s",
                 r->topic, (int) r->partition,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return TIDE_EIO;
    }
    for (i = 0; i < got; i++) {
        rd_kafka_message_t  *m = msgs[i];
        tide_rec_t          *rec = &recs[out];
        int64_t              ts;

        r->held[r->nheld++] = m;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                continue;
            }
            snprintf(r->errmsg, sizeof(r->errmsg), "reading %s [%d]: %s",
                     r->topic, (int) r->partition,
                     rd_kafka_message_errstr(m));
            /* Transient errors are retried by librdkafka; say so and go
             * on with what came. */
            if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT
                || m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
                tide__warn("kafka: %s; retrying", r->errmsg);
                continue;
            }
            for (; i + 1 < got; i++) {
                r->held[r->nheld++] = msgs[i + 1];
            }
            return TIDE_EIO;
        }
        rec->offset = m->offset;
        ts = rd_kafka_message_timestamp(m, NULL);
        rec->ts = ts >= 0 ? ts : 0;
        rec->key = m->key;
        rec->klen = m->key != NULL ? (int32_t) m->key_len : -1;
        rec->val = m->payload;
        rec->vlen = m->payload != NULL ? (int32_t) m->len : -1;
        rec->partition = m->partition;
        if (add_headers(r, m, &used, rec) != TIDE_OK) {
            return TIDE_ENOMEM;
        }
        r->next = m->offset + 1;
        out++;
    }
    for (i = 0; i < out; i++) {
        if (recs[i].hdrs != NULL) {
            recs[i].hdrs = r->hbuf + ((uintptr_t) recs[i].hdrs - 1);
        }
    }
    return out;
}

int64_t
tide_kreader_offset(const tide_kreader_t *r)
{
    return r != NULL ? r->next : -1;
}

int64_t
tide_kreader_cached_end(const tide_kreader_t *r)
{
    int64_t  lo = -1, hi = -1;

    if (r == NULL || rd_kafka_get_watermark_offsets(r->k->cons, r->topic,
                                                    r->partition, &lo, &hi)) {
        return -1;
    }
    return hi;
}

const char *
tide_kreader_errmsg(const tide_kreader_t *r)
{
    return r != NULL ? r->errmsg : "no reader";
}

void
tide_kreader_free(tide_kreader_t *r)
{
    rd_kafka_topic_partition_list_t  *l;
    rd_kafka_error_t                 *e;

    if (r == NULL) {
        return;
    }
    release(r);
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, r->topic, r->partition);
    e = rd_kafka_incremental_unassign(r->k->cons, l);
    if (e != NULL) {
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_queue_destroy(r->q);
    kafka_unref(r->k);
    free(r->held);
    free(r->hbuf);
    free(r->topic);
    free(r);
}
