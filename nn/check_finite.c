// The optional NaN/Inf check (nsc/check.h): a per-thread switch read by
// nsc_module_call, and the scan that finds the first non-finite value. Kept
// apart from the call path so that, switched off, it costs one read.
#include <math.h>
#include <stdio.h>

#include "nn/nn_impl.h"
#include "nsc/check.h"

static _Thread_local bool t_check_finite;

bool nsc_set_check_finite(bool enabled) {
    bool was = t_check_finite;
    t_check_finite = enabled;
    return was;
}

bool nsc_check_finite_enabled(void) {
    return t_check_finite;
}

// --- the scan ---

typedef struct finite_scan {
    int64_t n_bad; // values that are NaN or infinite
    int64_t first; // row-major index of the first of them
    double first_value;
} finite_scan;

static double value_at(const char *p, nsc_dtype dtype) {
    return dtype == NSC_F32 ? (double)*(const float *)p : *(const double *)p;
}

// Walks t (CPU, f32 or f64, any strides) in row-major order.
static void scan_values(const nsc_tensor *t, finite_scan *s) {
    int64_t n = nsci_numel(t->ndim, t->shape);
    int64_t index[NSC_MAX_DIMS] = { 0 };
    const char *base = nsci_data_ptr(t);
    int64_t elem = (int64_t)nsc_dtype_size((nsc_dtype)t->dtype), off = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = value_at(base + off * elem, (nsc_dtype)t->dtype);
        if (!isfinite(v) && s->n_bad++ == 0) {
            s->first = i;
            s->first_value = v;
        }
        for (int d = t->ndim - 1; d >= 0; d--) { // next index, last dim fastest
            off += t->stride[d];
            if (++index[d] < t->shape[d]) {
                break;
            }
            off -= t->stride[d] * t->shape[d];
            index[d] = 0;
        }
    }
}

// Scans t, copying it to the CPU first when it lives elsewhere. Returns
// false (with an error) only when that copy fails.
static bool scan_tensor(nsc_tensor *t, finite_scan *s) {
    s->n_bad = 0;
    if (!t || t->device == NSC_META || (t->dtype != NSC_F32 && t->dtype != NSC_F64)) {
        return true;
    }
    nsc_tensor *cpu = t->device == NSC_CPU ? nsc_retain(t) : nsc_to(t, NSC_CPU);
    if (!cpu) {
        return false;
    }
    scan_values(cpu, s);
    nsc_free(cpu);
    return true;
}

// "[i,j,k]" for row-major index i of t.
static void position_str(const nsc_tensor *t, int64_t flat, char *buf, size_t bytes) {
    int64_t index[NSC_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        index[d] = t->shape[d] ? flat % t->shape[d] : 0;
        flat = t->shape[d] ? flat / t->shape[d] : 0;
    }
    nsci_shape_str(buf, bytes, t->ndim, index);
}

static nsc_status report(nsc_tensor *t, const finite_scan *s, const char *what,
                         const char *context) {
    char at[160];
    position_str(t, s->first, at, sizeof at);
    const char *value = isnan(s->first_value) ? "nan" : s->first_value > 0 ? "inf" : "-inf";
    return nsci_fail(NSC_ERR_STATE,
                     "check_finite: %s holds %s at %s (%lld of %lld values are not "
                     "finite%s)",
                     what, value, at, (long long)s->n_bad, (long long)nsci_numel(t->ndim, t->shape),
                     context);
}

nsc_status nsc_check_finite(nsc_tensor *t, const char *what) {
    if (!t) {
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "check_finite: tensor is NULL");
    }
    finite_scan s;
    if (!scan_tensor(t, &s)) {
        return nsc_last_status();
    }
    return s.n_bad ? report(t, &s, what ? what : "tensor", "") : NSC_OK;
}

// --- module outputs (called by nsc_module_call) ---

// Which input of m already held a non-finite value (-1: none), so the
// message tells a producer from a module that passed one on.
static int first_bad_input(int n_in, nsc_tensor *const *in) {
    for (int i = 0; i < n_in; i++) {
        finite_scan s;
        if (in[i] && scan_tensor(in[i], &s) && s.n_bad > 0) {
            return i;
        }
    }
    return -1;
}

nsc_tensor *nsci_check_finite_output(nsc_module *m, int64_t call_index, int n_in,
                                     nsc_tensor *const *in, nsc_tensor *out) {
    if (!t_check_finite || !out) {
        return out;
    }
    finite_scan s;
    if (!scan_tensor(out, &s)) { // the copy to the CPU failed: its error is recorded
        nsc_free(out);
        return NULL;
    }
    if (s.n_bad == 0) {
        return out;
    }
    char what[600], context[160];
    const char *path = nsc_module_path(m);
    snprintf(what, sizeof what, "output of %s (%s, call %lld)", *path ? path : "the model",
             nsc_module_type(m), (long long)call_index);
    int bad_in = first_bad_input(n_in, in);
    if (bad_in >= 0) {
        snprintf(context, sizeof context, "; its input %d already held non-finite values", bad_in);
    } else {
        snprintf(context, sizeof context, "; its inputs were finite");
    }
    report(out, &s, what, context);
    nsc_free(out);
    return NULL;
}
