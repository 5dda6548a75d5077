// Matrix products: matmul and linear. The CPU kernel describes a product as a
// batched GEMM (tensor/gemm_impl.h) and hands transposed, strided and
// broadcast operands to OpenBLAS as they are: transA/transB, lda/ldb and one
// pointer per batch. Only an operand with no unit-stride dim is copied first.
// The only file that calls OpenBLAS; `make BLAS=none` runs gemm_portable.c.
// Letters: A [M, K] @ B [K, N] = C [M, N]; batch dims lead.
#include <limits.h>
#include <pthread.h>
#include <string.h>

#ifndef NSC_NO_BLAS
#include <cblas.h>
#endif

#include "tensor/gemm_impl.h"

// --- shape rules ---

// torch.matmul and F.linear do not promote: every input has one dtype.
static nsc_status check_dtypes(nsci_call *c) {
    nsc_dtype t = (nsc_dtype)c->in[0]->dtype;
    for (int i = 1; i < c->n_in; i++) {
        if (c->in[i]->dtype != t) {
            return nsci_call_fail(c, NSC_ERR_DTYPE,
                                  "dtypes %s (input 0) and %s (input %d) differ: convert one "
                                  "with to_dtype",
                                  nsc_dtype_name(t), nsc_dtype_name(c->in[i]->dtype), i);
        }
    }
    if (t == NSC_BOOL) {
        return nsci_call_fail(c, NSC_ERR_DTYPE, "bool is not supported: expected f32, f64 or i64");
    }
    return NSC_OK;
}

// torch.matmul: https://pytorch.org/docs/1.13/generated/torch.matmul.html
// a [..., M, K] or [K]; b [..., K, N] or [K]; out [batch..., M, N] where the
// batch dims broadcast and the M (N) dim is absent when a (b) is 1-D.
static nsc_status matmul_infer(nsci_call *c) {
    const nsc_tensor *a = c->in[0], *b = c->in[1];
    if (a->ndim == 0 || b->ndim == 0) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "both operands need at least 1 dim (torch.matmul refuses 0-dim "
                              "tensors: use mul)");
    }
    if (check_dtypes(c) != NSC_OK) {
        return nsc_last_status();
    }
    int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim >= 2 ? b->ndim - 2 : 0];
    if (ka != kb) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "inner sizes %lld and %lld differ", (long long)ka,
                              (long long)kb);
    }
    nsci_meta *m = &c->meta[0];
    int na = NSCI_MAX(a->ndim - 2, 0), nb = NSCI_MAX(b->ndim - 2, 0), n = NSCI_MAX(na, nb);
    for (int d = 0; d < n; d++) {
        int64_t sa = d >= n - na ? a->shape[d - (n - na)] : 1;
        int64_t sb = d >= n - nb ? b->shape[d - (n - nb)] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            return nsci_call_fail(c, NSC_ERR_SHAPE,
                                  "batch sizes %lld and %lld cannot broadcast (batch dim %d)",
                                  (long long)sa, (long long)sb, d - n);
        }
        m->shape[d] = sa == 1 ? sb : sa;
    }
    m->ndim = n;
    if (a->ndim >= 2) {
        m->shape[m->ndim++] = a->shape[a->ndim - 2];
    }
    if (b->ndim >= 2) {
        m->shape[m->ndim++] = b->shape[b->ndim - 1];
    }
    m->dtype = (nsc_dtype)a->dtype;
    return NSC_OK;
}

// F.linear: https://pytorch.org/docs/1.13/generated/torch.nn.functional.linear.html
// x [..., in]; weight [out, in]; bias [out] (or [1] or 0-dim: broadcast);
// out [..., out].
static nsc_status linear_infer(nsci_call *c) {
    const nsc_tensor *x = c->in[0], *w = c->in[1], *bias = c->n_in > 2 ? c->in[2] : NULL;
    if (x->ndim == 0) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "input is 0-dim: expected [..., in]");
    }
    if (w->ndim != 2) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "weight has %d dims: expected [out, in]", w->ndim);
    }
    if (x->shape[x->ndim - 1] != w->shape[1]) {
        return nsci_call_fail(c, NSC_ERR_SHAPE,
                              "input has %lld features, weight [out, in] expects %lld",
                              (long long)x->shape[x->ndim - 1], (long long)w->shape[1]);
    }
    if (bias && (bias->ndim > 1 ||
                 (bias->ndim == 1 && bias->shape[0] != w->shape[0] && bias->shape[0] != 1))) {
        return nsci_call_fail(c, NSC_ERR_SHAPE, "bias does not broadcast to [%lld]",
                              (long long)w->shape[0]);
    }
    if (check_dtypes(c) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_meta *m = &c->meta[0];
    m->ndim = x->ndim;
    memcpy(m->shape, x->shape, sizeof x->shape);
    m->shape[x->ndim - 1] = w->shape[0];
    m->dtype = (nsc_dtype)x->dtype;
    return NSC_OK;
}

// --- describing a product as a batched GEMM ---

// An operand's geometry; linear's B is its weight read transposed.
typedef struct operand {
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
    int64_t stride[NSC_MAX_DIMS];
    const char *data;
} operand;

static operand operand_of(const nsc_tensor *t, bool transpose_2d) {
    operand o = { .ndim = t->ndim, .data = nsci_data_ptr(t) };
    memcpy(o.shape, t->shape, sizeof o.shape);
    memcpy(o.stride, t->stride, sizeof o.stride);
    if (transpose_2d) {
        o.shape[0] = t->shape[1];
        o.shape[1] = t->shape[0];
        o.stride[0] = t->stride[1];
        o.stride[1] = t->stride[0];
    }
    return o;
}

// Stride of x along output batch dim d of nb (0 where x is broadcast).
static int64_t batch_stride(const operand *x, int d, int nb) {
    int k = d - (nb - NSCI_MAX(x->ndim - 2, 0));
    return (k < 0 || x->shape[k] == 1) ? 0 : x->stride[k];
}

// out = a @ b with torch.matmul's rules; out is contiguous.
static void describe(nsci_gemm *g, const operand *a, const operand *b, nsc_tensor *out) {
    memset(g, 0, sizeof *g);
    int an = a->ndim, bn = b->ndim;
    g->dtype = (nsc_dtype)out->dtype;
    g->k = a->shape[an - 1];
    g->m = an >= 2 ? a->shape[an - 2] : 1;
    g->n = bn >= 2 ? b->shape[bn - 1] : 1;
    g->a_cs = a->stride[an - 1];
    g->a_rs = an >= 2 ? a->stride[an - 2] : g->k; // one row: any stride
    g->b_rs = b->stride[bn >= 2 ? bn - 2 : 0];
    g->b_cs = bn >= 2 ? b->stride[bn - 1] : 1; // one column: any stride
    g->c_rs = g->n;
    g->a = a->data;
    g->b = b->data;
    g->c = nsci_data_ptr(out);
    int nb = out->ndim - (an >= 2) - (bn >= 2);
    g->n_batch_dims = nb;
    g->n_batch = 1;
    int64_t c_stride = g->m * g->n;
    for (int d = nb - 1; d >= 0; d--) {
        g->batch_shape[d] = out->shape[d];
        g->a_bstride[d] = batch_stride(a, d, nb);
        g->b_bstride[d] = batch_stride(b, d, nb);
        g->c_bstride[d] = c_stride;
        c_stride *= out->shape[d];
        g->n_batch *= out->shape[d];
    }
}

// Folds trailing batch dims into M where B is the same matrix for each and
// A's rows continue at one stride: [B, T, K] @ [K, N] is one [B*T, K] @ [K, N]
// product, which BLAS threads far better than B small ones.
static void fold_batches(nsci_gemm *g) {
    if (g->n_batch == 0) {
        return; // nothing to compute
    }
    int d = g->n_batch_dims - 1;
    for (; d >= 0; d--) {
        int64_t s = g->batch_shape[d];
        if (s == 1) {
            continue;
        }
        if (g->b_bstride[d] != 0 || g->a_bstride[d] == 0) {
            break;
        }
        if (g->m != 1 && g->a_bstride[d] != g->a_rs * g->m) {
            break;
        }
        if (g->m == 1) {
            g->a_rs = g->a_bstride[d];
        }
        g->m *= s;
        g->n_batch /= s;
    }
    g->n_batch_dims = d + 1;
}

// --- OpenBLAS ---

#ifndef NSC_NO_BLAS

// How BLAS reads a rows x cols matrix with element strides (rs, cs): row-major
// with leading dim ld, or the transpose of a row-major cols x rows matrix.
typedef struct blas_mat {
    bool ok, trans;
    int64_t ld;
} blas_mat;

static blas_mat blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
    blas_mat r = { false, false, 0 };
    if ((cols <= 1 || cs == 1) && (rows <= 1 || rs >= NSCI_MAX(1, cols))) {
        r.ok = true;
        r.ld = rows <= 1 ? NSCI_MAX(1, cols) : rs;
    } else if ((rows <= 1 || rs == 1) && (cols <= 1 || cs >= NSCI_MAX(1, rows))) {
        r.ok = r.trans = true;
        r.ld = cols <= 1 ? NSCI_MAX(1, rows) : cs;
    }
    return r;
}

// OpenBLAS takes int sizes; larger products run on the portable kernels.
static bool fits_int(const nsci_gemm *g) {
    int64_t most = NSCI_MAX(NSCI_MAX(g->m, g->n), NSCI_MAX(g->k, g->c_rs));
    most = NSCI_MAX(most, NSCI_MAX(NSCI_MAX(g->a_rs, g->a_cs), NSCI_MAX(g->b_rs, g->b_cs)));
    return most <= INT_MAX;
}

// OpenBLAS runs products up to this many multiply-adds on one thread
// (SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_THRESHOLD in its interface/gemm.c),
// so a batch of them can run on our pool without the two pools competing.
static const double BLAS_SERIAL_MNK = 65536.0 * 4.0;

static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT; // global: set once

// OpenBLAS starts with one thread per core whatever NSC_NUM_THREADS says: make
// it follow our pool before the first product.
static void blas_init(void) {
    openblas_set_num_threads(nsci_pool_threads());
}

static CBLAS_TRANSPOSE trans_of(blas_mat l) {
    return l.trans ? CblasTrans : CblasNoTrans;
}

// One product through sgemm/dgemm.
static void blas_gemm(const nsci_gemm *g, const char *a, const char *b, char *c) {
    blas_mat la = blas_layout(g->m, g->k, g->a_rs, g->a_cs);
    blas_mat lb = blas_layout(g->k, g->n, g->b_rs, g->b_cs);
    int m = (int)g->m, n = (int)g->n, k = (int)g->k, lda = (int)la.ld, ldb = (int)lb.ld;
    if (g->dtype == NSC_F32) {
        cblas_sgemm(CblasRowMajor, trans_of(la), trans_of(lb), m, n, k, 1.0f, (const float *)a, lda,
                    (const float *)b, ldb, g->accumulate ? 1.0f : 0.0f, (float *)c, (int)g->c_rs);
    } else {
        cblas_dgemm(CblasRowMajor, trans_of(la), trans_of(lb), m, n, k, 1.0, (const double *)a, lda,
                    (const double *)b, ldb, g->accumulate ? 1.0 : 0.0, (double *)c, (int)g->c_rs);
    }
}

// y (contiguous) += op(mat) x through sgemv/dgemv; mat is rows x cols as laid
// out in l, x has `cols` elements at stride incx.
static void blas_gemv(nsc_dtype t, blas_mat l, int64_t rows, int64_t cols, const char *mat,
                      const char *x, int64_t incx, char *y) {
    // A transposed layout stores the cols x rows matrix row-major.
    CBLAS_TRANSPOSE tr = l.trans ? CblasTrans : CblasNoTrans;
    int r = (int)(l.trans ? cols : rows), cl = (int)(l.trans ? rows : cols);
    if (t == NSC_F32) {
        cblas_sgemv(CblasRowMajor, tr, r, cl, 1.0f, (const float *)mat, (int)l.ld, (const float *)x,
                    (int)incx, 1.0f, (float *)y, 1);
    } else {
        cblas_dgemv(CblasRowMajor, tr, r, cl, 1.0, (const double *)mat, (int)l.ld,
                    (const double *)x, (int)incx, 1.0, (double *)y, 1);
    }
}

// A single product with one row or one column is a matrix-vector product (or
// a dot); OpenBLAS's gemm would pack for nothing. C is zeroed first so that
// no path depends on how BLAS treats beta = 0.
static void blas_single(const nsci_gemm *g) {
    size_t e = nsc_dtype_size(g->dtype);
    if (g->m > 1 && g->n > 1) {
        blas_gemm(g, g->a, g->b, g->c);
        return;
    }
    if (!g->accumulate) {
        memset(g->c, 0, (size_t)(g->m * g->n) * e);
    }
    int64_t inc_a = g->k > 1 ? g->a_cs : 1, inc_b = g->k > 1 ? g->b_rs : 1;
    if (g->m == 1 && g->n == 1) {
        int k = (int)g->k;
        if (g->dtype == NSC_F32) {
            *(float *)g->c +=
                cblas_sdot(k, (const float *)g->a, (int)inc_a, (const float *)g->b, (int)inc_b);
        } else {
            *(double *)g->c +=
                cblas_ddot(k, (const double *)g->a, (int)inc_a, (const double *)g->b, (int)inc_b);
        }
    } else if (g->n == 1) { // C [M, 1] = A b
        blas_mat la = blas_layout(g->m, g->k, g->a_rs, g->a_cs);
        blas_gemv(g->dtype, la, g->m, g->k, g->a, g->b, inc_b, g->c);
    } else { // C [1, N] = a B, i.e. Cᵀ = Bᵀ aᵀ
        blas_mat lb = blas_layout(g->k, g->n, g->b_rs, g->b_cs);
        blas_mat lbt = { true, !lb.trans, lb.ld };
        blas_gemv(g->dtype, lbt, g->n, g->k, g->b, g->a, inc_a, g->c);
    }
}

static void blas_batch_range(void *ctx, int64_t begin, int64_t end) {
    const nsci_gemm *g = ctx;
    for (int64_t t = begin; t < end; t++) {
        const char *a, *b;
        char *c;
        nsci_gemm_batch_ptrs(g, t, &a, &b, &c);
        blas_gemm(g, a, b, c);
    }
}

static void blas_run(const nsci_gemm *g) {
    pthread_once(&g_blas_once, blas_init);
    if (g->n_batch == 1) {
        blas_single(g);
        return;
    }
    double mnk = (double)g->m * (double)g->n * (double)g->k;
    if (mnk <= BLAS_SERIAL_MNK) {
        // Small products: one per task on our pool; OpenBLAS stays on one thread.
        int64_t grain = (int64_t)(32768.0 / mnk) + 1;
        nsci_parallel_for(g->n_batch, grain, blas_batch_range, (void *)g);
    } else {
        blas_batch_range((void *)g, 0, g->n_batch); // OpenBLAS threads each product
    }
}
#endif

void nsci_blas_set_threads(int n) {
#ifndef NSC_NO_BLAS
    pthread_once(&g_blas_once, blas_init);
    openblas_set_num_threads(n);
#else
    (void)n;
#endif
}

static nsc_status run_gemm(const nsci_gemm *g) {
    if (g->n_batch == 0 || g->m == 0 || g->n == 0) {
        return NSC_OK;
    }
#ifndef NSC_NO_BLAS
    if (g->dtype != NSC_I64 && g->k > 0 && fits_int(g)) {
        blas_run(g);
        return NSC_OK;
    }
#endif
    return nsci_gemm_portable(g);
}

// --- CPU kernels ---

// Linear's bias, broadcast over every row of the contiguous out.
static void fill_bias(nsc_tensor *out, const nsc_tensor *bias, int64_t n) {
    size_t e = nsc_dtype_size((nsc_dtype)out->dtype);
    int64_t rows = nsci_numel(out->ndim, out->shape) / n;
    if (rows == 0) {
        return;
    }
    char *row0 = nsci_data_ptr(out);
    const char *src = nsci_data_ptr(bias);
    int64_t step = (bias->ndim == 1 && bias->shape[0] == n) ? bias->stride[0] : 0;
    for (int64_t j = 0; j < n; j++) {
        memcpy(row0 + (size_t)j * e, src + (size_t)(j * step) * e, e);
    }
    for (int64_t r = 1; r < rows; r++) {
        memcpy(row0 + (size_t)(r * n) * e, row0, (size_t)n * e);
    }
}

// Describes out = a @ b (b_is_weight: b is linear's [out, in] weight, read
// transposed) and folds what it can.
static void plan(nsci_gemm *g, nsc_tensor *a, nsc_tensor *b, bool b_is_weight, nsc_tensor *out) {
    operand oa = operand_of(a, false), ob = operand_of(b, b_is_weight);
    describe(g, &oa, &ob, out);
    fold_batches(g);
}

// The kernel of matmul and linear. With OpenBLAS, an operand whose layout it
// cannot read (no unit-stride dim, or a stride-0 matrix dim) becomes a
// contiguous copy; nothing else is copied.
static nsc_status product_cpu(nsci_call *c, bool is_linear) {
    nsc_tensor *a = c->in[0], *b = c->in[1], *out = c->out[0];
    nsc_tensor *bias = is_linear && c->n_in > 2 ? c->in[2] : NULL;
    nsc_tensor *copies[2] = { NULL, NULL };
    nsci_gemm g;
    plan(&g, a, b, is_linear, out);
#ifndef NSC_NO_BLAS
    if (g.dtype != NSC_I64 && g.k > 0 && g.m > 0 && g.n > 0 && fits_int(&g)) {
        bool a_ok = blas_layout(g.m, g.k, g.a_rs, g.a_cs).ok;
        bool b_ok = blas_layout(g.k, g.n, g.b_rs, g.b_cs).ok;
        if ((!a_ok && !(copies[0] = nsci_cpu_convert(a, g.dtype))) ||
            (!b_ok && !(copies[1] = nsci_cpu_convert(b, g.dtype)))) {
            nsc_free(copies[0]);
            return nsc_last_status();
        }
        if (!a_ok || !b_ok) {
            plan(&g, copies[0] ? copies[0] : a, copies[1] ? copies[1] : b, is_linear, out);
        }
    }
#endif
    if (bias && g.n > 0) {
        fill_bias(out, bias, g.n);
        g.accumulate = true;
    }
    nsc_status status = run_gemm(&g);
    nsc_free(copies[0]);
    nsc_free(copies[1]);
    return status;
}

static nsc_status matmul_cpu(nsci_call *c) {
    return product_cpu(c, false);
}

static nsc_status linear_cpu(nsci_call *c) {
    return product_cpu(c, true);
}

// --- backward rules ---

// x with a size-1 dim inserted at dim when it is 1-D (matmul's promotion).
static nsc_tensor *as_2d(nsc_tensor *x, int dim) {
    return x->ndim == 1 ? nsc_unsqueeze(x, dim) : nsc_retain(x);
}

// Sums t (a gradient in the promoted, broadcast shape) down to the input's
// shape `m`: broadcast batch dims are summed, a promoted 1-D shape restored.
// Consumes t.
static nsc_tensor *reduce_to(nsc_tensor *t, const nsci_meta *m, bool is_b) {
    int64_t shape2[NSC_MAX_DIMS];
    int ndim2 = m->ndim == 1 ? 2 : m->ndim;
    memcpy(shape2, m->shape, sizeof shape2);
    if (m->ndim == 1) {
        shape2[0] = is_b ? m->shape[0] : 1;
        shape2[1] = is_b ? 1 : m->shape[0];
    }
    nsc_tensor *s = t;
    if (t && (t->ndim != ndim2 || memcmp(t->shape, shape2, (size_t)ndim2 * 8) != 0)) {
        s = nsc_sum_to_size(t, ndim2, shape2);
        nsc_free(t);
    }
    if (s && m->ndim == 1) {
        nsc_tensor *r = nsc_reshape(s, 1, m->shape);
        nsc_free(s);
        return r;
    }
    return s;
}

// grad_a = grad @ bᵀ (a2, b2, go: the promoted operands and gradient).
static nsc_tensor *grad_of_a(nsc_tensor *go, nsc_tensor *b2, const nsci_meta *m) {
    nsc_tensor *bt = nsc_transpose(b2, -1, -2);
    nsc_tensor *ga = nsc_matmul(go, bt);
    nsc_free(bt);
    return reduce_to(ga, m, false);
}

// grad_b = aᵀ @ grad. With a 2-D b and a batched a the batch sum is folded
// into the product: [K, B*M] @ [B*M, N] instead of B products then a sum.
static nsc_tensor *grad_of_b(nsc_tensor *go, nsc_tensor *a2, const nsci_meta *m) {
    nsc_tensor *gb;
    if (m->ndim <= 2 && a2->ndim > 2) {
        int64_t rows = nsci_numel(a2->ndim - 1, a2->shape);
        int64_t a_shape[2] = { rows, a2->shape[a2->ndim - 1] };
        int64_t g_shape[2] = { rows, go->shape[go->ndim - 1] };
        nsc_tensor *af = nsc_reshape(a2, 2, a_shape), *gf = nsc_reshape(go, 2, g_shape);
        nsc_tensor *at = nsc_transpose(af, 0, 1);
        gb = nsc_matmul(at, gf);
        nsc_free(af);
        nsc_free(gf);
        nsc_free(at);
    } else {
        nsc_tensor *at = nsc_transpose(a2, -1, -2);
        gb = nsc_matmul(at, go);
        nsc_free(at);
    }
    return reduce_to(gb, m, true);
}

// matmul: grad_a = grad @ bᵀ, grad_b = aᵀ @ grad on the promoted 2-D forms
// (1-D a is [1, K], 1-D b is [K, 1]; the gradient gains the matching size-1
// dims), then reduced to each input's shape. Saves a and b.
static nsc_status matmul_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                  nsc_tensor **grad_in) {
    if (!grad_out[0]) {
        return NSC_OK; // an integer product has no gradient
    }
    nsc_tensor *a2 = as_2d(g->in[0], 0), *b2 = as_2d(g->in[1], 1);
    nsc_tensor *go = nsc_retain(grad_out[0]);
    if (g->in_meta[1].ndim == 1) {
        nsc_tensor *t = nsc_unsqueeze(go, -1);
        nsc_free(go);
        go = t;
    }
    if (g->in_meta[0].ndim == 1) {
        nsc_tensor *t = nsc_unsqueeze(go, -2);
        nsc_free(go);
        go = t;
    }
    nsc_status status = NSC_OK;
    if (g->needs_grad[0] && !(grad_in[0] = grad_of_a(go, b2, &g->in_meta[0]))) {
        status = nsc_last_status();
    }
    if (status == NSC_OK && g->needs_grad[1] && !(grad_in[1] = grad_of_b(go, a2, &g->in_meta[1]))) {
        status = nsc_last_status();
    }
    nsc_free(a2);
    nsc_free(b2);
    nsc_free(go);
    return status;
}

// grad_W [out, in] = g2ᵀ @ x2 (g2 [R, out], x [..., in] read as x2 [R, in]).
// A weight stored transposed (Conv1D's [in, out] read through a transposed
// view) gets its gradient the same way round: x2ᵀ @ g2 [in, out], returned
// as its transposed view, so the gradient that reaches the [in, out]
// parameter is contiguous instead of a strided view every later pass
// (accumulation, clone, optimizer) would walk column by column.
static nsc_tensor *weight_grad(nsc_tensor *g2, nsc_tensor *x, const nsc_tensor *w,
                               const int64_t *x_shape) {
    nsc_tensor *x2 = nsc_reshape(x, 2, x_shape);
    bool stored_transposed = w && w->ndim == 2 && w->shape[0] > 1 && w->stride[0] == 1 &&
                             w->stride[1] >= w->shape[0];
    nsc_tensor *lhs = stored_transposed ? nsc_transpose(x2, 0, 1) : nsc_transpose(g2, 0, 1);
    nsc_tensor *prod = nsc_matmul(lhs, stored_transposed ? g2 : x2);
    nsc_tensor *grad = stored_transposed && prod ? nsc_transpose(prod, 0, 1) : nsc_retain(prod);
    nsc_free(x2);
    nsc_free(lhs);
    nsc_free(prod);
    return grad;
}

// linear: grad_x = grad @ W; grad_W = gradᵀ @ x over all leading dims as
// one [out, R] @ [R, in] product; grad_bias = grad summed over leading dims
// (then to bias's own shape). Saves x and W.
static nsc_status linear_backward(const nsci_grad_ctx *g, nsc_tensor *const *grad_out,
                                  nsc_tensor **grad_in) {
    nsc_tensor *go = grad_out[0];
    if (!go) {
        return NSC_OK;
    }
    if (g->needs_grad[0] && !(grad_in[0] = nsc_matmul(go, g->in[1]))) {
        return nsc_last_status();
    }
    bool bias_grad = g->n_in > 2 && g->needs_grad[2];
    if (!g->needs_grad[1] && !bias_grad) {
        return NSC_OK;
    }
    const nsci_meta *mx = &g->in_meta[0];
    int64_t rows = nsci_numel(mx->ndim - 1, mx->shape);
    int64_t g_shape[2] = { rows, g->in_meta[1].shape[0] };
    int64_t x_shape[2] = { rows, g->in_meta[1].shape[1] };
    nsc_tensor *g2 = nsc_reshape(go, 2, g_shape);
    if (g->needs_grad[1]) {
        grad_in[1] = weight_grad(g2, g->in[0], g->in[1], x_shape);
    }
    if (bias_grad && (!g->needs_grad[1] || grad_in[1])) {
        const nsci_meta *mb = &g->in_meta[2];
        nsc_tensor *s = nsc_sum(g2, 1, (const int[]){ 0 }, false);
        grad_in[2] = (mb->ndim == 1 && mb->shape[0] == g_shape[1])
                         ? s
                         : nsc_sum_to_size(s, mb->ndim, mb->shape);
        if (grad_in[2] != s) {
            nsc_free(s);
        }
    }
    nsc_free(g2);
    bool failed = (g->needs_grad[1] && !grad_in[1]) || (bias_grad && !grad_in[2]);
    return failed ? nsc_last_status() : NSC_OK;
}

// --- table rows and public functions ---

const nsci_op_def nsci_op_matmul = {
    .name = "matmul",
    .arity = 2,
    .n_outputs = 1,
    .infer = matmul_infer,
    .cpu = matmul_cpu,
    .backward = matmul_backward,
    .flags = NSCI_OP_BROADCAST, // batch dims
    .save_inputs = 3,
    .exempt = { [NSCI_CASE_RANK0] = "torch.matmul refuses 0-dim operands (error tested in "
                                    "tests/test_op_matmul.c)" },
};

// arity 3: bias is optional, so calls pass 2 or 3 inputs.
const nsci_op_def nsci_op_linear = {
    .name = "linear",
    .arity = 3,
    .n_outputs = 1,
    .infer = linear_infer,
    .cpu = linear_cpu,
    .backward = linear_backward,
    .save_inputs = 3,
};

nsc_tensor *nsc_matmul(nsc_tensor *a, nsc_tensor *b) {
    nsc_tensor *in[2] = { a, b };
    return nsci_run(NSC_OP_matmul, 2, in, NULL);
}

nsc_tensor *nsc_linear(nsc_tensor *x, nsc_tensor *weight, nsc_tensor *bias) {
    nsc_tensor *in[3] = { x, weight, bias };
    return nsci_run(NSC_OP_linear, bias ? 3 : 2, in, NULL);
}
