// Reductions of many elements into few outputs, every kind. A warp per
// output (cuda/op_reduce.cu) leaves most of the GPU idle when there are few
// outputs: a sum of all 38M elements of GPT-2's embedding gradient, or the
// max of 8 x 1024 x 50257 logits, would run on one warp. Instead a warp per
// (output, chunk of SPLIT_CHUNK elements) writes a partial, and a warp per
// output combines its partials: lane-strided, then a shuffle tree. Both
// orders are fixed, so results do not depend on scheduling. Partials:
//   sum, mean        a = the sum (i: the wrapped i64 sum of integer inputs)
//   max, min         v, i = the best value and its position (i < 0: none)
//   all, any         a = 1 or 0
//   logsumexp        a = the max m (NaN wins), b = sum exp(x - shift(m)),
//                    shift(m) = 0 when m is infinite, else m; i = count
//   norm             a = the sum of nsci_norm_term(x, ord), or max / min |x|
//   var, std         a = the mean, b = the sum of squared deviations from
//                    it, i = count; combined by Chan's formula (the CPU
//                    makes two passes over all elements; both in double)
#include <math.h>

#include "cuda/reduce_device.cuh"

namespace {

const int64_t SPLIT_CHUNK = 16384;
const int64_t SPLIT_MAX_OUT = 2048;

template <typename T> struct partial {
    T v;
    double a, b;
    int64_t i;
};

__device__ double shift_of(double m) {
    return isinf(m) ? 0.0 : m;
}

// The partial of no elements.
template <typename T> __device__ partial<T> identity(int kind) {
    partial<T> p = { T(0), 0.0, 0.0, 0 };
    if (kind == NSCI_RED_MAX || kind == NSCI_RED_MIN) {
        p.i = -1;
    } else if (kind == NSCI_RED_ALL) {
        p.a = 1.0;
    } else if (kind == NSCI_RED_LSE) {
        p.a = -INFINITY;
    } else if (kind == NSCI_RED_AMIN) {
        p.a = INFINITY;
    }
    return p;
}

template <typename T> __device__ partial<T> combine(int kind, partial<T> x, partial<T> y) {
    switch (kind) {
        case NSCI_RED_MAX:
        case NSCI_RED_MIN: {
            pick<T> px = { x.v, x.i }, py = { y.v, y.i };
            return takes(py, px, kind == NSCI_RED_MAX) ? y : x;
        }
        case NSCI_RED_ALL:
            x.a = (x.a != 0 && y.a != 0) ? 1.0 : 0.0;
            return x;
        case NSCI_RED_ANY:
            x.a = (x.a != 0 || y.a != 0) ? 1.0 : 0.0;
            return x;
        case NSCI_RED_LSE: {
            if (x.i == 0 || y.i == 0) {
                return x.i == 0 ? y : x;
            }
            double m = (isnan(x.a) || x.a >= y.a) ? x.a : y.a;
            m = isnan(y.a) ? y.a : m;
            double to = shift_of(m);
            // An all -inf side has b = 0: it adds nothing (0 * exp(big) would be NaN).
            double bx = x.b == 0.0 ? 0.0 : x.b * exp(shift_of(x.a) - to);
            double by = y.b == 0.0 ? 0.0 : y.b * exp(shift_of(y.a) - to);
            partial<T> out = { T(0), m, bx + by, x.i + y.i };
            return out;
        }
        case NSCI_RED_NORM:
            x.a += y.a;
            return x;
        case NSCI_RED_AMAX:
        case NSCI_RED_AMIN:
            x.a = nsci_norm_pick_abs(x.a, y.a, kind == NSCI_RED_AMAX);
            return x;
        case NSCI_RED_VAR:
        case NSCI_RED_STD: {
            if (x.i == 0 || y.i == 0) {
                return x.i == 0 ? y : x;
            }
            double n = (double)(x.i + y.i), delta = y.a - x.a;
            partial<T> out = { T(0), x.a + delta * ((double)y.i / n),
                               x.b + y.b + delta * delta * ((double)x.i * (double)y.i / n),
                               x.i + y.i };
            return out;
        }
        default: // sum, mean: a for floats, i for integers
            x.a += y.a;
            x.i = (int64_t)((uint64_t)x.i + (uint64_t)y.i);
            return x;
    }
}

template <typename T> __device__ partial<T> shuffle(partial<T> p, int lane_mask) {
    partial<T> q;
    q.v = __shfl_xor_sync(0xffffffffu, p.v, lane_mask);
    q.a = __shfl_xor_sync(0xffffffffu, p.a, lane_mask);
    q.b = __shfl_xor_sync(0xffffffffu, p.b, lane_mask);
    q.i = __shfl_xor_sync(0xffffffffu, p.i, lane_mask);
    return q;
}

// Elements [lo, hi) of output o's reduced range, one warp: its partial (every lane).
template <typename T>
__device__ partial<T> chunk(const nsci_cuda_red &r, int64_t base, int64_t lo, int64_t hi,
                            int lane) {
#define ELEM(j)                                                                                    \
    load_as<T>(r.x, r.x_dtype, base + nsci_cuda_unravel(r.n_red, r.red_shape, r.red_stride, j))
    partial<T> p = identity<T>(r.kind);
    bool integer = r.out_dtype == NSC_I64 || r.out_dtype == NSC_BOOL;
    if (r.kind == NSCI_RED_MAX || r.kind == NSCI_RED_MIN) {
        for (int64_t j = lo + lane; j < hi; j += 32) {
            partial<T> e = { ELEM(j), 0.0, 0.0, j };
            p = combine(r.kind, p, e);
        }
        for (int s = 16; s > 0; s >>= 1) {
            p = combine(r.kind, p, shuffle(p, s));
        }
    } else if (r.kind == NSCI_RED_ALL || r.kind == NSCI_RED_ANY) {
        bool all = r.kind == NSCI_RED_ALL, acc = all;
        for (int64_t j = lo + lane; j < hi; j += 32) {
            bool v = ELEM(j) != T(0);
            acc = all ? (acc && v) : (acc || v);
        }
        p.a = (all ? __all_sync(0xffffffffu, acc) : __any_sync(0xffffffffu, acc)) ? 1.0 : 0.0;
    } else if (r.kind == NSCI_RED_SUM && integer) {
        int64_t acc = 0;
        for (int64_t j = lo + lane; j < hi; j += 32) {
            acc = (int64_t)((uint64_t)acc + (uint64_t)(int64_t)ELEM(j));
        }
        p.i = warp_sum_i(acc);
    } else if (r.kind == NSCI_RED_LSE) {
        double m = -INFINITY, s = 0.0;
        for (int64_t j = lo + lane; j < hi; j += 32) {
            double v = (double)ELEM(j);
            m = (isnan(m) || m >= v) ? m : v;
            m = isnan(v) ? v : m;
        }
        m = warp_max_nan(m);
        for (int64_t j = lo + lane; j < hi; j += 32) {
            s += exp((double)ELEM(j) - shift_of(m));
        }
        p.a = m;
        p.b = warp_sum(s);
        p.i = hi - lo;
    } else if (r.kind == NSCI_RED_NORM || r.kind == NSCI_RED_AMAX || r.kind == NSCI_RED_AMIN) {
        bool sum = r.kind == NSCI_RED_NORM, max = r.kind == NSCI_RED_AMAX;
        double acc = p.a;
        for (int64_t j = lo + lane; j < hi; j += 32) {
            double v = (double)ELEM(j);
            acc = sum ? acc + nsci_norm_term(v, r.ord) : nsci_norm_pick_abs(acc, fabs(v), max);
        }
        p.a = sum ? warp_sum(acc) : warp_pick_abs(acc, max);
    } else if (r.kind == NSCI_RED_VAR || r.kind == NSCI_RED_STD) {
        double s = 0.0, m2 = 0.0;
        for (int64_t j = lo + lane; j < hi; j += 32) {
            s += (double)ELEM(j);
        }
        double mean = warp_sum(s) / (double)(hi - lo);
        for (int64_t j = lo + lane; j < hi; j += 32) {
            double d = (double)ELEM(j) - mean;
            m2 += d * d;
        }
        p.a = mean;
        p.b = warp_sum(m2);
        p.i = hi - lo;
    } else { // float sum, mean
        double s = 0.0;
        for (int64_t j = lo + lane; j < hi; j += 32) {
            s += (double)ELEM(j);
        }
        p.a = warp_sum(s);
    }
#undef ELEM
    return p;
}

template <typename T>
__global__ void split_chunk_kernel(nsci_cuda_red r, int64_t n_chunks, partial<T> *parts) {
    int lane = threadIdx.x & 31;
    int64_t w = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (w >= r.n_out * n_chunks) {
        return; // the whole warp leaves together
    }
    int64_t o = w / n_chunks, lo = (w % n_chunks) * SPLIT_CHUNK;
    int64_t hi = lo + SPLIT_CHUNK < r.n_red_elems ? lo + SPLIT_CHUNK : r.n_red_elems;
    int64_t base = nsci_cuda_unravel(r.n_kept, r.kept_shape, r.kept_stride, o);
    partial<T> p = chunk<T>(r, base, lo, hi, lane);
    if (lane == 0) {
        parts[w] = p;
    }
}

template <typename T>
__global__ void split_finish_kernel(nsci_cuda_red r, int64_t n_chunks, const partial<T> *parts) {
    int lane = threadIdx.x & 31;
    int64_t o = (int64_t)blockIdx.x * WARPS + threadIdx.x / 32;
    if (o >= r.n_out) {
        return;
    }
    partial<T> p = identity<T>(r.kind);
    for (int64_t c = lane; c < n_chunks; c += 32) {
        p = combine(r.kind, p, parts[o * n_chunks + c]);
    }
    for (int s = 16; s > 0; s >>= 1) {
        p = combine(r.kind, p, shuffle(p, s));
    }
    if (lane != 0) {
        return;
    }
    bool integer = r.out_dtype == NSC_I64 || r.out_dtype == NSC_BOOL;
    double n = (double)r.n_red_elems, result = p.a;
    switch (r.kind) {
        case NSCI_RED_MAX:
        case NSCI_RED_MIN:
            if (r.out) {
                store_as(r.out, r.out_dtype, o, (double)p.v, (int64_t)p.v, integer);
            }
            if (r.index) {
                r.index[o] = p.i;
            }
            return;
        case NSCI_RED_ALL:
        case NSCI_RED_ANY:
            ((uint8_t *)r.out)[o] = p.a != 0;
            return;
        case NSCI_RED_SUM:
            if (integer) {
                store_as(r.out, r.out_dtype, o, 0, p.i, true);
                return;
            }
            break;
        case NSCI_RED_MEAN:
            result = p.a * (1.0 / n);
            break;
        case NSCI_RED_LSE:
            result = log(p.b) + shift_of(p.a);
            break;
        case NSCI_RED_NORM:
        case NSCI_RED_AMAX:
        case NSCI_RED_AMIN:
            result = nsci_norm_finish(p.a, r.ord);
            break;
        default: { // var, std
            double divisor = n - r.correction;
            result = divisor > 0 ? p.b / divisor : NAN;
            result = r.kind == NSCI_RED_STD ? sqrt(result) : result;
        }
    }
    store_as(r.out, r.out_dtype, o, result, 0, false);
}

template <typename T> nsc_status split_run(const nsci_cuda_red *r) {
    int64_t n_chunks = (r->n_red_elems + SPLIT_CHUNK - 1) / SPLIT_CHUNK;
    partial<T> *parts =
        (partial<T> *)nsci_cuda_alloc((size_t)(r->n_out * n_chunks) * sizeof(partial<T>));
    if (!parts) {
        return NSC_ERR_OOM;
    }
    NSCI_LAUNCH((split_chunk_kernel<T>), warp_blocks(r->n_out * n_chunks), WARPS * 32, 0, *r,
                n_chunks, parts);
    NSCI_LAUNCH((split_finish_kernel<T>), warp_blocks(r->n_out), WARPS * 32, 0, *r, n_chunks,
                parts);
    nsci_cuda_free(parts); // stream order: reused only by later launches
    return nsci_cuda_check_launch("reduction (split)");
}

} // namespace

bool nsci_cuda_wants_split(const nsci_cuda_red *r) {
    return r->n_red_elems >= 2 * SPLIT_CHUNK && r->n_out < SPLIT_MAX_OUT;
}

nsc_status nsci_cuda_reduce_split(const nsci_cuda_red *r) {
    bool floats = r->x_dtype == NSC_F32 || r->x_dtype == NSC_F64;
    return floats ? split_run<double>(r) : split_run<int64_t>(r);
}
