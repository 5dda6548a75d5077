// Internal services shared by every layer: the allocator, error recording,
// invariant checks and the CPU thread pool. Nothing here is public API.
#ifndef NSC_UTIL_UTIL_IMPL_H
#define NSC_UTIL_UTIL_IMPL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "nsc/base.h"

// --- allocator (util/alloc.c) ---

// All memory goes through these. Blocks are 64-byte aligned. A failed
// allocation returns NULL and records NSC_ERR_OOM with the size asked for.
void *nsci_malloc(size_t bytes);
void *nsci_calloc(size_t count, size_t size);
void *nsci_realloc(void *ptr, size_t bytes);
void nsci_free(void *ptr);
char *nsci_strdup(const char *s);

// Tensor storage data: counted as data bytes as well, and recycled through a
// size-bucketed cache so a steady-state forward does not hit malloc.
void *nsci_data_alloc(size_t bytes);
void nsci_data_free(void *ptr);

// True when the fail-after switch says this allocation must fail.
bool nsci_mem_should_fail(void);

// --- errors (util/error.c) ---

// Records status and a printf-style message, overwriting any earlier one.
// Returns status so callers can write `return nsci_fail(...)`.
nsc_status nsci_fail(nsc_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
nsc_status nsci_failv(nsc_status status, const char *fmt, va_list ap);

// Appends " (<context>)" to the current message, or ", <context>" inside an
// existing parenthesis, so outer layers add where without losing what.
void nsci_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Prefixes the current message with "<prefix>: " (a source position).
void nsci_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Same as nsci_fail but returns NULL, for pointer-returning functions.
void *nsci_fail_null(nsc_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// For a NULL argument, which may be a failed call's result: keeps an error
// already recorded (that call's) and returns its status; records status and
// the message only when none is. The _null form returns NULL.
nsc_status nsci_fail_keep(nsc_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void *nsci_fail_keep_null(nsc_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

// Saves and restores the error record around cleanup code that may fail.
typedef struct nsci_error_saved {
    nsc_status status;
    char message[1024];
} nsci_error_saved;
void nsci_error_save(nsci_error_saved *saved);
void nsci_error_restore(const nsci_error_saved *saved);

// The source position last recorded with nsc_source_mark on this thread
// (NULL / 0 when none).
const char *nsci_source_file(void);
int nsci_source_line(void);

// Formats shape as "[2,3,4]" into buf (always terminated). Returns buf.
char *nsci_shape_str(char *buf, size_t buf_bytes, int ndim, const int64_t *shape);

// Guards the library's own invariants only, never caller input.
#ifdef NSC_DEBUG
#define NSCI_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "nsc: internal invariant failed: %s (%s:%d)\n", #cond, __FILE__,       \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#else
#define NSCI_ASSERT(cond) ((void)0)
#endif

#define NSCI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define NSCI_MAX(a, b) ((a) > (b) ? (a) : (b))
#define NSCI_ARRAY_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))

// --- threads (util/parallel.c) ---

// Runs fn(ctx, begin, end) over [0, n) split into chunks of at least grain
// items across the pool; runs inline when n <= grain, when one thread is
// configured, or when called from inside a worker.
typedef void (*nsci_range_fn)(void *ctx, int64_t begin, int64_t end);
void nsci_parallel_for(int64_t n, int64_t grain, nsci_range_fn fn, void *ctx);

// Sets the pool size (only effective before the first parallel job) and reads it.
void nsci_pool_set_threads(int n);
int nsci_pool_threads(void);

// Checked int64 arithmetic for sizes read from callers and files.
static inline bool nsci_mul_overflows(int64_t a, int64_t b, int64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool nsci_add_overflows(int64_t a, int64_t b, int64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

// --- growable text/byte buffer (util/buf.c) ---

typedef struct nsci_buf {
    char *data; // always NUL-terminated when len > 0
    size_t len;
    size_t cap;
    bool failed; // an allocation failed; further writes are dropped
} nsci_buf;

void nsci_buf_init(nsci_buf *b);
void nsci_buf_free(nsci_buf *b);
void nsci_buf_append(nsci_buf *b, const void *data, size_t bytes);
void nsci_buf_puts(nsci_buf *b, const char *s);
void nsci_buf_printf(nsci_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// Appends s as a JSON string literal with escapes.
void nsci_buf_json_string(nsci_buf *b, const char *s, size_t len);
// Appends a double the shortest way that reads back bit-exactly ("%.17g" trimmed).
void nsci_buf_double(nsci_buf *b, double v);

// --- numbers as text, in the "C" locale whatever setlocale says (util/buf.c) ---

// Enough for any nsci_format_double text ("-2.2250738585072014e-308" and a NUL).
#define NSCI_DOUBLE_TEXT_BYTES 40
// Writes v the shortest way that reads back bit-exactly ("0.5", "1.0", "1e+300",
// "NaN", "Infinity"), truncated to bytes; '.' is the decimal point in any locale.
void nsci_format_double(char *out, size_t bytes, double v);
// strtod with '.' as the decimal point in any locale.
double nsci_strtod(const char *s, char **end);

// --- JSON (util/json.c) ---

typedef enum nsci_json_type {
    NSCI_JSON_NULL,
    NSCI_JSON_BOOL,
    NSCI_JSON_NUMBER,
    NSCI_JSON_STRING,
    NSCI_JSON_ARRAY,
    NSCI_JSON_OBJECT,
} nsci_json_type;

typedef struct nsci_json nsci_json;
struct nsci_json {
    nsci_json_type type;
    bool boolean;
    bool is_int;   // the number was written as an integer that fits int64
    int64_t integer;
    double number;
    const char *string; // decoded, NUL-terminated (may hold embedded NULs)
    size_t string_len;
    int64_t n_items;   // array items or object members
    nsci_json **items; // values
    const char **keys; // object keys (NULL for arrays)
    int line, column;  // where the value starts (1-based)
};

// Where and why a parse failed, for callers that word their own message
// (the safetensors reader gives file offsets). line is 0 when no syntax
// error was found (out of memory, the size limit).
typedef struct nsci_json_error {
    int line, column; // 1-based; columns count bytes
    size_t byte;      // offset into the text
    char message[512];
} nsci_json_error;

typedef struct nsci_json_limits {
    size_t max_bytes;       // 0 = no limit
    int max_depth;          // 0 = 64
    nsci_json_error *error; // when set, filled on failure as well
} nsci_json_limits;

typedef struct nsci_json_doc nsci_json_doc;

// Parses text (not necessarily NUL-terminated). Returns a document owning all
// values, or NULL with NSC_ERR_FORMAT "<what>: line L, column C: ... (byte B)"
// where <what> names the input (a file path, "config.json"). Strings must be
// valid UTF-8 (as Python's json.loads of bytes and Rust's serde require).
nsci_json_doc *nsci_json_parse(const char *text, size_t len, const nsci_json_limits *limits,
                               const char *what);
void nsci_json_doc_free(nsci_json_doc *doc);
const nsci_json *nsci_json_root(const nsci_json_doc *doc);

// The byte length (1-4) of the UTF-8 character at s, len >= 1 bytes long,
// with its code point in *cp; or 0 with *why naming the fault: a stray
// continuation byte, an overlong form, a surrogate, a code point above
// U+10FFFF, a sequence cut short.
int nsci_utf8_next(const char *s, size_t len, uint32_t *cp, const char **why);

// Member of an object by key (NULL if absent or not an object).
const nsci_json *nsci_json_get(const nsci_json *obj, const char *key);
// Sets *index to the first member of obj whose key an earlier member has
// (the reader keeps both), or -1 when none repeats or obj is no object.
// NSC_ERR_OOM when the sort buffer cannot be had.
nsc_status nsci_json_repeated_key(const nsci_json *obj, int64_t *index);

// Reads a whole file into a NUL-terminated buffer from nsci_malloc. Returns
// NULL with NSC_ERR_IO naming the path. Refuses files over max_bytes (0 = no limit).
char *nsci_read_file(const char *path, size_t max_bytes, size_t *len);

#endif
