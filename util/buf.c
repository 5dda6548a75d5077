// A growable byte buffer for building messages, JSON and DOT text; an
// allocation failure is sticky so writers check once at the end.
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "util_impl.h"

void nsci_buf_init(nsci_buf *b) {
    memset(b, 0, sizeof *b);
}

void nsci_buf_free(nsci_buf *b) {
    nsci_free(b->data);
    nsci_buf_init(b);
}

static bool reserve(nsci_buf *b, size_t extra) {
    if (b->failed) {
        return false;
    }
    if (b->len + extra + 1 <= b->cap) {
        return true;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        cap *= 2;
    }
    char *grown = nsci_realloc(b->data, cap);
    if (!grown) {
        b->failed = true;
        return false;
    }
    b->data = grown;
    b->cap = cap;
    return true;
}

void nsci_buf_append(nsci_buf *b, const void *data, size_t bytes) {
    if (!reserve(b, bytes)) {
        return;
    }
    memcpy(b->data + b->len, data, bytes);
    b->len += bytes;
    b->data[b->len] = '\0';
}

void nsci_buf_puts(nsci_buf *b, const char *s) {
    nsci_buf_append(b, s, strlen(s));
}

void nsci_buf_printf(nsci_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list again;
    va_copy(again, ap);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (need >= 0 && reserve(b, (size_t)need)) {
        vsnprintf(b->data + b->len, (size_t)need + 1, fmt, again);
        b->len += (size_t)need;
    }
    va_end(again);
}

void nsci_buf_json_string(nsci_buf *b, const char *s, size_t len) {
    nsci_buf_append(b, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
            case '"':
                nsci_buf_puts(b, "\\\"");
                break;
            case '\\':
                nsci_buf_puts(b, "\\\\");
                break;
            case '\n':
                nsci_buf_puts(b, "\\n");
                break;
            case '\t':
                nsci_buf_puts(b, "\\t");
                break;
            case '\r':
                nsci_buf_puts(b, "\\r");
                break;
            default:
                if (c < 0x20) {
                    nsci_buf_printf(b, "\\u%04x", c);
                } else {
                    nsci_buf_append(b, &s[i], 1);
                }
        }
    }
    nsci_buf_append(b, "\"", 1);
}

// Numbers in files are written and read in the "C" locale whatever the host
// program set with setlocale: a locale with ',' as decimal point would write
// "0,5" (not JSON, and refused by a reader in the "C" locale) and read "1.5" as 1.
static locale_t g_c_locale; // created once (pthread_once), read-only afterwards
static pthread_once_t g_c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void) {
    g_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

double nsci_strtod(const char *s, char **end) {
    pthread_once(&g_c_locale_once, make_c_locale);
    return g_c_locale ? strtod_l(s, end, g_c_locale) : strtod(s, end);
}

void nsci_format_double(char *out, size_t bytes, double v) {
    if (isnan(v) || isinf(v)) {
        snprintf(out, bytes, "%s", isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
        return;
    }
    pthread_once(&g_c_locale_once, make_c_locale);
    locale_t old = g_c_locale ? uselocale(g_c_locale) : (locale_t)0;
    char text[40];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, v);
        if (strtod(text, NULL) == v) {
            break;
        }
    }
    if (old) {
        uselocale(old);
    }
    // Keep integral doubles recognisable as floating point in JSON output.
    snprintf(out, bytes, "%s%s", text, strpbrk(text, ".eE") ? "" : ".0");
}

void nsci_buf_double(nsci_buf *b, double v) {
    char text[NSCI_DOUBLE_TEXT_BYTES];
    nsci_format_double(text, sizeof text, v);
    nsci_buf_puts(b, text);
}

char *nsci_read_file(const char *path, size_t max_bytes, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return nsci_fail_null(NSC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    char *data = NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        nsci_fail(NSC_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        goto fail;
    }
    long size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        nsci_fail(NSC_ERR_IO, "%s: cannot read its size", path);
        goto fail;
    }
    if (max_bytes && (size_t)size > max_bytes) {
        nsci_fail(NSC_ERR_FORMAT, "%s: %ld bytes is over the limit of %zu bytes", path, size,
                  max_bytes);
        goto fail;
    }
    data = nsci_malloc((size_t)size + 1);
    if (!data) {
        goto fail;
    }
    if (fread(data, 1, (size_t)size, f) != (size_t)size) {
        nsci_fail(NSC_ERR_IO, "%s: short read", path);
        goto fail;
    }
    data[size] = '\0';
    fclose(f);
    *len = (size_t)size;
    return data;
fail:
    nsci_free(data);
    fclose(f);
    return NULL;
}
