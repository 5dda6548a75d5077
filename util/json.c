// A strict JSON reader for untrusted text (safetensors headers, config.json,
// vocabularies, graph files): bounded depth and size, errors with line and
// column, all values in one arena freed together.
#include <errno.h>
#include <math.h>
#include <string.h>

#include "util_impl.h"

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    _Alignas(16) char data[];
} arena_chunk;

struct nsci_json_doc {
    arena_chunk *chunks;
    nsci_json *root;
};

typedef struct parser {
    const char *text;
    size_t len, pos;
    int line;
    size_t line_start;
    int depth, max_depth;
    const char *what;
    nsci_json_doc *doc;
    nsci_json_error *error; // the caller's, or NULL
    bool failed;
} parser;

static void *arena_alloc(nsci_json_doc *doc, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    arena_chunk *c = doc->chunks;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = NSCI_MAX(bytes, (size_t)16384);
        c = nsci_malloc(sizeof *c + cap);
        if (!c) {
            return NULL;
        }
        c->used = 0;
        c->cap = cap;
        c->next = doc->chunks;
        doc->chunks = c;
    }
    void *p = c->data + c->used;
    c->used += bytes;
    return p;
}

static void *fail_at(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *fail_at(parser *p, const char *fmt, ...) {
    if (p->failed) {
        return NULL;
    }
    p->failed = true;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int column = (int)(p->pos - p->line_start) + 1;
    nsci_fail(NSC_ERR_FORMAT, "%s: line %d, column %d: %s (byte %zu)", p->what, p->line, column,
              msg, p->pos);
    if (p->error) {
        p->error->line = p->line;
        p->error->column = column;
        p->error->byte = p->pos;
        snprintf(p->error->message, sizeof p->error->message, "%s", msg);
    }
    return NULL;
}

// An allocation failed: the allocator has recorded NSC_ERR_OOM; keep its
// message (a stale OOM record from an earlier call must not mask syntax errors,
// so this is told apart by the caller, not by the error record).
static void *fail_oom(parser *p) {
    p->failed = true;
    return NULL;
}

static void skip_space(parser *p) {
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c == '\n') {
            p->line++;
            p->line_start = p->pos + 1;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            return;
        }
        p->pos++;
    }
}

static nsci_json *new_value(parser *p, nsci_json_type type) {
    nsci_json *v = arena_alloc(p->doc, sizeof *v);
    if (!v) {
        return fail_oom(p);
    }
    memset(v, 0, sizeof *v);
    v->type = type;
    v->line = p->line;
    v->column = (int)(p->pos - p->line_start) + 1;
    return v;
}

static bool match_word(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos >= n && memcmp(p->text + p->pos, word, n) == 0) {
        p->pos += n;
        return true;
    }
    return false;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

static bool read_hex4(parser *p, unsigned *out) {
    if (p->len - p->pos < 4) {
        return false;
    }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(p->text[p->pos + i]);
        if (h < 0) {
            return false;
        }
        v = v * 16 + (unsigned)h;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *out, unsigned cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Decodes the escape at p->pos (on the backslash) onto out + *n.
static bool decode_escape(parser *p, char *out, size_t *n) {
    p->pos++;
    char e = p->text[p->pos++];
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e != '\0' && simple) {
        static const char decoded[] = "\"\\/\b\f\n\r\t";
        out[(*n)++] = decoded[simple - "\"\\/bfnrt"];
        return true;
    }
    if (e != 'u') {
        p->pos--;
        fail_at(p, "bad escape '\\%c'", e);
        return false;
    }
    unsigned cp, low;
    if (!read_hex4(p, &cp)) {
        fail_at(p, "bad \\u escape");
        return false;
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (!match_word(p, "\\u") || !read_hex4(p, &low) || low < 0xDC00 || low > 0xDFFF) {
            fail_at(p, "unpaired surrogate in \\u escape");
            return false;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        fail_at(p, "unpaired surrogate in \\u escape");
        return false;
    }
    *n += put_utf8(out + *n, cp);
    return true;
}

int nsci_utf8_next(const char *s, size_t len, uint32_t *cp, const char **why) {
    const unsigned char *p = (const unsigned char *)s;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if (p[0] < 0xC0 || p[0] > 0xF4) {
        *why = p[0] < 0xC0   ? "a continuation byte with no lead byte"
               : p[0] < 0xF8 ? "a code point above U+10FFFF"
                             : "a byte UTF-8 never uses";
        return 0;
    }
    int n = p[0] < 0xE0 ? 2 : p[0] < 0xF0 ? 3 : 4;
    uint32_t c = p[0] & (0x7Fu >> n);
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= len || (p[i] & 0xC0) != 0x80) {
            *why = "a sequence cut short";
            return 0;
        }
        c = c << 6 | (p[i] & 0x3Fu);
    }
    static const uint32_t min_for_length[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    *why = c < min_for_length[n]        ? "an overlong form"
           : c >= 0xD800 && c <= 0xDFFF ? "a UTF-16 surrogate"
           : c > 0x10FFFF               ? "a code point above U+10FFFF"
                                        : NULL;
    *cp = c;
    return *why ? 0 : n;
}

// Parses a string literal at p->pos (on the opening quote) into the arena.
static const char *parse_string(parser *p, size_t *out_len) {
    p->pos++; // opening quote
    size_t start = p->pos;
    size_t end = start;
    while (end < p->len && p->text[end] != '"') {
        end += (p->text[end] == '\\') ? 2 : 1;
    }
    if (end >= p->len) {
        p->pos = start - 1; // report where the string starts
        return fail_at(p, "unterminated string");
    }
    // Decoded text is never longer than the escaped text.
    char *out = arena_alloc(p->doc, end - start + 1);
    if (!out) {
        return fail_oom(p);
    }
    size_t n = 0;
    while (p->text[p->pos] != '"') {
        unsigned char c = (unsigned char)p->text[p->pos];
        if (c < 0x20) {
            return fail_at(p, "control character 0x%02x in string", c);
        }
        if (c >= 0x80) {
            // The scan above stopped at the closing quote, which no
            // continuation byte matches: a cut sequence fails before it.
            uint32_t cp;
            const char *why;
            int k = nsci_utf8_next(p->text + p->pos, end - p->pos, &cp, &why);
            if (k == 0) {
                return fail_at(p, "invalid UTF-8 in a string: %s (lead byte 0x%02x)", why, c);
            }
            memcpy(out + n, p->text + p->pos, (size_t)k);
            n += (size_t)k;
            p->pos += (size_t)k;
            continue;
        }
        if (c != '\\') {
            out[n++] = (char)c;
            p->pos++;
            continue;
        }
        if (!decode_escape(p, out, &n)) {
            return NULL;
        }
    }
    p->pos++; // closing quote
    out[n] = '\0';
    *out_len = n;
    return out;
}

static size_t skip_digits(parser *p) {
    size_t start = p->pos;
    while (p->pos < p->len && p->text[p->pos] >= '0' && p->text[p->pos] <= '9') {
        p->pos++;
    }
    return p->pos - start;
}

// Moves past a JSON number's grammar; integral tells whether it had neither
// fraction nor exponent.
static bool scan_number(parser *p, bool *integral) {
    const char *t = p->text;
    if (p->pos < p->len && t[p->pos] == '-') {
        p->pos++;
    }
    if (p->pos < p->len && t[p->pos] == '0') {
        p->pos++; // no leading zeros: "01" ends after the 0
    } else if (skip_digits(p) == 0) {
        fail_at(p, "expected a value");
        return false;
    }
    *integral = true;
    if (p->pos < p->len && t[p->pos] == '.') {
        *integral = false;
        p->pos++;
        if (skip_digits(p) == 0) {
            fail_at(p, "expected digits after '.'");
            return false;
        }
    }
    if (p->pos < p->len && (t[p->pos] == 'e' || t[p->pos] == 'E')) {
        *integral = false;
        p->pos++;
        if (p->pos < p->len && (t[p->pos] == '+' || t[p->pos] == '-')) {
            p->pos++;
        }
        if (skip_digits(p) == 0) {
            fail_at(p, "expected digits in exponent");
            return false;
        }
    }
    return true;
}

static nsci_json *parse_number(parser *p) {
    nsci_json *v = new_value(p, NSCI_JSON_NUMBER);
    if (!v) {
        return NULL;
    }
    size_t start = p->pos;
    const char *t = p->text;
    bool integral;
    if (!scan_number(p, &integral)) {
        return NULL;
    }
    char copy[400];
    size_t n = p->pos - start;
    if (n >= sizeof copy) {
        return fail_at(p, "number of %zu characters is too long", n);
    }
    memcpy(copy, t + start, n);
    copy[n] = '\0';
    v->number = nsci_strtod(copy, NULL);
    if (integral) {
        errno = 0;
        long long i = strtoll(copy, NULL, 10);
        if (errno == 0) {
            v->is_int = true;
            v->integer = i;
        }
    }
    return v;
}

static nsci_json *parse_value(parser *p);

// Growable lists of the items (and keys) of one container while it is parsed.
typedef struct members {
    nsci_json **items;
    const char **keys; // objects only
    int64_t n, cap;
} members;

static bool members_grow(parser *p, members *m, bool is_object) {
    if (m->n < m->cap) {
        return true;
    }
    int64_t cap = m->cap ? m->cap * 2 : 8;
    nsci_json **items = nsci_realloc(m->items, (size_t)cap * sizeof *items);
    if (!items) {
        fail_oom(p);
        return false;
    }
    m->items = items;
    if (is_object) {
        const char **keys = nsci_realloc(m->keys, (size_t)cap * sizeof *keys);
        if (!keys) {
            fail_oom(p);
            return false;
        }
        m->keys = keys;
    }
    m->cap = cap;
    return true;
}

// Parses `"key" :` into the next key slot. Keys are C strings, so a key
// holding an escaped NUL is refused rather than silently cut short.
static bool parse_key(parser *p, members *m) {
    if (p->pos >= p->len || p->text[p->pos] != '"') {
        fail_at(p, "expected a string key");
        return false;
    }
    size_t key_pos = p->pos, key_len;
    const char *key = parse_string(p, &key_len);
    if (!key) {
        return false;
    }
    if (strlen(key) != key_len) {
        p->pos = key_pos;
        fail_at(p, "object key contains \\u0000");
        return false;
    }
    m->keys[m->n] = key;
    skip_space(p);
    if (p->pos >= p->len || p->text[p->pos] != ':') {
        fail_at(p, "expected ':' after key \"%s\"", key);
        return false;
    }
    p->pos++;
    return true;
}

// Copies the collected items (and keys) into the arena.
static bool members_publish(parser *p, nsci_json *v, const members *m, bool is_object) {
    v->n_items = m->n;
    if (m->n == 0) {
        return true;
    }
    v->items = arena_alloc(p->doc, (size_t)m->n * sizeof *m->items);
    v->keys = is_object ? arena_alloc(p->doc, (size_t)m->n * sizeof *m->keys) : NULL;
    if (!v->items || (is_object && !v->keys)) {
        fail_oom(p);
        return false;
    }
    memcpy(v->items, m->items, (size_t)m->n * sizeof *m->items);
    if (is_object) {
        memcpy(v->keys, m->keys, (size_t)m->n * sizeof *m->keys);
    }
    return true;
}

// Items of an array or members of an object, collected then copied to the arena.
static nsci_json *parse_container(parser *p, bool is_object) {
    nsci_json *v = new_value(p, is_object ? NSCI_JSON_OBJECT : NSCI_JSON_ARRAY);
    if (!v) {
        return NULL;
    }
    if (++p->depth > p->max_depth) {
        return fail_at(p, "nesting deeper than %d", p->max_depth);
    }
    char close = is_object ? '}' : ']';
    p->pos++;
    members m = { 0 };
    bool ok = true;
    skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == close) {
        p->pos++;
    } else {
        for (;;) {
            skip_space(p);
            ok = members_grow(p, &m, is_object) && (!is_object || parse_key(p, &m)) &&
                 (m.items[m.n] = parse_value(p)) != NULL;
            if (!ok) {
                break;
            }
            m.n++;
            skip_space(p);
            if (p->pos < p->len && p->text[p->pos] == ',') {
                p->pos++;
                continue;
            }
            if (p->pos < p->len && p->text[p->pos] == close) {
                p->pos++;
                break;
            }
            fail_at(p, "expected ',' or '%c'", close);
            ok = false;
            break;
        }
    }
    ok = ok && members_publish(p, v, &m, is_object);
    nsci_free(m.items);
    nsci_free(m.keys);
    p->depth--;
    return ok ? v : NULL;
}

static nsci_json *parse_value(parser *p) {
    skip_space(p);
    if (p->pos >= p->len) {
        return fail_at(p, "unexpected end of input");
    }
    char c = p->text[p->pos];
    if (c == '{' || c == '[') {
        return parse_container(p, c == '{');
    }
    if (c == '"') {
        nsci_json *v = new_value(p, NSCI_JSON_STRING);
        if (v && !(v->string = parse_string(p, &v->string_len))) {
            return NULL;
        }
        return v;
    }
    nsci_json *v = new_value(p, NSCI_JSON_NULL);
    if (!v) {
        return NULL;
    }
    if (match_word(p, "null")) {
        return v;
    }
    if (match_word(p, "true") || match_word(p, "false")) {
        v->type = NSCI_JSON_BOOL;
        v->boolean = p->text[p->pos - 1] == 'e' && p->text[p->pos - 2] == 'u';
        return v;
    }
    // Python's json module writes these for non-finite floats.
    if (match_word(p, "NaN")) {
        v->type = NSCI_JSON_NUMBER;
        v->number = (double)NAN;
        return v;
    }
    if (match_word(p, "Infinity") || match_word(p, "-Infinity")) {
        v->type = NSCI_JSON_NUMBER;
        v->number = c == '-' ? -(double)INFINITY : (double)INFINITY;
        return v;
    }
    return parse_number(p);
}

nsci_json_doc *nsci_json_parse(const char *text, size_t len, const nsci_json_limits *limits,
                               const char *what) {
    nsci_json_limits defaults = { 0, 64, NULL };
    if (!limits) {
        limits = &defaults;
    }
    if (limits->error) {
        memset(limits->error, 0, sizeof *limits->error);
    }
    if (limits->max_bytes && len > limits->max_bytes) {
        return nsci_fail_null(NSC_ERR_FORMAT, "%s: %zu bytes is over the limit of %zu bytes", what,
                              len, limits->max_bytes);
    }
    nsci_json_doc *doc = nsci_calloc(1, sizeof *doc);
    if (!doc) {
        return NULL;
    }
    parser p = { .text = text, .len = len, .line = 1, .what = what, .doc = doc };
    p.error = limits->error;
    p.max_depth = limits->max_depth > 0 ? limits->max_depth : 64;
    doc->root = parse_value(&p);
    if (doc->root) {
        skip_space(&p);
        if (p.pos != p.len) {
            fail_at(&p, "unexpected text after the value");
            doc->root = NULL;
        }
    }
    if (!doc->root) {
        nsci_json_doc_free(doc);
        return NULL;
    }
    return doc;
}

void nsci_json_doc_free(nsci_json_doc *doc) {
    if (!doc) {
        return;
    }
    while (doc->chunks) {
        arena_chunk *next = doc->chunks->next;
        nsci_free(doc->chunks);
        doc->chunks = next;
    }
    nsci_free(doc);
}

const nsci_json *nsci_json_root(const nsci_json_doc *doc) {
    return doc ? doc->root : NULL;
}

const nsci_json *nsci_json_get(const nsci_json *obj, const char *key) {
    if (!obj || obj->type != NSCI_JSON_OBJECT) {
        return NULL;
    }
    for (int64_t i = 0; i < obj->n_items; i++) {
        if (strcmp(obj->keys[i], key) == 0) {
            return obj->items[i];
        }
    }
    return NULL;
}

typedef struct key_at {
    const char *key;
    int64_t index;
} key_at;

static int cmp_key_at(const void *a, const void *b) {
    const key_at *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c != 0 ? c : (x->index > y->index) - (x->index < y->index);
}

nsc_status nsci_json_repeated_key(const nsci_json *obj, int64_t *index) {
    *index = -1;
    if (!obj || obj->type != NSCI_JSON_OBJECT || obj->n_items < 2) {
        return NSC_OK;
    }
    // Sorted, so a file of a million keys costs n log n, not n^2.
    key_at *keys = nsci_malloc((size_t)obj->n_items * sizeof *keys);
    if (!keys) {
        return nsc_last_status();
    }
    for (int64_t i = 0; i < obj->n_items; i++) {
        keys[i] = (key_at){ obj->keys[i], i };
    }
    qsort(keys, (size_t)obj->n_items, sizeof *keys, cmp_key_at);
    for (int64_t i = 1; i < obj->n_items; i++) {
        bool again = strcmp(keys[i - 1].key, keys[i].key) == 0;
        if (again && (*index < 0 || keys[i].index < *index)) {
            *index = keys[i].index;
        }
    }
    nsci_free(keys);
    return NSC_OK;
}
