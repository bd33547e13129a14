/*
 * The json codec (core/src/serde/json.c) driven from C through the Lua C
 * API: random valid documents and mutations of them (a seeded xorshift, so
 * every run feeds the same inputs and a failure prints the one that broke
 * it), the nesting and width limits around CHUNK and PENDING_BUDGET,
 * number formatting against snprintf and strtod, \u escapes, error
 * positions, the C locale (TIDE_TEST_COMMA_LOCALE names a locale with a
 * decimal comma if none of the usual ones is installed), a table's
 * metamethods (never called) and running out of Lua memory in the middle
 * of a call. LuaJIT seeds its string hashes per state, so the key order of
 * encoded objects, and the counts printed as comments, vary between runs.
 */
#include "serde/json.h"

#include "ctest.h"

#include <lauxlib.h>
#include <locale.h>
#include <lualib.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Stack slots of the state made by open_codec. */
enum { DEC = 1, ENC = 2 };

/* The start of the input being checked, printed if an assertion aborts. */
static char    cur_in[4096];
static size_t  cur_len;

static void
on_abort(int sig)
{
    size_t  i;

    (void) sig;
    fprintf(stderr, "input (%zu bytes): \"", cur_len);
    for (i = 0; i < cur_len && i < sizeof(cur_in); i++) {
        unsigned char  c = (unsigned char) cur_in[i];

        if (c >= 32 && c < 127 && c != '"' && c != '\\') {
            fputc(c, stderr);
        } else {
            fprintf(stderr, "\\x%02x", c);
        }
    }
    fprintf(stderr, "%s\"\n", i < cur_len ? "..." : "");
}

static uint64_t
next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A number in [0, n). */
static unsigned
rnd(uint64_t *s, unsigned n)
{
    return (unsigned) (next_rand(s) % n);
}

/* buffers ----------------------------------------------------------------- */

typedef struct buf_s {
    char    *p;
    size_t   len;
    size_t   cap;
} buf_t;

static void
buf_put(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        while (b->len + n + 1 > b->cap) {
            b->cap = b->cap ? b->cap * 2 : 256;
        }
        b->p = realloc(b->p, b->cap);
        ASSERT(b->p != NULL);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void
buf_putc(buf_t *b, char c)
{
    buf_put(b, &c, 1);
}

static void
buf_puts(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

static void
buf_printf(buf_t *b, const char *fmt, ...)
{
    char     tmp[128];
    va_list  ap;
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    ASSERT(n >= 0 && (size_t) n < sizeof(tmp));
    buf_put(b, tmp, (size_t) n);
}

static void
buf_rep(buf_t *b, const char *s, int times)
{
    int  i;

    for (i = 0; i < times; i++) {
        buf_puts(b, s);
    }
}

/* calling the codec ------------------------------------------------------ */

/* A state with decode at DEC and encode at ENC, and the module as the
 * global 'json' for the Lua snippets. */
static lua_State *
open_codec(void)
{
    lua_State  *L = luaL_newstate();

    ASSERT(L != NULL);
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_tide_json_codec);
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -2, "encode");
    lua_pushvalue(L, -3);
    lua_setglobal(L, "json");
    lua_remove(L, -3);
    ASSERT_EQ(lua_gettop(L), 2);
    return L;
}

static void
pcall_ok(lua_State *L, int nargs)
{
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) != 0) {
        fprintf(stderr, "the codec raised: %s\n", lua_tostring(L, -1));
        abort();
    }
}

/* Decodes s and leaves the results: 1 (the value) or 3 (nil, message,
 * position), which it returns after checking their shape: the message
 * ends with " at character N", N is the third result and lies in
 * [1, len + 1]. *pos gets N (0 on success) if pos is not NULL. */
static int
decode_n(lua_State *L, const char *s, size_t len, int *pos)
{
    int          top = lua_gettop(L), n, at;
    char         tail[48];
    const char  *msg;
    size_t       mlen, tlen;
    double       d;

    memcpy(cur_in, s, len < sizeof(cur_in) ? len : sizeof(cur_in));
    cur_len = len;
    lua_pushvalue(L, DEC);
    lua_pushlstring(L, s, len);
    pcall_ok(L, 1);
    n = lua_gettop(L) - top;
    if (pos != NULL) {
        *pos = 0;
    }
    if (n == 1) {
        ASSERT(!lua_isnil(L, -1));
        return 1;
    }
    ASSERT_EQ(n, 3);
    ASSERT(lua_isnil(L, -3));
    ASSERT_EQ(lua_type(L, -2), LUA_TSTRING);
    ASSERT_EQ(lua_type(L, -1), LUA_TNUMBER);
    d = lua_tonumber(L, -1);
    at = (int) d;
    ASSERT(d == (double) at);
    ASSERT(at >= 1 && (size_t) at <= len + 1);
    msg = lua_tolstring(L, -2, &mlen);
    snprintf(tail, sizeof(tail), " at character %d", at);
    tlen = strlen(tail);
    ASSERT(mlen > tlen && memcmp(msg + mlen - tlen, tail, tlen) == 0);
    if (pos != NULL) {
        *pos = at;
    }
    return 3;
}

static int
decode_s(lua_State *L, const char *s, int *pos)
{
    return decode_n(L, s, strlen(s), pos);
}

/* Encodes the value at idx: pushes the text and returns 1, or pushes nil
 * and the message and returns 2. */
static int
encode_at(lua_State *L, int idx)
{
    int  top = lua_gettop(L), n;

    idx = idx < 0 ? top + idx + 1 : idx;
    lua_pushvalue(L, ENC);
    lua_pushvalue(L, idx);
    pcall_ok(L, 1);
    n = lua_gettop(L) - top;
    if (n == 1) {
        ASSERT_EQ(lua_type(L, -1), LUA_TSTRING);
        return 1;
    }
    ASSERT_EQ(n, 2);
    ASSERT(lua_isnil(L, -2));
    ASSERT_EQ(lua_type(L, -1), LUA_TSTRING);
    return 2;
}

/* Encodes the value at idx, which must succeed, and returns the text (on
 * the stack top, valid while it stays there). */
static const char *
encode_ok(lua_State *L, int idx, size_t *len)
{
    if (encode_at(L, idx) != 1) {
        fprintf(stderr, "encode failed: %s\n", lua_tostring(L, -1));
        abort();
    }
    return lua_tolstring(L, -1, len);
}

static void
expect_text(const char *got, size_t glen, const char *want)
{
    if (glen != strlen(want) || memcmp(got, want, glen) != 0) {
        fprintf(stderr, "got  '%.*s'\nwant '%s'\n", (int) glen, got, want);
        abort();
    }
}

/* The values at a and b are equal: same types, numbers equal with the
 * same sign of zero, strings byte for byte, null by identity, tables with
 * the same keys and equal values. */
static int
same(lua_State *L, int a, int b)
{
    int     top = lua_gettop(L), eq = 1, na = 0, nb = 0;
    double  x, y;

    a = a < 0 ? top + a + 1 : a;
    b = b < 0 ? top + b + 1 : b;
    if (lua_type(L, a) != lua_type(L, b)) {
        return 0;
    }
    switch (lua_type(L, a)) {
    case LUA_TNUMBER:
        x = lua_tonumber(L, a);
        y = lua_tonumber(L, b);
        return x == y && signbit(x) == signbit(y);
    case LUA_TSTRING:
    case LUA_TBOOLEAN:
    case LUA_TLIGHTUSERDATA:
        return lua_rawequal(L, a, b);
    case LUA_TTABLE:
        break;
    default:
        return 0;
    }
    ASSERT(lua_checkstack(L, 8));
    lua_pushnil(L);
    while (eq && lua_next(L, a) != 0) {
        na++;
        lua_pushvalue(L, -2);
        lua_rawget(L, b);
        eq = same(L, -2, -1);
        lua_pop(L, 2);
    }
    lua_settop(L, top);
    if (!eq) {
        return 0;
    }
    lua_pushnil(L);
    while (lua_next(L, b) != 0) {
        nb++;
        lua_pop(L, 1);
    }
    return na == nb;
}

/* Checks what a successful decode (its value on the stack top) promises:
 * it encodes (or holds an infinity, which strtod reads from "1e999"), and
 * the text t1 decodes to v1 whose text t2 has the same length and decodes
 * to a value equal to v1 (key order may differ between t1 and t2, since
 * Lua tables iterate in an order that depends on their history). With
 * 'exact', v1 must equal the first value too. Pops nothing. Returns 1 if
 * t1 and t2 are the same text. */
static int
check_round_trip(lua_State *L, int exact)
{
    int          v0 = lua_gettop(L), same_text;
    const char  *t1, *t2, *msg;
    size_t       l1, l2;
    char        *c1;

    if (encode_at(L, v0) != 1) {
        msg = lua_tostring(L, -1);
        ASSERT(!exact);
        if (strcmp(msg, "NaN and infinities are not JSON") != 0) {
            fprintf(stderr, "encode failed: %s\n", msg);
            abort();
        }
        lua_settop(L, v0);
        return 1;
    }
    t1 = lua_tolstring(L, -1, &l1);
    c1 = malloc(l1 + 1);
    ASSERT(c1 != NULL);
    memcpy(c1, t1, l1 + 1);
    ASSERT_EQ(decode_n(L, c1, l1, NULL), 1);            /* v1 */
    if (exact && !same(L, v0, -1)) {
        fprintf(stderr, "not the same value after '%s'\n", c1);
        abort();
    }
    t2 = encode_ok(L, -1, &l2);
    same_text = l1 == l2 && memcmp(c1, t2, l1) == 0;
    if (l1 != l2) {
        fprintf(stderr, "t1 '%s'\nt2 '%.*s'\n", c1, (int) l2, t2);
        abort();
    }
    ASSERT_EQ(decode_n(L, t2, l2, NULL), 1);            /* v2 */
    ASSERT(same(L, -3, -1));
    lua_settop(L, v0);
    free(c1);
    return same_text;
}

/* random documents ------------------------------------------------------- */

static void
gen_ws(buf_t *b, uint64_t *r)
{
    static const char  ws[] = " \t\n\r";

    if (rnd(r, 4) == 0) {
        unsigned  n = 1 + rnd(r, 3);

        while (n-- > 0) {
            buf_putc(b, ws[rnd(r, 4)]);
        }
    }
}

static void
gen_string(buf_t *b, uint64_t *r)
{
    static const char  simple[] = "\"\\/bfnrt";
    unsigned           n, i, cp;

    n = rnd(r, 8) == 0 ? rnd(r, 200) : rnd(r, 24);
    buf_putc(b, '"');
    for (i = 0; i < n; i++) {
        unsigned  k = rnd(r, 100);

        if (k < 55) {
            char  c = (char) (32 + rnd(r, 95));

            buf_putc(b, c == '"' || c == '\\' ? 'q' : c);
        } else if (k < 60) {
            buf_putc(b, (char) rnd(r, 32));         /* raw control byte */
        } else if (k < 68) {
            buf_putc(b, (char) (0x80 + rnd(r, 128)));   /* not UTF-8 */
        } else if (k < 73) {
            buf_puts(b, "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80");
        } else if (k < 85) {
            buf_putc(b, '\\');
            buf_putc(b, simple[rnd(r, 8)]);
        } else if (k < 93) {
            do {
                cp = rnd(r, 0x10000);
            } while (cp >= 0xd800 && cp <= 0xdfff);
            buf_printf(b, rnd(r, 2) ? "\\u%04x" : "\\u%04X", cp);
        } else {
            cp = 0x10000 + rnd(r, 0x100000);
            buf_printf(b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10),
                       0xdc00 + ((cp - 0x10000) & 0x3ff));
        }
    }
    buf_putc(b, '"');
}

static void
gen_digits(buf_t *b, uint64_t *r, unsigned n, int lead_zero_ok)
{
    unsigned  i;

    for (i = 0; i < n; i++) {
        buf_putc(b, (char) ('0' + (i == 0 && !lead_zero_ok ? 1 + rnd(r, 9)
                                                            : rnd(r, 10))));
    }
}

/* 'exact': the number has at most 14 significant digits (or is an integer
 * up to 2^53) and a modest exponent, so that it survives a round trip. */
static void
gen_number(buf_t *b, uint64_t *r, int exact)
{
    unsigned  k = rnd(r, 10), n;

    if (rnd(r, 3) == 0) {
        buf_putc(b, '-');
    }
    if (k == 0) {
        buf_printf(b, "%u", rnd(r, 1001));
    } else if (k == 1) {
        gen_digits(b, r, 1 + rnd(r, 15), 0);
    } else if (k == 2) {
        buf_printf(b, "%llu", (unsigned long long)
                   (next_rand(r) % 9007199254740993ULL));
    } else if (k == 3) {
        buf_puts(b, rnd(r, 2) ? "0" : "0.0");
    } else if (k <= 6 || exact) {
        /* d.ddd with up to 14 digits, sometimes an exponent. */
        n = 1 + rnd(r, 14);
        k = rnd(r, n);
        gen_digits(b, r, k == 0 ? 1 : k, k == 0);
        if (k == 0) {
            k = 1;
        }
        buf_putc(b, '.');
        gen_digits(b, r, n - k == 0 ? 1 : n - k, 1);
        if (rnd(r, 3) == 0) {
            buf_printf(b, "%c%s%u", rnd(r, 2) ? 'e' : 'E',
                       rnd(r, 2) ? "-" : (rnd(r, 2) ? "+" : ""), rnd(r, 25));
        }
    } else {
        /* What strtod reads beyond JSON, and long or huge numbers. */
        switch (rnd(r, 6)) {
        case 0:
            gen_digits(b, r, 16 + rnd(r, 30), 1);
            break;
        case 1:
            buf_puts(b, rnd(r, 2) ? "1." : "0.");
            break;
        case 2:
            gen_digits(b, r, 1 + rnd(r, 20), 1);
            buf_printf(b, "e%d", (int) rnd(r, 800) - 400);
            break;
        case 3:
            buf_puts(b, "00000000000000000000000000000000000000000000000000"
                        "00000000000000000001.5");
            break;
        case 4:
            gen_digits(b, r, 1 + rnd(r, 3), 1);
            buf_putc(b, '.');
            gen_digits(b, r, 15 + rnd(r, 10), 1);
            break;
        default:
            buf_printf(b, "%.17g", (double) (next_rand(r) >> 11) /
                       (double) (1 + (next_rand(r) >> 40)));
            break;
        }
    }
}

static void
gen_value(buf_t *b, uint64_t *r, int depth, int exact)
{
    unsigned  k = depth >= 6 ? 3 + rnd(r, 6) : rnd(r, 9), n, i;

    gen_ws(b, r);
    switch (k) {
    case 0:
    case 1:
        n = depth < 2 && rnd(r, 8) == 0 ? 30 + rnd(r, 40) : rnd(r, 5);
        buf_putc(b, '{');
        for (i = 0; i < n; i++) {
            if (i > 0) {
                buf_putc(b, ',');
            }
            gen_ws(b, r);
            gen_string(b, r);
            gen_ws(b, r);
            buf_putc(b, ':');
            gen_value(b, r, depth + 1, exact);
        }
        gen_ws(b, r);
        buf_putc(b, '}');
        break;
    case 2:
        n = depth < 2 && rnd(r, 8) == 0 ? 30 + rnd(r, 40) : rnd(r, 5);
        buf_putc(b, '[');
        for (i = 0; i < n; i++) {
            if (i > 0) {
                buf_putc(b, ',');
            }
            gen_value(b, r, depth + 1, exact);
        }
        gen_ws(b, r);
        buf_putc(b, ']');
        break;
    case 3:
    case 4:
        gen_string(b, r);
        break;
    case 5:
    case 6:
        gen_number(b, r, exact);
        break;
    default:
        buf_puts(b, k == 7 ? (rnd(r, 2) ? "true" : "false") : "null");
        break;
    }
    gen_ws(b, r);
}

/* Flips, inserts, deletes, duplicates or truncates a few bytes. */
static void
mutate(buf_t *b, uint64_t *r)
{
    static const char  bytes[] = "\"\\{}[],:u-+.eE0123456789tfn \x00\xff";
    unsigned           ops = 1 + rnd(r, 4);

    while (ops-- > 0) {
        size_t  at = b->len ? rnd(r, (unsigned) b->len) : 0, n;
        char    c = rnd(r, 2) ? bytes[rnd(r, sizeof(bytes) - 1)]
                              : (char) rnd(r, 256);

        switch (rnd(r, 6)) {
        case 0:
            if (b->len > 0) {
                b->p[at] ^= (char) (1u << rnd(r, 8));
            }
            break;
        case 1:
            if (b->len > 0) {
                b->p[at] = c;
            }
            break;
        case 2:
            buf_putc(b, 0);
            memmove(b->p + at + 1, b->p + at, b->len - 1 - at);
            b->p[at] = c;
            break;
        case 3:
            n = 1 + rnd(r, 8);
            n = n > b->len - at ? b->len - at : n;
            memmove(b->p + at, b->p + at + n, b->len - at - n);
            b->len -= n;
            break;
        case 4:
            b->len = at;
            break;
        default:
            n = 1 + rnd(r, 16);
            n = n > b->len - at ? b->len - at : n;
            if (n > 0) {
                char  *seg = malloc(n);

                ASSERT(seg != NULL);
                memcpy(seg, b->p + at, n);
                buf_put(b, seg, n);
                free(seg);
            }
            break;
        }
    }
}

static void
test_random_and_mutated(void)
{
    lua_State  *L = open_codec();
    uint64_t    r = 0x9e3779b97f4a7c15ULL;
    buf_t       b = { NULL, 0, 0 };
    int         doc, m, ok = 0, failed = 0, reordered = 0, exact;

    for (doc = 0; doc < 6000; doc++) {
        exact = doc % 2 == 0;
        b.len = 0;
        gen_value(&b, &r, 0, exact);
        /* Valid JSON always decodes, and exact numbers survive. */
        ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
        reordered += !check_round_trip(L, exact);
        lua_settop(L, ENC);
        for (m = 0; m < 6; m++) {
            buf_t  c = { NULL, 0, 0 };

            buf_put(&c, b.p, b.len);
            mutate(&c, &r);
            if (decode_n(L, c.p, c.len, NULL) == 1) {
                ok++;
                reordered += !check_round_trip(L, 0);
            } else {
                failed++;
            }
            lua_settop(L, ENC);
            free(c.p);
        }
    }
    printf("# %d mutants decoded, %d refused, %d round trips reordered "
           "keys\n", ok, failed, reordered);
    free(b.p);
    lua_close(L);
}

/* Byte strings with no structure at all, weighted towards JSON bytes. */
static void
test_random_bytes(void)
{
    static const char  bytes[] = "\"\\{}[],:u-+.eE0123456789 truefalsn";
    lua_State         *L = open_codec();
    uint64_t           r = 12345;
    char               s[64];
    int                i, j, n;

    for (i = 0; i < 100000; i++) {
        n = (int) rnd(&r, sizeof(s));
        for (j = 0; j < n; j++) {
            s[j] = rnd(&r, 4) ? bytes[rnd(&r, sizeof(bytes) - 1)]
                              : (char) rnd(&r, 256);
        }
        if (decode_n(L, s, (size_t) n, NULL) == 1) {
            check_round_trip(L, 0);
        }
        lua_settop(L, ENC);
    }
    lua_close(L);
}

/* nesting and width ------------------------------------------------------ */

static void
test_deep_arrays_and_objects(void)
{
    lua_State   *L = open_codec();
    buf_t        b = { NULL, 0, 0 }, w = { NULL, 0, 0 };
    const char  *t;
    size_t       len;
    int          pos, i;

    /* 1000 levels decode; the innermost [] is an empty table, {}. */
    buf_rep(&b, "[", 1000);
    buf_rep(&b, "]", 1000);
    ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
    for (i = 1; i < 1000; i++) {
        lua_rawgeti(L, -1, 1);
        ASSERT_EQ(lua_type(L, -1), LUA_TTABLE);
    }
    ASSERT_EQ(lua_objlen(L, -1), 0);
    lua_settop(L, ENC + 1);
    t = encode_ok(L, ENC + 1, &len);
    buf_rep(&w, "[", 999);
    buf_puts(&w, "{}");
    buf_rep(&w, "]", 999);
    expect_text(t, len, w.p);
    lua_settop(L, ENC);

    /* 1001 fail at the 1001st bracket. */
    b.len = 0;
    buf_rep(&b, "[", 1001);
    buf_rep(&b, "]", 1001);
    ASSERT_EQ(decode_n(L, b.p, b.len, &pos), 3);
    ASSERT_EQ(pos, 1001);
    ASSERT(strncmp(lua_tostring(L, -2), "nesting deeper than 1000", 24) == 0);
    lua_settop(L, ENC);

    b.len = 0;
    buf_rep(&b, "{\"a\":", 1000);
    buf_puts(&b, "1");
    buf_rep(&b, "}", 1000);
    ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
    t = encode_ok(L, -1, &len);
    expect_text(t, len, b.p);
    lua_settop(L, ENC);
    b.len = 0;
    buf_rep(&b, " {\"a\":", 1001);
    buf_puts(&b, "1");
    buf_rep(&b, "}", 1001);
    ASSERT_EQ(decode_n(L, b.p, b.len, &pos), 3);
    ASSERT_EQ(pos, 1000 * 6 + 2);
    lua_settop(L, ENC);

    /* Unterminated at depth 1000: the end of the input. */
    b.len = 0;
    buf_rep(&b, "[", 1000);
    ASSERT_EQ(decode_n(L, b.p, b.len, &pos), 3);
    ASSERT_EQ(pos, 1001);
    lua_settop(L, ENC);

    free(b.p);
    free(w.p);
    lua_close(L);
}

/* Each level holds 'members' members before the next level, which comes
 * last: past PENDING_BUDGET every level's pending members fill the stack. */
static void
build_wide_deep(buf_t *b, int depth, int members, int object)
{
    int  i, j;

    b->len = 0;
    for (i = 0; i < depth; i++) {
        buf_putc(b, object ? '{' : '[');
        for (j = 0; j < members; j++) {
            if (object) {
                buf_printf(b, "\"k%d\":%d,", j, i * 100 + j);
            } else {
                buf_printf(b, "%d,", i * 100 + j);
            }
        }
        if (object) {
            buf_puts(b, "\"next\":");
        }
    }
    buf_puts(b, "null");
    for (i = 0; i < depth; i++) {
        buf_putc(b, object ? '}' : ']');
    }
}

/* The value on the stack top is build_wide_deep's; pops nothing. */
static void
check_wide_deep(lua_State *L, int depth, int members, int object)
{
    int  top = lua_gettop(L), i, j, n;

    lua_pushvalue(L, top);
    for (i = 0; i < depth; i++) {
        ASSERT_EQ(lua_type(L, -1), LUA_TTABLE);
        n = 0;
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) {
            n++;
            lua_pop(L, 1);
        }
        ASSERT_EQ(n, members + 1);
        for (j = 0; j < members; j++) {
            if (object) {
                char  k[16];

                snprintf(k, sizeof(k), "k%d", j);
                lua_getfield(L, -1, k);
            } else {
                lua_rawgeti(L, -1, j + 1);
            }
            ASSERT_EQ(lua_tonumber(L, -1), i * 100 + j);
            lua_pop(L, 1);
        }
        if (object) {
            lua_getfield(L, -1, "next");
        } else {
            lua_rawgeti(L, -1, members + 1);
        }
        lua_replace(L, -2);
    }
    ASSERT_EQ(lua_type(L, -1), LUA_TLIGHTUSERDATA);
    lua_settop(L, top);
}

static void
test_deep_and_wide(void)
{
    static const int  members[] = { 0, 1, 30, 31, 32, 33, 63, 64, 65 };
    lua_State        *L = open_codec();
    buf_t             b = { NULL, 0, 0 };
    size_t            i;
    int               object, pos;

    for (object = 0; object <= 1; object++) {
        for (i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
            build_wide_deep(&b, 1000, members[i], object);
            ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
            check_wide_deep(L, 1000, members[i], object);
            check_round_trip(L, 1);
            lua_settop(L, ENC);
            build_wide_deep(&b, 1001, members[i], object);
            ASSERT_EQ(decode_n(L, b.p, b.len, &pos), 3);
            ASSERT(b.p[pos - 1] == (object ? '{' : '['));
            lua_settop(L, ENC);
        }
    }
    free(b.p);
    lua_close(L);
}

static void
test_wide(void)
{
    lua_State   *L = open_codec();
    buf_t        b = { NULL, 0, 0 };
    const char  *t;
    size_t       len;
    int          i, n;

    buf_putc(&b, '[');
    for (i = 0; i < 10000; i++) {
        buf_printf(&b, i ? ",%d" : "%d", i * 7 - 3000);
    }
    buf_putc(&b, ']');
    ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
    ASSERT_EQ(lua_objlen(L, -1), 10000);
    for (i = 0; i < 10000; i++) {
        lua_rawgeti(L, -1, i + 1);
        ASSERT_EQ(lua_tonumber(L, -1), i * 7 - 3000);
        lua_pop(L, 1);
    }
    t = encode_ok(L, -1, &len);
    expect_text(t, len, b.p);
    lua_settop(L, ENC);

    b.len = 0;
    buf_putc(&b, '{');
    for (i = 0; i < 10000; i++) {
        buf_printf(&b, "%s\"key%d\":[%d,\"v\\n\"]", i ? "," : "", i, i);
    }
    buf_putc(&b, '}');
    ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
    n = 0;
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        n++;
        lua_pop(L, 1);
    }
    ASSERT_EQ(n, 10000);
    lua_getfield(L, -1, "key9999");
    lua_rawgeti(L, -1, 2);
    expect_text(lua_tostring(L, -1), lua_objlen(L, -1), "v\n");
    lua_settop(L, ENC + 1);
    check_round_trip(L, 1);
    lua_settop(L, ENC);

    /* Duplicate keys: the last wins, before and after CHUNK. */
    b.len = 0;
    buf_puts(&b, "{\"a\":1,\"a\":2");
    for (i = 0; i < 40; i++) {
        buf_printf(&b, ",\"x%d\":0", i);
    }
    buf_puts(&b, ",\"a\":3,\"x0\":5}");
    ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
    lua_getfield(L, -1, "a");
    ASSERT_EQ(lua_tonumber(L, -1), 3);
    lua_getfield(L, -2, "x0");
    ASSERT_EQ(lua_tonumber(L, -1), 5);
    lua_settop(L, ENC);
    free(b.p);
    lua_close(L);
}

static void
test_encode_depth(void)
{
    lua_State   *L = open_codec();
    const char  *t;
    size_t       len;

    ASSERT_OK(luaL_dostring(L,
        "local function nest(n) local t = {} local r = t "
        "for i = 2, n do local u = {} t.a = u t = u end return r end "
        "return nest(1000), nest(1001) "));
    t = encode_ok(L, 3, &len);
    ASSERT_EQ(len, 999 * 6 + 2);               /* {"a": x999, {}, } */
    ASSERT(memcmp(t + 999 * 5, "{}}", 3) == 0);
    lua_pop(L, 1);
    ASSERT_EQ(encode_at(L, 4), 2);
    expect_text(lua_tostring(L, -1), lua_objlen(L, -1),
                "nesting deeper than 1000 (a cycle?)");
    lua_settop(L, ENC);
    ASSERT_OK(luaL_dostring(L, "local t = {1, 2} t[3] = t return t"));
    ASSERT_EQ(encode_at(L, 3), 2);
    lua_settop(L, ENC);
    ASSERT_OK(luaL_dostring(L, "local t = {} t.x = {y = t} return t"));
    ASSERT_EQ(encode_at(L, 3), 2);
    lua_settop(L, ENC);
    lua_close(L);
}

/* encode's values -------------------------------------------------------- */

/* Runs a chunk that returns one value and encodes it. */
static void
encode_chunk(lua_State *L, const char *chunk, const char *want,
             const char *want_err)
{
    const char  *msg;
    size_t       len;
    int          n;

    if (luaL_dostring(L, chunk) != 0) {
        fprintf(stderr, "%s: %s\n", chunk, lua_tostring(L, -1));
        abort();
    }
    ASSERT_EQ(lua_gettop(L), ENC + 1);
    n = encode_at(L, ENC + 1);
    if (want != NULL) {
        if (n != 1) {
            fprintf(stderr, "%s: %s\n", chunk, lua_tostring(L, -1));
            abort();
        }
        msg = lua_tolstring(L, -1, &len);
        expect_text(msg, len, want);
    } else {
        ASSERT_EQ(n, 2);
        msg = lua_tolstring(L, -1, &len);
        expect_text(msg, len, want_err);
    }
    lua_settop(L, ENC);
}

static void
test_encode_values(void)
{
    lua_State  *L = open_codec();
    char        s[2], want[16];
    const char *t;
    size_t      len;
    int         c;

    encode_chunk(L, "return {}", "{}", NULL);
    encode_chunk(L, "return {1, 2, 3}", "[1,2,3]", NULL);
    encode_chunk(L, "return {[1] = 1, [3] = 3}", "[1,null,3]", NULL);
    encode_chunk(L, "return {[10] = true}",
                 "[null,null,null,null,null,null,null,null,null,true]", NULL);
    encode_chunk(L, "return {[11] = true}", "{\"11\":true}", NULL);
    encode_chunk(L, "return {[0.5] = 1}", "{\"0.5\":1}", NULL);
    encode_chunk(L, "return {[-1] = 1}", "{\"-1\":1}", NULL);
    encode_chunk(L, "return {json.null, false}", "[null,false]", NULL);
    encode_chunk(L, "return 'a/\\127\\0\"\\\\\\b\\f\\n\\r\\t\\31'",
                 "\"a/\x7f\\u0000\\\"\\\\\\b\\f\\n\\r\\t\\u001f\"", NULL);
    encode_chunk(L, "return print", NULL, "a function is not JSON");
    encode_chunk(L, "return newproxy()", NULL, "a userdata is not JSON");
    encode_chunk(L, "return coroutine.create(print)", NULL,
                 "a coroutine is not JSON");
    encode_chunk(L, "return {[true] = 1}", NULL,
                 "a table key that is neither a string nor a number is not "
                 "JSON");
    encode_chunk(L, "return {[{}] = 1}", NULL,
                 "a table key that is neither a string nor a number is not "
                 "JSON");
    encode_chunk(L, "return {0/0}", NULL, "NaN and infinities are not JSON");
    encode_chunk(L, "return {a = {b = -1/0}}", NULL,
                 "NaN and infinities are not JSON");
    encode_chunk(L, "return {[1/0] = 1}", NULL,
                 "NaN and infinities are not JSON");
    encode_chunk(L, "return {1, print}", NULL, "a function is not JSON");
    encode_chunk(L, "return require('ffi').new('int', 1)", NULL,
                 "a cdata is not JSON");

    /* Metamethods are never called: raw content only. */
    encode_chunk(L,
        "local mt = {} local function boom() error('called') end "
        "for _, k in ipairs({'__index', '__newindex', '__pairs', '__ipairs',"
        " '__len', '__call', '__tostring', '__eq', '__lt', '__le', '__concat',"
        " '__unm', '__add'}) do mt[k] = boom end "
        "local inner = setmetatable({7}, mt) "
        "return setmetatable({inner, inner}, mt)", "[[7],[7]]", NULL);
    encode_chunk(L,
        "return setmetatable({}, {__index = function() return 1 end})",
        "{}", NULL);
    encode_chunk(L,
        "local t = setmetatable({}, {__index = {1, 2, 3}}) t[2] = 5 return t",
        "[null,5]", NULL);

    /* A lightuserdata other than NULL. */
    lua_pushlightuserdata(L, &c);
    ASSERT_EQ(encode_at(L, -1), 2);
    lua_settop(L, ENC);

    /* Every byte alone: a string survives, escaped as documented. */
    for (c = 0; c < 256; c++) {
        s[0] = (char) c;
        lua_pushlstring(L, s, 1);
        t = encode_ok(L, -1, &len);
        if (c < 32 && c != '\b' && c != '\f' && c != '\n' && c != '\r'
            && c != '\t') {
            snprintf(want, sizeof(want), "\"\\u%04x\"", c);
            expect_text(t, len, want);
        }
        ASSERT_EQ(decode_n(L, t, len, NULL), 1);
        ASSERT(lua_rawequal(L, -1, -3));
        lua_settop(L, ENC);
    }
    lua_close(L);
}

/* Strings of every length and escape place, around the 8-byte loads. */
static void
test_strings_swar(void)
{
    lua_State  *L = open_codec();
    char        s[40];
    buf_t       b = { NULL, 0, 0 };
    size_t      n, at, len;
    const char *t;
    int         k, pos;
    static const char  special[] = { '"', '\\', '\n', 0x1f, 0, 0x20, 0x7f,
                                     (char) 0x80, (char) 0xff };

    for (n = 0; n < sizeof(s); n++) {
        for (at = 0; at <= n; at++) {
            for (k = 0; k < (int) sizeof(special); k++) {
                memset(s, 'a', n);
                if (at < n) {
                    s[at] = special[k];
                }
                lua_pushlstring(L, s, n);
                t = encode_ok(L, -1, &len);
                ASSERT_EQ(decode_n(L, t, len, NULL), 1);
                ASSERT(lua_rawequal(L, -1, -3));
                lua_settop(L, ENC);
                /* Decode the same as a raw (unescaped) JSON string. */
                if (k >= 2) {
                    b.len = 0;
                    buf_putc(&b, '"');
                    buf_put(&b, s, n);
                    buf_putc(&b, '"');
                    ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
                    ASSERT_EQ(lua_objlen(L, -1), n);
                    ASSERT(memcmp(lua_tostring(L, -1), s, n) == 0);
                    lua_settop(L, ENC);
                }
                /* Unterminated: the error names the opening quote. */
                b.len = 0;
                buf_puts(&b, "  \"");
                buf_put(&b, s, at);
                ASSERT_EQ(decode_n(L, b.p, b.len, &pos), 3);
                ASSERT_EQ(pos, 3);
                lua_settop(L, ENC);
                if (at >= n) {
                    break;                      /* no special byte */
                }
            }
        }
    }
    free(b.p);
    lua_close(L);
}

/* \u escapes, surrogates and error positions. */
static void
expect_decode_string(lua_State *L, const char *in, const char *want,
                     size_t want_len)
{
    size_t  len;
    int     top = lua_gettop(L);

    ASSERT_EQ(decode_s(L, in, NULL), 1);
    ASSERT_EQ(lua_type(L, -1), LUA_TSTRING);
    lua_tolstring(L, -1, &len);
    ASSERT_EQ(len, want_len);
    ASSERT(memcmp(lua_tostring(L, -1), want, len) == 0);
    lua_settop(L, top);
}

static void
expect_error(lua_State *L, const char *in, const char *prefix, int at)
{
    int          pos;
    const char  *msg;

    ASSERT_EQ(decode_s(L, in, &pos), 3);
    msg = lua_tostring(L, -2);
    if (pos != at || strncmp(msg, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "'%s': got '%s', want '%s...' at %d\n", in, msg,
                prefix, at);
        abort();
    }
    lua_settop(L, ENC);
}

static void
test_escapes_and_errors(void)
{
    lua_State  *L = open_codec();

    expect_decode_string(L, "\"\\u00e9\"", "\xc3\xa9", 2);
    expect_decode_string(L, "\"\\u00E9x\"", "\xc3\xa9x", 3);
    expect_decode_string(L, "\"\\u0000\"", "\0", 1);
    expect_decode_string(L, "\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"",
                         "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11);
    expect_decode_string(L, "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4);
    expect_decode_string(L, "\"\\uD800\\uDC00\\uDBFF\\uDFFF\"",
                         "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 8);
    expect_decode_string(L, "\"abcdefghij\\/\\\"\\\\\\b\\f\\n\\r\\t\"",
                         "abcdefghij/\"\\\b\f\n\r\t", 18);
    expect_decode_string(L, "\"raw\x01\x1f\xff\"", "raw\x01\x1f\xff", 6);

    expect_error(L, "\"\\udc00\"", "bad \\u escape (a low surrogate", 2);
    expect_error(L, "\"ab\\ud83d\"", "bad \\u escape (a high surrogate", 4);
    expect_error(L, "\"\\ud83dxxxxxxx\"", "bad \\u escape (a high", 2);
    expect_error(L, "\"\\ud83d\\u0041\"", "bad \\u escape (a high", 2);
    expect_error(L, "\"\\ud83d\\ud83d\"", "bad \\u escape (a high", 2);
    expect_error(L, "\"\\ud83d\\ude0\"", "bad \\u escape (a high", 2);
    expect_error(L, "\"\\u12\"", "bad \\u escape (4 hex", 2);
    expect_error(L, "\"\\u12g4\"", "bad \\u escape (4 hex", 2);
    expect_error(L, "\"\\u", "bad \\u escape (4 hex", 2);
    expect_error(L, "\"\\x\"", "bad escape", 2);
    expect_error(L, "\"abc\\", "unterminated string", 1);
    expect_error(L, "[\"abc\\n", "unterminated string", 2);
    expect_error(L, "\"abc", "unterminated string", 1);
    expect_error(L, "", "unexpected end of input", 1);
    expect_error(L, "   ", "unexpected end of input", 4);
    expect_error(L, "[1,2", "expected ',' or ']'", 5);
    expect_error(L, "[1,]", "expected a value", 4);
    expect_error(L, "{\"a\" 1}", "expected ':'", 6);
    expect_error(L, "{\"a\":1,}", "expected a string key", 8);
    expect_error(L, "{\"a\":1 \"b\":2}", "expected ',' or '}'", 8);
    expect_error(L, "{1:2}", "expected a string key", 2);
    expect_error(L, "nul", "expected a value", 1);
    expect_error(L, "nulL", "expected a value", 1);
    expect_error(L, "truex", "expected the end of the input", 5);
    expect_error(L, "1 2", "expected the end of the input", 3);
    expect_error(L, "[1e]", "bad number (digits expected", 2);
    expect_error(L, "[1e+]", "bad number (digits expected", 2);
    expect_error(L, "-", "bad number", 1);
    expect_error(L, "+", "bad number", 1);
    expect_error(L, "-.", "bad number", 1);
    expect_error(L, ".5", "expected a value", 1);
    expect_error(L, "NaN", "expected a value", 1);
    expect_error(L, "-Infinity", "bad number", 1);
    expect_error(L, "0x10", "expected the end of the input", 2);
    expect_error(L, "[1,2]]", "expected the end of the input", 6);
    expect_error(L, "\xef\xbb\xbf{}", "expected a value", 1);

    /* Extra arguments are ignored; one result. */
    lua_pushvalue(L, DEC);
    lua_pushstring(L, "[1]");
    lua_pushnumber(L, 1);
    lua_pushnil(L);
    pcall_ok(L, 3);
    ASSERT_EQ(lua_gettop(L), ENC + 1);
    lua_settop(L, ENC);
    lua_close(L);
}

/* numbers ---------------------------------------------------------------- */

/* The text the header comment promises for v, from snprintf and strtod. */
static void
ref_number(char *b, size_t size, double v)
{
    double  a = fabs(v);
    int     digits;

    if (a < 1e15 && v == floor(v)) {
        snprintf(b, size, "%.0f", v);
    } else if (a < 99999999999999.5) {
        snprintf(b, size, "%.14g", v);
    } else if (v == floor(v) && a < 9223372036854775808.0) {
        snprintf(b, size, "%.0f", v);
    } else {
        for (digits = 15; digits <= 17; digits++) {
            snprintf(b, size, "%.*g", digits, v);
            if (strtod(b, NULL) == v) {
                break;
            }
        }
    }
}

static void
check_number(lua_State *L, double v)
{
    char         want[48];
    const char  *t;
    size_t       len;

    if (!isfinite(v)) {
        return;
    }
    ref_number(want, sizeof(want), v);
    lua_pushnumber(L, v);
    t = encode_ok(L, -1, &len);
    if (len != strlen(want) || memcmp(t, want, len) != 0) {
        fprintf(stderr, "%.17g (%a): got '%.*s', want '%s'\n", v, v,
                (int) len, t, want);
        abort();
    }
    lua_settop(L, ENC);
}

static double
pow10i(int e)
{
    double  p = 1;

    while (e-- > 0) {
        p *= 10;
    }
    return p;
}

static void
test_encode_numbers(void)
{
    static const double  edges[] = {
        0, 1, 0.1, 0.5, 1e-4, 1e-5, 9.9999999999999e-5, 1e13, 1e14, 1e15,
        1e16, 1e17, 1e21, 1e22, 1e300, 1.7976931348623157e308,
        5e-324, 2.2250738585072014e-308, 99999999999999.0,
        999999999999999.0, 999999999999999.9, 99999999999999.5,
        9999999999999.99, 123456789012.345, 0.1 + 0.2, 1.0 / 3,
        9007199254740991.0, 9007199254740992.0, 9007199254740993.0,
        18014398509481984.0, 9223372036854774784.0, 9223372036854775808.0,
        18446744073709551616.0, 3.14159, 2.5e-7, 1234567.891,
        4503599627370495.5, 4503599627370496.5, 1e14 + 0.5, 1e15 + 2,
        1e-4 + 1e-20, 0.00015, 12.345678901234, 1.5e-5,
    };
    lua_State  *L = open_codec();
    uint64_t    r = 77;
    size_t      i;
    int         j, k;
    double      v, m;
    uint64_t    bits;
    size_t      len;
    const char *t;

    /* -0 is written as "-0" and reads back as -0. */
    lua_pushnumber(L, -0.0);
    t = encode_ok(L, -1, &len);
    expect_text(t, len, "-0");
    ASSERT_EQ(decode_n(L, t, len, NULL), 1);
    ASSERT(lua_tonumber(L, -1) == 0 && signbit(lua_tonumber(L, -1)));
    lua_settop(L, ENC);

    for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        for (j = -3; j <= 3; j++) {
            v = edges[i];
            for (k = 0; k < abs(j); k++) {
                v = nextafter(v, j < 0 ? -INFINITY : INFINITY);
            }
            check_number(L, v);
            check_number(L, -v);
        }
    }
    for (i = 0; i < 200000; i++) {
        switch (i % 5) {
        case 0:                                 /* any finite double */
            bits = next_rand(&r);
            memcpy(&v, &bits, sizeof(v));
            break;
        case 1:                                 /* short decimals */
            m = (double) (next_rand(&r) % (uint64_t) pow10i(1 + rnd(&r, 14)));
            v = m / pow10i(1 + (int) rnd(&r, 8));
            break;
        case 2:                                 /* near the edges */
            v = edges[rnd(&r, sizeof(edges) / sizeof(edges[0]))]
                + ((double) rnd(&r, 2001) - 1000) * (rnd(&r, 2) ? 1 : 0.25);
            break;
        case 3:                                 /* any magnitude */
            v = (double) (next_rand(&r) >> 11) / 9007199254740992.0
                * pow10i((int) rnd(&r, 25)) / pow10i((int) rnd(&r, 12));
            break;
        default:                                /* integers, 2^0 to 2^64 */
            v = (double) (next_rand(&r) >> rnd(&r, 64));
            break;
        }
        if (rnd(&r, 2)) {
            v = -v;
        }
        check_number(L, v);
    }

    /* Number keys are written like numbers, inside quotes. */
    lua_createtable(L, 0, 1);
    lua_pushnumber(L, 0.1);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    t = encode_ok(L, -1, &len);
    expect_text(t, len, "{\"0.1\":true}");
    lua_settop(L, ENC);
    lua_close(L);
}

static void
test_decode_numbers(void)
{
    static const char  *texts[] = {
        "0", "-0", "+0", "-0.0", "1", "+1", "-.5", "+.5", "+1.5e3", "007",
        "-007", "1.", "1.e2",
        "999999999999999", "1000000000000000", "9007199254740993",
        "-999999999999999", "123456789012345678901234567890",
        "0.30000000000000004", "1e400", "-1e400", "1e-400", "4.9e-324",
        "2.2250738585072011e-308", "1E5", "1e+05", "1e-05", "12345.6789e-3",
        "9223372036854775807", "18446744073709551616",
        "000000000000000000000000000000000000000000000000000000000000000000"
        "0000000001.25",
    };
    lua_State  *L = open_codec();
    locale_t    c = newlocale(LC_ALL_MASK, "C", (locale_t) 0);
    uint64_t    r = 99;
    buf_t       b = { NULL, 0, 0 };
    size_t      i;
    double      want, got;

    ASSERT(c != (locale_t) 0);
    for (i = 0; i < sizeof(texts) / sizeof(texts[0]) + 100000; i++) {
        b.len = 0;
        if (i < sizeof(texts) / sizeof(texts[0])) {
            buf_puts(&b, texts[i]);
        } else {
            gen_number(&b, &r, (int) (i % 2));
        }
        want = strtod_l(b.p, NULL, c);
        ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
        got = lua_tonumber(L, -1);
        if (memcmp(&got, &want, sizeof(got)) != 0) {
            fprintf(stderr, "'%s': got %a, want %a\n", b.p, got, want);
            abort();
        }
        lua_settop(L, ENC);
    }
    freelocale(c);
    free(b.p);
    lua_close(L);
}

/* Numbers are read and written in the C locale whatever the process's. A
 * comma-decimal locale is needed: TIDE_TEST_COMMA_LOCALE names one. */
static void
test_locale(void)
{
    static const char  *names[] = { NULL, "de_DE.UTF-8", "de_DE.utf8",
                                    "fr_FR.UTF-8", "ru_RU.UTF-8", "de_DE" };
    lua_State          *L = open_codec();
    const char         *t;
    size_t              i, len;

    names[0] = getenv("TIDE_TEST_COMMA_LOCALE");
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (names[i] != NULL && setlocale(LC_ALL, names[i]) != NULL
            && strcmp(localeconv()->decimal_point, ",") == 0) {
            break;
        }
    }
    if (i == sizeof(names) / sizeof(names[0])) {
        printf("# skip test_locale: no comma-decimal locale (set "
               "TIDE_TEST_COMMA_LOCALE)\n");
        setlocale(LC_ALL, "C");
        lua_close(L);
        return;
    }
    printf("# test_locale in %s\n", names[i]);
    ASSERT_EQ(decode_s(L, "[0.5, 1.25e1, 1234567890123456.5, 1e17]", NULL),
              1);
    lua_rawgeti(L, -1, 1);
    ASSERT(lua_tonumber(L, -1) == 0.5);
    lua_rawgeti(L, -2, 2);
    ASSERT(lua_tonumber(L, -1) == 12.5);
    lua_rawgeti(L, -3, 3);
    ASSERT(lua_tonumber(L, -1) == 1234567890123456.5);
    lua_settop(L, ENC + 1);
    t = encode_ok(L, -1, &len);
    expect_text(t, len, "[0.5,12.5,1234567890123456.5,100000000000000000]");
    lua_settop(L, ENC);
    lua_pushnumber(L, 1.0 / 3);                 /* snprintf %.14g */
    t = encode_ok(L, -1, &len);
    expect_text(t, len, "0.33333333333333");
    lua_pushnumber(L, 1e300 / 3);               /* %.17g and strtod */
    t = encode_ok(L, -1, &len);
    expect_text(t, len, "3.3333333333333335e+299");
    lua_settop(L, ENC);
    setlocale(LC_ALL, "C");
    lua_close(L);
}

/* scratch reuse ---------------------------------------------------------- */

static void
test_scratch_reuse(void)
{
    lua_State   *L = open_codec();
    buf_t        b = { NULL, 0, 0 };
    const char  *t;
    size_t       len, i;
    int          round;

    for (round = 0; round < 3; round++) {
        /* Past SCRATCH_KEEP (freed after the call), then small again. */
        b.len = 0;
        buf_putc(&b, '"');
        for (i = 0; i < 300000; i++) {
            buf_puts(&b, round == 1 ? "\\u00e9" : "ab\\n");
        }
        buf_putc(&b, '"');
        ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
        ASSERT_EQ(lua_objlen(L, -1), round == 1 ? 600000 : 900000);
        t = encode_ok(L, -1, &len);
        if (round != 1) {
            expect_text(t, len, b.p);
        }
        lua_settop(L, ENC);
        expect_decode_string(L, "\"x\\ty\"", "x\ty", 3);
        lua_pushstring(L, "small\n");
        t = encode_ok(L, -1, &len);
        expect_text(t, len, "\"small\\n\"");
        lua_settop(L, ENC);

        /* 2 MB of control bytes: about six times its size. */
        b.len = 0;
        for (i = 0; i < 2 * 1024 * 1024; i++) {
            buf_putc(&b, (char) (i % 32));
        }
        lua_pushlstring(L, b.p, b.len);
        t = encode_ok(L, -1, &len);
        ASSERT(len > 5 * b.len);
        ASSERT_EQ(decode_n(L, t, len, NULL), 1);
        ASSERT(lua_rawequal(L, -1, -3));
        lua_settop(L, ENC);
        expect_error(L, "[\"a\\q\"]", "bad escape", 4);
    }
    free(b.p);
    lua_close(L);
}

/* out of Lua memory ------------------------------------------------------ */

typedef struct budget_s {
    size_t  used;
    size_t  limit;
} budget_t;

static void *
budget_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    budget_t  *bu = ud;
    void      *q;

    if (nsize == 0) {
        free(p);
        bu->used -= p != NULL ? osize : 0;
        return NULL;
    }
    if (nsize > (p != NULL ? osize : 0)
        && bu->used - (p != NULL ? osize : 0) + nsize > bu->limit) {
        return NULL;
    }
    q = realloc(p, nsize);
    if (q != NULL) {
        bu->used = bu->used - (p != NULL ? osize : 0) + nsize;
    }
    return q;
}

/* Lua runs out of memory at every point of a decode and of an encode:
 * each call either works or raises "not enough memory", and afterwards
 * (with memory again) both give the right results. */
static void
test_out_of_memory(void)
{
    budget_t     bu = { 0, (size_t) -1 };
    lua_State   *L = lua_newstate(budget_alloc, &bu);
    buf_t        b = { NULL, 0, 0 };
    uint64_t     r = 4242;
    size_t       base, extra, len;
    const char  *t;
    int          rc, raised = 0, worked = 0;

    if (L == NULL) {
        printf("# skip test_out_of_memory: lua_newstate is not supported\n");
        return;
    }
    luaL_openlibs(L);
    lua_pushcfunction(L, luaopen_tide_json_codec);
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -2, "encode");
    lua_remove(L, -3);
    buf_putc(&b, '[');
    while (b.len < 20000) {
        gen_value(&b, &r, 0, 1);
        buf_putc(&b, ',');
    }
    b.p[b.len - 1] = ']';
    ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);   /* kept: the answer */

    lua_gc(L, LUA_GCCOLLECT, 0);
    base = bu.used;
    for (extra = 0; extra < 120000; extra += 150) {
        lua_pushvalue(L, ENC);
        lua_pushvalue(L, DEC);
        lua_pushlstring(L, b.p, b.len);
        bu.limit = base + extra;
        rc = lua_pcall(L, 1, 1, 0);
        if (rc == 0) {
            rc = lua_pcall(L, 1, 1, 0);
        }
        bu.limit = (size_t) -1;
        if (rc == 0) {
            worked++;
            ASSERT_EQ(lua_type(L, -1), LUA_TSTRING);
        } else {
            raised++;
            ASSERT_EQ(rc, LUA_ERRMEM);
        }
        lua_settop(L, ENC + 1);
        /* The state and the scratch buffer are sound. */
        ASSERT_EQ(decode_n(L, b.p, b.len, NULL), 1);
        ASSERT(same(L, ENC + 1, -1));
        t = encode_ok(L, -1, &len);
        ASSERT_EQ(decode_n(L, t, len, NULL), 1);
        ASSERT(same(L, ENC + 1, -1));
        lua_settop(L, ENC + 1);
        expect_decode_string(L, "\"a\\nb\\u00e9\"", "a\nb\xc3\xa9", 5);
        lua_gc(L, LUA_GCCOLLECT, 0);
    }
    printf("# out of memory: %d calls raised, %d worked\n", raised, worked);
    ASSERT(raised > 0 && worked > 0);
    free(b.p);
    lua_close(L);
    ASSERT_EQ(bu.used, 0);
}

/* found in review ---------------------------------------------------- */

static void
test_1e14_boundary(void)
{
    lua_State   *L = open_codec();
    const char  *t;
    size_t       len;

    /* Just below 1e14, %.14g would write "1e+14", which reads back as the
     * integer 1e14: such numbers take the exact path instead. */
    ASSERT_EQ(decode_s(L, "99999999999999.99", NULL), 1);
    t = encode_ok(L, -1, &len);
    ASSERT_EQ(len, 17);
    ASSERT_OK(memcmp(t, "99999999999999.98", 17));
    lua_settop(L, ENC);
    lua_close(L);
}

static void
test_finalizer_reentry(void)
{
    lua_State  *L = open_codec();

    /* A __gc finalizer runs Lua code inside the codec's own allocations
     * (lua_pushlstring runs a GC step before it copies the scratch
     * buffer); a finalizer that calls the codec must not move, free or
     * overwrite the buffer under the outer call. */
    ASSERT_OK(luaL_dostring(L,
        "local bad = 0 "
        "local function arm() "
        "  local p = newproxy(true) "
        "  getmetatable(p).__gc = function() "
        "    json.encode(string.rep('y', 400000)) end "
        "end "
        "local s1 = string.rep('a', 1000) "
        "local want = '[\"' .. s1 .. '\"]' "
        "local esc = '\"' .. string.rep('\\\\n', 500) .. '\"' "
        "local nl = string.rep('\\n', 500) "
        "for i = 1, 4000 do "
        "  arm() "
        "  if json.encode({s1}) ~= want then bad = bad + 1 end "
        "  arm() "
        "  if json.decode(esc) ~= nl then bad = bad + 1 end "
        "end "
        "return bad"));
    ASSERT_EQ(lua_tonumber(L, -1), 0);
    lua_settop(L, ENC);
    lua_close(L);
}

int
main(void)
{
    signal(SIGABRT, on_abort);
    RUN(test_escapes_and_errors);
    RUN(test_encode_values);
    RUN(test_strings_swar);
    RUN(test_decode_numbers);
    RUN(test_encode_numbers);
    RUN(test_locale);
    RUN(test_deep_arrays_and_objects);
    RUN(test_deep_and_wide);
    RUN(test_wide);
    RUN(test_encode_depth);
    RUN(test_scratch_reuse);
    RUN(test_random_and_mutated);
    RUN(test_random_bytes);
    RUN(test_out_of_memory);
    RUN(test_1e14_boundary);
    RUN(test_finalizer_reentry);
    return 0;
}
