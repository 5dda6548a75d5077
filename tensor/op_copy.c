// Copies and conversions: contiguous, clone, to_dtype, to_device, and the CPU
// strided copy (with broadcasting and dtype conversion) that reshape, copy_,
// cat and friends share.
// https://pytorch.org/docs/stable/generated/torch.Tensor.to.html
#include <string.h>

#include "tensor/op_params.h"
#include "tensor/tensor_impl.h"

// --- the CPU copy kernel ---

// One inner loop per (destination, source) dtype pair.
#define COPY_LOOP(NAME, TD, TS, CONVERT)                                                           \
    static void NAME(int64_t n, char **p, const int64_t *s, void *ctx) {                           \
        (void)ctx;                                                                                 \
        char *d = p[0];                                                                            \
        const char *x = p[1];                                                                      \
        if (s[0] == (int64_t)sizeof(TD) && s[1] == (int64_t)sizeof(TS)) {                          \
            TD *restrict dd = (TD *)d;                                                             \
            const TS *restrict xx = (const TS *)x;                                                 \
            for (int64_t i = 0; i < n; i++) {                                                      \
                TS v = xx[i];                                                                      \
                dd[i] = CONVERT;                                                                   \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            TS v = *(const TS *)(x + i * s[1]);                                                    \
            *(TD *)(d + i * s[0]) = CONVERT;                                                       \
        }                                                                                          \
    }

COPY_LOOP(copy_f32_f32, float, float, v)
COPY_LOOP(copy_f32_f64, float, double, (float)v)
COPY_LOOP(copy_f32_i64, float, int64_t, (float)v)
COPY_LOOP(copy_f32_bool, float, uint8_t, (float)(v != 0))
COPY_LOOP(copy_f64_f32, double, float, (double)v)
COPY_LOOP(copy_f64_f64, double, double, v)
COPY_LOOP(copy_f64_i64, double, int64_t, (double)v)
COPY_LOOP(copy_f64_bool, double, uint8_t, (double)(v != 0))
COPY_LOOP(copy_i64_f32, int64_t, float, nsci_float_to_i64(v))
COPY_LOOP(copy_i64_f64, int64_t, double, nsci_float_to_i64(v))
COPY_LOOP(copy_i64_i64, int64_t, int64_t, v)
COPY_LOOP(copy_i64_bool, int64_t, uint8_t, (int64_t)(v != 0))
COPY_LOOP(copy_bool_f32, uint8_t, float, (uint8_t)(v != 0))
COPY_LOOP(copy_bool_f64, uint8_t, double, (uint8_t)(v != 0))
COPY_LOOP(copy_bool_i64, uint8_t, int64_t, (uint8_t)(v != 0))
COPY_LOOP(copy_bool_bool, uint8_t, uint8_t, (uint8_t)(v != 0))

static const nsci_inner_fn copy_loops[NSC_N_DTYPES][NSC_N_DTYPES] = {
    [NSC_F32] = { copy_f32_f32, copy_f32_f64, copy_f32_i64, copy_f32_bool },
    [NSC_F64] = { copy_f64_f32, copy_f64_f64, copy_f64_i64, copy_f64_bool },
    [NSC_I64] = { copy_i64_f32, copy_i64_f64, copy_i64_i64, copy_i64_bool },
    [NSC_BOOL] = { copy_bool_f32, copy_bool_f64, copy_bool_i64, copy_bool_bool },
};

nsc_status nsci_copy_into(nsc_tensor *dst, nsc_tensor *src) {
    int64_t n = nsci_numel(dst->ndim, dst->shape);
    if (n == 0) {
        return NSC_OK;
    }
    if (dst->dtype == src->dtype && nsci_is_contiguous(dst) && nsci_is_contiguous(src) &&
        nsci_numel(src->ndim, src->shape) == n) {
        memcpy(nsci_data_ptr(dst), nsci_data_ptr(src), (size_t)n * nsc_dtype_size(dst->dtype));
        return NSC_OK;
    }
    nsc_tensor *ops[2] = { dst, src };
    nsci_iter it;
    nsci_iter_init(&it, 2, ops);
    nsci_iter_run(&it, copy_loops[dst->dtype][src->dtype], NULL, NSCI_GRAIN);
    return NSC_OK;
}

nsc_tensor *nsci_cpu_convert(nsc_tensor *x, nsc_dtype dtype) {
    nsc_tensor *t = nsci_tensor_header(dtype, NSC_CPU, x->ndim, x->shape);
    if (!t || nsci_tensor_alloc_data(t) != NSC_OK) {
        nsc_free(t);
        return NULL;
    }
    nsci_copy_into(t, x);
    return t;
}

static void meta_like(nsci_meta *m, const nsc_tensor *x, nsc_dtype dtype) {
    m->dtype = dtype;
    m->ndim = x->ndim;
    memcpy(m->shape, x->shape, sizeof x->shape);
}

static nsc_status copy_cpu(nsci_call *c) {
    return nsci_copy_into(c->out[0], c->in[0]);
}

// --- contiguous / clone ---

static nsc_status contiguous_infer(nsci_call *c) {
    const nsc_tensor *x = c->in[0];
    nsci_meta *m = &c->meta[0];
    meta_like(m, x, (nsc_dtype)x->dtype);
    if (nsci_is_contiguous(x)) {
        // Already contiguous: the result is a new view of all of x.
        memcpy(m->stride, x->stride, sizeof x->stride);
        m->offset = x->offset;
        m->is_view = true;
    }
    return NSC_OK;
}

static nsc_status clone_infer(nsci_call *c) {
    meta_like(&c->meta[0], c->in[0], (nsc_dtype)c->in[0]->dtype);
    return NSC_OK;
}

static nsc_status identity_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                    nsc_tensor **grad_in) {
    (void)g;
    grad_in[0] = nsc_retain(grad_out[0]);
    return NSC_OK;
}

const nsci_op_def nsci_op_contiguous = {
    .name = "contiguous",
    .arity = 1,
    .n_outputs = 1,
    .infer = contiguous_infer,
    .cpu = copy_cpu,
    .backward = identity_backward,
    .flags = NSCI_OP_VIEW,
};

const nsci_op_def nsci_op_clone = {
    .name = "clone",
    .arity = 1,
    .n_outputs = 1,
    .infer = clone_infer,
    .cpu = copy_cpu,
    .backward = identity_backward,
};

nsc_tensor *nsc_contiguous(nsc_tensor *x) {
    return nsci_run(NSC_OP_contiguous, 1, &x, NULL);
}

nsc_tensor *nsc_clone(nsc_tensor *x) {
    return nsci_run(NSC_OP_clone, 1, &x, NULL);
}

// --- to_dtype / to_device ---

static const nsci_param_desc to_dtype_desc[] = {
    { "dtype", NSCI_PARAM_DTYPE, offsetof(to_params, dtype), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static const nsci_param_desc to_device_desc[] = {
    { "device", NSCI_PARAM_DEVICE, offsetof(to_params, device), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

static nsc_status to_dtype_infer(nsci_call *c) {
    const to_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    if ((unsigned)p->dtype >= NSC_N_DTYPES) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "unknown dtype %d", (int)p->dtype);
    }
    nsci_meta *m = &c->meta[0];
    meta_like(m, x, p->dtype);
    if (p->dtype == x->dtype) {
        memcpy(m->stride, x->stride, sizeof x->stride);
        m->offset = x->offset;
        m->is_view = true;
    }
    return NSC_OK;
}

static nsc_status to_dtype_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                    nsc_tensor **grad_in) {
    grad_in[0] = nsc_to_dtype(grad_out[0], g->in_meta[0].dtype);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_to_dtype = {
    .name = "to_dtype",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(to_params),
    .params = to_dtype_desc,
    .infer = to_dtype_infer,
    .cpu = copy_cpu,
    .backward = to_dtype_backward,
    .flags = NSCI_OP_VIEW,
};

nsc_tensor *nsc_to_dtype(nsc_tensor *x, nsc_dtype dtype) {
    to_params p = { .dtype = dtype };
    return nsci_run(NSC_OP_to_dtype, 1, &x, &p);
}

static nsc_status to_device_infer(nsci_call *c) {
    const to_params *p = c->params;
    const nsc_tensor *x = c->in[0];
    if ((unsigned)p->device >= NSC_N_DEVICES || p->device == NSC_META) {
        return nsci_call_fail(c, NSC_ERR_DEVICE, "device %d: expected cpu or cuda",
                              (int)p->device);
    }
    nsci_meta *m = &c->meta[0];
    meta_like(m, x, (nsc_dtype)x->dtype);
    m->device = p->device;
    int current = x->device == NSC_META ? x->target_device : x->device;
    if (current == (int)p->device) {
        memcpy(m->stride, x->stride, sizeof x->stride);
        m->offset = x->offset;
        m->is_view = true;
    } else if (!nsci_device_table[p->device].alloc) {
        return nsci_call_fail(c, NSC_ERR_DEVICE, "device %s is not available (built without it, "
                                                 "or nsc_cuda_init() not called)",
                              nsc_device_name(p->device));
    }
    return NSC_OK;
}

// CPU to CPU only ever happens as a view; a CUDA side runs the CUDA kernel.
static nsc_status to_device_cpu(nsci_call *c) {
    return nsci_copy_into(c->out[0], c->in[0]);
}

static nsc_status to_device_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                     nsc_tensor **grad_in) {
    grad_in[0] = nsc_to(grad_out[0], g->in_meta[0].device);
    return grad_in[0] ? NSC_OK : nsc_last_status();
}

const nsci_op_def nsci_op_to_device = {
    .name = "to_device",
    .arity = 1,
    .n_outputs = 1,
    .params_size = sizeof(to_params),
    .params = to_device_desc,
    .infer = to_device_infer,
    .cpu = to_device_cpu,
    .backward = to_device_backward,
    .flags = NSCI_OP_VIEW | NSCI_OP_CROSS_DEVICE,
};

nsc_tensor *nsc_to(nsc_tensor *x, nsc_device device) {
    to_params p = { .device = device };
    return nsci_run(NSC_OP_to_device, 1, &x, &p);
}
