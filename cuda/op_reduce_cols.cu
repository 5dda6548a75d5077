// Sums and means down columns: outputs adjacent in memory (the last kept dim
// has stride 1) reduced along strided dims, as a bias gradient sums a
// [tokens, C] gradient over its rows, and sum_to_size folds a broadcast
// gradient. The warp-per-output kernel reads such a column with its 32
// lanes in 32 different rows, 32 memory segments per load; here the lanes
// of a warp take 32 adjacent columns, so each load is one segment. A block
// is 32 columns x 8 row slices over one chunk of COL_CHUNK reduced
// positions (blockIdx.y); slices and then chunks are added in a fixed
// order, so the result does not depend on scheduling. Accumulation in
// double, as the other reductions.
#include "cuda/reduce_device.cuh"

namespace {

const int COL_SLICES = 8;
const int64_t COL_CHUNK = 2048;
const int64_t MAX_CHUNKS = 65535; // gridDim.y

// result: the finished value of output o after its only chunk.
__device__ inline void cols_store(const nsci_cuda_red &r, int64_t o, double s) {
    double n = (double)r.n_red_elems;
    store_as(r.out, r.out_dtype, o, r.kind == NSCI_RED_SUM ? s : s * (1.0 / n), 0, false);
}

// partial NULL: one chunk, stored as the result.
__global__ void cols_chunk_kernel(nsci_cuda_red r, double *partial) {
    NSCI_DYNAMIC_SHARED(double, slice); // [COL_SLICES][32]
    int64_t o = (int64_t)blockIdx.x * 32 + threadIdx.x;
    int64_t lo = (int64_t)blockIdx.y * COL_CHUNK;
    int64_t hi = lo + COL_CHUNK < r.n_red_elems ? lo + COL_CHUNK : r.n_red_elems;
    double s = 0.0;
    if (o < r.n_out) {
        int64_t base = nsci_cuda_unravel(r.n_kept, r.kept_shape, r.kept_stride, o);
        for (int64_t j = lo + threadIdx.y; j < hi; j += COL_SLICES) {
            s += load_as<double>(r.x, r.x_dtype,
                                 base + nsci_cuda_unravel(r.n_red, r.red_shape, r.red_stride, j));
        }
    }
    slice[threadIdx.y * 32 + threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < r.n_out) {
        double t = 0.0;
        for (int k = 0; k < COL_SLICES; k++) {
            t += slice[k * 32 + threadIdx.x];
        }
        if (partial) {
            partial[(int64_t)blockIdx.y * r.n_out + o] = t;
        } else {
            cols_store(r, o, t);
        }
    }
}

__global__ void cols_finish_kernel(nsci_cuda_red r, int64_t n_chunks, const double *partial) {
    int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= r.n_out) {
        return;
    }
    double s = 0.0;
    for (int64_t c = 0; c < n_chunks; c++) {
        s += partial[c * r.n_out + o];
    }
    cols_store(r, o, s);
}

} // namespace

bool nsci_cuda_wants_columns(const nsci_cuda_red *r) {
    bool kind = r->kind == NSCI_RED_SUM || r->kind == NSCI_RED_MEAN;
    bool floats = (r->x_dtype == NSC_F32 || r->x_dtype == NSC_F64) &&
                  (r->out_dtype == NSC_F32 || r->out_dtype == NSC_F64);
    bool columns = r->n_kept > 0 && r->kept_stride[r->n_kept - 1] == 1 && r->n_red > 0 &&
                   r->red_stride[r->n_red - 1] != 1;
    int64_t n_chunks = (r->n_red_elems + COL_CHUNK - 1) / COL_CHUNK;
    // fewer reduced positions than row slices would leave most threads idle
    return kind && floats && columns && r->n_out >= 32 && r->n_red_elems >= COL_SLICES &&
           n_chunks <= MAX_CHUNKS;
}

nsc_status nsci_cuda_reduce_columns(const nsci_cuda_red *r) {
    int64_t n_chunks = (r->n_red_elems + COL_CHUNK - 1) / COL_CHUNK;
    double *partial = NULL; // one chunk: no partials, no second launch
    if (n_chunks > 1) {
        partial = (double *)nsci_cuda_alloc((size_t)(r->n_out * n_chunks) * sizeof(double));
        if (!partial) {
            return nsc_last_status();
        }
    }
    dim3 grid((unsigned)((r->n_out + 31) / 32), (unsigned)n_chunks);
    dim3 block(32, COL_SLICES);
    NSCI_LAUNCH((cols_chunk_kernel), grid, block, COL_SLICES * 32 * sizeof(double), *r, partial);
    if (partial) {
        NSCI_LAUNCH((cols_finish_kernel), (unsigned)((r->n_out + 255) / 256), 256, 0, *r, n_chunks,
                    partial);
        nsci_cuda_free(partial); // stream order: reused only by later launches
    }
    return nsci_cuda_check_launch("reduction (columns)");
}
