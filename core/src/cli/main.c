/*
 * tide: the engine binary. Commands that need no job are written in C
 * here; the others (run, ...) are the Lua runtime's, reached through one
 * embedded lua_State (cmd_lua). LuaJIT is linked in, and tide_* exported
 * with -Wl,-E, so that the Lua runtime reaches the core through ffi.C.
 */
#include "cli/cli.h"
#include "serde/json.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <lauxlib.h>
#include <librdkafka/rdkafka.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <uv.h>

#ifndef TIDE_SOURCE_DIR
#define TIDE_SOURCE_DIR "."
#endif
#ifndef TIDE_LMOD_DIR
#define TIDE_LMOD_DIR "/usr/local/share/lua/5.1"
#endif

static const char usage[] =
"usage: tide <command> [options]\n"
"\n"
"Streams (the embedded log under the data dir):\n"
"  streams list                      names of the streams\n"
"  streams create NAME --partitions N [--compact]   make a stream\n"
"  streams describe NAME             settings, offsets and size per partition\n"
"  streams clean NAME                apply retention / compaction now\n"
"  streams delete NAME [--force]     remove a stream no running job uses\n"
"  produce STREAM [FILE] [-K SEP] [-D DELIM] [-Z] [-H NAME=VALUE]...\n"
"        [-p N] [--partitions N]     lines of FILE or stdin -> records\n"
"  consume STREAM [-f FMT | -J] [-o beginning|end|N|-N|s@MS] [-p N] [-e]\n"
"        [-c N] [-q]                 records -> stdout, kcat-like format\n"
"                                    or JSON lines\n"
"  version                           versions of tide and its libraries\n"
"\n"
"Jobs:\n"
"  run JOB [-c KEY=VALUE]... [--workers N] [--drain] [--create]\n"
"                                    run a job until SIGINT/SIGTERM;\n"
"                                    --drain: stop at the end of the inputs;\n"
"                                    --create: make a missing data dir\n"
"  reload JOB                        load a running job's code again\n"
"  tasks JOB, workers JOB            a running job's tasks and workers\n"
"  move JOB TASK WORKER              move a task to another worker\n"
"  pause JOB TASK, resume JOB TASK   stop / resume reading a task's inputs\n"
"  state dump JOB STORE              key<TAB>value of a store, every task\n"
"                                    (the job must be stopped)\n"
"  state get JOB STORE KEY           one key: the running job answers, or\n"
"                                    the last checkpoint when it is stopped\n"
"  state scan JOB STORE [--from K] [--to K] [--limit N]   keys in order\n"
"  repl [JOB] [--attach JOB]         a LuaJIT prompt: prototype jobs, or\n"
"                                    look inside a running job\n"
"  jobs list, jobs describe JOB      status, tasks, offsets, lag, stores\n"
"  offsets reset JOB --to earliest|latest|OFFSET|@TIME [--input S]\n"
"        [--partition P] [--reset-state|--keep-state] [--dry-run]\n"
"                                    move a stopped job's input offsets\n"
"\n"
"Every command takes --data-dir DIR (default: $TIDE_DATA_DIR, else\n"
"./tide-data) and --help.\n";

int
cli_fail(const cli_t *c, const char *fmt, ...)
{
    va_list  ap;

    fprintf(stderr, "tide %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int
cli_usage(const cli_t *c, const char *fmt, ...)
{
    va_list  ap;

    fprintf(stderr, "tide %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'tide %s --help')\n", c->cmd);
    return 2;
}

int
cli_bad_option(const cli_t *c, int opt, int argc, char **argv,
               const char *const *known)
{
    const char  *word = optind - 1 < argc ? argv[optind - 1] : argv[argc - 1];
    const char  *near;
    char         shortopt[3];

    /* A short option, alone or in a group (-ez), is named by optopt; a
     * long one is the word itself. */
    if (strncmp(word, "--", 2) != 0 && optopt != 0) {
        shortopt[0] = '-';
        shortopt[1] = (char) optopt;
        shortopt[2] = '\0';
        word = shortopt;
    }
    if (opt == ':') {
        return cli_usage(c, "option '%s' needs a value", word);
    }
    near = cli_suggest(word, known);
    if (near != NULL) {
        return cli_usage(c, "unknown option '%s'; did you mean '%s'?", word,
                         near);
    }
    return cli_usage(c, "unknown option '%s'", word);
}

int
cli_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char       *end;
    long long   v;

    if (s == NULL || *s == '\0') {
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

const char *
cli_data_dir(const char *opt)
{
    const char  *env;

    if (opt != NULL) {
        return opt;
    }
    env = getenv("TIDE_DATA_DIR");
    if (env != NULL && *env != '\0') {
        return env;
    }
    return "./tide-data";
}

static int
cmd_version(int argc, char **argv)
{
    int  i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tide version\nPrints the versions of tide and of "
                   "the libraries it runs on.\n");
            return 0;
        }
    }
    printf("tide %s (abi %d)\n%s\nlibrdkafka %s\nlibuv %s\n", tide_version(),
           tide_abi_version(), LUAJIT_VERSION, rd_kafka_version_str(),
           uv_version_string());
    return 0;
}

/* Commands implemented by the Lua runtime's tide.cli. */
static const char *const lua_cmds[] = { "run", "state", "reload", "tasks",
                                         "workers", "pause", "resume",
                                         "move", "repl", "jobs", "offsets",
                                         NULL };

/* Every command, for "did you mean" on an unknown one. */
static const char *const all_cmds[] = { "streams", "produce", "consume",
                                         "version", "help", "run", "state",
                                         "reload", "tasks", "workers",
                                         "pause", "resume", "move", "repl",
                                         "jobs", "offsets", NULL };

/* Reports an unknown command, with the nearest one when there is one;
 * returns 2. */
static int
unknown_cmd(const char *cmd)
{
    const char  *near = cli_suggest(cmd, all_cmds);

    if (near != NULL) {
        fprintf(stderr, "tide: unknown command '%s'; did you mean '%s'? "
                "(run 'tide --help' for the list)\n", cmd, near);
    } else {
        fprintf(stderr, "tide: unknown command '%s'; run 'tide --help' for "
                "the list\n", cmd);
    }
    return 2;
}

typedef struct lua_cmd_s {
    const char  *cmd;
    int          argc;
    char       **argv;
    int          code;          /* exit code returned by tide.cli.main */
} lua_cmd_t;

/* Writes into buf (size n) the Lua module folder of an installed tide
 * relative to its binary: <prefix>/share/lua/5.1 when the binary is
 * <prefix>/bin/tide and that folder holds tide/cli.lua. Returns 0, or
 * -1 when the binary is not in such a layout (a build tree, say). */
static int
lua_dir_beside_exe(char *buf, size_t n)
{
    char     exe[4096];
    char     probe[4200];
    char    *slash;
    ssize_t  len;

    len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0 || len == (ssize_t) sizeof(exe) - 1) {
        return -1;
    }
    exe[len] = '\0';
    slash = strrchr(exe, '/');                   /* <prefix>/bin/tide */
    if (slash == NULL) {
        return -1;
    }
    *slash = '\0';
    slash = strrchr(exe, '/');                   /* <prefix>/bin */
    if (slash == NULL || strcmp(slash, "/bin") != 0) {
        return -1;
    }
    *slash = '\0';
    if ((size_t) snprintf(buf, n, "%s/share/lua/5.1", exe) >= n) {
        return -1;
    }
    snprintf(probe, sizeof(probe), "%s/tide/cli.lua", buf);
    return access(probe, R_OK) == 0 ? 0 : -1;
}

/* Sets package.path: $TIDE_LUA_PATH (where ";;" stands for the default
 * path, as in LUA_PATH); else, for an installed binary, the modules
 * installed beside it (<prefix>/share/lua/5.1, wherever the prefix was
 * moved to); else the source tree it was built from, then the install
 * folder chosen at build time; then the default path. */
static void
lua_path_set(lua_State *L)
{
    const char  *env;
    char         dir[4096];

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");                 /* the default path */
    env = getenv("TIDE_LUA_PATH");
    if (env != NULL && *env != '\0') {
        lua_pushfstring(L, ";%s;", lua_tostring(L, -1));
        luaL_gsub(L, env, ";;", lua_tostring(L, -1));
        lua_remove(L, -2);
    } else if (lua_dir_beside_exe(dir, sizeof(dir)) == 0) {
        lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir,
                        lua_tostring(L, -1));
    } else {
        lua_pushfstring(L, "%s/bindings/?.lua;%s/lua/?.lua;%s/lua/?/init.lua;"
                        "%s/?.lua;%s/?/init.lua;%s", TIDE_SOURCE_DIR,
                        TIDE_SOURCE_DIR, TIDE_SOURCE_DIR, TIDE_LMOD_DIR,
                        TIDE_LMOD_DIR, lua_tostring(L, -1));
    }
    lua_remove(L, -2);                           /* the default path */
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);                               /* package */
}

/* Runs require("tide.cli").main(cmd, args) in protected mode (through
 * lua_cpcall) and stores its result as the exit code: an integer as is,
 * nil or true as 0, false as 1. */
static int
lua_cmd_main(lua_State *L)
{
    lua_cmd_t  *lc = lua_touserdata(L, 1);
    int         i;

    lua_path_set(L);
    /* The json codec lives in this binary: bindings/tide/json.lua finds
     * it here rather than through package.loadlib. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_tide_json_codec);
    lua_setfield(L, -2, "tide.json.codec");
    lua_pop(L, 2);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "tide.cli");
    lua_call(L, 1, 1);
    if (!lua_istable(L, -1)) {
        return luaL_error(L, "module 'tide.cli' returned a %s, not a table",
                          luaL_typename(L, -1));
    }
    lua_getfield(L, -1, "main");
    if (!lua_isfunction(L, -1)) {
        return luaL_error(L, "module 'tide.cli' has no function 'main'");
    }
    lua_pushstring(L, lc->cmd);
    lua_createtable(L, lc->argc, 0);
    for (i = 0; i < lc->argc; i++) {
        lua_pushstring(L, lc->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_call(L, 2, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lc->code = (int) lua_tointeger(L, -1);
    } else if (lua_isnil(L, -1)) {
        lc->code = 0;
    } else if (lua_isboolean(L, -1)) {
        lc->code = lua_toboolean(L, -1) ? 0 : 1;
    } else {
        return luaL_error(L, "tide.cli.main returned a %s, not an exit code",
                          luaL_typename(L, -1));
    }
    return 0;
}

/* Runs 'tide CMD ARGS...' in a fresh lua_State. A Lua error prints
 * "tide CMD: <message>" on stderr and gives exit code 1. */
static int
cmd_lua(const char *cmd, int argc, char **argv)
{
    lua_cmd_t    lc;
    lua_State   *L;
    const char  *msg;
    int          rc;

    L = luaL_newstate();
    if (L == NULL) {
        fprintf(stderr, "tide %s: out of memory\n", cmd);
        return 1;
    }
    luaL_openlibs(L);

    lc.cmd = cmd;
    lc.argc = argc;
    lc.argv = argv;
    lc.code = 1;
    rc = lua_cpcall(L, lua_cmd_main, &lc);
    if (rc != 0) {
        msg = lua_tostring(L, -1);
        fprintf(stderr, "tide %s: %s\n", cmd,
                msg != NULL ? msg : "(error object is not a string)");
        lc.code = 1;
    }
    /* Runs the finalizers: loops, locks and logs are closed properly. */
    lua_close(L);
    return lc.code;
}

/* A job keeps its state in RocksDB, whose block cache and memtables come
 * from malloc; with transparent huge pages for malloc (glibc's
 * glibc.malloc.hugetlb tunable) a keyed job over 10 M keys ran 5-12%
 * faster here. glibc reads tunables only from the environment at start,
 * so 'tide run' sets it and executes itself again, once, unless
 * GLIBC_TUNABLES is set already (set it, even to "", to opt out). On any
 * failure the run goes on as it is. */
static void
hugepages_reexec(char **argv)
{
    char     path[4096];
    ssize_t  n;

    if (getenv("GLIBC_TUNABLES") != NULL) {
        return;
    }
    /* The resolved path, not /proc/self/exe: the kernel names a process
     * after the file it executes, and "exe" is what ps and top showed. */
    n = readlink("/proc/self/exe", path, sizeof(path) - 1);
    if (n <= 0 || n == (ssize_t) sizeof(path) - 1) {
        return;
    }
    path[n] = '\0';
    if (setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1) != 0) {
        return;
    }
    execv(path, argv);
    unsetenv("GLIBC_TUNABLES");
}

/* A worker of 'tide run' (tide_proc_spawn): argv[0] is its title, fd 3
 * its channel to the supervisor, fd 4 its watch slots. It dies with the
 * supervisor, never executes itself again (GLIBC_TUNABLES came with the
 * environment), and runs the Lua runtime's "worker" command, which
 * takes its orders on the channel. */
static int
worker_main(void)
{
    char  err[256];
    int   rc;

    rc = tide_proc_worker_init(err, sizeof(err));
    if (rc != TIDE_OK) {
        fprintf(stderr, "tide: %s\n", err);
        return 1;
    }
    return cmd_lua("worker", 0, NULL);
}

/* Raises the soft limit on open files to the hard one: a stream holds a
 * descriptor per partition, and the usual soft limit of 1024 allowed
 * about 250 partitions per process. On failure the command runs with
 * the limit it has. */
static void
nofile_raise(void)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int
main(int argc, char **argv)
{
    char       **argv0 = argv;
    const char  *cmd;
    int          i;

    nofile_raise();
    if (getenv("TIDE_WORKER") != NULL) {
        return worker_main();
    }
    /* A leading '--data-dir DIR' applies to the command that follows. */
    while (argc >= 2 && strncmp(argv[1], "--data-dir", 10) == 0) {
        if (argv[1][10] == '=') {
            setenv("TIDE_DATA_DIR", argv[1] + 11, 1);
            argv++;
            argc--;
        } else if (argv[1][10] == '\0' && argc >= 3) {
            setenv("TIDE_DATA_DIR", argv[2], 1);
            argv += 2;
            argc -= 2;
        } else {
            fprintf(stderr, "tide: --data-dir needs a folder\n");
            return 2;
        }
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
    {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    if (strcmp(cmd, "produce") == 0) {
        return cmd_produce(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "consume") == 0) {
        return cmd_consume(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "streams") == 0) {
        /* Deleting checks the jobs that use the stream: tide.ops does it. */
        if (argc >= 3 && strcmp(argv[2], "delete") == 0) {
            return cmd_lua(cmd, argc - 2, argv + 2);
        }
        return cmd_streams(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        return cmd_version(argc - 1, argv + 1);
    }
    for (i = 0; lua_cmds[i] != NULL; i++) {
        if (strcmp(cmd, lua_cmds[i]) == 0) {
            if (strcmp(cmd, "run") == 0) {
                hugepages_reexec(argv0);
            }
            return cmd_lua(cmd, argc - 2, argv + 2);
        }
    }
    return unknown_cmd(cmd);
}
