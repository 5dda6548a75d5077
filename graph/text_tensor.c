// The graph text's tensors and op parameters: literals with shortest
// round-trip numbers, tensors by name or inline, and op parameters through
// each op's nsci_param_desc table, read back with checked types and ranges.
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "graph/text_impl.h"

// --- numbers ---

static const char *type_word(const nsci_json *v) {
    static const char *const words[] = { "null",     "a bool",   "a number",
                                         "a string", "an array", "an object" };
    return words[v->type];
}

static pthread_once_t g_c_locale_once = PTHREAD_ONCE_INIT;
static locale_t g_c_locale; // set once (STYLE.md globals): formatting ignores the caller's locale

static void make_c_locale(void) {
    g_c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

// The shortest "%.*g" text of v that reads back (through double, then to
// f32 when is_f32) to the same value, written in plain decimals when its
// exponent is moderate ("40.0", not "4e+01"); integral values get ".0".
static void write_number(nsci_buf *b, double v, bool is_f32) {
    if (isnan(v) || isinf(v)) {
        nsci_buf_double(b, v); // NaN, Infinity, -Infinity
        return;
    }
    pthread_once(&g_c_locale_once, make_c_locale);
    locale_t old = g_c_locale ? uselocale(g_c_locale) : (locale_t)0;
    char text[64];
    int precision = 1;
    for (; precision <= 17; precision++) {
        snprintf(text, sizeof text, "%.*g", precision, v);
        double back = strtod(text, NULL);
        if (is_f32 ? (float)back == (float)v : back == v) {
            break;
        }
    }
    const char *e = strchr(text, 'e');
    int exponent = e ? atoi(e + 1) : 0;
    if (e && exponent >= -5 && exponent < 16) {
        int decimals = precision - 1 - exponent;
        snprintf(text, sizeof text, "%.*f", decimals > 0 ? decimals : 0, v);
    }
    if (old) {
        uselocale(old);
    }
    nsci_buf_puts(b, text);
    if (!strpbrk(text, ".eE")) {
        nsci_buf_puts(b, ".0");
    }
}

void nsci_text_write_f32(nsci_buf *b, float v) {
    write_number(b, (double)v, true);
}

void nsci_text_write_f64(nsci_buf *b, double v) {
    write_number(b, v, false);
}

static void write_int_list(nsci_buf *b, int n, const int64_t *v) {
    nsci_buf_puts(b, "[");
    for (int i = 0; i < n; i++) {
        nsci_buf_printf(b, i ? ", %lld" : "%lld", (long long)v[i]);
    }
    nsci_buf_puts(b, "]");
}

// --- tensor literals ---

static nsc_status write_values(nsci_buf *b, nsc_tensor *c) {
    const char *p = nsci_data_ptr(c);
    int64_t n = nsci_numel(c->ndim, c->shape);
    nsci_buf_puts(b, ", \"data\": [");
    for (int64_t i = 0; i < n; i++) {
        nsci_buf_puts(b, i ? ", " : "");
        switch ((nsc_dtype)c->dtype) {
            case NSC_F32:
                nsci_text_write_f32(b, ((const float *)p)[i]);
                break;
            case NSC_F64:
                nsci_text_write_f64(b, ((const double *)p)[i]);
                break;
            case NSC_I64:
                nsci_buf_printf(b, "%lld", (long long)((const int64_t *)p)[i]);
                break;
            default:
                nsci_buf_puts(b, ((const uint8_t *)p)[i] ? "true" : "false");
                break;
        }
    }
    nsci_buf_puts(b, "]");
    return NSC_OK;
}

nsc_status nsci_text_write_literal(nsci_buf *b, nsc_tensor *t) {
    nsci_buf_printf(b, "{\"dtype\": \"%s\", \"shape\": ", nsc_dtype_name((nsc_dtype)t->dtype));
    write_int_list(b, t->ndim, t->shape);
    if (t->device == NSC_META) {
        nsci_buf_puts(b, ", \"device\": \"meta\"}");
        return NSC_OK;
    }
    // Values row-major, bit-exact: a contiguous CPU copy (i64 beyond 2^53 too).
    bool was = nsc_set_grad_enabled(false);
    nsc_tensor *c =
        t->device == NSC_CPU && nsci_is_contiguous(t) ? nsc_retain(t) : nsc_contiguous(t);
    nsc_tensor *cpu = c && c->device != NSC_CPU ? nsc_to(c, NSC_CPU) : nsc_retain(c);
    nsc_set_grad_enabled(was);
    nsc_free(c);
    if (!cpu) {
        return nsc_last_status();
    }
    write_values(b, cpu);
    nsc_free(cpu);
    nsci_buf_puts(b, "}");
    return NSC_OK;
}

static bool dtype_by_name(const char *name, nsc_dtype *out) {
    for (int d = 0; d < NSC_N_DTYPES; d++) {
        if (name && strcmp(name, nsc_dtype_name((nsc_dtype)d)) == 0) {
            *out = (nsc_dtype)d;
            return true;
        }
    }
    return false;
}

// The halfway point between FLT_MAX and 2^128: from here on, f32 rounds to
// infinity (ties to even go up, as FLT_MAX's last bit is odd).
#define F32_OVERFLOW 0x1.ffffffp127

// One element of a literal into dst, checked against its dtype.
static nsc_status read_value(const char *what, const nsci_json *v, nsc_dtype dtype, char *dst) {
    if (dtype == NSC_BOOL) {
        if (v->type != NSCI_JSON_BOOL) {
            return nsci_text_fail(what, v, "a bool tensor's data: expected true or false");
        }
        *(uint8_t *)dst = v->boolean;
        return NSC_OK;
    }
    if (v->type != NSCI_JSON_NUMBER) {
        return nsci_text_fail(what, v, "a %s tensor's data: expected numbers, got %s",
                              nsc_dtype_name(dtype), type_word(v));
    }
    if (dtype == NSC_I64) {
        if (!v->is_int) {
            return nsci_text_fail(what, v, "an i64 tensor's data: expected integers");
        }
        *(int64_t *)dst = v->integer;
    } else if (dtype == NSC_F64) {
        *(double *)dst = v->number;
    } else {
        // Refuse only what f32 rounds to infinity: 3.4028235e38, FLT_MAX as
        // written here and by numpy, is above FLT_MAX as a double yet rounds to it.
        if (isfinite(v->number) && fabs(v->number) >= F32_OVERFLOW) {
            return nsci_text_fail(what, v, "%.9g is out of range for f32", v->number);
        }
        *(float *)dst = (float)v->number;
    }
    return NSC_OK;
}

static nsc_status read_shape(const char *what, const nsci_json *v, int64_t max_numel, int *ndim,
                             int64_t *shape) {
    const nsci_json *s = nsci_json_get(v, "shape");
    if (!s || s->type != NSCI_JSON_ARRAY || s->n_items > NSC_MAX_DIMS) {
        return nsci_text_fail(what, s ? s : v, "\"shape\": expected an array of at most %d sizes",
                              NSC_MAX_DIMS);
    }
    int64_t numel = 1;
    for (int64_t d = 0; d < s->n_items; d++) {
        const nsci_json *e = s->items[d];
        if (e->type != NSCI_JSON_NUMBER || !e->is_int || e->integer < 0 || e->integer > max_numel ||
            nsci_mul_overflows(numel, e->integer, &numel) || numel > max_numel) {
            return nsci_text_fail(what, e,
                                  "\"shape\": sizes are integers >= 0 with at most "
                                  "%lld elements in all",
                                  (long long)max_numel);
        }
        shape[d] = e->integer;
    }
    *ndim = (int)s->n_items;
    return NSC_OK;
}

nsc_tensor *nsci_text_read_literal(const char *what, const nsci_json *v, int64_t max_numel) {
    static const char *const keys[] = { "dtype", "shape", "data", "device", NULL };
    const char *dtype_name, *device;
    nsc_dtype dtype;
    int ndim = 0;
    int64_t shape[NSC_MAX_DIMS];
    if (nsci_text_check_keys(what, v, keys) != NSC_OK ||
        nsci_text_get_string(what, v, "dtype", true, &dtype_name) != NSC_OK ||
        nsci_text_get_string(what, v, "device", false, &device) != NSC_OK ||
        read_shape(what, v, max_numel, &ndim, shape) != NSC_OK) {
        return NULL;
    }
    if (!dtype_by_name(dtype_name, &dtype)) {
        return nsci_text_fail(what, nsci_json_get(v, "dtype"),
                              "unknown dtype \"%.40s\" (f32, f64, i64, bool)", dtype_name),
               NULL;
    }
    const nsci_json *data = nsci_json_get(v, "data");
    if (device && strcmp(device, "meta") != 0) {
        return nsci_text_fail(what, nsci_json_get(v, "device"),
                              "\"device\": only \"meta\" "
                              "(data-less) is written here"),
               NULL;
    }
    if (device) {
        return data ? (nsci_text_fail(what, data, "a META tensor has no data"), NULL)
                    : nsc_empty(dtype, NSC_META, ndim, shape);
    }
    int64_t numel = nsci_numel(ndim, shape);
    if (!data || data->type != NSCI_JSON_ARRAY || data->n_items != numel) {
        return nsci_text_fail(what, data ? data : v,
                              "\"data\": expected an array of %lld "
                              "values (the shape's element count)",
                              (long long)numel),
               NULL;
    }
    nsc_tensor *t = nsc_empty(dtype, NSC_CPU, ndim, shape);
    char *dst = t ? nsci_data_ptr(t) : NULL;
    for (int64_t i = 0; t && i < numel; i++) {
        if (read_value(what, data->items[i], dtype, dst + i * (int64_t)nsc_dtype_size(dtype))) {
            nsc_free(t);
            return NULL;
        }
    }
    return t;
}

// --- op parameters ---

static int param_count(const nsci_param_desc *d, const void *params) {
    return *(const int *)((const char *)params + d->count_offset);
}

void nsci_text_write_params(nsci_buf *b, const nsci_op_def *def, const void *params) {
    const char *p = params;
    nsci_buf_puts(b, "{");
    for (const nsci_param_desc *d = def->params; d && d->type != NSCI_PARAM_END; d++) {
        nsci_buf_printf(b, "%s\"%s\": ", d == def->params ? "" : ", ", d->name);
        const char *f = p + d->offset;
        int n = 0;
        int64_t list[NSC_MAX_DIMS];
        switch (d->type) {
            case NSCI_PARAM_I64:
                nsci_buf_printf(b, "%lld", (long long)*(const int64_t *)f);
                break;
            case NSCI_PARAM_INT:
                nsci_buf_printf(b, "%d", *(const int *)f);
                break;
            case NSCI_PARAM_F64:
                nsci_text_write_f64(b, *(const double *)f);
                break;
            case NSCI_PARAM_BOOL:
                nsci_buf_puts(b, *(const bool *)f ? "true" : "false");
                break;
            case NSCI_PARAM_DTYPE:
                nsci_buf_printf(b, "\"%s\"", nsc_dtype_name(*(const nsc_dtype *)f));
                break;
            case NSCI_PARAM_DEVICE:
                nsci_buf_printf(b, "\"%s\"", nsc_device_name(*(const nsc_device *)f));
                break;
            default: // arrays: the count field says how many (a malformed count: none)
                n = param_count(d, params);
                n = n < 0 || n > NSC_MAX_DIMS ? 0 : n;
                for (int i = 0; i < n; i++) {
                    list[i] = d->type == NSCI_PARAM_I64_ARRAY ? ((const int64_t *)f)[i]
                                                              : ((const int *)f)[i];
                }
                write_int_list(b, n, list);
                break;
        }
    }
    nsci_buf_puts(b, "}");
}

static nsc_status read_enum(const char *what, const nsci_json *v, const nsci_param_desc *d,
                            void *field) {
    int n = d->type == NSCI_PARAM_DTYPE ? NSC_N_DTYPES : NSC_N_DEVICES;
    for (int i = 0; v->type == NSCI_JSON_STRING && i < n; i++) {
        const char *name = d->type == NSCI_PARAM_DTYPE ? nsc_dtype_name((nsc_dtype)i)
                                                       : nsc_device_name((nsc_device)i);
        if (strcmp(name, v->string) == 0) {
            if (d->type == NSCI_PARAM_DTYPE) {
                *(nsc_dtype *)field = (nsc_dtype)i;
            } else {
                *(nsc_device *)field = (nsc_device)i;
            }
            return NSC_OK;
        }
    }
    return nsci_text_fail(what, v, "param \"%s\": expected a %s name", d->name,
                          d->type == NSCI_PARAM_DTYPE ? "dtype (f32, f64, i64, bool)"
                                                      : "device (cpu, meta, cuda)");
}

static bool fits(const nsci_json *v, bool is_int32) {
    return v->type == NSCI_JSON_NUMBER && v->is_int &&
           (!is_int32 || (v->integer >= INT32_MIN && v->integer <= INT32_MAX));
}

static nsc_status read_array(const char *what, const nsci_json *v, const nsci_param_desc *d,
                             void *params) {
    bool i32 = d->type == NSCI_PARAM_INT_ARRAY;
    if (v->type != NSCI_JSON_ARRAY || v->n_items > NSC_MAX_DIMS) {
        return nsci_text_fail(what, v, "param \"%s\": expected an array of at most %d integers",
                              d->name, NSC_MAX_DIMS);
    }
    char *f = (char *)params + d->offset;
    int *count = (int *)((char *)params + d->count_offset);
    if (*count != -1 && *count != (int)v->n_items) { // arrays sharing a count (as_strided)
        return nsci_text_fail(what, v,
                              "param \"%s\": %lld items where an array sharing its "
                              "count has %d",
                              d->name, (long long)v->n_items, *count);
    }
    for (int64_t i = 0; i < v->n_items; i++) {
        if (!fits(v->items[i], i32)) {
            return nsci_text_fail(what, v->items[i], "param \"%s\": expected %s integers", d->name,
                                  i32 ? "32-bit" : "64-bit");
        }
        if (i32) {
            ((int *)f)[i] = (int)v->items[i]->integer;
        } else {
            ((int64_t *)f)[i] = v->items[i]->integer;
        }
    }
    *count = (int)v->n_items;
    return NSC_OK;
}

static nsc_status read_param(const char *what, const nsci_json *v, const nsci_param_desc *d,
                             void *params) {
    char *f = (char *)params + d->offset;
    switch (d->type) {
        case NSCI_PARAM_I64:
        case NSCI_PARAM_INT:
            if (!fits(v, d->type == NSCI_PARAM_INT)) {
                return nsci_text_fail(what, v, "param \"%s\": expected a %s integer", d->name,
                                      d->type == NSCI_PARAM_INT ? "32-bit" : "64-bit");
            }
            if (d->type == NSCI_PARAM_INT) {
                *(int *)f = (int)v->integer;
            } else {
                *(int64_t *)f = v->integer;
            }
            return NSC_OK;
        case NSCI_PARAM_F64:
            if (v->type != NSCI_JSON_NUMBER) {
                return nsci_text_fail(what, v, "param \"%s\": expected a number", d->name);
            }
            *(double *)f = v->number;
            return NSC_OK;
        case NSCI_PARAM_BOOL:
            if (v->type != NSCI_JSON_BOOL) {
                return nsci_text_fail(what, v, "param \"%s\": expected true or false", d->name);
            }
            *(bool *)f = v->boolean;
            return NSC_OK;
        case NSCI_PARAM_DTYPE:
        case NSCI_PARAM_DEVICE:
            return read_enum(what, v, d, f);
        default:
            return read_array(what, v, d, params);
    }
}

nsc_status nsci_text_read_params(const char *what, const nsci_json *v, const nsci_op_def *def,
                                 void *params) {
    if (!v) {
        return NSC_OK; // every field zero
    }
    if (v->type != NSCI_JSON_OBJECT) {
        return nsci_text_fail(what, v, "\"params\": expected an object");
    }
    // Count fields start at -1 (unset) so arrays sharing one must agree,
    // and end at 0 when no array gave them a length.
    for (const nsci_param_desc *d = def->params; d && d->type != NSCI_PARAM_END; d++) {
        if (d->type == NSCI_PARAM_I64_ARRAY || d->type == NSCI_PARAM_INT_ARRAY) {
            *(int *)((char *)params + d->count_offset) = -1;
        }
    }
    nsc_status status = NSC_OK;
    for (int64_t i = 0; i < v->n_items && status == NSC_OK; i++) {
        const nsci_param_desc *d = def->params;
        while (d && d->type != NSCI_PARAM_END && strcmp(d->name, v->keys[i]) != 0) {
            d++;
        }
        if (!d || d->type == NSCI_PARAM_END) {
            return nsci_text_fail(what, v->items[i], "op %s has no param \"%.60s\"", def->name,
                                  v->keys[i]);
        }
        for (int64_t j = 0; j < i; j++) {
            if (strcmp(v->keys[j], v->keys[i]) == 0) {
                return nsci_text_fail(what, v->items[i], "param \"%.60s\" appears twice",
                                      v->keys[i]);
            }
        }
        status = read_param(what, v->items[i], d, params);
    }
    for (const nsci_param_desc *d = def->params; d && d->type != NSCI_PARAM_END; d++) {
        int *count = (int *)((char *)params + d->count_offset);
        if ((d->type == NSCI_PARAM_I64_ARRAY || d->type == NSCI_PARAM_INT_ARRAY) && *count < 0) {
            *count = 0;
        }
    }
    return status;
}

// --- tensors where the format takes one: by name or inline ---

// Same dtype, shape and bits (both with data).
static bool same_value(nsc_tensor *a, nsc_tensor *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim || a->device == NSC_META ||
        b->device == NSC_META || memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(int64_t))) {
        return false;
    }
    int64_t n = nsci_numel(a->ndim, a->shape);
    size_t bytes = (size_t)n * nsc_dtype_size((nsc_dtype)a->dtype);
    char *x = nsci_malloc(bytes + 1), *y = nsci_malloc(bytes + 1);
    bool same = x && y && nsc_tensor_copy_to(a, (nsc_dtype)a->dtype, x, bytes) == NSC_OK &&
                nsc_tensor_copy_to(b, (nsc_dtype)b->dtype, y, bytes) == NSC_OK &&
                memcmp(x, y, bytes) == 0;
    nsci_free(x);
    nsci_free(y);
    return same;
}

static const char *name_in(const nsc_tensor_set *names, nsc_tensor *t, bool input) {
    for (int64_t i = 0; i < nsc_tensor_set_count(names); i++) {
        nsc_tensor *e = nsc_tensor_set_at(names, i);
        if (e == t || (!input && same_value(e, t))) {
            return nsc_tensor_set_name(names, i);
        }
    }
    return NULL;
}

nsc_status nsci_text_write_tensor(nsci_text_writer *w, nsc_tensor *t, const char *key, bool input) {
    int32_t node;
    nsci_graph *owner = nsci_proxy_graph(t, &node, NULL);
    if (owner) { // an invoke input from the session: its value or current item
        if (!w->session || owner != w->session->values) {
            return nsci_fail(NSC_ERR_UNSUPPORTED,
                             "graph text: %s is a proxy that is not a "
                             "value of the session",
                             key);
        }
        nsci_buf_printf(w->b, "{\"session\": %d}", node);
        return NSC_OK;
    }
    nsci_error_saved saved;
    nsci_error_save(&saved);
    const char *name = w->hint ? w->hint(w->hint_ctx, key) : NULL;
    if (!name && w->names) {
        name = name_in(w->names, t, input);
    }
    nsci_error_restore(&saved);
    if (!name && w->external && t->device != NSC_META &&
        nsci_numel(t->ndim, t->shape) > w->inline_max) {
        if (nsc_tensor_set_put(w->external, key, t) != NSC_OK) {
            return nsc_last_status();
        }
        name = key;
    }
    if (name) {
        nsci_buf_puts(w->b, "{\"name\": ");
        nsci_buf_json_string(w->b, name, strlen(name));
        nsci_buf_puts(w->b, "}");
        return NSC_OK;
    }
    return nsci_text_write_literal(w->b, t);
}
