// Reduction kernels: one generic launcher (a warp per output; sums and
// statistics accumulate in double, as the CPU's var/std/logsumexp do; float
// sums over many elements into few outputs split across warps), the
// softmax family and layer_norm (a warp per row, fused: two passes over the
// row in registers' reach, no intermediate tensors), layer_norm's gradient
// (rows, then column sums in fixed chunks), and the class losses.
// The formulas are the CPU kernels' (tensor/op_reduce*.c, op_softmax.c,
// op_norm.c, op_loss.c).
#include <math.h>

#include "cuda/reduce_device.cuh"

namespace {

// One warp per output; T is double for float inputs, int64_t otherwise.
template <typename T> __global__ void reduce_kernel(nsci_cuda_red r) {
    int lane = threadIdx.x & 31;
    int64_t o = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (o >= r.n_out) {
        return; // the whole warp leaves together
    }
    const int64_t base = nsci_cuda_unravel(r.n_kept, r.kept_shape, r.kept_stride, o);
    const int64_t n = r.n_red_elems;
#define ELEM(j) load_as<T>(r.x, r.x_dtype, base + nsci_cuda_unravel(r.n_red, r.red_shape, r.red_stride, j))
    if (r.kind == NSCI_RED_MAX || r.kind == NSCI_RED_MIN) {
        bool max = r.kind == NSCI_RED_MAX;
        pick<T> best = { T(0), -1 };
        for (int64_t j = lane; j < n; j += 32) {
            pick<T> e = { ELEM(j), j };
            best = takes(e, best, max) ? e : best;
        }
        for (int s = 16; s > 0; s >>= 1) {
            pick<T> w = { __shfl_xor_sync(0xffffffffu, best.v, s),
                          __shfl_xor_sync(0xffffffffu, best.i, s) };
            best = takes(w, best, max) ? w : best;
        }
        if (lane == 0) {
            if (r.out) {
                store_as(r.out, r.out_dtype, o, (double)best.v, (int64_t)best.v,
                         r.out_dtype == NSC_I64 || r.out_dtype == NSC_BOOL);
            }
            if (r.index) {
                r.index[o] = best.i;
            }
        }
        return;
    }
    if (r.kind == NSCI_RED_ALL || r.kind == NSCI_RED_ANY) {
        bool all = r.kind == NSCI_RED_ALL, acc = all;
        for (int64_t j = lane; j < n; j += 32) {
            bool v = ELEM(j) != T(0);
            acc = all ? (acc && v) : (acc || v);
        }
        acc = all ? __all_sync(0xffffffffu, acc) : __any_sync(0xffffffffu, acc);
        if (lane == 0) {
            ((uint8_t *)r.out)[o] = acc;
        }
        return;
    }
    if (r.kind == NSCI_RED_SUM && (r.out_dtype == NSC_I64 || r.out_dtype == NSC_BOOL)) {
        int64_t acc = 0;
        for (int64_t j = lane; j < n; j += 32) {
            acc = (int64_t)((uint64_t)acc + (uint64_t)(int64_t)ELEM(j));
        }
        acc = warp_sum_i(acc);
        if (lane == 0) {
            store_as(r.out, r.out_dtype, o, 0, acc, true);
        }
        return;
    }
    if (r.kind == NSCI_RED_NORM || r.kind == NSCI_RED_AMAX || r.kind == NSCI_RED_AMIN) {
        bool sum = r.kind == NSCI_RED_NORM, max = r.kind == NSCI_RED_AMAX;
        double acc = r.kind == NSCI_RED_AMIN ? INFINITY : 0.0;
        for (int64_t j = lane; j < n; j += 32) {
            double v = (double)ELEM(j);
            acc = sum ? acc + nsci_norm_term(v, r.ord) : nsci_norm_pick_abs(acc, fabs(v), max);
        }
        acc = sum ? warp_sum(acc) : warp_pick_abs(acc, max);
        if (lane == 0) {
            double v =
                n == 1 ? nsci_norm_single((double)ELEM(0), r.ord) : nsci_norm_finish(acc, r.ord);
            store_as(r.out, r.out_dtype, o, v, 0, false);
        }
        return;
    }
    double result;
    if (r.kind == NSCI_RED_LSE) {
        double m = -INFINITY;
        for (int64_t j = lane; j < n; j += 32) {
            double v = (double)ELEM(j);
            m = (isnan(m) || m >= v) ? m : v;
            m = isnan(v) ? v : m;
        }
        m = warp_max_nan(m);
        double shift = isinf(m) ? 0.0 : m, s = 0.0;
        for (int64_t j = lane; j < n; j += 32) {
            s += exp((double)ELEM(j) - shift);
        }
        result = log(warp_sum(s)) + shift;
    } else {
        double s = 0.0;
        for (int64_t j = lane; j < n; j += 32) {
            s += (double)ELEM(j);
        }
        s = warp_sum(s);
        if (r.kind == NSCI_RED_SUM) {
            result = s;
        } else if (r.kind == NSCI_RED_MEAN) {
            result = n ? s * (1.0 / (double)n) : NAN;
        } else { // VAR, STD: second pass around the mean
            double mean = n ? s / (double)n : 0.0, m2 = 0.0;
            for (int64_t j = lane; j < n; j += 32) {
                double d = (double)ELEM(j) - mean;
                m2 += d * d;
            }
            m2 = warp_sum(m2);
            double divisor = (double)n - r.correction;
            result = divisor > 0 ? m2 / divisor : NAN;
            result = r.kind == NSCI_RED_STD ? sqrt(result) : result;
        }
    }
#undef ELEM
    if (lane == 0) {
        store_as(r.out, r.out_dtype, o, result, 0, false);
    }
}

// --- softmax family: a warp per (outer, inner) row of k elements ---

template <typename T>
__global__ void softmax_kernel(int kind, const T *a, const T *b, T *out, int64_t outer, int64_t k,
                               int64_t inner) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (row >= outer * inner) {
        return;
    }
    int64_t base = (row / inner) * k * inner + row % inner;
    const T *x = a + base, *y = b ? b + base : nullptr;
    T *o = out + base;
    if (kind == NSCI_SOFTMAX || kind == NSCI_LOG_SOFTMAX) {
        T m = -INFINITY;
        for (int64_t j = lane; j < k; j += 32) {
            m = x[j * inner] > m ? x[j * inner] : m;
        }
        m = warp_max(m);
        T s = 0;
        for (int64_t j = lane; j < k; j += 32) {
            s += exp(x[j * inner] - m);
        }
        for (int off = 16; off > 0; off >>= 1) {
            s += __shfl_xor_sync(0xffffffffu, s, off);
        }
        T ls = log(s);
        for (int64_t j = lane; j < k; j += 32) {
            T v = x[j * inner] - m;
            o[j * inner] = kind == NSCI_SOFTMAX ? exp(v) / s : v - ls;
        }
        return;
    }
    // softmax: gx = y (g - sum(g y)); log_softmax: gx = g - exp(y) sum(g).
    bool plain = kind == NSCI_SOFTMAX_GRAD;
    T s = 0;
    for (int64_t j = lane; j < k; j += 32) {
        s += plain ? x[j * inner] * y[j * inner] : x[j * inner];
    }
    for (int off = 16; off > 0; off >>= 1) {
        s += __shfl_xor_sync(0xffffffffu, s, off);
    }
    for (int64_t j = lane; j < k; j += 32) {
        T g = x[j * inner], v = y[j * inner];
        o[j * inner] = plain ? v * (g - s) : g - exp(v) * s;
    }
}

// --- layer_norm: a warp per row of n; statistics in double ---

template <typename T>
__global__ void layer_norm_kernel(const T *x, const T *w, const T *b, T *y, T *mean, T *rstd,
                                  int64_t rows, int64_t n, double eps) {
    int lane = threadIdx.x & 31;
    int64_t r = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (r >= rows) {
        return;
    }
    const T *xr = x + r * n;
    double s = 0.0;
    for (int64_t j = lane; j < n; j += 32) {
        s += (double)xr[j];
    }
    double mu = n > 0 ? warp_sum(s) / (double)n : 0.0, m2 = 0.0;
    for (int64_t j = lane; j < n; j += 32) {
        double d = (double)xr[j] - mu;
        m2 += d * d;
    }
    m2 = n > 0 ? warp_sum(m2) : NAN; // torch: an empty row has rstd NaN
    double rs = 1.0 / sqrt(m2 / (double)(n > 0 ? n : 1) + eps);
    T tm = (T)mu, trs = (T)rs;
    if (lane == 0) {
        mean[r] = tm;
        rstd[r] = trs;
    }
    T *yr = y + r * n;
    for (int64_t j = lane; j < n; j += 32) {
        T v = (xr[j] - tm) * trs;
        v = w ? v * w[j] : v;
        yr[j] = b ? v + b[j] : v;
    }
}

// dx of each row: rstd dy w + cb x + cc (tensor/op_norm.c's formula).
template <typename T>
__global__ void layer_norm_dx_kernel(const T *dy, const T *x, const T *mean, const T *rstd,
                                     const T *w, T *dx, int64_t rows, int64_t n) {
    int lane = threadIdx.x & 31;
    int64_t r = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (r >= rows) {
        return;
    }
    const T *xr = x + r * n, *gr = dy + r * n;
    double ds = 0.0, db = 0.0;
    for (int64_t j = lane; j < n; j += 32) {
        double dyw = (double)gr[j] * (w ? (double)w[j] : 1.0);
        ds += dyw * (double)xr[j];
        db += dyw;
    }
    ds = warp_sum(ds);
    db = warp_sum(db);
    double mu = (double)mean[r], rs = (double)rstd[r];
    double cb = (db * mu - ds) * rs * rs * rs / (double)n;
    double cc = -cb * mu - db * rs / (double)n;
    T a = (T)rs, tb = (T)cb, tc = (T)cc;
    for (int64_t j = lane; j < n; j += 32) {
        dx[r * n + j] = a * gr[j] * (w ? w[j] : T(1)) + tb * xr[j] + tc;
    }
}

const int LN_CHUNK = 256; // rows per partial column sum

// partial[c][0][q], partial[c][1][q]: chunk c's sums of dy (x - mean) rstd and dy.
template <typename T>
__global__ void layer_norm_cols_kernel(const T *dy, const T *x, const T *mean, const T *rstd,
                                       double *partial, int64_t rows, int64_t n) {
    int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= n) {
        return;
    }
    int64_t n_chunks = (rows + LN_CHUNK - 1) / LN_CHUNK;
    // gridDim.y is at most 65535: more chunks than that loop.
    for (int64_t c = blockIdx.y; c < n_chunks; c += gridDim.y) {
        double gw = 0.0, gb = 0.0;
        int64_t end = (c + 1) * LN_CHUNK < rows ? (c + 1) * LN_CHUNK : rows;
        for (int64_t r = c * LN_CHUNK; r < end; r++) {
            double g = (double)dy[r * n + q];
            gw += g * (((double)x[r * n + q] - (double)mean[r]) * (double)rstd[r]);
            gb += g;
        }
        partial[(c * 2) * n + q] = gw;
        partial[(c * 2 + 1) * n + q] = gb;
    }
}

template <typename T>
__global__ void layer_norm_sum_kernel(const double *partial, int64_t n_chunks, int64_t n, T *dw,
                                      T *db) {
    int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= n) {
        return;
    }
    double gw = 0.0, gb = 0.0;
    for (int64_t c = 0; c < n_chunks; c++) {
        gw += partial[(c * 2) * n + q];
        gb += partial[(c * 2 + 1) * n + q];
    }
    dw[q] = (T)gw;
    db[q] = (T)gb;
}

// --- class losses: a warp per row ---

template <typename T>
__global__ void class_loss_kernel(bool ce, const T *x, const int64_t *target, int64_t n,
                                  int64_t classes, int64_t ignore, double *rows) {
    int lane = threadIdx.x & 31;
    int64_t i = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (i >= n) {
        return;
    }
    int64_t t = target[i];
    if (t == ignore) {
        if (lane == 0) {
            rows[i] = 0.0;
        }
        return;
    }
    const T *xr = x + i * classes;
    double loss = -(double)xr[t];
    if (ce) { // logsumexp(row) - x[t], the max subtracted first
        T m = -INFINITY;
        for (int64_t j = lane; j < classes; j += 32) {
            m = xr[j] > m ? xr[j] : m;
        }
        m = warp_max(m);
        double s = 0.0;
        for (int64_t j = lane; j < classes; j += 32) {
            s += (double)exp(xr[j] - m);
        }
        loss += (double)m + log(warp_sum(s));
    }
    if (lane == 0) {
        rows[i] = loss;
    }
}

template <typename T> __global__ void rows_none_kernel(const double *rows, int64_t n, T *out) {
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = (T)rows[i];
    }
}

template <typename T>
__global__ void rows_sum_kernel(const double *rows, int64_t n, double scale, T *out) {
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += 32) {
        s += rows[i];
    }
    s = warp_sum(s);
    if (threadIdx.x == 0) {
        out[0] = (T)(s * scale);
    }
}

template <typename T>
__global__ void ce_grad_kernel(const char *grad, int grad_dtype, bool per_row, double divisor,
                               const T *x, const int64_t *target, int64_t n, int64_t classes,
                               int64_t ignore, T *out) {
    int lane = threadIdx.x & 31;
    int64_t i = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (i >= n) {
        return;
    }
    int64_t t = target[i];
    const T *xr = x + i * classes;
    T *o = out + i * classes;
    if (t == ignore) {
        for (int64_t j = lane; j < classes; j += 32) {
            o[j] = T(0);
        }
        return;
    }
    double gv = load_as<double>(grad, grad_dtype, per_row ? i : 0) / divisor;
    T m = -INFINITY;
    for (int64_t j = lane; j < classes; j += 32) {
        m = xr[j] > m ? xr[j] : m;
    }
    m = warp_max(m);
    double s = 0.0;
    for (int64_t j = lane; j < classes; j += 32) {
        s += (double)exp(xr[j] - m);
    }
    T lse = (T)((double)m + log(warp_sum(s))), g = (T)gv;
    for (int64_t j = lane; j < classes; j += 32) {
        T v = g * exp(xr[j] - lse);
        o[j] = j == t ? v - g : v;
    }
}

template <typename T>
nsc_status ln_grad(const T *dy, const T *x, const T *mean, const T *rstd, const T *w, T *dx,
                          T *dw, T *db, int64_t rows, int64_t n) {
    if (rows > 0 && n > 0) {
        NSCI_LAUNCH((layer_norm_dx_kernel<T>), warp_blocks(rows), WARPS * 32, 0, dy, x, mean, rstd,
                    w, dx, rows, n);
    }
    if (n == 0) {
        return nsci_cuda_check_launch("layer_norm_backward");
    }
    int64_t n_chunks = (rows + LN_CHUNK - 1) / LN_CHUNK;
    double *partial = (double *)nsci_cuda_alloc((size_t)(n_chunks * 2 * n + 1) * sizeof(double));
    if (!partial) {
        return NSC_ERR_OOM;
    }
    dim3 grid((unsigned)((n + 255) / 256), (unsigned)(n_chunks < 65535 ? n_chunks : 65535));
    if (n_chunks > 0) {
        NSCI_LAUNCH((layer_norm_cols_kernel<T>), grid, 256, 0, dy, x, mean, rstd, partial, rows, n);
    }
    NSCI_LAUNCH((layer_norm_sum_kernel<T>), (unsigned)((n + 255) / 256), 256, 0, partial, n_chunks,
                n, dw, db);
    nsci_cuda_free(partial); // stream order: reused only by later launches
    return nsci_cuda_check_launch("layer_norm_backward");
}

} // namespace

extern "C" {

nsc_status nsci_cuda_reduce(const nsci_cuda_red *r) {
    if (r->n_out == 0) {
        return NSC_OK;
    }
    if (nsci_cuda_wants_columns(r)) {
        return nsci_cuda_reduce_columns(r);
    }
    if (nsci_cuda_wants_split(r)) {
        return nsci_cuda_reduce_split(r);
    }
    bool floats = r->x_dtype == NSC_F32 || r->x_dtype == NSC_F64;
    if (floats) {
        NSCI_LAUNCH((reduce_kernel<double>), warp_blocks(r->n_out), WARPS * 32, 0, *r);
    } else {
        NSCI_LAUNCH((reduce_kernel<int64_t>), warp_blocks(r->n_out), WARPS * 32, 0, *r);
    }
    return nsci_cuda_check_launch("reduction");
}

nsc_status nsci_cuda_softmax(int kind, nsc_dtype dtype, const void *a, const void *b, void *out,
                             int64_t outer, int64_t k, int64_t inner) {
    int blocks = warp_blocks(outer * inner);
    if (dtype == NSC_F64) {
        NSCI_LAUNCH((softmax_kernel<double>), blocks, WARPS * 32, 0, kind, (const double *)a,
                    (const double *)b, (double *)out, outer, k, inner);
    } else {
        NSCI_LAUNCH((softmax_kernel<float>), blocks, WARPS * 32, 0, kind, (const float *)a,
                    (const float *)b, (float *)out, outer, k, inner);
    }
    return nsci_cuda_check_launch("softmax");
}

nsc_status nsci_cuda_layer_norm(nsc_dtype dtype, const void *x, const void *w, const void *b,
                                void *y, void *mean, void *rstd, int64_t rows, int64_t n,
                                double eps) {
    if (rows == 0) {
        return NSC_OK;
    }
    if (dtype == NSC_F64) {
        NSCI_LAUNCH((layer_norm_kernel<double>), warp_blocks(rows), WARPS * 32, 0,
                    (const double *)x, (const double *)w, (const double *)b, (double *)y,
                    (double *)mean, (double *)rstd, rows, n, eps);
    } else {
        NSCI_LAUNCH((layer_norm_kernel<float>), warp_blocks(rows), WARPS * 32, 0, (const float *)x,
                    (const float *)w, (const float *)b, (float *)y, (float *)mean, (float *)rstd,
                    rows, n, eps);
    }
    return nsci_cuda_check_launch("layer_norm");
}

nsc_status nsci_cuda_layer_norm_grad(nsc_dtype dtype, const void *dy, const void *x,
                                     const void *mean, const void *rstd, const void *w, void *dx,
                                     void *dw, void *db, int64_t rows, int64_t n) {
    if (dtype == NSC_F64) {
        return ln_grad((const double *)dy, (const double *)x, (const double *)mean,
                       (const double *)rstd, (const double *)w, (double *)dx, (double *)dw,
                       (double *)db, rows, n);
    }
    return ln_grad((const float *)dy, (const float *)x, (const float *)mean, (const float *)rstd,
                   (const float *)w, (float *)dx, (float *)dw, (float *)db, rows, n);
}

nsc_status nsci_cuda_class_loss(bool cross_entropy, nsc_dtype dtype, const void *scores,
                                const int64_t *target, int64_t n, int64_t classes,
                                int64_t ignore_index, double *rows_out) {
    if (n == 0) {
        return NSC_OK;
    }
    if (dtype == NSC_F64) {
        NSCI_LAUNCH((class_loss_kernel<double>), warp_blocks(n), WARPS * 32, 0, cross_entropy,
                    (const double *)scores, target, n, classes, ignore_index, rows_out);
    } else {
        NSCI_LAUNCH((class_loss_kernel<float>), warp_blocks(n), WARPS * 32, 0, cross_entropy,
                    (const float *)scores, target, n, classes, ignore_index, rows_out);
    }
    return nsci_cuda_check_launch("class loss");
}

nsc_status nsci_cuda_rows_store(const double *rows, int64_t n, double scale, bool none,
                                nsc_dtype dtype, void *out) {
    if (none && n == 0) {
        return NSC_OK;
    }
    unsigned blocks = (unsigned)((n + 255) / 256);
    if (dtype == NSC_F64) {
        if (none) {
            NSCI_LAUNCH((rows_none_kernel<double>), blocks, 256, 0, rows, n, (double *)out);
        } else {
            NSCI_LAUNCH((rows_sum_kernel<double>), 1, 32, 0, rows, n, scale, (double *)out);
        }
    } else {
        if (none) {
            NSCI_LAUNCH((rows_none_kernel<float>), blocks, 256, 0, rows, n, (float *)out);
        } else {
            NSCI_LAUNCH((rows_sum_kernel<float>), 1, 32, 0, rows, n, scale, (float *)out);
        }
    }
    return nsci_cuda_check_launch("loss reduction");
}

nsc_status nsci_cuda_cross_entropy_grad(nsc_dtype dtype, const void *grad, nsc_dtype grad_dtype,
                                        bool per_row, double divisor, const void *logits,
                                        const int64_t *target, int64_t n, int64_t classes,
                                        int64_t ignore_index, void *out) {
    if (n == 0) {
        return NSC_OK;
    }
    if (dtype == NSC_F64) {
        NSCI_LAUNCH((ce_grad_kernel<double>), warp_blocks(n), WARPS * 32, 0, (const char *)grad,
                    grad_dtype, per_row, divisor, (const double *)logits, target, n, classes,
                    ignore_index, (double *)out);
    } else {
        NSCI_LAUNCH((ce_grad_kernel<float>), warp_blocks(n), WARPS * 32, 0, (const char *)grad,
                    grad_dtype, per_row, divisor, (const float *)logits, target, n, classes,
                    ignore_index, (float *)out);
    }
    return nsci_cuda_check_launch("cross_entropy_backward");
}

} // extern "C"
