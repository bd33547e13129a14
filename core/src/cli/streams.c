/* tide streams list | create | describe | clean. */
#include "cli/cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
"usage: tide streams list\n"
"       tide streams create NAME --partitions N [--compact]\n"
"                 [--segment-bytes B] [--retention-ms MS]\n"
"                 [--retention-bytes B]\n"
"       tide streams describe NAME\n"
"       tide streams clean NAME\n"
"       tide streams delete NAME [--force]\n"
"Every form takes --data-dir DIR (default $TIDE_DATA_DIR, else ./tide-data).\n"
"  --compact          keep only the newest record per key (changelogs)\n"
"  --segment-bytes B  roll segments at B bytes (default 1 GiB)\n"
"  --retention-ms MS  delete closed segments older than MS (-1: never;\n"
"                     default 7 days, never for --compact)\n"
"  --retention-bytes B  keep at most about B bytes per partition\n"
"clean applies retention and compaction now; tide also does it in the\n"
"background whenever a segment rolls.\n"
"delete removes a stream; it refuses one a running job uses, and one a\n"
"stopped job reads or changelogs to unless --force.\n";

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

void
cli_names_free(char **names, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
}

int
cli_stream_names(const char *dir, char ***names, size_t *n)
{
    char            path[4200], **nn, *name;
    DIR            *d;
    struct dirent  *de;
    int             rc = 0;

    *names = NULL;
    *n = 0;
    snprintf(path, sizeof(path), "%s/streams", dir);
    d = opendir(path);
    if (d == NULL) {
        return -errno;
    }
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp-") != NULL) {
            continue;
        }
        name = strdup(de->d_name);
        nn = name != NULL ? realloc(*names, (*n + 2) * sizeof(**names))
                          : NULL;
        if (nn == NULL) {
            free(name);
            rc = -ENOMEM;
            break;
        }
        *names = nn;
        (*names)[(*n)++] = name;
        (*names)[*n] = NULL;
    }
    closedir(d);
    if (*n > 1) {
        qsort(*names, *n, sizeof(**names), cmp_str);
    }
    return rc;
}

/* At most this many names are shown in an error line. */
#define NAMES_SHOWN  10

/* Prints the line for stream 'name' missing from the existing data dir
 * 'dir': the streams there are, the one that 'name' may be a typo of,
 * and how to make it. Returns 1. */
static int
stream_missing(const cli_t *c, const char *dir, const char *name)
{
    char        **names = NULL, list[2400];
    size_t        n = 0, i, used = 0;
    const char   *near;

    (void) cli_stream_names(dir, &names, &n);
    if (n == 0) {
        cli_fail(c, "no stream '%s' in data dir '%s', which has no streams "
                 "yet; create it with 'tide streams create %s --partitions "
                 "N' (or 'tide produce %s --partitions N')", name, dir, name,
                 name);
        return 1;
    }
    list[0] = '\0';
    for (i = 0; i < n && i < NAMES_SHOWN && used < sizeof(list); i++) {
        used += (size_t) snprintf(list + used, sizeof(list) - used, "%s%s",
                                  i > 0 ? ", " : "", names[i]);
    }
    if (n > NAMES_SHOWN && used < sizeof(list)) {
        snprintf(list + used, sizeof(list) - used, ", ... %zu in all: tide "
                 "streams list", n);
    }
    near = cli_suggest(name, (const char *const *) names);
    if (near != NULL) {
        cli_fail(c, "no stream '%s' in data dir '%s' (streams: %s); did you "
                 "mean '%s'? Or create it with 'tide streams create %s "
                 "--partitions N'", name, dir, list, near, name);
    } else {
        cli_fail(c, "no stream '%s' in data dir '%s' (streams: %s); create "
                 "it with 'tide streams create %s --partitions N'", name,
                 dir, list, name);
    }
    cli_names_free(names, n);
    return 1;
}

int
cli_log_open(const cli_t *c, tide_log_t **out, const char *name,
             const tide_log_params_t *params)
{
    const char   *dir = cli_data_dir(c->data_dir);
    char          err[512];
    struct stat   st;
    int           rc;

    rc = tide_log_new(out, dir, name, params, err, sizeof(err));
    if (rc == TIDE_OK) {
        return 0;
    }
    if (rc == TIDE_ENOENT && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        return stream_missing(c, dir, name);
    }
    return cli_fail(c, "%s", err);
}

static int
do_list(cli_t *c)
{
    const char   *dir = cli_data_dir(c->data_dir);
    char        **names;
    size_t        n, i;
    struct stat   st;
    int           rc;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        return cli_fail(c, "data dir '%s' %s; check --data-dir or "
                        "$TIDE_DATA_DIR", dir,
                        errno == ENOENT ? "does not exist" : "is unreadable");
    }
    rc = cli_stream_names(dir, &names, &n);
    if (rc < 0 && rc != -ENOENT) {
        cli_names_free(names, n);
        return cli_fail(c, "cannot read '%s/streams': %s", dir,
                        strerror(-rc));
    }
    for (i = 0; i < n; i++) {
        puts(names[i]);
    }
    cli_names_free(names, n);
    return 0;
}

static int
do_describe(cli_t *c, const char *name)
{
    tide_log_t         *log;
    tide_log_params_t   p;
    char                path[4400];
    int64_t             start, end, bytes;
    int32_t             i;
    int                 rc, segs;
    DIR                *d;
    struct dirent      *de;
    struct stat         st;
    const char         *dir = cli_data_dir(c->data_dir);

    if (cli_log_open(c, &log, name, NULL) != 0) {
        return 1;
    }
    tide_log_get_params(log, &p);
    printf("stream %s\n", name);
    printf("  partitions       %d\n", p.partitions);
    printf("  compact          %s\n", p.compact ? "yes" : "no");
    printf("  fsync            %s\n", p.fsync == TIDE_FSYNC_NONE ? "none"
                                                                : "batch");
    printf("  segment_bytes    %lld\n", (long long) p.segment_bytes);
    printf("  retention_ms     %lld\n", (long long) p.retention_ms);
    printf("  retention_bytes  %lld\n", (long long) p.retention_bytes);
    printf("%9s %12s %12s %8s %14s\n", "partition", "start", "end",
           "segments", "bytes");
    for (i = 0; i < p.partitions; i++) {
        rc = tide_log_get_range(log, i, &start, &end);
        if (rc != TIDE_OK) {
            cli_fail(c, "partition %d: %s", i, tide_strerror(rc));
            tide_log_free(log);
            return 1;
        }
        segs = 0;
        bytes = 0;
        snprintf(path, sizeof(path), "%s/streams/%s/%d", dir, name, i);
        d = opendir(path);
        while (d != NULL && (de = readdir(d)) != NULL) {
            char  f[4700];

            snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
            if (de->d_name[0] != '.' && stat(f, &st) == 0 &&
                S_ISREG(st.st_mode) && strcmp(de->d_name, "lock") != 0 &&
                strcmp(de->d_name, "clean.lock") != 0)
            {
                bytes += st.st_size;
                segs += strstr(de->d_name, ".log") != NULL;
            }
        }
        if (d != NULL) {
            closedir(d);
        }
        printf("%9d %12lld %12lld %8d %14lld\n", i, (long long) start,
               (long long) end, segs, (long long) bytes);
    }
    tide_log_free(log);
    return 0;
}

int
cmd_streams(int argc, char **argv)
{
    static const struct option  opts[] = {
        { "data-dir",        required_argument, NULL, 'd' },
        { "partitions",      required_argument, NULL, 'P' },
        { "compact",         no_argument,       NULL, 'C' },
        { "segment-bytes",   required_argument, NULL, 'S' },
        { "retention-ms",    required_argument, NULL, 'R' },
        { "retention-bytes", required_argument, NULL, 'B' },
        { "help",            no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    static const char *const    known_opts[] = {
        "--data-dir", "--partitions", "--compact", "--segment-bytes",
        "--retention-ms", "--retention-bytes", "--help", NULL
    };
    static const char *const    subs[] = {
        "list", "create", "describe", "clean", "delete", NULL
    };
    cli_t               c = { "streams", NULL };
    tide_log_params_t   p;
    tide_log_t         *log;
    const char         *sub, *name = NULL, *near;
    char                err[512];
    int64_t             v;
    int                 opt, rc;

    memset(&p, 0, sizeof(p));
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': c.data_dir = optarg; break;
        case 'C': p.compact = 1; break;
        case 'P':
            if (cli_int(optarg, 1, 4096, &v) != 0) {
                return cli_usage(&c, "--partitions takes a number from 1 to "
                                 "4096, not '%s'", optarg);
            }
            p.partitions = (int32_t) v;
            break;
        case 'S':
            if (cli_int(optarg, 4096, 2147483647, &v) != 0) {
                return cli_usage(&c, "--segment-bytes takes a size from 4096 "
                                 "to 2147483647, not '%s'", optarg);
            }
            p.segment_bytes = v;
            break;
        case 'R':
            if (cli_int(optarg, -1, INT64_MAX, &v) != 0 || v == 0) {
                return cli_usage(&c, "--retention-ms takes a positive number "
                                 "or -1, not '%s'", optarg);
            }
            p.retention_ms = v;
            break;
        case 'B':
            if (cli_int(optarg, -1, INT64_MAX, &v) != 0 || v == 0) {
                return cli_usage(&c, "--retention-bytes takes a positive "
                                 "number or -1, not '%s'", optarg);
            }
            p.retention_bytes = v;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return cli_bad_option(&c, opt, argc, argv, known_opts);
        }
    }
    if (optind >= argc) {
        return cli_usage(&c, "no subcommand: use list, create, describe, "
                         "clean or delete");
    }
    sub = argv[optind];
    if (strcmp(sub, "list") == 0) {
        if (optind + 1 != argc) {
            return cli_usage(&c, "list takes no arguments");
        }
        return do_list(&c);
    }
    if (strcmp(sub, "create") != 0 && strcmp(sub, "describe") != 0 &&
        strcmp(sub, "clean") != 0)
    {
        near = cli_suggest(sub, subs);
        if (near != NULL) {
            return cli_usage(&c, "unknown subcommand '%s'; did you mean "
                             "'%s'?", sub, near);
        }
        return cli_usage(&c, "unknown subcommand '%s': use list, create, "
                         "describe, clean or delete", sub);
    }
    if (optind + 2 != argc) {
        return cli_usage(&c, "%s takes one stream NAME", sub);
    }
    name = argv[optind + 1];
    if (strcmp(sub, "describe") == 0) {
        return do_describe(&c, name);
    }
    if (strcmp(sub, "create") == 0) {
        if (p.partitions == 0) {
            return cli_usage(&c, "create needs --partitions N");
        }
        p.mode = TIDE_LOG_EXCL;
        rc = tide_log_new(&log, cli_data_dir(c.data_dir), name, &p, err,
                          sizeof(err));
        if (rc != TIDE_OK) {
            return cli_fail(&c, "%s", err);
        }
        tide_log_free(log);
        printf("created stream %s with %d partition%s%s\n", name,
               p.partitions, p.partitions == 1 ? "" : "s",
               p.compact ? ", compacted" : "");
        return 0;
    }
    if (cli_log_open(&c, &log, name, NULL) != 0) {
        return 1;
    }
    v = tide_log_clean(log, -1);
    if (v < 0) {
        cli_fail(&c, "%s", tide_log_errmsg(log));
        tide_log_free(log);
        return 1;
    }
    tide_log_free(log);
    printf("cleaned stream %s: %lld bytes freed\n", name, (long long) v);
    return 0;
}
