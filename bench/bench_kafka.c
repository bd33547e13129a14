/*
 * The raw librdkafka side of bench/bench_kafka.lua (issue 13, "Speed"):
 * a consume -> produce loop written straight on librdkafka, the baseline
 * that `tide run` of a kafka -> kafka pass-through is held against; and
 * the few chores the driver needs without starting a JVM.
 *
 *   bench_kafka pass BOOTSTRAP IN OUT
 *       A consumer assigned by hand every partition of IN from the
 *       beginning (no group join, no commits, read_committed as tide's),
 *       read in batches of up to 1000 from the consumer queue until each
 *       partition reports its end; per message, a produce of its key and
 *       value unchanged (copied) to OUT by an idempotent acks=all
 *       producer with the murmur2_random partitioner (tide's settings,
 *       linger.ms=5 as tide's); one flush at the end, every delivery
 *       report checked. Prints one line:
 *         pass msgs N wall S rate R msg/s cpu S user S sys S
 *       (wall from the first line of main to after the flush; cpu from
 *       getrusage(RUSAGE_SELF), librdkafka's threads included).
 *   bench_kafka core BOOTSTRAP IN OUT
 *       The same loop through tide's C core alone (no Lua): one
 *       tide_kafka_t, a tide_kreader_t per partition of IN polled in turn
 *       (batches of 256, as the kafka: system reads), tide_kafka_produce
 *       of each record (partition -1: librdkafka's murmur2_random, the
 *       partition tide computes in Lua) and tide_kafka_flush. Prints
 *         core msgs N wall S rate R msg/s cpu S user S sys S
 *       so that tide's figure splits into its C path and its Lua part.
 *   bench_kafka produce BOOTSTRAP TOPIC N [KEYS]
 *       N messages, keys "user-%05d" (i % KEYS, 10 bytes; KEYS defaults
 *       to 10000; above 100000, "u%09d"), values of 100 bytes ("%010d "
 *       then 'x's), as bench/bench_job.lua makes.
 *   bench_kafka read BOOTSTRAP TOPIC
 *       The raw side of the restore bench: a consumer assigned every
 *       partition of TOPIC from the beginning (read_committed, as tide's
 *       readers), reading until each partition reports its end, counting
 *       messages and key+value bytes (what tide's restore line counts).
 *       Prints
 *         read msgs N bytes B wall S rate R MB/s cpu S
 *       (wall from the first line of main to the last partition's end,
 *       so the metadata request and the fetch start are in it, as they
 *       are in a restore). Also the count of committed messages of a
 *       topic written in transactions, whose watermarks count markers.
 *   bench_kafka probe BOOTSTRAP IN OUT PARTS PID TIMEOUT_S
 *       The rebalance bench's stopwatch. PARTS is a comma list of
 *       partitions of IN (the tasks of the process PID). Reads the high
 *       watermarks of those partitions of OUT, SIGKILLs PID, then at once
 *       produces one message to each partition p of PARTS, keyed so that
 *       murmur2 places the key in p (where tide sends its output), and
 *       polls OUT's watermarks every 20 ms until each of PARTS grew: the
 *       killed process's tasks process again somewhere else. Prints
 *         probe ms T parts P:T,...
 *       T: from the SIGKILL to the last partition's first new output;
 *       per partition its own time. Fails after TIMEOUT_S seconds.
 *   bench_kafka create BOOTSTRAP TOPIC PARTITIONS
 *   bench_kafka delete BOOTSTRAP TOPIC...
 *       Admin API; the replication factor is the broker's default.
 *   bench_kafka count BOOTSTRAP TOPIC
 *       Prints the sum over TOPIC's partitions of (high - low)
 *       watermark: its message count when no transaction wrote to it.
 *   bench_kafka time CMD [ARG...]
 *       Runs CMD, waits for it and prints
 *         time rc N wall S user S sys S
 *       from getrusage(RUSAGE_CHILDREN): the CPU of CMD and of every
 *       descendant that was waited for (a shell pipeline's commands,
 *       tide's workers, reaped by its supervisor).
 *
 * Errors go to stderr as one line; the exit code is then 1.
 */

#include "tide.h"

#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VAL_LEN   100
#define NKEYS     10000
#define BATCH     1000
#define TIMEOUT   60000

/* Delivery reports of one producer. */
typedef struct {
    int64_t  done;
    int64_t  failed;
    char     first_err[256];
} dr_count_t;

static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double
tv_sec(struct timeval tv)
{
    return (double) tv.tv_sec + (double) tv.tv_usec / 1e6;
}

static int
fail(const char *fmt, ...)
{
    va_list  ap;

    fputs("bench_kafka: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    dr_count_t  *d = opaque;

    (void) rk;
    d->done++;
    if (m->err) {
        if (d->failed == 0) {
            snprintf(d->first_err, sizeof(d->first_err), "%s",
                     rd_kafka_err2str(m->err));
        }
        d->failed++;
    }
}

/* Sets the pairs of 'kv' (NULL-terminated) on a new conf; NULL after a
 * one-line error. Caller owns the result. */
static rd_kafka_conf_t *
conf_new(const char *const *kv)
{
    rd_kafka_conf_t  *c = rd_kafka_conf_new();
    char              e[256];

    for (; kv[0] != NULL; kv += 2) {
        if (rd_kafka_conf_set(c, kv[0], kv[1], e, sizeof(e))
            != RD_KAFKA_CONF_OK) {
            fail("%s=%s: %s", kv[0], kv[1], e);
            rd_kafka_conf_destroy(c);
            return NULL;
        }
    }
    return c;
}

/* A producer with tide's settings; NULL after a one-line error. */
static rd_kafka_t *
producer_new(const char *bootstrap, dr_count_t *d)
{
    const char *const  kv[] = {
        "bootstrap.servers", bootstrap,
        "enable.idempotence", "true",
        "acks", "all",
        "partitioner", "murmur2_random",
        "linger.ms", "5",
        NULL
    };
    rd_kafka_conf_t   *c = conf_new(kv);
    rd_kafka_t        *p;
    char               e[512];

    if (c == NULL) {
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_conf_set_opaque(c, d);
    p = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    if (p == NULL) {
        fail("producer: %s", e);
    }
    return p;
}

/* Queues one copied message, serving delivery reports while the queue is
 * full. Returns 0, or 1 after a one-line error. */
static int
produce(rd_kafka_t *p, rd_kafka_topic_t *t, const void *key, size_t klen,
        const void *val, size_t vlen)
{
    for (;;) {
        if (rd_kafka_produce(t, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                             (void *) val, vlen, key, klen, NULL) == 0) {
            return 0;
        }
        if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            return fail("produce to %s: %s", rd_kafka_topic_name(t),
                        rd_kafka_err2str(rd_kafka_last_error()));
        }
        rd_kafka_poll(p, 10);
    }
}

/* Flushes, then checks that every message was acknowledged. */
static int
finish(rd_kafka_t *p, dr_count_t *d, int64_t sent)
{
    if (rd_kafka_flush(p, TIMEOUT) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return fail("flush: %d messages still queued after %d s",
                    rd_kafka_outq_len(p), TIMEOUT / 1000);
    }
    if (d->failed > 0) {
        return fail("%" PRId64 " of %" PRId64 " deliveries failed, the "
                    "first: %s", d->failed, sent, d->first_err);
    }
    if (d->done != sent) {
        return fail("%" PRId64 " delivery reports for %" PRId64 " messages",
                    d->done, sent);
    }
    return 0;
}

static int
cmd_produce(const char *bootstrap, const char *topic, long n, long keys)
{
    dr_count_t         d = { 0, 0, "" };
    rd_kafka_t        *p;
    rd_kafka_topic_t  *t;
    char               key[16], val[VAL_LEN + 1];
    long               i;
    int                rc = 0;

    p = producer_new(bootstrap, &d);
    if (p == NULL) {
        return 1;
    }
    t = rd_kafka_topic_new(p, topic, NULL);
    memset(val, 'x', VAL_LEN);
    for (i = 0; i < n && rc == 0; i++) {
        snprintf(key, sizeof(key), keys <= 100000 ? "user-%05ld" : "u%09ld",
                 i % keys);
        snprintf(val, sizeof(val), "%010ld ", i);
        val[11] = 'x';
        rc = produce(p, t, key, 10, val, VAL_LEN);
        rd_kafka_poll(p, 0);
    }
    if (rc == 0) {
        rc = finish(p, &d, n);
    }
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(p);
    return rc;
}

/* Every partition of 'topic' from the beginning, or NULL after a
 * one-line error. Caller owns the result. */
static rd_kafka_topic_partition_list_t *
all_partitions(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata   *md;
    rd_kafka_topic_t                 *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_topic_partition_list_t  *l = NULL;
    rd_kafka_resp_err_t               err;
    int                               i;

    err = rd_kafka_metadata(rk, 0, t, &md, TIMEOUT);
    rd_kafka_topic_destroy(t);
    if (err) {
        fail("metadata of %s: %s", topic, rd_kafka_err2str(err));
        return NULL;
    }
    if (md->topic_cnt != 1 || md->topics[0].err
        || md->topics[0].partition_cnt < 1) {
        fail("topic %s: %s", topic, md->topic_cnt == 1
             ? rd_kafka_err2str(md->topics[0].err) : "not in the metadata");
    } else {
        l = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (i = 0; i < md->topics[0].partition_cnt; i++) {
            rd_kafka_topic_partition_list_add(l, topic, i)->offset =
                RD_KAFKA_OFFSET_BEGINNING;
        }
    }
    rd_kafka_metadata_destroy(md);
    return l;
}

/* Calls 'each' on every message of 'topic' (every partition, from the
 * beginning, read_committed as tide's readers, batches from the consumer
 * queue), until each partition reports its end. A consumer assigned by
 * hand: no group join, no commits. Returns 0, or 1 after a one-line error
 * (also when 'each' returns non-zero: it printed its own). */
static int
read_all(const char *bootstrap, const char *topic,
         int (*each)(const rd_kafka_message_t *m, void *arg), void *arg)
{
    const char *const                 ckv[] = {
        "bootstrap.servers", bootstrap,
        "group.id", "bench-kafka-raw",   /* never joined: assign() only */
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "true",
        "isolation.level", "read_committed",
        "fetch.wait.max.ms", "100",
        NULL
    };
    rd_kafka_t                       *c;
    rd_kafka_conf_t                  *conf;
    rd_kafka_queue_t                 *q = NULL;
    rd_kafka_topic_partition_list_t  *parts;
    rd_kafka_message_t               *msgs[BATCH];
    rd_kafka_resp_err_t               err;
    ssize_t                           got, i;
    int                               eofs = 0, rc = 1;
    char                              e[512];

    conf = conf_new(ckv);
    if (conf == NULL) {
        return 1;
    }
    c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (c == NULL) {
        return fail("consumer: %s", e);
    }
    parts = all_partitions(c, topic);
    if (parts == NULL) {
        goto done;
    }
    err = rd_kafka_assign(c, parts);
    if (err) {
        fail("assign %s: %s", topic, rd_kafka_err2str(err));
        goto done;
    }
    q = rd_kafka_queue_get_consumer(c);
    /* A short wait: consume_batch waits out its timeout for a full batch,
     * which would add it to the end of every read. */
    while (eofs < parts->cnt) {
        got = rd_kafka_consume_batch_queue(q, 10, msgs, BATCH);
        if (got < 0) {
            fail("consume %s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
            goto done;
        }
        for (i = 0; i < got; i++) {
            rd_kafka_message_t  *m = msgs[i];
            int                  bad = 0;

            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                eofs++;
            } else if (m->err) {
                bad = fail("consume %s: %s", topic,
                           rd_kafka_message_errstr(m));
            } else {
                bad = each(m, arg);
            }
            if (bad) {
                for (; i < got; i++) {
                    rd_kafka_message_destroy(msgs[i]);
                }
                goto done;
            }
            rd_kafka_message_destroy(m);
        }
    }
    rc = 0;

done:
    if (q != NULL) {
        rd_kafka_queue_destroy(q);
    }
    if (parts != NULL) {
        rd_kafka_topic_partition_list_destroy(parts);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return rc;
}

/* The pass loop's state: its producer and how many it produced. */
typedef struct {
    rd_kafka_t        *p;
    rd_kafka_topic_t  *t;
    int64_t            n;
} pass_t;

static int
pass_one(const rd_kafka_message_t *m, void *arg)
{
    pass_t  *ps = arg;

    if (produce(ps->p, ps->t, m->key, m->key_len, m->payload, m->len) != 0) {
        return 1;
    }
    if (++ps->n % BATCH == 0) {
        rd_kafka_poll(ps->p, 0);
    }
    return 0;
}

static int
cmd_pass(const char *bootstrap, const char *in, const char *out)
{
    double         t0 = now(), wall;
    dr_count_t     d = { 0, 0, "" };
    pass_t         ps = { NULL, NULL, 0 };
    struct rusage  ru;
    int            rc = 1;

    ps.p = producer_new(bootstrap, &d);
    if (ps.p == NULL) {
        return 1;
    }
    ps.t = rd_kafka_topic_new(ps.p, out, NULL);
    if (read_all(bootstrap, in, pass_one, &ps) == 0
        && finish(ps.p, &d, ps.n) == 0) {
        wall = now() - t0;
        getrusage(RUSAGE_SELF, &ru);
        printf("pass msgs %" PRId64 " wall %.3f rate %.0f msg/s cpu %.3f "
               "user %.3f sys %.3f\n", ps.n, wall, (double) ps.n / wall,
               tv_sec(ru.ru_utime) + tv_sec(ru.ru_stime),
               tv_sec(ru.ru_utime), tv_sec(ru.ru_stime));
        rc = 0;
    }
    rd_kafka_topic_destroy(ps.t);
    rd_kafka_destroy(ps.p);
    return rc;
}

static int
cmd_core(const char *bootstrap, const char *in, const char *out)
{
    const char *const  conf[] = { "bootstrap.servers", bootstrap };
    double             t0 = now(), wall;
    tide_kafka_t      *k = NULL;
    tide_kreader_t    *rd[64];
    int64_t            end[64], lo, n = 0;
    tide_rec_t         recs[256];
    struct rusage      ru;
    int32_t            parts = 0, repl, p;
    int                i, got, left, rc = 1;
    char               e[512];

    if (tide_kafka_new(&k, "bench-kafka-core", conf, 1, e, sizeof(e))
        != TIDE_OK) {
        return fail("tide_kafka_new: %s", e);
    }
    if (tide_kafka_topic_info(k, in, &parts, &repl, TIMEOUT) != TIDE_OK
        || parts > 64) {
        fail("topic %s: %s", in, tide_kafka_errmsg(k));
        tide_kafka_free(k);
        return 1;
    }
    for (p = 0; p < parts; p++) {
        rd[p] = NULL;
    }
    for (p = 0; p < parts; p++) {
        if (tide_kafka_watermarks(k, in, p, &lo, &end[p], TIMEOUT) != TIDE_OK
            || tide_kreader_new(&rd[p], k, in, p, lo) != TIDE_OK) {
            fail("partition %d of %s: %s", (int) p, in, tide_kafka_errmsg(k));
            goto done;
        }
    }
    do {
        left = 0;
        for (p = 0; p < parts; p++) {
            if (tide_kreader_offset(rd[p]) >= end[p]) {
                continue;
            }
            left++;
            got = tide_kreader_poll_batch(rd[p], recs, 256, 0);
            if (got == 0) {
                got = tide_kreader_poll_batch(rd[p], recs, 256, 200);
            }
            if (got < 0) {
                fail("%s", tide_kreader_errmsg(rd[p]));
                goto done;
            }
            for (i = 0; i < got; i++) {
                recs[i].ts = (int64_t) (time(NULL) * 1000);
                if (tide_kafka_produce(k, out, -1, &recs[i]) != TIDE_OK) {
                    fail("%s", tide_kafka_errmsg(k));
                    goto done;
                }
                n++;
            }
        }
    } while (left > 0);
    if (tide_kafka_flush(k, TIMEOUT) != TIDE_OK) {
        fail("flush: %s", tide_kafka_errmsg(k));
        goto done;
    }
    wall = now() - t0;
    getrusage(RUSAGE_SELF, &ru);
    printf("core msgs %" PRId64 " wall %.3f rate %.0f msg/s cpu %.3f "
           "user %.3f sys %.3f\n", n, wall, (double) n / wall,
           tv_sec(ru.ru_utime) + tv_sec(ru.ru_stime), tv_sec(ru.ru_utime),
           tv_sec(ru.ru_stime));
    rc = 0;

done:
    for (p = 0; p < parts; p++) {
        tide_kreader_free(rd[p]);
    }
    tide_kafka_free(k);
    return rc;
}

/* Waits for the result event of an admin request on 'q'; NULL after a
 * one-line error. Caller destroys the event. */
static rd_kafka_event_t *
admin_wait(rd_kafka_queue_t *q, const char *what)
{
    rd_kafka_event_t  *ev = rd_kafka_queue_poll(q, TIMEOUT + 5000);

    if (ev == NULL) {
        fail("%s: no answer within %d s", what, TIMEOUT / 1000 + 5);
        return NULL;
    }
    if (rd_kafka_event_error(ev)) {
        fail("%s: %s", what, rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

/* Checks each topic result; 'ok_err' is an error that is not one (topic
 * already there / already gone). */
static int
topic_results(const rd_kafka_topic_result_t **res, size_t n, const char *what,
              rd_kafka_resp_err_t ok_err)
{
    size_t  i;
    int     rc = 0;

    for (i = 0; i < n; i++) {
        rd_kafka_resp_err_t  err = rd_kafka_topic_result_error(res[i]);

        if (err && err != ok_err) {
            rc = fail("%s %s: %s", what, rd_kafka_topic_result_name(res[i]),
                      rd_kafka_topic_result_error_string(res[i])
                      ? rd_kafka_topic_result_error_string(res[i])
                      : rd_kafka_err2str(err));
        }
    }
    return rc;
}

static rd_kafka_t *
admin_new(const char *bootstrap)
{
    const char *const  kv[] = { "bootstrap.servers", bootstrap, NULL };
    rd_kafka_conf_t   *c = conf_new(kv);
    rd_kafka_t        *a;
    char               e[512];

    if (c == NULL) {
        return NULL;
    }
    a = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    if (a == NULL) {
        fail("admin client: %s", e);
    }
    return a;
}

static int
cmd_create(const char *bootstrap, const char *topic, int parts)
{
    rd_kafka_t                     *a = admin_new(bootstrap);
    rd_kafka_queue_t               *q;
    rd_kafka_NewTopic_t            *nt;
    rd_kafka_AdminOptions_t        *o;
    rd_kafka_event_t               *ev;
    const rd_kafka_topic_result_t **res;
    size_t                          n;
    char                            e[512];
    int                             rc = 1;

    if (a == NULL) {
        return 1;
    }
    q = rd_kafka_queue_new(a);
    nt = rd_kafka_NewTopic_new(topic, parts, -1, e, sizeof(e));
    if (nt == NULL) {
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(a);
        return fail("topic %s: %s", topic, e);
    }
    o = rd_kafka_AdminOptions_new(a, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, TIMEOUT, e, sizeof(e));
    rd_kafka_CreateTopics(a, &nt, 1, o, q);
    ev = admin_wait(q, "create topic");
    if (ev != NULL) {
        res = rd_kafka_CreateTopics_result_topics(
            rd_kafka_event_CreateTopics_result(ev), &n);
        rc = topic_results(res, n, "create topic",
                           RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS);
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(a);
    return rc;
}

static int
cmd_delete(const char *bootstrap, char **topics, int ntopics)
{
    rd_kafka_t                     *a = admin_new(bootstrap);
    rd_kafka_queue_t               *q;
    rd_kafka_DeleteTopic_t        **dt;
    rd_kafka_AdminOptions_t        *o;
    rd_kafka_event_t               *ev;
    const rd_kafka_topic_result_t **res;
    size_t                          n;
    char                            e[512];
    int                             i, rc = 1;

    if (a == NULL) {
        return 1;
    }
    dt = calloc((size_t) ntopics, sizeof(*dt));
    if (dt == NULL) {
        rd_kafka_destroy(a);
        return fail("out of memory");
    }
    for (i = 0; i < ntopics; i++) {
        dt[i] = rd_kafka_DeleteTopic_new(topics[i]);
    }
    q = rd_kafka_queue_new(a);
    o = rd_kafka_AdminOptions_new(a, RD_KAFKA_ADMIN_OP_DELETETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(o, TIMEOUT, e, sizeof(e));
    rd_kafka_DeleteTopics(a, dt, (size_t) ntopics, o, q);
    ev = admin_wait(q, "delete topic");
    if (ev != NULL) {
        res = rd_kafka_DeleteTopics_result_topics(
            rd_kafka_event_DeleteTopics_result(ev), &n);
        rc = topic_results(res, n, "delete topic",
                           RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(o);
    rd_kafka_DeleteTopic_destroy_array(dt, (size_t) ntopics);
    free(dt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(a);
    return rc;
}

static int
cmd_count(const char *bootstrap, const char *topic)
{
    const char *const                 kv[] = {
        "bootstrap.servers", bootstrap, "group.id", "bench-kafka-count", NULL
    };
    rd_kafka_conf_t                  *conf = conf_new(kv);
    rd_kafka_t                       *c;
    rd_kafka_topic_partition_list_t  *parts;
    rd_kafka_resp_err_t               err;
    int64_t                           lo, hi, n = 0;
    int                               i, rc = 0;
    char                              e[512];

    if (conf == NULL) {
        return 1;
    }
    c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (c == NULL) {
        return fail("consumer: %s", e);
    }
    parts = all_partitions(c, topic);
    if (parts == NULL) {
        rd_kafka_destroy(c);
        return 1;
    }
    for (i = 0; i < parts->cnt && rc == 0; i++) {
        err = rd_kafka_query_watermark_offsets(c, topic, i, &lo, &hi,
                                               TIMEOUT);
        if (err) {
            rc = fail("watermarks of %s [%d]: %s", topic, i,
                      rd_kafka_err2str(err));
        }
        n += hi - lo;
    }
    if (rc == 0) {
        printf("count %" PRId64 "\n", n);
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(c);
    return rc;
}

static int
read_one(const rd_kafka_message_t *m, void *arg)
{
    int64_t  *nb = arg;

    nb[0]++;
    nb[1] += (int64_t) (m->key_len + m->len);
    return 0;
}

static int
cmd_read(const char *bootstrap, const char *topic)
{
    double         t0 = now(), wall;
    int64_t        nb[2] = { 0, 0 };     /* messages, key+value bytes */
    struct rusage  ru;

    if (read_all(bootstrap, topic, read_one, nb) != 0) {
        return 1;
    }
    wall = now() - t0;
    getrusage(RUSAGE_SELF, &ru);
    printf("read msgs %" PRId64 " bytes %" PRId64 " wall %.3f rate %.1f MB/s "
           "cpu %.3f\n", nb[0], nb[1], wall, (double) nb[1] / 1e6 / wall,
           tv_sec(ru.ru_utime) + tv_sec(ru.ru_stime));
    return 0;
}

#define PROBE_MAX 64

/* Sums of the high watermarks of 'parts' of 'topic' into hi[]; 0, or 1
 * after a one-line error. */
static int
high_marks(rd_kafka_t *rk, const char *topic, const int32_t *parts, int n,
           int64_t *hi)
{
    rd_kafka_resp_err_t  err;
    int64_t              lo;
    int                  i;

    for (i = 0; i < n; i++) {
        err = rd_kafka_query_watermark_offsets(rk, topic, parts[i], &lo,
                                               &hi[i], 5000);
        if (err) {
            return fail("watermarks of %s [%d]: %s", topic, (int) parts[i],
                        rd_kafka_err2str(err));
        }
    }
    return 0;
}

static int
cmd_probe(const char *bootstrap, const char *in, const char *out,
          const char *list, pid_t pid, int timeout_s)
{
    dr_count_t         d = { 0, 0, "" };
    rd_kafka_t        *p;
    rd_kafka_topic_t  *t;
    int32_t            parts[PROBE_MAX], cnt;
    int64_t            base[PROBE_MAX], hi[PROBE_MAX];
    double             t0, seen[PROBE_MAX], last = 0;
    const char        *s = list;
    char              *end, key[32];
    int                n = 0, left, i, k, rc = 1;

    while (*s != '\0' && n < PROBE_MAX) {
        parts[n++] = (int32_t) strtol(s, &end, 10);
        if (end == s || (*end != ',' && *end != '\0')) {
            return fail("partitions '%s': give a comma list, e.g. 2,3",
                        list);
        }
        s = *end == ',' ? end + 1 : end;
    }
    p = producer_new(bootstrap, &d);
    if (p == NULL) {
        return 1;
    }
    t = rd_kafka_topic_new(p, in, NULL);
    cnt = 0;
    {
        const struct rd_kafka_metadata  *md;
        rd_kafka_topic_t                *ot = rd_kafka_topic_new(p, out,
                                                                 NULL);
        rd_kafka_resp_err_t              err;

        err = rd_kafka_metadata(p, 0, ot, &md, TIMEOUT);
        rd_kafka_topic_destroy(ot);
        if (err) {
            fail("metadata of %s: %s", out, rd_kafka_err2str(err));
            goto done;
        }
        if (md->topic_cnt == 1 && md->topics[0].err == 0) {
            cnt = md->topics[0].partition_cnt;
        }
        rd_kafka_metadata_destroy(md);
    }
    if (cnt < 1) {
        fail("topic %s: not in the metadata", out);
        goto done;
    }
    if (high_marks(p, out, parts, n, base) != 0) {
        goto done;
    }
    if (kill(pid, SIGKILL) != 0) {
        fail("kill %d: %s", (int) pid, strerror(errno));
        goto done;
    }
    t0 = now();
    for (i = 0; i < n; i++) {
        /* A key that the murmur2 partitioner (tide's, Kafka's) places
         * in parts[i] of OUT, so that its output lands there. */
        for (k = 0;; k++) {
            snprintf(key, sizeof(key), "probe-%d", k);
            if (rd_kafka_msg_partitioner_murmur2_random(
                    t, key, strlen(key), cnt, NULL, NULL) == parts[i]) {
                break;
            }
        }
        if (rd_kafka_producev(p, RD_KAFKA_V_TOPIC(in),
                              RD_KAFKA_V_PARTITION(parts[i]),
                              RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE("probe", 5),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_END) != 0) {
            fail("produce to %s: %s", in,
                 rd_kafka_err2str(rd_kafka_last_error()));
            goto done;
        }
        seen[i] = -1;
    }
    if (finish(p, &d, n) != 0) {
        goto done;
    }
    do {
        if (now() - t0 > timeout_s) {
            fail("%s: no new output in some of partitions %s within %d s "
                 "of the SIGKILL", out, list, timeout_s);
            goto done;
        }
        usleep(20000);
        if (high_marks(p, out, parts, n, hi) != 0) {
            goto done;
        }
        left = 0;
        for (i = 0; i < n; i++) {
            if (seen[i] < 0 && hi[i] > base[i]) {
                seen[i] = now() - t0;
                last = seen[i];
            }
            left += seen[i] < 0;
        }
    } while (left > 0);
    printf("probe ms %.0f parts", last * 1000);
    for (i = 0; i < n; i++) {
        printf("%s%d:%.0f", i ? "," : " ", (int) parts[i], seen[i] * 1000);
    }
    printf("\n");
    rc = 0;

done:
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(p);
    return rc;
}

static int
cmd_time(char **argv)
{
    double         t0 = now(), wall;
    struct rusage  ru;
    pid_t          pid;
    int            status, code;

    pid = fork();
    if (pid < 0) {
        return fail("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "bench_kafka: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return fail("waitpid: %s", strerror(errno));
        }
    }
    wall = now() - t0;
    getrusage(RUSAGE_CHILDREN, &ru);
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    printf("time rc %d wall %.3f user %.3f sys %.3f\n", code, wall,
           tv_sec(ru.ru_utime), tv_sec(ru.ru_stime));
    return 0;
}

int
main(int argc, char **argv)
{
    const char  *usage =
        "usage: bench_kafka pass BOOTSTRAP IN OUT\n"
        "       bench_kafka core BOOTSTRAP IN OUT\n"
        "       bench_kafka produce BOOTSTRAP TOPIC N [KEYS]\n"
        "       bench_kafka read BOOTSTRAP TOPIC\n"
        "       bench_kafka probe BOOTSTRAP IN OUT PARTS PID TIMEOUT_S\n"
        "       bench_kafka create BOOTSTRAP TOPIC PARTITIONS\n"
        "       bench_kafka delete BOOTSTRAP TOPIC...\n"
        "       bench_kafka count BOOTSTRAP TOPIC\n"
        "       bench_kafka time CMD [ARG...]\n";
    const char  *cmd = argc > 1 ? argv[1] : "";

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(cmd, "pass") == 0 && argc == 5) {
        return cmd_pass(argv[2], argv[3], argv[4]);
    }
    if (strcmp(cmd, "core") == 0 && argc == 5) {
        return cmd_core(argv[2], argv[3], argv[4]);
    }
    if (strcmp(cmd, "produce") == 0 && (argc == 5 || argc == 6)
        && atol(argv[4]) > 0 && (argc == 5 || atol(argv[5]) > 0)) {
        return cmd_produce(argv[2], argv[3], atol(argv[4]),
                           argc == 6 ? atol(argv[5]) : NKEYS);
    }
    if (strcmp(cmd, "read") == 0 && argc == 4) {
        return cmd_read(argv[2], argv[3]);
    }
    if (strcmp(cmd, "probe") == 0 && argc == 8 && atoi(argv[6]) > 0
        && atoi(argv[7]) > 0) {
        return cmd_probe(argv[2], argv[3], argv[4], argv[5],
                         (pid_t) atoi(argv[6]), atoi(argv[7]));
    }
    if (strcmp(cmd, "create") == 0 && argc == 5 && atoi(argv[4]) > 0) {
        return cmd_create(argv[2], argv[3], atoi(argv[4]));
    }
    if (strcmp(cmd, "delete") == 0 && argc >= 4) {
        return cmd_delete(argv[2], argv + 3, argc - 3);
    }
    if (strcmp(cmd, "count") == 0 && argc == 4) {
        return cmd_count(argv[2], argv[3]);
    }
    if (strcmp(cmd, "time") == 0 && argc >= 3) {
        return cmd_time(argv + 2);
    }
    fputs(usage, stderr);
    return 2;
}
