/*
 * The json serde's codec, a Lua C module: decode(s) builds Lua values from
 * JSON text in one pass, encode(v) writes JSON text from Lua values.
 *
 * Why not lua-cjson alone: its decode grows every table one key at a time
 * and copies every string through a buffer, and its encode formats every
 * number with snprintf; a job that decodes and re-encodes each message was
 * capped by them at about 0.5 M messages/s on the machine kind. Here:
 * - an object's or array's first members wait on the Lua stack, so that
 *   its table is made once at its final size (up to CHUNK members);
 * - strings without escapes are interned straight from the input;
 * - integers of up to 15 digits are read and written without strtod or
 *   snprintf, and so are short decimals (up to 8 decimals) written.
 *
 * The values are those of lua-cjson (the json serde used it before, and
 * specs check the two agree): objects and arrays are tables, null is
 * lightuserdata NULL (== cjson.null), numbers are doubles. Decoding is
 * strict JSON (no nan, inf, hex or trailing commas), with what cjson
 * allowed: numbers as strtod reads them once they start with a sign or
 * a digit ("+1", leading zeros, "1.", "-.5"), raw control bytes inside
 * strings, and no check of UTF-8. Encoding:
 * - a table whose keys are all positive integers is an array (holes are
 *   null); an empty table is {}; an array with more than 10 slots that is
 *   more than half holes is written as an object with string keys;
 * - numbers: integers of magnitude below 1e15 in full; other numbers
 *   below 1e14 with 14 significant digits (cjson's); at or above 1e14
 *   (and just below it, where 14 digits would round to 1e+14), integers
 *   below 2^63 in full and others with the fewest of 15 to 17
 *   significant digits that read back exactly;
 * - NaN, infinities, functions, userdata, threads, keys that are neither
 *   strings nor numbers, and nesting deeper than MAX_DEPTH (cycles) are
 *   errors.
 *
 * Errors are returned, not raised: decode returns nil, "what at
 * character N", N; encode returns nil, "what". They raise only when Lua
 * runs out of memory, or when decode is given no string.
 *
 * Neither calls Lua functions or metamethods (raw access only), but a GC
 * step inside one of their lua_pushlstring calls can run a finalizer
 * written in Lua, and that finalizer may call them again: the module's
 * scratch buffer is marked busy during a call, and a nested call works in
 * a scratch of its own (see scratch_enter).
 */
#include "serde/json.h"

#include <lauxlib.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH       1000
/* Members an object or array keeps on the Lua stack before its table is
 * made (then at this size, growing as usual after). */
#define CHUNK           32
/* Past this many stack slots, tables are made at once: LuaJIT allows a C
 * function about 8000, and MAX_DEPTH levels need 3 each. */
#define PENDING_BUDGET  2000
/* A scratch buffer larger than this is freed after the call. */
#define SCRATCH_KEEP    (1024 * 1024)
/* Strings are escaped this many input bytes at a time, so that the room
 * asked for (6 bytes per byte at worst) stays small. */
#define ESCAPE_PIECE    (64 * 1024)

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "json.c reads 8 bytes at a time as a little-endian word"
#endif

/* Eight bytes at a time (little-endian): the high bit of each byte of x
 * that is zero, or below n (n <= 128). A borrow can mark bytes above the
 * first match, never below it, so the lowest bit set is exact. */
#define ONES            0x0101010101010101ULL
#define HIGHS           0x8080808080808080ULL

static inline uint64_t
any_zero(uint64_t x)
{
    return (x - ONES) & ~x & HIGHS;
}

static inline uint64_t
any_below(uint64_t x, unsigned n)
{
    return (x - ONES * n) & ~x & HIGHS;
}

static inline uint64_t
load8(const char *p)
{
    uint64_t  x;

    memcpy(&x, p, 8);
    return x;
}

/* The module's scratch buffer and C locale, a full userdata shared by
 * decode and encode as their upvalue; __gc frees both. A nested call's
 * scratch (scratch_enter) borrows the locale. */
typedef struct scratch_s {
    char     *p;
    size_t    cap;
    locale_t  c_locale;                 /* for strtod_l and snprintf */
    int       owns_locale;
    int       busy;                     /* a call is using p */
} scratch_t;

static int
scratch_reserve(scratch_t *sc, size_t need)
{
    size_t  cap;
    char   *p;

    if (need <= sc->cap) {
        return 0;
    }
    cap = sc->cap ? sc->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    p = realloc(sc->p, cap);
    if (p == NULL) {
        return -1;
    }
    sc->p = p;
    sc->cap = cap;
    return 0;
}

static void
scratch_trim(scratch_t *sc)
{
    if (sc->cap > SCRATCH_KEEP) {
        free(sc->p);
        sc->p = NULL;
        sc->cap = 0;
    }
}

static int
scratch_gc(lua_State *L)
{
    scratch_t  *sc = lua_touserdata(L, 1);

    free(sc->p);
    sc->p = NULL;
    sc->cap = 0;
    if (sc->owns_locale && sc->c_locale != (locale_t) 0) {
        freelocale(sc->c_locale);
    }
    sc->c_locale = (locale_t) 0;
    return 0;
}

/* Returns the scratch for one call: the module's, marked busy, unless a
 * call is already using it (re-entered from a finalizer, see the top of
 * the file). Then a new scratch is pushed on the stack, where it stays
 * until the call returns, and the GC frees its buffer. A call that Lua's
 * out-of-memory error cuts short leaves the module's scratch busy: later
 * calls are still right, only each pays for a scratch of its own. */
static scratch_t *
scratch_enter(lua_State *L)
{
    scratch_t  *sc = lua_touserdata(L, lua_upvalueindex(1));
    scratch_t  *t;

    if (!sc->busy) {
        sc->busy = 1;
        return sc;
    }
    t = lua_newuserdata(L, sizeof(*t));
    memset(t, 0, sizeof(*t));
    t->c_locale = sc->c_locale;
    t->busy = 1;
    lua_getmetatable(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    return t;
}

/* Ends a call of scratch_enter's; before the nested scratch, if any, is
 * popped. */
static void
scratch_leave(lua_State *L, scratch_t *sc)
{
    scratch_trim(sc);
    if (sc == lua_touserdata(L, lua_upvalueindex(1))) {
        sc->busy = 0;
    }
}

/* decode ----------------------------------------------------------------- */

typedef struct dec_s {
    lua_State   *L;
    scratch_t   *sc;
    const char  *s;                     /* the whole input */
    const char  *p;                     /* the next byte */
    const char  *end;
    const char  *err;                   /* static text */
    const char  *err_at;
    int          depth;
} dec_t;

static int dec_value(dec_t *d);

static int
dec_fail(dec_t *d, const char *at, const char *what)
{
    d->err = what;
    d->err_at = at;
    return -1;
}

static inline void
dec_skip_ws(dec_t *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\n' || *d->p == '\r'
                             || *d->p == '\t')) {
        d->p++;
    }
}

static inline int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
hex4(const char *p, unsigned *out)
{
    unsigned  v = 0;
    int       i;

    for (i = 0; i < 4; i++) {
        char  c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (unsigned) (c - '0');
        } else if (c >= 'a' && c <= 'f') {
            v |= (unsigned) (c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            v |= (unsigned) (c - 'A' + 10);
        } else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

static size_t
utf8_put(char *b, unsigned cp)
{
    if (cp < 0x80) {
        b[0] = (char) cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (char) (0xc0 | (cp >> 6));
        b[1] = (char) (0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (char) (0xe0 | (cp >> 12));
        b[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char) (0x80 | (cp & 0x3f));
        return 3;
    }
    b[0] = (char) (0xf0 | (cp >> 18));
    b[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char) (0x80 | (cp & 0x3f));
    return 4;
}

/* A string with escapes, from `q` (the first backslash) on; the bytes
 * from `start` to `q` have no escapes. The result never is longer than
 * the input, so the scratch buffer is sized once. */
static int
dec_string_escaped(dec_t *d, const char *start, const char *q)
{
    const char  *p = q;
    char        *b;
    size_t       n = (size_t) (q - start);

    if (scratch_reserve(d->sc, (size_t) (d->end - start)) != 0) {
        return dec_fail(d, start - 1, "out of memory");
    }
    b = d->sc->p;
    memcpy(b, start, n);
    while (p < d->end) {
        char      c = *p;
        unsigned  cp, lo;

        if (c == '"') {
            lua_pushlstring(d->L, b, n);
            d->p = p + 1;
            return 0;
        }
        if (c != '\\') {
            b[n++] = c;
            p++;
            continue;
        }
        if (p + 1 >= d->end) {
            break;
        }
        switch (p[1]) {
        case '"':  b[n++] = '"';  break;
        case '\\': b[n++] = '\\'; break;
        case '/':  b[n++] = '/';  break;
        case 'b':  b[n++] = '\b'; break;
        case 'f':  b[n++] = '\f'; break;
        case 'n':  b[n++] = '\n'; break;
        case 'r':  b[n++] = '\r'; break;
        case 't':  b[n++] = '\t'; break;
        case 'u':
            if (d->end - p < 6 || hex4(p + 2, &cp) != 0) {
                return dec_fail(d, p, "bad \\u escape (4 hex digits "
                                      "expected)");
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                return dec_fail(d, p, "bad \\u escape (a low surrogate "
                                      "without a high one)");
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (d->end - p < 12 || p[6] != '\\' || p[7] != 'u'
                    || hex4(p + 8, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                    return dec_fail(d, p, "bad \\u escape (a high surrogate "
                                          "without a low one)");
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
            n += utf8_put(b + n, cp);
            p += 6;
            continue;
        default:
            return dec_fail(d, p, "bad escape (\\\" \\\\ \\/ \\b \\f \\n \\r "
                                  "\\t or \\u expected)");
        }
        p += 2;
    }
    return dec_fail(d, start - 1, "unterminated string");
}

static int
dec_string(dec_t *d)
{
    const char  *start = d->p + 1;
    const char  *q = start;

    while (q < d->end) {
        if (d->end - q >= 8) {
            uint64_t  x = load8(q);
            uint64_t  m = any_zero(x ^ (ONES * '"'))
                          | any_zero(x ^ (ONES * '\\'));

            if (m == 0) {
                q += 8;
                continue;
            }
            q += __builtin_ctzll(m) >> 3;   /* the first '"' or '\\' */
        }
        if (*q == '"') {
            lua_pushlstring(d->L, start, (size_t) (q - start));
            d->p = q + 1;
            return 0;
        }
        if (*q == '\\') {
            return dec_string_escaped(d, start, q);
        }
        q++;
    }
    return dec_fail(d, d->p, "unterminated string");
}

static int
dec_number(dec_t *d)
{
    const char  *start = d->p;
    const char  *p = start;
    uint64_t     m = 0;
    int          digits = 0, integral = 1, neg = 0;
    double       v;

    if (*p == '-') {
        neg = 1;
        p++;
    } else if (*p == '+') {
        p++;
    }
    while (p < d->end && is_digit(*p)) {
        if (digits < 18) {
            m = m * 10 + (uint64_t) (*p - '0');
        }
        digits++;
        p++;
    }
    if (p < d->end && *p == '.') {
        integral = 0;
        p++;
        while (p < d->end && is_digit(*p)) {
            digits++;
            p++;
        }
    }
    if (digits == 0) {
        return dec_fail(d, start, "bad number");
    }
    if (p < d->end && (*p == 'e' || *p == 'E')) {
        integral = 0;
        p++;
        if (p < d->end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p == d->end || !is_digit(*p)) {
            return dec_fail(d, start, "bad number (digits expected in the "
                                      "exponent)");
        }
        while (p < d->end && is_digit(*p)) {
            p++;
        }
    }
    if (integral && digits <= 15) {
        v = (double) m;                 /* exact: below 2^53 */
        if (neg) {
            v = -v;                     /* "-0" gives -0.0, like strtod */
        }
    } else {
        char    small[64];
        char   *buf = small;
        size_t  n = (size_t) (p - start);

        if (n >= sizeof(small)) {
            if (scratch_reserve(d->sc, n + 1) != 0) {
                return dec_fail(d, start, "out of memory");
            }
            buf = d->sc->p;
        }
        memcpy(buf, start, n);
        buf[n] = '\0';
        v = strtod_l(buf, NULL, d->sc->c_locale);
    }
    lua_pushnumber(d->L, v);
    d->p = p;
    return 0;
}

static int
dec_literal(dec_t *d, const char *word, size_t n)
{
    if ((size_t) (d->end - d->p) < n || memcmp(d->p, word, n) != 0) {
        return dec_fail(d, d->p, "expected a value");
    }
    d->p += n;
    return 0;
}

/* Replaces the n key/value pairs above `base` by one table holding them
 * (n >= 1: with none, lua_replace would pop the new table itself). */
static void
dec_make_object(lua_State *L, int base, int n, int size)
{
    int  i;

    lua_createtable(L, 0, size);
    for (i = 0; i < n; i++) {
        lua_pushvalue(L, base + 1 + 2 * i);
        lua_pushvalue(L, base + 2 + 2 * i);
        lua_rawset(L, -3);
    }
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

/* Replaces the n values above `base` by one array table holding them
 * (n >= 1). */
static void
dec_make_array(lua_State *L, int base, int n, int size)
{
    int  i;

    lua_createtable(L, size, 0);
    for (i = 0; i < n; i++) {
        lua_pushvalue(L, base + 1 + i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
}

static int
dec_enter(dec_t *d, int *made)
{
    lua_State  *L = d->L;

    if (++d->depth > MAX_DEPTH) {
        return dec_fail(d, d->p, "nesting deeper than 1000");
    }
    d->p++;                             /* '{' or '[' */
    *made = lua_gettop(L) > PENDING_BUDGET;
    if (!lua_checkstack(L, *made ? 4 : 2 * CHUNK + 4)) {
        return dec_fail(d, d->p, "nesting too deep");
    }
    if (*made) {
        lua_newtable(L);
    }
    return 0;
}

static int
dec_object(dec_t *d)
{
    lua_State  *L = d->L;
    int         base = lua_gettop(L), n = 0, made;

    if (dec_enter(d, &made) != 0) {
        return -1;
    }
    dec_skip_ws(d);
    if (d->p < d->end && *d->p == '}') {
        d->p++;
    } else {
        for (;;) {
            dec_skip_ws(d);
            if (d->p == d->end || *d->p != '"') {
                return dec_fail(d, d->p, "expected a string key");
            }
            if (dec_string(d) != 0) {
                return -1;
            }
            dec_skip_ws(d);
            if (d->p == d->end || *d->p != ':') {
                return dec_fail(d, d->p, "expected ':'");
            }
            d->p++;
            if (dec_value(d) != 0) {
                return -1;
            }
            n++;
            if (made) {
                lua_rawset(L, base + 1);
            } else if (n == CHUNK) {
                dec_make_object(L, base, n, n);
                made = 1;
            }
            dec_skip_ws(d);
            if (d->p < d->end && *d->p == ',') {
                d->p++;
                continue;
            }
            if (d->p < d->end && *d->p == '}') {
                d->p++;
                break;
            }
            return dec_fail(d, d->p, "expected ',' or '}'");
        }
    }
    if (!made) {
        if (n == 0) {
            lua_createtable(L, 0, 0);
        } else {
            dec_make_object(L, base, n, n);
        }
    }
    d->depth--;
    return 0;
}

static int
dec_array(dec_t *d)
{
    lua_State  *L = d->L;
    int         base = lua_gettop(L), n = 0, made;

    if (dec_enter(d, &made) != 0) {
        return -1;
    }
    dec_skip_ws(d);
    if (d->p < d->end && *d->p == ']') {
        d->p++;
    } else {
        for (;;) {
            if (dec_value(d) != 0) {
                return -1;
            }
            n++;
            if (made) {
                lua_rawseti(L, base + 1, n);
            } else if (n == CHUNK) {
                dec_make_array(L, base, n, 2 * n);
                made = 1;
            }
            dec_skip_ws(d);
            if (d->p < d->end && *d->p == ',') {
                d->p++;
                continue;
            }
            if (d->p < d->end && *d->p == ']') {
                d->p++;
                break;
            }
            return dec_fail(d, d->p, "expected ',' or ']'");
        }
    }
    if (!made) {
        if (n == 0) {
            lua_createtable(L, 0, 0);
        } else {
            dec_make_array(L, base, n, n);
        }
    }
    d->depth--;
    return 0;
}

static int
dec_value(dec_t *d)
{
    dec_skip_ws(d);
    if (d->p == d->end) {
        return dec_fail(d, d->p, "unexpected end of input (a value "
                                 "expected)");
    }
    switch (*d->p) {
    case '{':
        return dec_object(d);
    case '[':
        return dec_array(d);
    case '"':
        return dec_string(d);
    case 't':
        if (dec_literal(d, "true", 4) != 0) {
            return -1;
        }
        lua_pushboolean(d->L, 1);
        return 0;
    case 'f':
        if (dec_literal(d, "false", 5) != 0) {
            return -1;
        }
        lua_pushboolean(d->L, 0);
        return 0;
    case 'n':
        if (dec_literal(d, "null", 4) != 0) {
            return -1;
        }
        lua_pushlightuserdata(d->L, NULL);
        return 0;
    case '-': case '+': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return dec_number(d);
    default:
        return dec_fail(d, d->p, "expected a value");
    }
}

/* decode(s) -> value | nil, "what at character N", N */
static int
l_decode(lua_State *L)
{
    size_t      len;
    const char *s = luaL_checklstring(L, 1, &len);
    scratch_t  *sc;
    dec_t       d;

    lua_settop(L, 1);
    sc = scratch_enter(L);
    d.L = L;
    d.sc = sc;
    d.s = s;
    d.p = s;
    d.end = s + len;
    d.err = NULL;
    d.err_at = s;
    d.depth = 0;
    if (dec_value(&d) == 0) {
        dec_skip_ws(&d);
        if (d.p == d.end) {
            scratch_leave(L, sc);
            return 1;
        }
        dec_fail(&d, d.p, "expected the end of the input");
    }
    scratch_leave(L, sc);
    lua_settop(L, 1);
    lua_pushnil(L);
    lua_pushfstring(L, "%s at character %d", d.err,
                    (int) (d.err_at - s) + 1);
    lua_pushinteger(L, (lua_Integer) (d.err_at - s) + 1);
    return 3;
}

/* encode ----------------------------------------------------------------- */

typedef struct enc_s {
    lua_State   *L;
    scratch_t   *sc;
    size_t       len;                   /* bytes written into sc->p */
    const char  *err;                   /* static text */
    int          depth;
} enc_t;

static int
enc_fail(enc_t *e, const char *what)
{
    e->err = what;
    return -1;
}

/* Makes room for n more bytes and returns where they go, or NULL. */
static inline char *
enc_room(enc_t *e, size_t n)
{
    if (e->len + n > e->sc->cap && scratch_reserve(e->sc, e->len + n) != 0) {
        e->err = "out of memory";
        return NULL;
    }
    return e->sc->p + e->len;
}

static inline int
enc_char(enc_t *e, char c)
{
    char  *b = enc_room(e, 1);

    if (b == NULL) {
        return -1;
    }
    *b = c;
    e->len++;
    return 0;
}

static int
enc_raw(enc_t *e, const char *s, size_t n)
{
    char  *b = enc_room(e, n);

    if (b == NULL) {
        return -1;
    }
    memcpy(b, s, n);
    e->len += n;
    return 0;
}

/* 0: as is; otherwise the letter after the backslash ('u': \u00XX). */
static const char escapes[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    'u', 'u', 0, 0, '"', ['\\'] = '\\',
};

/* Writes n bytes of a string, escaped (no quotes). */
static int
enc_string_piece(enc_t *e, const char *s, size_t n)
{
    static const char  hex[] = "0123456789abcdef";
    char              *b = enc_room(e, n * 6);
    char              *start = b;
    size_t             i, run = 0;

    if (b == NULL) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        unsigned char  c;
        char           x;

        while (n - i >= 8) {
            uint64_t  w = load8(s + i);
            uint64_t  m = any_below(w, 0x20) | any_zero(w ^ (ONES * '"'))
                          | any_zero(w ^ (ONES * '\\'));

            if (m != 0) {
                i += __builtin_ctzll(m) >> 3;   /* the first to escape */
                break;
            }
            i += 8;
        }
        if (i == n) {
            break;
        }
        c = (unsigned char) s[i];
        x = escapes[c];
        if (x == 0) {
            continue;
        }
        memcpy(b, s + run, i - run);
        b += i - run;
        run = i + 1;
        *b++ = '\\';
        *b++ = x;
        if (x == 'u') {
            *b++ = '0';
            *b++ = '0';
            *b++ = hex[c >> 4];
            *b++ = hex[c & 15];
        }
    }
    memcpy(b, s + run, n - run);
    b += n - run;
    e->len += (size_t) (b - start);
    return 0;
}

static int
enc_string(enc_t *e, const char *s, size_t n)
{
    if (enc_char(e, '"') != 0) {
        return -1;
    }
    while (n > ESCAPE_PIECE) {
        if (enc_string_piece(e, s, ESCAPE_PIECE) != 0) {
            return -1;
        }
        s += ESCAPE_PIECE;
        n -= ESCAPE_PIECE;
    }
    if (enc_string_piece(e, s, n) != 0) {
        return -1;
    }
    return enc_char(e, '"');
}

/* Writes the decimal digits of an integer of magnitude below 2^63. */
static size_t
fmt_int(char *b, int64_t v)
{
    char      tmp[24];
    size_t    n = 0, i;
    uint64_t  u = v < 0 ? (uint64_t) 0 - (uint64_t) v : (uint64_t) v;

    do {
        tmp[n++] = (char) ('0' + u % 10);
        u /= 10;
    } while (u != 0);
    i = 0;
    if (v < 0) {
        b[i++] = '-';
    }
    while (n > 0) {
        b[i++] = tmp[--n];
    }
    return i;
}

/* snprintf and strtod in the C locale, whatever the process's is. */
static size_t
fmt_g(scratch_t *sc, char *b, size_t size, int digits, double v)
{
    locale_t  old = uselocale(sc->c_locale);
    int       n = snprintf(b, size, "%.*g", digits, v);

    uselocale(old);
    return (size_t) n;
}

/* %.14g of a non-integer v with 1e-4 <= |v| < 1e13 that is the double
 * nearest to a decimal of at most 14 significant digits and 8 decimals
 * (prices, coordinates, rates): that decimal, written without snprintf.
 * v lies within half an ulp (1.1e-16 relative) of the decimal, far inside
 * the half unit of the 14th digit (5e-15) where %.14g would round
 * elsewhere, and %g writes such magnitudes without an exponent. Returns
 * the length, or 0 when v is not such a number. */
static size_t
fmt_short_decimal(char *b, double v)
{
    static const double  pow10[] = { 1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7,
                                      1e8 };
    double               a = fabs(v);
    int                  k;

    if (!(a >= 1e-4 && a < 1e13)) {
        return 0;
    }
    for (k = 1; k <= 8; k++) {
        double    m = nearbyint(a * pow10[k]);
        uint64_t  r, ip, fp;
        size_t    n = 0;
        int       i;

        if (m >= 1e14) {
            return 0;                   /* more than 14 digits */
        }
        if (m / pow10[k] != a) {
            continue;
        }
        r = (uint64_t) m;
        ip = r / (uint64_t) pow10[k];
        fp = r % (uint64_t) pow10[k];
        while (fp % 10 == 0) {          /* fp > 0: v is no integer */
            fp /= 10;
            k--;
        }
        if (v < 0) {
            b[n++] = '-';
        }
        n += fmt_int(b + n, (int64_t) ip);
        b[n++] = '.';
        for (i = k - 1; i >= 0; i--) {
            b[n + (size_t) i] = (char) ('0' + fp % 10);
            fp /= 10;
        }
        return n + (size_t) k;
    }
    return 0;
}

static int
enc_number(enc_t *e, double v)
{
    char    *b;
    size_t   n;
    double   a = fabs(v);

    if (!isfinite(v)) {
        return enc_fail(e, "NaN and infinities are not JSON");
    }
    b = enc_room(e, 32);
    if (b == NULL) {
        return -1;
    }
    if (a < 1e15 && v == (double) (int64_t) v) {
        if (v == 0 && signbit(v)) {
            memcpy(b, "-0", 2);
            n = 2;
        } else {
            n = fmt_int(b, (int64_t) v);
        }
    } else if (a < 99999999999999.5) {   /* %.14g would round to 1e+14 */
        n = fmt_short_decimal(b, v);
        if (n == 0) {
            n = fmt_g(e->sc, b, 32, 14, v);
        }
    } else if (v == floor(v) && a < 9223372036854775808.0) {
        n = fmt_int(b, (int64_t) v);
    } else {
        int  digits;

        for (digits = 15; digits <= 17; digits++) {
            n = fmt_g(e->sc, b, 32, digits, v);
            if (digits == 17 || strtod_l(b, NULL, e->sc->c_locale) == v) {
                break;
            }
        }
    }
    e->len += n;
    return 0;
}

static int enc_value(enc_t *e, int idx);

/* An object's key: a string, or a number written as a string. */
static int
enc_key(enc_t *e, int idx)
{
    lua_State  *L = e->L;
    size_t      n;
    const char *s;

    if (lua_type(L, idx) == LUA_TSTRING) {
        s = lua_tolstring(L, idx, &n);
        return enc_string(e, s, n);
    }
    if (lua_type(L, idx) != LUA_TNUMBER) {
        return enc_fail(e, "a table key that is neither a string nor a "
                           "number is not JSON");
    }
    if (enc_raw(e, "\"", 1) != 0 || enc_number(e, lua_tonumber(L, idx)) != 0) {
        return -1;
    }
    return enc_raw(e, "\"", 1);
}

static int
enc_table(enc_t *e, int idx)
{
    lua_State  *L = e->L;
    double      max = 0;
    int         count = 0, array = 1, first = 1, i, top;

    if (++e->depth > MAX_DEPTH) {
        return enc_fail(e, "nesting deeper than 1000 (a cycle?)");
    }
    if (!lua_checkstack(L, 4)) {
        return enc_fail(e, "nesting too deep");
    }
    top = lua_gettop(L);
    /* An array if every key is a positive integer. */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TNUMBER) {
            double  k = lua_tonumber(L, -1);

            if (k >= 1 && k == floor(k)) {
                if (k > max) {
                    max = k;
                }
                count++;
                continue;
            }
        }
        array = 0;
        break;
    }
    lua_settop(L, top);
    if (count == 0) {
        array = 0;                      /* {} */
    } else if (array && max > 10 && max > 2.0 * count) {
        array = 0;                      /* too sparse: string keys */
    }
    if (array) {
        if (enc_char(e, '[') != 0) {
            return -1;
        }
        for (i = 1; i <= (int) max; i++) {
            if (i > 1 && enc_char(e, ',') != 0) {
                return -1;
            }
            lua_rawgeti(L, idx, i);
            if (enc_value(e, top + 1) != 0) {
                return -1;
            }
            lua_settop(L, top);
        }
        e->depth--;
        return enc_char(e, ']');
    }
    if (enc_char(e, '{') != 0) {
        return -1;
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        if (!first && enc_char(e, ',') != 0) {
            return -1;
        }
        first = 0;
        if (enc_key(e, top + 1) != 0 || enc_char(e, ':') != 0
            || enc_value(e, top + 2) != 0) {
            return -1;
        }
        lua_settop(L, top + 1);
    }
    e->depth--;
    return enc_char(e, '}');
}

static int
enc_value(enc_t *e, int idx)
{
    lua_State  *L = e->L;
    size_t      n;
    const char *s;

    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &n);
        return enc_string(e, s, n);
    case LUA_TNUMBER:
        return enc_number(e, lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? enc_raw(e, "true", 4)
                                     : enc_raw(e, "false", 5);
    case LUA_TTABLE:
        return enc_table(e, idx);
    case LUA_TNIL:
        return enc_raw(e, "null", 4);   /* a hole in an array */
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) {
            return enc_raw(e, "null", 4);
        }
        return enc_fail(e, "a lightuserdata other than null is not JSON");
    case LUA_TFUNCTION:
        return enc_fail(e, "a function is not JSON");
    case LUA_TUSERDATA:
        return enc_fail(e, "a userdata is not JSON");
    case LUA_TTHREAD:
        return enc_fail(e, "a coroutine is not JSON");
    default:
        return enc_fail(e, "a cdata is not JSON");
    }
}

/* encode(v) -> string | nil, "what" */
static int
l_encode(lua_State *L)
{
    enc_t  e;

    luaL_checkany(L, 1);
    lua_settop(L, 1);
    e.L = L;
    e.sc = scratch_enter(L);
    e.len = 0;
    e.err = NULL;
    e.depth = 0;
    if (enc_value(&e, 1) != 0) {
        scratch_leave(L, e.sc);
        lua_settop(L, 1);
        lua_pushnil(L);
        lua_pushstring(L, e.err);
        return 2;
    }
    lua_pushlstring(L, e.sc->p, e.len);
    scratch_leave(L, e.sc);
    return 1;
}

int
luaopen_tide_json_codec(lua_State *L)
{
    scratch_t  *sc;

    lua_createtable(L, 0, 3);
    sc = lua_newuserdata(L, sizeof(*sc));
    memset(sc, 0, sizeof(*sc));
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    sc->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t) 0);
    sc->owns_locale = 1;
    if (sc->c_locale == (locale_t) 0) {
        return luaL_error(L, "tide.json.codec: cannot make the C locale");
    }
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, l_decode, 1);
    lua_setfield(L, -3, "decode");
    lua_pushcclosure(L, l_encode, 1);
    lua_setfield(L, -2, "encode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
