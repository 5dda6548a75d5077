// Dtypes and devices: names, sizes, PyTorch's type promotion, and scalar
// loads and stores used by slow paths (printing, item, tests).
#include <math.h>
#include <string.h>

#include "tensor/tensor_impl.h"

const char *nsc_dtype_name(nsc_dtype dtype) {
    static const char *const names[] = { "f32", "f64", "i64", "bool" };
    return (unsigned)dtype < NSC_N_DTYPES ? names[dtype] : "?";
}

const char *nsc_device_name(nsc_device device) {
    static const char *const names[] = { "cpu", "meta", "cuda" };
    return (unsigned)device < NSC_N_DEVICES ? names[device] : "?";
}

size_t nsc_dtype_size(nsc_dtype dtype) {
    static const size_t sizes[] = { 4, 8, 8, 1 };
    return (unsigned)dtype < NSC_N_DTYPES ? sizes[dtype] : 0;
}

// Category rank: bool 0, integer 1, float 2.
static int category(nsc_dtype d) {
    return d == NSC_BOOL ? 0 : d == NSC_I64 ? 1 : 2;
}

nsc_dtype nsci_promote(nsc_dtype a, nsc_dtype b) {
    if (a == b) {
        return a;
    }
    if (category(a) != category(b)) {
        return category(a) > category(b) ? a : b;
    }
    return (a == NSC_F64 || b == NSC_F64) ? NSC_F64 : a;
}

nsc_dtype nsci_result_type(int n, nsc_tensor *const *in) {
    // Dimensioned tensors decide the dtype; a 0-dim one only lifts the category
    // (then it brings the default of that category: f32 for floats).
    bool have_dim = false;
    nsc_dtype dim_type = NSC_BOOL, zero_type = NSC_BOOL;
    bool have_zero = false;
    for (int i = 0; i < n; i++) {
        nsc_dtype d = (nsc_dtype)in[i]->dtype;
        if (in[i]->ndim > 0) {
            dim_type = have_dim ? nsci_promote(dim_type, d) : d;
            have_dim = true;
        } else {
            zero_type = have_zero ? nsci_promote(zero_type, d) : d;
            have_zero = true;
        }
    }
    if (!have_dim) {
        return zero_type;
    }
    if (have_zero && category(zero_type) > category(dim_type)) {
        return zero_type;
    }
    return dim_type;
}

nsc_dtype nsci_scalar_result_type(nsc_dtype t, double scalar) {
    bool integral = isfinite(scalar) && scalar == floor(scalar);
    if (nsci_is_float(t)) {
        return t;
    }
    if (!integral) {
        return NSC_F32;
    }
    return NSC_I64;
}

double nsci_load(const void *p, nsc_dtype dtype) {
    switch (dtype) {
        case NSC_F32:
            return *(const float *)p;
        case NSC_F64:
            return *(const double *)p;
        case NSC_I64:
            return (double)*(const int64_t *)p;
        case NSC_BOOL:
            return *(const uint8_t *)p ? 1.0 : 0.0;
        default:
            return NAN;
    }
}

void nsci_store(void *p, nsc_dtype dtype, double v) {
    switch (dtype) {
        case NSC_F32:
            *(float *)p = (float)v;
            break;
        case NSC_F64:
            *(double *)p = v;
            break;
        case NSC_I64:
            *(int64_t *)p = nsci_float_to_i64(v);
            break;
        case NSC_BOOL:
            *(uint8_t *)p = v != 0.0;
            break;
        default:
            break;
    }
}
