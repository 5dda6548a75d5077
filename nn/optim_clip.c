// Gradient clipping by the global L2 norm (torch.nn.utils.clip_grad_norm_).
// Separate from the optimizers: it works on any list of parameters.
#include <math.h>

#include "nn/optim_impl.h"

// Elements per block of the sum of squares. Blocks are summed in a fixed
// order, so the norm does not depend on how many threads took part.
enum {
    NORM_BLOCK = 16384
};

typedef struct sumsq_job {
    const void *data;
    bool is_f32;
    int64_t numel;
    double *partial; // one per block
} sumsq_job;

// Sum of squares of [begin, end) in f64; eight accumulators break the add
// dependency chain (the order is fixed, so the result still is).
static double sumsq_range(const sumsq_job *job, int64_t begin, int64_t end) {
    double acc[8] = { 0 };
    int64_t k = begin;
    if (job->is_f32) {
        const float *x = job->data;
        for (; k + 8 <= end; k += 8) {
            for (int j = 0; j < 8; j++) {
                acc[j] += (double)x[k + j] * (double)x[k + j];
            }
        }
        for (; k < end; k++) {
            acc[0] += (double)x[k] * (double)x[k];
        }
    } else {
        const double *x = job->data;
        for (; k + 8 <= end; k += 8) {
            for (int j = 0; j < 8; j++) {
                acc[j] += x[k + j] * x[k + j];
            }
        }
        for (; k < end; k++) {
            acc[0] += x[k] * x[k];
        }
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static void sumsq_blocks(void *ctx, int64_t begin, int64_t end) {
    sumsq_job *job = ctx;
    for (int64_t b = begin; b < end; b++) {
        int64_t lo = b * NORM_BLOCK, hi = NSCI_MIN(lo + NORM_BLOCK, job->numel);
        job->partial[b] = sumsq_range(job, lo, hi);
    }
}

// Sum of squares of a contiguous CPU float tensor; partial has room for its blocks.
static double sumsq(nsc_tensor *g, double *partial) {
    sumsq_job job = { nsci_data_ptr(g), g->dtype == NSC_F32, nsc_tensor_numel(g), partial };
    int64_t n_blocks = (job.numel + NORM_BLOCK - 1) / NORM_BLOCK;
    nsci_parallel_for(n_blocks, 2, sumsq_blocks, &job);
    double total = 0;
    for (int64_t b = 0; b < n_blocks; b++) {
        total += partial[b];
    }
    return total;
}

static void scale_f32(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {
    const float coef = (float)*(const double *)ctx;
    for (int64_t k = 0; k < n; k++) {
        float *x = (float *)(ptrs[0] + k * strides[0]);
        *x = *x * coef;
    }
}

static void scale_f64(int64_t n, char **ptrs, const int64_t *strides, void *ctx) {
    const double coef = *(const double *)ctx;
    for (int64_t k = 0; k < n; k++) {
        double *x = (double *)(ptrs[0] + k * strides[0]);
        *x = *x * coef;
    }
}

// Multiplies g in place by coef (rounded to g's dtype first, as torch's f32
// coefficient tensor is), bumping its version as an in-place op does.
static void scale(nsc_tensor *g, double coef) {
    nsci_iter it;
    nsci_iter_init(&it, 1, &g);
    nsci_iter_run(&it, g->dtype == NSC_F32 ? scale_f32 : scale_f64, &coef, NSCI_GRAIN);
    atomic_fetch_add(&g->storage->version, 1);
}

static nsc_status check_args(int64_t n_params, nsc_tensor *const *params, double max_norm) {
    if (!params || n_params < 0 || !(max_norm >= 0)) {
        return nsci_fail(NSC_ERR_ARG,
                         "clip_grad_norm: %lld parameters%s, max_norm %g: expected a list and "
                         "max_norm >= 0",
                         (long long)n_params, params ? "" : " (NULL list)", max_norm);
    }
    for (int64_t i = 0; i < n_params; i++) {
        if (!params[i]) {
            return nsci_fail(NSC_ERR_ARG, "clip_grad_norm: parameter %lld is NULL", (long long)i);
        }
        nsc_tensor *g = nsc_tensor_get_grad(params[i]);
        if (g && (g->device == NSC_META || !nsci_is_float((nsc_dtype)g->dtype))) {
            return nsci_fail(NSC_ERR_DEVICE,
                             "clip_grad_norm: parameter %lld: gradient %s on %s: expected a "
                             "float gradient with data (cpu or cuda)",
                             (long long)i, nsc_dtype_name((nsc_dtype)g->dtype),
                             nsc_device_name((nsc_device)g->device));
        }
        // Scaled in place: an expanded gradient would scale its shared
        // elements once per position (torch refuses such a write too).
        int repeated = g ? nsci_optim_repeated_dim(g) : -1;
        if (repeated >= 0) {
            return nsci_fail(NSC_ERR_ARG,
                             "clip_grad_norm: parameter %lld: dim %d of its gradient repeats "
                             "one memory location (stride 0): the gradient is scaled in place",
                             (long long)i, repeated);
        }
    }
    return NSC_OK;
}

// Contiguous views of every CPU gradient (NULL where none or on another
// device), the list of the other devices' gradients, and room for the
// largest CPU gradient's block sums; all or nothing.
typedef struct clip_lists {
    nsc_tensor **cpu;    // [n_params]
    nsc_tensor **device; // [n_device]
    int64_t n_device;
    double *partial;
} clip_lists;

static nsc_status gather(int64_t n_params, nsc_tensor *const *params, clip_lists *l) {
    int64_t max_blocks = 1;
    size_t slots = (size_t)NSCI_MAX(n_params, 1);
    l->cpu = nsci_calloc(slots, sizeof *l->cpu);
    l->device = nsci_calloc(slots, sizeof *l->device);
    if (!l->cpu || !l->device) {
        return NSC_ERR_OOM;
    }
    for (int64_t i = 0; i < n_params; i++) {
        nsc_tensor *g = nsc_tensor_get_grad(params[i]);
        if (g && g->device != NSC_CPU) {
            l->device[l->n_device++] = g;
        }
        if (!g || g->device != NSC_CPU) {
            continue;
        }
        if (!(l->cpu[i] = nsc_contiguous(g))) {
            return nsc_last_status();
        }
        int64_t numel = nsc_tensor_numel(g);
        max_blocks = NSCI_MAX(max_blocks, (numel + NORM_BLOCK - 1) / NORM_BLOCK);
    }
    l->partial = nsci_malloc((size_t)max_blocks * sizeof *l->partial);
    return l->partial ? NSC_OK : NSC_ERR_OOM;
}

nsc_status nsc_clip_grad_norm_(int64_t n_params, nsc_tensor *const *params, double max_norm,
                               double *total_norm) {
    if (check_args(n_params, params, max_norm) != NSC_OK) {
        return nsc_last_status();
    }
    clip_lists l = { 0 };
    nsc_no_grad_begin(); // contiguous copies of gradients must not be recorded
    nsc_status status = gather(n_params, params, &l);
    double sum = 0;
    for (int64_t i = 0; status == NSC_OK && i < n_params; i++) {
        sum += l.cpu[i] ? sumsq(l.cpu[i], l.partial) : 0.0;
    }
    double device_sum = 0;
    if (status == NSC_OK && l.n_device > 0) {
        status = nsci_grads_sumsq_ops(l.n_device, l.device, &device_sum);
        if (status != NSC_OK) {
            nsci_error_context("clip_grad_norm: the norms of %lld device gradients",
                               (long long)l.n_device);
        }
    }
    double norm = sqrt(sum + device_sum);
    double coef = max_norm / (norm + 1e-6);
    bool clip = status == NSC_OK && !(coef >= 1.0);
    // The device's gradients first: their scaling can be refused (its checks
    // run before any write) or hit a device fault, the CPU loop cannot fail,
    // so a refusal changes nothing.
    if (clip && l.n_device > 0) {
        status = nsci_grads_scale_ops(l.n_device, l.device, coef);
        if (status != NSC_OK) {
            nsci_error_context("clip_grad_norm: scaling %lld device gradients",
                               (long long)l.n_device);
        }
        clip = status == NSC_OK;
    }
    for (int64_t i = 0; clip && i < n_params; i++) {
        if (l.cpu[i]) {
            scale(nsc_tensor_get_grad(params[i]), coef); // the gradient, not its contiguous copy
        }
    }
    if (status == NSC_OK && total_norm) {
        *total_norm = norm;
    }
    for (int64_t i = 0; l.cpu && i < n_params; i++) {
        nsc_free(l.cpu[i]);
    }
    nsci_free(l.cpu);
    nsci_free(l.device);
    nsci_free(l.partial);
    nsc_no_grad_end();
    return status;
}

nsc_status nsc_optim_clip_grad_norm(nsc_optim *opt, double max_norm, double *total_norm) {
    if (!opt) {
        return nsci_fail(NSC_ERR_ARG, "clip_grad_norm: optimizer is NULL");
    }
    return nsc_clip_grad_norm_(opt->n_params, opt->params, max_norm, total_norm);
}
