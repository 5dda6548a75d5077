// Fused scaled dot-product attention (GPT-2's, as Hugging Face's eager path
// computes it) and its additive mask. Letters: B batch, H heads, T queries,
// S keys (cache + new), D head size (Dv for values).
// q: [B, H, T, D]; k: [B, H, S, D]; v: [B, H, S, Dv]; mask: [B, S] (nonzero:
// attend); out: [B, T, H, Dv]. The CPU kernel takes blocks of QBLOCK queries
// of one (batch, head): scores [QBLOCK, S] by one GEMM, a masked softmax per
// row, then one GEMM with v straight into the output; keys past a block's
// causal limit are never touched. Separate from op_matmul.c: it reuses the
// portable GEMM on blocks, never BLAS (STYLE.md: OpenBLAS only there).
// https://pytorch.org/docs/stable/generated/torch.nn.functional.scaled_dot_product_attention.html
#include <float.h>
#include <math.h>
#include <string.h>

#include "nsc/ops_attention.h"
#include "tensor/gemm_impl.h"
#include "tensor/op_params.h"
#include "tensor/reduce.h"

enum {
    QBLOCK = 64
}; // queries per task: a [64, S] score block stays in L2

static const nsci_param_desc attention_desc[] = {
    { "scale", NSCI_PARAM_F64, offsetof(attention_params, scale), 0 },
    { "causal", NSCI_PARAM_BOOL, offsetof(attention_params, causal), 0 },
    { NULL, NSCI_PARAM_END, 0, 0 },
};

// --- shape rule ---

static nsc_status attention_infer(nsci_call *c) {
    const attention_params *p = c->params;
    if (c->n_in != 3 && c->n_in != 4) {
        return nsci_call_fail(c, NSC_ERR_ARG, "%d inputs: expected q, k, v and an optional mask",
                              c->n_in);
    }
    const nsc_tensor *q = c->in[0], *k = c->in[1], *v = c->in[2];
    if (!nsci_is_float((nsc_dtype)q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "dtypes %s, %s, %s: expected one of f32, f64",
                              nsc_dtype_name((nsc_dtype)q->dtype),
                              nsc_dtype_name((nsc_dtype)k->dtype),
                              nsc_dtype_name((nsc_dtype)v->dtype));
    }
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "expected q [B,H,T,D], k [B,H,S,D], v [B,H,S,Dv]");
    }
    int64_t b = q->shape[0], h = q->shape[1], t = q->shape[2], s = k->shape[2];
    if (k->shape[0] != b || v->shape[0] != b || k->shape[1] != h || v->shape[1] != h ||
        k->shape[3] != q->shape[3] || v->shape[2] != s) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "expected q [B,H,T,D], k [B,H,S,D], v [B,H,S,Dv] "
                              "with one B, H, S and D");
    }
    if (p->causal && s < t) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "causal attention of %lld queries over %lld keys: expected at "
                              "least as many keys as queries",
                              (long long)t, (long long)s);
    }
    if (c->n_in == 4) {
        const nsc_tensor *m = c->in[3];
        if (m->ndim != 2 || m->shape[0] != b || m->shape[1] != s) {
            return nsci_call_fail(c, NSC_ERR_SHAPE, "mask: expected [B, S] = [%lld, %lld]",
                                  (long long)b, (long long)s);
        }
    }
    nsci_meta *o = &c->meta[0];
    o->dtype = (nsc_dtype)q->dtype;
    o->ndim = 4;
    o->shape[0] = b;
    o->shape[1] = t;
    o->shape[2] = h;
    o->shape[3] = v->shape[3];
    return NSC_OK;
}

// --- CPU kernel ---

typedef struct attention_job {
    const nsc_tensor *q, *k, *v;
    nsc_tensor *out;
    const uint8_t *keep; // [B, S]: 1 where the mask lets a key be attended; NULL: all
    double scale;
    bool causal;
    int64_t b, h, t, s, n_blocks;
    atomic_int failed;
} attention_job;

// The masked softmax of one score row, in place over x[0..s). Keys up to
// limit (inclusive) are candidates; masked ones get the dtype's lowest value
// added, as Hugging Face's additive mask, so they weigh 0 unless no key is
// allowed, when every one of the s keys weighs 1/s. Each returns the number
// of leading columns that carry weight.

// Scales x[0..limit] and adds the mask; false (x = 1/s everywhere) when no
// key may be attended.
#define MASK_ROW(NAME, TYPE, LOWEST)                                                               \
    static bool NAME(TYPE *x, int64_t s, int64_t limit, const uint8_t *keep, TYPE scale) {         \
        bool any = !keep;                                                                          \
        for (int64_t j = 0; keep && j <= limit; j++) {                                             \
            any |= keep[j] != 0;                                                                   \
        }                                                                                          \
        if (!any) {                                                                                \
            for (int64_t j = 0; j < s; j++) {                                                      \
                x[j] = (TYPE)1 / (TYPE)s;                                                          \
            }                                                                                      \
            return false;                                                                          \
        }                                                                                          \
        for (int64_t j = 0; j <= limit; j++) {                                                     \
            x[j] *= scale;                                                                         \
        }                                                                                          \
        for (int64_t j = 0; keep && j <= limit; j++) {                                             \
            x[j] += keep[j] ? (TYPE)0 : LOWEST;                                                    \
        }                                                                                          \
        for (int64_t j = limit + 1; j < s; j++) {                                                  \
            x[j] = 0;                                                                              \
        }                                                                                          \
        return true;                                                                               \
    }

MASK_ROW(mask_row_f32, float, -FLT_MAX)
MASK_ROW(mask_row_f64, double, -DBL_MAX)

// f32: softmax's vectorized rows (tensor/op_reduce_vec.c), in place.
static int64_t softmax_row_f32(float *x, int64_t s, int64_t limit, const uint8_t *keep,
                               float scale) {
    if (!mask_row_f32(x, s, limit, keep, scale)) {
        return s;
    }
    nsci_softmax_job job = { .a = (const char *)x, .out = (char *)x, .k = limit + 1, .inner = 1 };
    nsci_softmax_rows_f32(&job, 0, 1);
    return limit + 1;
}

static int64_t softmax_row_f64(double *x, int64_t s, int64_t limit, const uint8_t *keep,
                               double scale) {
    if (!mask_row_f64(x, s, limit, keep, scale)) {
        return s;
    }
    double max = -DBL_MAX, sum = 0;
    for (int64_t j = 0; j <= limit; j++) {
        max = x[j] > max ? x[j] : max;
    }
    for (int64_t j = 0; j <= limit; j++) {
        x[j] = exp(x[j] - max);
        sum += x[j];
    }
    for (int64_t j = 0; j <= limit; j++) {
        x[j] /= sum;
    }
    return limit + 1;
}

// A GEMM over one (batch, head): C[m, n] = A[m, k] B[k, n] with strides.
static nsc_status block_gemm(nsc_dtype dtype, int64_t m, int64_t n, int64_t k, const char *a,
                             int64_t a_rs, int64_t a_cs, const char *b, int64_t b_rs, int64_t b_cs,
                             char *c, int64_t c_rs) {
    nsci_gemm g = { .dtype = dtype, .m = m, .n = n, .k = k, .a = a, .b = b, .c = c };
    g.a_rs = a_rs;
    g.a_cs = a_cs;
    g.b_rs = b_rs;
    g.b_cs = b_cs;
    g.c_rs = c_rs;
    g.n_batch = 1;
    return nsci_gemm_portable(&g);
}

// One block of queries [i0, i1) of (batch bi, head hi); scores is [QBLOCK, S].
static nsc_status attention_block(attention_job *j, int64_t bi, int64_t hi, int64_t i0, int64_t i1,
                                  char *scores) {
    const nsc_tensor *q = j->q, *k = j->k, *v = j->v;
    nsc_dtype dt = (nsc_dtype)q->dtype;
    size_t el = nsc_dtype_size(dt);
    int64_t s = j->s, offset = s - j->t; // query i sits at position offset + i
    int64_t n_keys = j->causal ? offset + i1 : s;
    const char *qp = nsci_data_ptr(q) + (bi * q->stride[0] + hi * q->stride[1]) * (int64_t)el;
    const char *kp = nsci_data_ptr(k) + (bi * k->stride[0] + hi * k->stride[1]) * (int64_t)el;
    const char *vp = nsci_data_ptr(v) + (bi * v->stride[0] + hi * v->stride[1]) * (int64_t)el;
    nsc_status st =
        block_gemm(dt, i1 - i0, n_keys, q->shape[3], qp + i0 * q->stride[2] * (int64_t)el,
                   q->stride[2], q->stride[3], kp, k->stride[3], k->stride[2], scores, s);
    if (st != NSC_OK) {
        return st;
    }
    const uint8_t *keep = j->keep ? j->keep + bi * s : NULL;
    int64_t used = 0;
    for (int64_t i = i0; i < i1; i++) {
        int64_t limit = j->causal ? offset + i : s - 1;
        char *row = scores + (i - i0) * s * (int64_t)el;
        int64_t n = dt == NSC_F32 ? softmax_row_f32((float *)row, s, limit, keep, (float)j->scale)
                                  : softmax_row_f64((double *)row, s, limit, keep, j->scale);
        used = NSCI_MAX(used, n);
    }
    char *op =
        nsci_data_ptr(j->out) +
        (bi * j->out->stride[0] + i0 * j->out->stride[1] + hi * j->out->stride[2]) * (int64_t)el;
    return block_gemm(dt, i1 - i0, v->shape[3], used, scores, s, 1, vp, v->stride[2], v->stride[3],
                      op, j->out->stride[1]);
}

static void attention_range(void *ctx, int64_t begin, int64_t end) {
    attention_job *j = ctx;
    size_t el = nsc_dtype_size((nsc_dtype)j->q->dtype);
    char *scores = nsci_malloc((size_t)QBLOCK * (size_t)j->s * el);
    if (!scores) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (int64_t task = begin; task < end && !atomic_load(&j->failed); task++) {
        int64_t blk = task % j->n_blocks, bh = task / j->n_blocks;
        int64_t i0 = blk * QBLOCK, i1 = NSCI_MIN(i0 + QBLOCK, j->t);
        if (attention_block(j, bh / j->h, bh % j->h, i0, i1, scores) != NSC_OK) {
            atomic_store(&j->failed, 1);
        }
    }
    nsci_free(scores);
}

// keep[b, j] = mask[b, j] != 0 as bytes, or NULL (and *buf NULL) without mask.
static nsc_status keep_mask(nsci_call *c, uint8_t **buf) {
    *buf = NULL;
    if (c->n_in < 4) {
        return NSC_OK;
    }
    nsc_tensor *m = nsci_cpu_contiguous(c->in[3]);
    int64_t n = m ? nsci_numel(m->ndim, m->shape) : 0;
    uint8_t *keep = m ? nsci_malloc((size_t)(n ? n : 1)) : NULL;
    if (!keep) {
        nsc_free(m);
        return nsc_last_status();
    }
    const char *src = nsci_data_ptr(m);
    size_t el = nsc_dtype_size((nsc_dtype)m->dtype);
    for (int64_t i = 0; i < n; i++) {
        keep[i] = nsci_load(src + (size_t)i * el, (nsc_dtype)m->dtype) != 0;
    }
    nsc_free(m);
    *buf = keep;
    return NSC_OK;
}

static nsc_status attention_cpu(nsci_call *c) {
    const attention_params *p = c->params;
    nsc_tensor *out = c->out[0];
    int64_t b = out->shape[0], t = out->shape[1], h = out->shape[2], s = c->in[1]->shape[2];
    if (nsci_numel(out->ndim, out->shape) == 0) {
        return NSC_OK;
    }
    if (s == 0) { // no keys: softmax over nothing, a sum over nothing
        memset(nsci_data_ptr(out), 0,
               (size_t)nsci_numel(4, out->shape) * nsc_dtype_size(out->dtype));
        return NSC_OK;
    }
    attention_job j = { .q = c->in[0],
                        .k = c->in[1],
                        .v = c->in[2],
                        .out = out,
                        .scale = p->scale,
                        .causal = p->causal,
                        .b = b,
                        .h = h,
                        .t = t,
                        .s = s };
    j.n_blocks = (t + QBLOCK - 1) / QBLOCK;
    atomic_init(&j.failed, 0);
    uint8_t *keep = NULL;
    if (keep_mask(c, &keep) != NSC_OK) {
        return nsc_last_status();
    }
    j.keep = keep;
    nsci_parallel_for(b * h * j.n_blocks, 1, attention_range, &j);
    nsci_free(keep);
    if (atomic_load(&j.failed)) {
        return nsci_call_fail(c, NSC_ERR_OOM, "out of memory for the score blocks");
    }
    return NSC_OK;
}

// --- backward ---
// Recomputes P = softmax(q k^T * scale + bias) with public ops (so it runs
// on every device), then dV = P^T dO, dS = softmax_backward(dO v^T, P) *
// scale, dQ = dS k, dK = dS^T q. The mask carries no gradient.

static nsc_status attention_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                     nsc_tensor **grad_in) {
    const attention_params *p = g->params;
    nsc_tensor *q = g->in[0], *k = g->in[1], *v = g->in[2];
    nsc_tensor *mask = g->n_in > 3 ? g->in[3] : NULL;
    int64_t t = g->in_meta[0].shape[2], s = g->in_meta[1].shape[2];
    nsc_device dev = nsc_tensor_device(q) == NSC_META ? NSC_META : nsc_tensor_device(q);
    nsc_tensor *bias = nsc_attention_bias(mask, t, s, p->causal, nsc_tensor_dtype(q), dev);
    nsc_tensor *kt = nsc_transpose(k, -2, -1);
    nsc_tensor *raw = nsc_matmul(q, kt);
    nsc_tensor *scaled = nsc_mul_scalar(raw, p->scale);
    nsc_tensor *x = nsc_add(scaled, bias);
    nsc_tensor *prob = nsc_softmax(x, -1);
    nsc_tensor *go = nsc_transpose(grad_out[0], 1, 2); // [B, H, T, Dv]
    nsc_tensor *vt = nsc_transpose(v, -2, -1);
    nsc_tensor *dp = nsc_matmul(go, vt);
    nsc_tensor *ds_raw = prob && dp ? nsci_softmax_backward(dp, prob, -1) : NULL;
    nsc_tensor *ds = nsc_mul_scalar(ds_raw, p->scale);
    nsc_tensor *pt = nsc_transpose(prob, -2, -1), *dst = nsc_transpose(ds, -2, -1);
    if (g->needs_grad[0]) {
        grad_in[0] = nsc_matmul(ds, k);
    }
    if (g->needs_grad[1]) {
        grad_in[1] = nsc_matmul(dst, q);
    }
    if (g->needs_grad[2]) {
        grad_in[2] = nsc_matmul(pt, go);
    }
    nsc_tensor *temps[] = { bias, kt, raw, scaled, x, prob, go, vt, dp, ds_raw, ds, pt, dst };
    bool ok = dst && pt;
    for (int i = 0; i < 3; i++) {
        ok = ok && (!g->needs_grad[i] || grad_in[i]);
    }
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
    if (!ok) {
        for (int i = 0; i < 3; i++) {
            nsc_free(grad_in[i]);
            grad_in[i] = NULL;
        }
        return nsc_last_status() != NSC_OK ? nsc_last_status() : NSC_ERR_STATE;
    }
    return NSC_OK;
}

const nsci_op_def nsci_op_attention = {
    .name = "attention",
    .arity = -1,
    .n_outputs = 1,
    .params_size = sizeof(attention_params),
    .params = attention_desc,
    .infer = attention_infer,
    .cpu = attention_cpu,
    .backward = attention_backward,
    .save_inputs = 15,
    .exempt = {
        [NSCI_CASE_BROADCAST] = "q, k, v and the mask do not broadcast: shapes must agree",
        [NSCI_CASE_RANK0] = "q, k and v are rank 4",
    },
};

nsc_tensor *nsc_attention(nsc_tensor *q, nsc_tensor *k, nsc_tensor *v, nsc_tensor *mask,
                          double scale, bool causal) {
    attention_params p = { .scale = scale, .causal = causal };
    nsc_tensor *in[4] = { q, k, v, mask };
    return nsci_run(NSC_OP_attention, mask ? 4 : 3, in, &p);
}

// --- the additive mask ---

nsc_tensor *nsc_attention_bias(nsc_tensor *mask, int64_t t, int64_t s, bool causal, nsc_dtype dtype,
                               nsc_device device) {
    if (!nsci_is_float(dtype) || t < 0 || s < 0 || (causal && s < t) ||
        (mask && (nsc_tensor_ndim(mask) != 2 || nsc_tensor_size(mask, 1) != s))) {
        return nsci_fail_null(NSC_ERR_ARG,
                              "attention_bias: %lld queries, %lld keys, dtype %s, mask %s: "
                              "expected a float dtype, a [B, %lld] mask%s",
                              (long long)t, (long long)s, nsc_dtype_name(dtype),
                              mask ? "given" : "absent", (long long)s,
                              causal ? " and at least as many keys as queries" : "");
    }
    int64_t b = mask ? nsc_tensor_size(mask, 0) : 1;
    nsc_device dev =
        device == NSC_META || (mask && nsc_tensor_device(mask) == NSC_META) ? NSC_META : device;
    nsc_tensor *allowed = nsc_ones(NSC_BOOL, dev, NSC_SHAPE(1, 1, t, s));
    if (causal) {
        nsc_tensor *tri = nsc_tril(allowed, s - t);
        nsc_free(allowed);
        allowed = tri;
    }
    if (mask) {
        nsc_tensor *keep = nsc_ne_scalar(mask, 0);
        nsc_tensor *keep4 = nsc_view(keep, NSC_SHAPE(b, 1, 1, s));
        nsc_tensor *both = nsc_logical_and(allowed, keep4);
        nsc_free(keep);
        nsc_free(keep4);
        nsc_free(allowed);
        allowed = both;
    }
    nsc_tensor *masked = nsc_logical_not(allowed);
    nsc_tensor *zeros = nsc_zeros(dtype, dev, NSC_SHAPE(b, 1, t, s));
    nsc_tensor *bias =
        nsc_masked_fill(zeros, masked, dtype == NSC_F32 ? -(double)FLT_MAX : -DBL_MAX);
    nsc_free(allowed);
    nsc_free(masked);
    nsc_free(zeros);
    return bias;
}
