// Reading values out of tensors: item, copy to host, print, allclose. Slow
// generic paths (one element at a time), meant for tests and printing.
#include <math.h>
#include <string.h>

#include "tensor/tensor_impl.h"

// A CPU tensor holding t's values (t itself, retained, when already on the CPU).
static nsc_tensor *on_cpu(nsc_tensor *t, const char *op) {
    if (t->device == NSC_META) {
        return nsci_fail_null(NSC_ERR_DEVICE, "%s: tensor is on meta and has no values", op);
    }
    if (t->device == NSC_CPU) {
        return nsc_retain(t);
    }
    return nsc_to(t, NSC_CPU);
}

// Offset in elements of the i-th element in row-major order.
static int64_t element_offset(const nsc_tensor *t, int64_t i) {
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->stride[d];
        i /= t->shape[d];
    }
    return off;
}

// The bytes of the i-th element in row-major order.
static const char *element_at(const nsc_tensor *t, int64_t i) {
    size_t elem = nsc_dtype_size((nsc_dtype)t->dtype);
    return (const char *)t->storage->data + (size_t)element_offset(t, i) * elem;
}

static double load_at(const nsc_tensor *t, int64_t i) {
    return nsci_load(element_at(t, i), (nsc_dtype)t->dtype);
}

double nsc_tensor_item(nsc_tensor *t) {
    if (!t) {
        return NAN;
    }
    int64_t n = nsci_numel(t->ndim, t->shape);
    if (n != 1) {
        char buf[160];
        nsci_fail(NSC_ERR_SHAPE, "item: %s: expected exactly one element, got %lld",
                  nsci_shape_str(buf, sizeof buf, t->ndim, t->shape), (long long)n);
        return NAN;
    }
    nsc_tensor *c = on_cpu(t, "item");
    if (!c) {
        return NAN;
    }
    double v = load_at(c, 0);
    nsc_free(c);
    return v;
}

nsc_status nsc_tensor_copy_to(nsc_tensor *t, nsc_dtype dtype, void *dst, size_t dst_bytes) {
    if (!t) {
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "copy_to: tensor is NULL");
    }
    int64_t n = nsci_numel(t->ndim, t->shape);
    size_t elem = nsc_dtype_size(dtype);
    if (elem == 0) {
        return nsci_fail(NSC_ERR_DTYPE, "copy_to: unknown dtype %d", (int)dtype);
    }
    if (!dst && n > 0) {
        return nsci_fail(NSC_ERR_ARG, "copy_to: destination is NULL for %lld elements",
                         (long long)n);
    }
    if ((size_t)n * elem > dst_bytes) {
        return nsci_fail(NSC_ERR_ARG, "copy_to: %lld elements of %s need %zu bytes, got %zu",
                         (long long)n, nsc_dtype_name(dtype), (size_t)n * elem, dst_bytes);
    }
    nsc_tensor *c = on_cpu(t, "copy_to");
    if (!c) {
        return nsc_last_status();
    }
    // Any other layout or dtype goes through the copy kernel, which converts
    // as to_dtype does: i64 stays exact (a double holds only 53 bits).
    if (n > 0 && (c->dtype != dtype || !nsci_is_contiguous(c))) {
        nsc_tensor *converted = nsci_cpu_convert(c, dtype);
        nsc_free(c);
        if (!converted) {
            return nsc_last_status();
        }
        c = converted;
    }
    if (n > 0) {
        memcpy(dst, nsci_data_ptr(c), (size_t)n * elem);
    }
    nsc_free(c);
    return NSC_OK;
}

// One element, integers read as int64 (through a double, 2^53 + 1 would
// print as 2^53, and INT64_MAX would overflow the conversion back).
static void print_value(FILE *f, const nsc_tensor *t, int64_t i) {
    if (t->dtype == NSC_BOOL) {
        fprintf(f, load_at(t, i) != 0 ? "True" : "False");
    } else if (t->dtype == NSC_I64) {
        int64_t v;
        memcpy(&v, element_at(t, i), sizeof v);
        fprintf(f, "%lld", (long long)v);
    } else {
        fprintf(f, "%.4f", load_at(t, i));
    }
}

// Prints dims from d inward; long dims show their first and last three.
static void print_dim(FILE *f, const nsc_tensor *t, int d, int64_t index, int indent) {
    if (d == t->ndim) {
        print_value(f, t, index);
        return;
    }
    int64_t n = t->shape[d];
    fprintf(f, "[");
    for (int64_t i = 0; i < n; i++) {
        if (n > 6 && i == 3) {
            fprintf(f, "...,%s", d + 1 == t->ndim ? " " : "\n");
            i = n - 3;
        }
        print_dim(f, t, d + 1, index * n + i, indent + 1);
        if (i + 1 < n) {
            fprintf(f, d + 1 == t->ndim ? ", " : ",\n%*s", d + 1 == t->ndim ? 0 : indent + 1, "");
        }
    }
    fprintf(f, "]");
}

void nsc_tensor_print(nsc_tensor *t, FILE *f) {
    if (!f) {
        nsci_fail(NSC_ERR_ARG, "tensor_print: stream is NULL");
        return;
    }
    if (!t) {
        fprintf(f, "tensor(NULL)\n");
        return;
    }
    char buf[160];
    nsci_shape_str(buf, sizeof buf, t->ndim, t->shape);
    fprintf(f, "tensor(shape=%s, dtype=%s, device=%s", buf, nsc_dtype_name((nsc_dtype)t->dtype),
            nsc_device_name((nsc_device)t->device));
    if (t->proxy) {
        fprintf(f, ", proxy");
    }
    nsc_tensor *c = t->device == NSC_META ? NULL : on_cpu(t, "print");
    if (c && nsci_numel(c->ndim, c->shape) > 0) {
        fprintf(f, ",\n       ");
        print_dim(f, c, 0, 0, 7);
    }
    fprintf(f, ")\n");
    nsc_free(c);
}

static bool is_integer_dtype(const nsc_tensor *t) {
    return t->dtype == NSC_I64 || t->dtype == NSC_BOOL;
}

static int64_t load_i64_at(const nsc_tensor *t, int64_t i) {
    const char *p = (const char *)t->storage->data +
                    (size_t)element_offset(t, i) * nsc_dtype_size((nsc_dtype)t->dtype);
    return t->dtype == NSC_BOOL ? *(const uint8_t *)p != 0 : *(const int64_t *)p;
}

// |x - y| as a double: the difference is below 2^64, so it fits a uint64.
static double i64_distance(int64_t x, int64_t y) {
    return (double)(x > y ? (uint64_t)x - (uint64_t)y : (uint64_t)y - (uint64_t)x);
}

// Element i as torch.isclose: equal values (infinities too) are close, else
// only a finite |a - b| <= atol + rtol * |b|; NaNs are close to each other
// when equal_nan. Two integers compare exactly (a double holds 53 bits).
static bool close_at(const nsc_tensor *a, const nsc_tensor *b, int64_t i, double rtol, double atol,
                     bool equal_nan) {
    if (is_integer_dtype(a) && is_integer_dtype(b)) {
        int64_t x = load_i64_at(a, i), y = load_i64_at(b, i);
        return x == y || i64_distance(x, y) <= atol + rtol * fabs((double)y);
    }
    double x = load_at(a, i), y = load_at(b, i);
    if (isnan(x) || isnan(y)) {
        return equal_nan && isnan(x) && isnan(y);
    }
    return x == y || (isfinite(x - y) && fabs(x - y) <= atol + rtol * fabs(y));
}

static void report_mismatch(const nsc_tensor *a, const nsc_tensor *b, int64_t i, double rtol,
                            double atol) {
    double x = load_at(a, i), y = load_at(b, i), diff = fabs(x - y);
    char sx[32], sy[32];
    if (is_integer_dtype(a) && is_integer_dtype(b)) {
        int64_t xi = load_i64_at(a, i), yi = load_i64_at(b, i);
        snprintf(sx, sizeof sx, "%lld", (long long)xi);
        snprintf(sy, sizeof sy, "%lld", (long long)yi);
        diff = i64_distance(xi, yi);
    } else {
        snprintf(sx, sizeof sx, "%.9g", x);
        snprintf(sy, sizeof sy, "%.9g", y);
    }
    nsci_fail(NSC_ERR_ARG,
              "allclose: element %lld differs: %s vs %s (|diff| %.3g > atol %g + rtol %g * |b|; "
              "an infinity is close only to an equal one)",
              (long long)i, sx, sy, diff, atol, rtol);
}

bool nsc_allclose(nsc_tensor *a, nsc_tensor *b, double rtol, double atol, bool equal_nan) {
    if (!a || !b) {
        return false;
    }
    char sa[160], sb[160];
    if (a->ndim != b->ndim || memcmp(a->shape, b->shape, (size_t)a->ndim * 8) != 0) {
        nsci_fail(NSC_ERR_SHAPE, "allclose: shapes %s and %s differ",
                  nsci_shape_str(sa, sizeof sa, a->ndim, a->shape),
                  nsci_shape_str(sb, sizeof sb, b->ndim, b->shape));
        return false;
    }
    nsc_tensor *ca = on_cpu(a, "allclose"), *cb = ca ? on_cpu(b, "allclose") : NULL;
    bool ok = ca && cb;
    int64_t n = nsci_numel(a->ndim, a->shape);
    for (int64_t i = 0; ok && i < n; i++) {
        if (!close_at(ca, cb, i, rtol, atol, equal_nan)) {
            report_mismatch(ca, cb, i, rtol, atol);
            ok = false;
        }
    }
    nsc_free(ca);
    nsc_free(cb);
    return ok;
}
