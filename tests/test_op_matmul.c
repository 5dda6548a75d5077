// matmul and linear beyond the case table: every error class (status,
// message with op and shapes, inputs unchanged, no leak), the no-copy
// promise (exactly the output's allocations for transposed, strided and
// broadcast operands), values against double references over shapes that
// cross every blocking edge of the portable GEMM and the thread pool, NaN and
// dirty-memory rules, i64 wrapping, threads, out-of-memory sweeps, and the
// backward rules against f64 central differences (also run on META).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"

// --- helpers ---

// Values in [-2, 2) from a fixed generator, as dtype.
static nsc_tensor *random_tensor(nsc_generator *gen, nsc_dtype dtype, int ndim,
                                 const int64_t *shape) {
    nsc_tensor *u = nsc_rand(gen, NSC_F64, ndim, shape);
    nsc_tensor *s = nsc_mul_scalar(u, 4.0);
    nsc_tensor *c = nsc_sub_scalar(s, 2.0);
    nsc_tensor *t = nsc_to_dtype(c, dtype);
    nsc_free(u);
    nsc_free(s);
    nsc_free(c);
    cr_assert(t, "%s", nsc_last_error());
    return t;
}

// --- errors ---

Test(matmul_errors, shapes_ranks_and_dtypes) {
    nsc_generator *gen = nsc_generator_new(1);
    nsc_tensor *a = random_tensor(gen, NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *b = random_tensor(gen, NSC_F32, NSC_SHAPE(4, 5));
    nsc_tensor *b3 = random_tensor(gen, NSC_F32, NSC_SHAPE(3, 3, 5));
    nsc_tensor *a3 = random_tensor(gen, NSC_F32, NSC_SHAPE(2, 2, 3));
    nsc_tensor *v = random_tensor(gen, NSC_F32, NSC_SHAPE(4));
    nsc_tensor *s = random_tensor(gen, NSC_F32, 0, NULL);
    nsc_tensor *d = random_tensor(gen, NSC_F64, NSC_SHAPE(3, 5));
    nsc_tensor *ab = nsc_gt_scalar(a, 0.0), *bb = nsc_gt_scalar(d, 0.0);
    double *before = nsct_values_of(a);
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_matmul(s, v), NSC_ERR_SHAPE,
                      "matmul: [], [4]: both operands need at least");
    nsct_expect_error(nsc_matmul(a, s), NSC_ERR_SHAPE, "matmul: [2,3], []: both operands");
    nsct_expect_error(nsc_matmul(a, b), NSC_ERR_SHAPE, "matmul: [2,3], [4,5]: inner sizes 3 and 4");
    nsct_expect_error(nsc_matmul(a, v), NSC_ERR_SHAPE, "matmul: [2,3], [4]: inner sizes 3 and 4");
    nsct_expect_error(nsc_matmul(v, a), NSC_ERR_SHAPE, "matmul: [4], [2,3]: inner sizes 4 and 2");
    nsct_expect_error(nsc_matmul(a3, b3), NSC_ERR_SHAPE,
                      "matmul: [2,2,3], [3,3,5]: batch sizes 2 and 3 cannot broadcast");
    nsct_expect_error(nsc_matmul(a, d), NSC_ERR_DTYPE,
                      "matmul: [2,3], [3,5]: dtypes f32 (input 0) and f64 (input 1) differ");
    nsct_expect_error(nsc_matmul(ab, bb), NSC_ERR_DTYPE,
                      "matmul: [2,3], [3,5]: bool is not supported");
    nsct_expect_error(nsc_matmul(a, NULL), NSC_ERR_ARG, "matmul: input 1 is NULL");
    cr_expect_eq(nsct_live_blocks(), blocks, "leaked %lld blocks",
                 (long long)(nsct_live_blocks() - blocks));
    nsct_expect_values(a, before);
    free(before);
    nsc_tensor *all[] = { a, b, b3, a3, v, s, d, ab, bb };
    for (int i = 0; i < NSCI_ARRAY_LEN(all); i++) {
        nsc_free(all[i]);
    }
    nsc_generator_free(gen);
}

Test(matmul_errors, linear) {
    nsc_generator *gen = nsc_generator_new(2);
    nsc_tensor *x = random_tensor(gen, NSC_F32, NSC_SHAPE(2, 4));
    nsc_tensor *w = random_tensor(gen, NSC_F32, NSC_SHAPE(5, 4));
    nsc_tensor *w1 = random_tensor(gen, NSC_F32, NSC_SHAPE(4));
    nsc_tensor *w3 = random_tensor(gen, NSC_F32, NSC_SHAPE(5, 3));
    nsc_tensor *b = random_tensor(gen, NSC_F32, NSC_SHAPE(5));
    nsc_tensor *b3 = random_tensor(gen, NSC_F32, NSC_SHAPE(3));
    nsc_tensor *b2 = random_tensor(gen, NSC_F32, NSC_SHAPE(1, 5));
    nsc_tensor *bd = random_tensor(gen, NSC_F64, NSC_SHAPE(5));
    nsc_tensor *s = random_tensor(gen, NSC_F32, 0, NULL);
    nsc_tensor *xb = nsc_gt_scalar(x, 0.0), *wb = nsc_gt_scalar(w, 0.0);
    double *before = nsct_values_of(w);
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_linear(s, w, b), NSC_ERR_SHAPE, "linear: [], [5,4], [5]: input is 0-dim");
    nsct_expect_error(nsc_linear(x, w1, NULL), NSC_ERR_SHAPE,
                      "linear: [2,4], [4]: weight has 1 dims");
    nsct_expect_error(
        nsc_linear(x, w3, b), NSC_ERR_SHAPE,
        "linear: [2,4], [5,3], [5]: input has 4 features, weight [out, in] expects 3");
    nsct_expect_error(nsc_linear(x, w, b3), NSC_ERR_SHAPE,
                      "linear: [2,4], [5,4], [3]: bias does not broadcast to [5]");
    nsct_expect_error(nsc_linear(x, w, b2), NSC_ERR_SHAPE,
                      "linear: [2,4], [5,4], [1,5]: bias does not");
    nsct_expect_error(nsc_linear(x, w, bd), NSC_ERR_DTYPE,
                      "linear: [2,4], [5,4], [5]: dtypes f32 (input 0) and f64 (input 2) differ");
    nsct_expect_error(nsc_linear(xb, wb, NULL), NSC_ERR_DTYPE, "linear: [2,4], [5,4]: bool is not");
    nsct_expect_error(nsc_linear(NULL, w, b), NSC_ERR_ARG, "linear: input 0 is NULL");
    cr_expect_eq(nsct_live_blocks(), blocks, "leaked %lld blocks",
                 (long long)(nsct_live_blocks() - blocks));
    nsct_expect_values(w, before);
    free(before);
    nsc_tensor *all[] = { x, w, w1, w3, b, b3, b2, bd, s, xb, wb };
    for (int i = 0; i < NSCI_ARRAY_LEN(all); i++) {
        nsc_free(all[i]);
    }
    nsc_generator_free(gen);
}

Test(matmul_errors, devices) {
    nsc_tensor *a = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *b = nsc_empty(NSC_F32, NSC_META, NSC_SHAPE(3, 4));
    b->target_device = NSC_CUDA; // a proxy-like META tensor whose value lives on CUDA
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_matmul(a, b), NSC_ERR_DEVICE,
                      "matmul: [2,3], [3,4]: input 0 is on cpu and input 1 on cuda");
    nsct_expect_error(nsc_linear(a, b, NULL), NSC_ERR_DEVICE,
                      "linear: [2,3], [3,4]: input 0 is on cpu and input 1 on cuda");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_free(a);
    nsc_free(b);
}

// --- no copies: transposed, strided and broadcast operands go to BLAS as they are ---

// The portable GEMM packs into one workspace block per call, whatever the layout.
#ifdef NSC_NO_BLAS
static const int64_t WORKSPACE_ALLOCS = 1;
#else
static const int64_t WORKSPACE_ALLOCS = 0;
#endif

static int64_t n_allocs(void) {
    return nsc_mem_stats_get().n_allocs;
}

// Allocations an output of out's shape costs (header, storage, data).
static int64_t output_cost(nsc_tensor *out) {
    int64_t before = n_allocs();
    nsc_tensor *t = nsc_empty(nsc_tensor_dtype(out), NSC_CPU, out->ndim, out->shape);
    int64_t cost = n_allocs() - before;
    nsc_free(t);
    return cost;
}

// Runs a @ b (or linear when w_is_weight) and checks it allocated the output,
// plus `extra` blocks (copies), plus the workspace.
static void expect_allocs(const char *what, nsc_tensor *a, nsc_tensor *b, bool linear,
                          int64_t extra) {
    int64_t before = n_allocs();
    nsc_tensor *out = linear ? nsc_linear(a, b, NULL) : nsc_matmul(a, b);
    int64_t used = n_allocs() - before;
    cr_assert(out, "%s: %s", what, nsc_last_error());
    int64_t want = output_cost(out) + extra + WORKSPACE_ALLOCS;
    cr_expect_eq(used, want, "%s: %lld allocations, expected %lld", what, (long long)used,
                 (long long)want);
    nsc_free(out);
}

Test(matmul_copies, only_the_output_is_allocated) {
    nsc_generator *gen = nsc_generator_new(3);
    nsc_tensor *a = random_tensor(gen, NSC_F32, NSC_SHAPE(48, 32));
    nsc_tensor *b = random_tensor(gen, NSC_F32, NSC_SHAPE(32, 40));
    nsc_tensor *at_store = random_tensor(gen, NSC_F32, NSC_SHAPE(32, 48));
    nsc_tensor *bt_store = random_tensor(gen, NSC_F32, NSC_SHAPE(40, 32));
    nsc_tensor *at = nsc_transpose(at_store, 0, 1), *bt = nsc_transpose(bt_store, 0, 1);
    nsc_tensor *a4 = random_tensor(gen, NSC_F32, NSC_SHAPE(2, 1, 48, 32));
    nsc_tensor *b3 = random_tensor(gen, NSC_F32, NSC_SHAPE(3, 32, 40));
    nsc_tensor *bx = nsc_expand(b, NSC_SHAPE(4, 32, 40)); // stride-0 batch
    nsc_tensor *x3 = random_tensor(gen, NSC_F32, NSC_SHAPE(2, 24, 32));
    nsc_tensor *conv1d = random_tensor(gen, NSC_F32, NSC_SHAPE(32, 40)); // [in, out]
    nsc_tensor *w = nsc_transpose(conv1d, 0, 1);                         // [out, in] view
    nsc_tensor *rows = nsc_slice(a, 0, 0, NSC_END, 2); // row stride 64: lda, no copy
    expect_allocs("Aᵀ·B", at, b, false, 0);
    expect_allocs("A·Bᵀ", a, bt, false, 0);
    expect_allocs("Aᵀ·Bᵀ", at, bt, false, 0);
    expect_allocs("[2,1,48,32]·[3,32,40]", a4, b3, false, 0);
    expect_allocs("[48,32]·expand([4,32,40])", a, bx, false, 0);
    expect_allocs("[2,24,32]·[32,40]", x3, b, false, 0);
    expect_allocs("every other row", rows, b, false, 0);
    expect_allocs("linear, Conv1D weight", x3, w, true, 0);
    expect_allocs("linear, [out, in] weight", x3, bt_store, true, 0);
    nsc_tensor *all[] = { a, b, at_store, bt_store, at, bt, a4, b3, bx, x3, conv1d, w, rows };
    for (int i = 0; i < NSCI_ARRAY_LEN(all); i++) {
        nsc_free(all[i]);
    }
    nsc_generator_free(gen);
}

// A stepped last dim has no unit stride: OpenBLAS cannot read it, so that one
// operand is copied (the portable GEMM packs it as it is).
Test(matmul_copies, an_unreadable_operand_is_copied_once) {
    nsc_generator *gen = nsc_generator_new(4);
    nsc_tensor *store = random_tensor(gen, NSC_F32, NSC_SHAPE(16, 64));
    nsc_tensor *a = nsc_slice(store, 1, 0, NSC_END, 2); // [16, 32], strides (64, 2)
    nsc_tensor *b = random_tensor(gen, NSC_F32, NSC_SHAPE(32, 8));
#ifdef NSC_NO_BLAS
    int64_t copy = 0;
#else
    int64_t copy = output_cost(a);
#endif
    expect_allocs("stepped A", a, b, false, copy);
    nsc_free(store);
    nsc_free(a);
    nsc_free(b);
    nsc_generator_free(gen);
}

// --- values against double references ---

// Checks out = a @ b for a [Ba, M, K] (or [M, K]) and b [Bb, K, N] (or
// [K, N]), Ba and Bb 1 or B, within the rounding bound of a K-term dot product
// (2 K eps sum |a_ip b_pj|: any summation order, FMA or not).
static void check_product(const char *what, nsc_tensor *a, nsc_tensor *b, nsc_tensor *out,
                          double eps) {
    cr_assert(out, "%s: %s", what, nsc_last_error());
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
    int64_t ba = a->ndim == 3 ? a->shape[0] : 1, bb = b->ndim == 3 ? b->shape[0] : 1;
    int64_t batches = NSCI_MAX(ba, bb);
    cr_assert_eq(nsc_tensor_numel(out), batches * m * n, "%s: output size", what);
    double *av = nsct_values_of(a), *bv = nsct_values_of(b), *ov = nsct_values_of(out);
    int64_t bad = 0;
    for (int64_t t = 0; t < batches; t++) {
        const double *ap = av + (ba > 1 ? t : 0) * m * k, *bp = bv + (bb > 1 ? t : 0) * k * n;
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < n; j++) {
                double sum = 0, mag = 0;
                for (int64_t p = 0; p < k; p++) {
                    sum += ap[i * k + p] * bp[p * n + j];
                    mag += fabs(ap[i * k + p] * bp[p * n + j]);
                }
                double got = ov[(t * m + i) * n + j];
                if (!(fabs(got - sum) <= 2.0 * (double)k * eps * mag + 1e-300) && bad++ < 3) {
                    cr_log_error("%s: [%lld][%lld][%lld]: got %.9g, want %.9g", what, (long long)t,
                                 (long long)i, (long long)j, got, sum);
                }
            }
        }
    }
    cr_expect_eq(bad, 0, "%s: %lld wrong elements", what, (long long)bad);
    free(av);
    free(bv);
    free(ov);
}

// layout: 'n' contiguous, 't' transposed storage, 's' stepped last dim.
static nsc_tensor *laid_out(nsc_generator *gen, nsc_dtype dtype, int64_t rows, int64_t cols,
                            char layout) {
    if (layout == 't') {
        nsc_tensor *store = random_tensor(gen, dtype, NSC_SHAPE(cols, rows));
        nsc_tensor *v = nsc_transpose(store, 0, 1);
        nsc_free(store);
        return v;
    }
    if (layout == 's') {
        nsc_tensor *store = random_tensor(gen, dtype, NSC_SHAPE(rows, 2 * cols));
        nsc_tensor *v = nsc_slice(store, 1, 0, NSC_END, 2);
        nsc_free(store);
        return v;
    }
    return random_tensor(gen, dtype, NSC_SHAPE(rows, cols));
}

static double eps_of(nsc_dtype dtype) {
    return dtype == NSC_F32 ? 0x1p-24 : 0x1p-53;
}

// Shapes that cross every edge of the portable GEMM: the 6 x 16 (6 x 8)
// register tile, KC = 256, MC = 144 (72), NC = 4080; one row or column
// (OpenBLAS's gemv and dot paths); and a GPT-2 layer across the pool.
Test(matmul_values, shapes_and_layouts_against_double) {
    nsc_set_num_threads(2);
    static const int64_t shapes[][3] = { { 1, 1, 1 },      { 5, 7, 3 },      { 6, 16, 256 },
                                         { 7, 17, 257 },   { 145, 33, 600 }, { 73, 9, 31 },
                                         { 13, 4100, 70 }, { 1, 300, 257 },  { 300, 1, 257 },
                                         { 1, 1, 1000 } };
    static const char layouts[][2] = { { 'n', 'n' }, { 't', 'n' }, { 'n', 't' },
                                       { 't', 't' }, { 's', 'n' }, { 'n', 's' } };
    nsc_generator *gen = nsc_generator_new(5);
    for (int d = 0; d < 2; d++) {
        nsc_dtype dtype = d ? NSC_F64 : NSC_F32;
        for (int s = 0; s < NSCI_ARRAY_LEN(shapes); s++) {
            for (int l = 0; l < NSCI_ARRAY_LEN(layouts); l++) {
                const int64_t *mnk = shapes[s];
                nsc_tensor *a = laid_out(gen, dtype, mnk[0], mnk[2], layouts[l][0]);
                nsc_tensor *b = laid_out(gen, dtype, mnk[2], mnk[1], layouts[l][1]);
                char what[96];
                snprintf(what, sizeof what, "%s [%lld,%lld]@[%lld,%lld] %c%c",
                         nsc_dtype_name(dtype), (long long)mnk[0], (long long)mnk[2],
                         (long long)mnk[2], (long long)mnk[1], layouts[l][0], layouts[l][1]);
                nsc_tensor *out = nsc_matmul(a, b);
                check_product(what, a, b, out, eps_of(dtype));
                nsc_free(out);
                nsc_free(a);
                nsc_free(b);
            }
        }
    }
    nsc_generator_free(gen);
}

Test(matmul_values, gpt2_layer_across_the_pool) {
    nsc_set_num_threads(2);
    nsc_generator *gen = nsc_generator_new(6);
    nsc_tensor *x = random_tensor(gen, NSC_F32, NSC_SHAPE(64, 768));
    nsc_tensor *w = random_tensor(gen, NSC_F32, NSC_SHAPE(2304, 768)); // [out, in]
    nsc_tensor *wt = nsc_transpose(w, 0, 1);
    nsc_tensor *out = nsc_matmul(x, wt);
    check_product("x @ Wᵀ", x, wt, out, eps_of(NSC_F32));
    nsc_free(out);
    nsc_tensor *lin = nsc_linear(x, w, NULL);
    check_product("linear", x, wt, lin, eps_of(NSC_F32));
    nsc_free(lin);
    nsc_free(wt);
    nsc_free(w);
    nsc_free(x);
    nsc_generator_free(gen);
}

// Batches: broadcast either way, folded into M, many small ones on the pool.
Test(matmul_values, batches) {
    nsc_set_num_threads(2);
    nsc_generator *gen = nsc_generator_new(7);
    for (int d = 0; d < 2; d++) {
        nsc_dtype dtype = d ? NSC_F64 : NSC_F32;
        nsc_tensor *a1 = random_tensor(gen, dtype, NSC_SHAPE(1, 37, 50));
        nsc_tensor *a5 = random_tensor(gen, dtype, NSC_SHAPE(5, 37, 50));
        nsc_tensor *a40 = random_tensor(gen, dtype, NSC_SHAPE(40, 37, 50));
        nsc_tensor *b1 = random_tensor(gen, dtype, NSC_SHAPE(1, 50, 29));
        nsc_tensor *b5s = random_tensor(gen, dtype, NSC_SHAPE(5, 29, 50));
        nsc_tensor *b5 = nsc_transpose(b5s, 1, 2);
        nsc_tensor *b40 = random_tensor(gen, dtype, NSC_SHAPE(40, 50, 29));
        nsc_tensor *big_a = random_tensor(gen, dtype, NSC_SHAPE(3, 150, 300));
        nsc_tensor *big_b = random_tensor(gen, dtype, NSC_SHAPE(3, 300, 70));
        struct {
            const char *what;
            nsc_tensor *a, *b;
        } runs[] = { { "[1]·[5]ᵀ", a1, b5 },
                     { "[5]·[1]", a5, b1 },
                     { "[40]·[40]", a40, b40 },
                     { "[40]·[1] folded", a40, b1 },
                     { "[3] large", big_a, big_b } };
        for (int r = 0; r < NSCI_ARRAY_LEN(runs); r++) {
            nsc_tensor *out = nsc_matmul(runs[r].a, runs[r].b);
            check_product(runs[r].what, runs[r].a, runs[r].b, out, eps_of(dtype));
            nsc_free(out);
        }
        nsc_tensor *all[] = { a1, a5, a40, b1, b5s, b5, b40, big_a, big_b };
        for (int i = 0; i < NSCI_ARRAY_LEN(all); i++) {
            nsc_free(all[i]);
        }
    }
    nsc_generator_free(gen);
}

// linear(x, W, b) = x Wᵀ + b for every leading shape, bias forms included.
Test(matmul_values, linear_bias_forms) {
    nsc_generator *gen = nsc_generator_new(8);
    nsc_tensor *x = random_tensor(gen, NSC_F64, NSC_SHAPE(2, 3, 4));
    nsc_tensor *w = random_tensor(gen, NSC_F64, NSC_SHAPE(5, 4));
    nsc_tensor *biases[] = { random_tensor(gen, NSC_F64, NSC_SHAPE(5)),
                             random_tensor(gen, NSC_F64, NSC_SHAPE(1)),
                             random_tensor(gen, NSC_F64, 0, NULL) };
    double *xv = nsct_values_of(x), *wv = nsct_values_of(w);
    for (int k = 0; k < NSCI_ARRAY_LEN(biases); k++) {
        nsc_tensor *out = nsc_linear(x, w, biases[k]);
        cr_assert(out, "%s", nsc_last_error());
        double *bv = nsct_values_of(biases[k]), *ov = nsct_values_of(out);
        for (int64_t r = 0; r < 6; r++) {
            for (int64_t j = 0; j < 5; j++) {
                double want = bv[nsc_tensor_numel(biases[k]) == 5 ? j : 0];
                for (int64_t p = 0; p < 4; p++) {
                    want += xv[r * 4 + p] * wv[j * 4 + p];
                }
                cr_expect(fabs(ov[r * 5 + j] - want) < 1e-12, "bias %d: [%lld][%lld]", k,
                          (long long)r, (long long)j);
            }
        }
        free(bv);
        free(ov);
        nsc_free(out);
        nsc_free(biases[k]);
    }
    free(xv);
    free(wv);
    nsc_free(x);
    nsc_free(w);
    nsc_generator_free(gen);
}

// --- NaN, dirty memory, integers, threads ---

Test(matmul_values, nan_and_infinity_propagate) {
    const double nan = NAN, inf = INFINITY;
    nsc_tensor *a = nsct_from_values(NSC_F32, NSC_SHAPE(3, 2), (double[]){ 1, 2, nan, 1, inf, 0 });
    nsc_tensor *b = nsct_from_values(NSC_F32, NSC_SHAPE(2, 2), (double[]){ 1, 0, 0, 1 });
    nsc_tensor *out = nsc_matmul(a, b);
    double *o = nsct_values_of(out);
    cr_expect(o[0] == 1 && o[1] == 2, "clean row");
    cr_expect(isnan(o[2]) && isnan(o[3]), "a NaN spreads along its row: %g %g", o[2], o[3]);
    cr_expect(isinf(o[4]) && isnan(o[5]), "inf * 1 = inf, inf * 0 = NaN: %g %g", o[4], o[5]);
    free(o);
    nsc_free(out);
    nsc_free(a);
    nsc_free(b);
}

// Outputs come from recycled storage: K = 0 and the matrix-vector paths must
// write every element, never read what was there.
Test(matmul_values, outputs_never_read_recycled_memory) {
    nsc_tensor *junk = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(4096), NAN);
    nsc_free(junk); // its storage goes back to the cache
    nsc_tensor *a = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(64, 0));
    nsc_tensor *b = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0, 64));
    nsc_tensor *out = nsc_matmul(a, b); // [64, 64] = 4096 floats from the cache
    double *o = nsct_values_of(out);
    for (int i = 0; i < 64 * 64; i++) {
        cr_expect(o[i] == 0.0, "K = 0: element %d is %g", i, o[i]);
    }
    free(o);
    nsc_free(out);
    for (int rows = 0; rows < 2; rows++) {
        junk = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(4096), NAN);
        nsc_free(junk);
        nsc_tensor *m = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(4096, 3));
        nsc_tensor *v = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
        nsc_tensor *mt = nsc_transpose(m, 0, 1);
        nsc_tensor *r = rows ? nsc_matmul(m, v) : nsc_matmul(v, mt); // gemv both ways
        o = nsct_values_of(r);
        for (int i = 0; i < 4096; i++) {
            cr_expect(o[i] == 3.0, "gemv %d: element %d is %g", rows, i, o[i]);
        }
        free(o);
        nsc_free(r);
        nsc_free(m);
        nsc_free(mt);
        nsc_free(v);
    }
    nsc_free(a);
    nsc_free(b);
}

// i64 products wrap on overflow, as PyTorch's do.
Test(matmul_values, i64_wraps) {
    int64_t big = INT64_C(1) << 62;
    int64_t av[2] = { big, 3 }, bv[2] = { 4, -5 };
    nsc_tensor *a = nsc_from_data(NSC_I64, NSC_SHAPE(1, 2), av);
    nsc_tensor *b = nsc_from_data(NSC_I64, NSC_SHAPE(2, 1), bv);
    nsc_tensor *out = nsc_matmul(a, b);
    cr_assert(out, "%s", nsc_last_error());
    int64_t got = *(int64_t *)nsc_tensor_data(out);
    int64_t want = (int64_t)((uint64_t)big * 4u + (uint64_t)(3 * -5));
    cr_expect_eq(got, want, "got %lld, want %lld", (long long)got, (long long)want);
    nsc_free(out);
    nsc_free(a);
    nsc_free(b);
}

Test(matmul_values, thread_count_round_trips) {
    nsc_set_num_threads(1);
    cr_expect_eq(nsc_get_num_threads(), 1);
    nsc_generator *gen = nsc_generator_new(9);
    nsc_tensor *a = random_tensor(gen, NSC_F32, NSC_SHAPE(100, 200));
    nsc_tensor *b = random_tensor(gen, NSC_F32, NSC_SHAPE(200, 90));
    nsc_tensor *out = nsc_matmul(a, b);
    check_product("one thread", a, b, out, eps_of(NSC_F32));
    nsc_free(out);
    nsc_set_num_threads(0); // below 1: one thread
    cr_expect_eq(nsc_get_num_threads(), 1);
    nsc_set_num_threads(3);
    cr_expect_eq(nsc_get_num_threads(), 3);
    nsc_free(a);
    nsc_free(b);
    nsc_generator_free(gen);
}

// --- out of memory ---

typedef nsc_tensor *(*binary_call)(nsc_tensor *, nsc_tensor *);

static nsc_tensor *linear_no_bias(nsc_tensor *x, nsc_tensor *w) {
    return nsc_linear(x, w, NULL);
}

Test(matmul, out_of_memory_sweep) {
    nsc_generator *gen = nsc_generator_new(10);
    nsc_tensor *store = random_tensor(gen, NSC_F32, NSC_SHAPE(30, 80));
    nsc_tensor *a = nsc_slice(store, 1, 0, NSC_END, 2); // stepped: copied with OpenBLAS
    nsc_tensor *b = random_tensor(gen, NSC_F32, NSC_SHAPE(40, 50));
    nsc_tensor *w = random_tensor(gen, NSC_F32, NSC_SHAPE(50, 40));
    struct {
        binary_call call;
        nsc_tensor *x, *y;
    } calls[] = { { nsc_matmul, a, b }, { linear_no_bias, a, w } };
    for (int k = 0; k < NSCI_ARRAY_LEN(calls); k++) {
        bool done = false;
        for (int64_t n = 1; n < 50 && !done; n++) {
            int64_t blocks = nsct_live_blocks();
            nsc_mem_fail_after(n);
            nsc_tensor *r = calls[k].call(calls[k].x, calls[k].y);
            nsc_mem_fail_after(0);
            done = r != NULL;
            if (!done) {
                cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "call %d, n %lld: %s", k, (long long)n,
                             nsc_last_error());
                cr_expect_eq(nsct_live_blocks(), blocks, "call %d leaked at n %lld", k,
                             (long long)n);
            }
            nsc_free(r);
            nsc_clear_error();
        }
        cr_expect(done, "call %d never succeeded", k);
    }
    nsc_free(store);
    nsc_free(a);
    nsc_free(b);
    nsc_free(w);
    nsc_generator_free(gen);
}

// --- backward rules against central differences (f64) ---

static void meta_of(const nsc_tensor *t, nsci_meta *m) {
    memset(m, 0, sizeof *m);
    m->dtype = (nsc_dtype)t->dtype;
    m->device = (nsc_device)t->target_device;
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof t->shape);
}

// <g, op(in)>.
static double objective(nsc_op op, int n_in, nsc_tensor **in, nsc_tensor *g) {
    nsc_tensor *out = nsci_run(op, n_in, in, NULL);
    cr_assert(out, "%s", nsc_last_error());
    double *o = nsct_values_of(out), *w = nsct_values_of(g), total = 0;
    for (int64_t i = 0; i < nsc_tensor_numel(out); i++) {
        total += o[i] * w[i];
    }
    free(o);
    free(w);
    nsc_free(out);
    return total;
}

// Calls op's backward rule for inputs in (saved), output out and gradient g.
static void run_backward(nsc_op op, int n_in, nsc_tensor **in, nsc_tensor *out, nsc_tensor *g,
                         nsc_tensor **grad_in) {
    nsci_meta in_meta[NSCT_MAX_INPUTS], out_meta;
    bool needs[NSCT_MAX_INPUTS];
    for (int j = 0; j < n_in; j++) {
        meta_of(in[j], &in_meta[j]);
        needs[j] = true;
    }
    meta_of(out, &out_meta);
    const nsci_op_def *def = nsci_op_defs[op];
    nsci_grad_ctx ctx = { .def = def,
                          .n_in = n_in,
                          .in_meta = in_meta,
                          .in = in,
                          .n_out = 1,
                          .out_meta = &out_meta,
                          .out = &out,
                          .needs_grad = needs };
    cr_assert_eq(def->backward(&ctx, &g, grad_in), NSC_OK, "%s: %s", def->name, nsc_last_error());
}

// The same rule on META inputs gives META gradients of the inputs' shapes.
static void check_meta_backward(nsc_op op, int n_in, nsc_tensor **in) {
    nsc_tensor *min[NSCT_MAX_INPUTS], *grad[NSCT_MAX_INPUTS] = { 0 };
    for (int j = 0; j < n_in; j++) {
        min[j] = nsc_empty(NSC_F64, NSC_META, in[j]->ndim, in[j]->shape);
    }
    nsc_tensor *out = nsci_run(op, n_in, min, NULL);
    cr_assert(out, "%s", nsc_last_error());
    nsc_tensor *g = nsc_empty_like(out);
    run_backward(op, n_in, min, out, g, grad);
    for (int j = 0; j < n_in; j++) {
        cr_expect(grad[j] && nsc_tensor_device(grad[j]) == NSC_META &&
                      grad[j]->ndim == in[j]->ndim &&
                      !memcmp(grad[j]->shape, in[j]->shape, sizeof(int64_t) * (size_t)in[j]->ndim),
                  "%s: META gradient %d", nsci_op_defs[op]->name, j);
        nsc_free(grad[j]);
        nsc_free(min[j]);
    }
    nsc_free(g);
    nsc_free(out);
}

// Compares the backward rule with central differences of <g, op(x)> on
// every element of every (contiguous f64) input.
static void gradcheck(nsc_op op, int n_in, nsc_tensor **in) {
    const double h = 1e-6, tol = 1e-7;
    nsc_generator *gen = nsc_generator_new(11);
    nsc_tensor *grad[NSCT_MAX_INPUTS] = { 0 };
    nsc_tensor *out = nsci_run(op, n_in, in, NULL);
    cr_assert(out, "%s", nsc_last_error());
    nsc_tensor *g = nsc_randn(gen, NSC_F64, out->ndim, out->shape);
    run_backward(op, n_in, in, out, g, grad);
    for (int j = 0; j < n_in; j++) {
        char a[64], b[64];
        cr_assert(grad[j], "%s: no gradient for input %d", nsci_op_defs[op]->name, j);
        cr_assert(grad[j]->ndim == in[j]->ndim &&
                      !memcmp(grad[j]->shape, in[j]->shape, sizeof(int64_t) * (size_t)in[j]->ndim),
                  "%s: gradient %d is %s for input %s", nsci_op_defs[op]->name, j,
                  nsci_shape_str(a, sizeof a, grad[j]->ndim, grad[j]->shape),
                  nsci_shape_str(b, sizeof b, in[j]->ndim, in[j]->shape));
        double *analytic = nsct_values_of(grad[j]), *x = nsc_tensor_data(in[j]);
        for (int64_t e = 0; e < nsc_tensor_numel(in[j]); e++) {
            double keep = x[e];
            x[e] = keep + h;
            double up = objective(op, n_in, in, g);
            x[e] = keep - h;
            double down = objective(op, n_in, in, g);
            x[e] = keep;
            double numeric = (up - down) / (2 * h);
            cr_expect(fabs(numeric - analytic[e]) <= tol * (1 + fabs(numeric)),
                      "%s: d/d input %d [%lld]: analytic %.12g, numeric %.12g",
                      nsci_op_defs[op]->name, j, (long long)e, analytic[e], numeric);
        }
        free(analytic);
        nsc_free(grad[j]);
    }
    nsc_free(g);
    nsc_free(out);
    nsc_generator_free(gen);
    check_meta_backward(op, n_in, in);
}

typedef struct shape_pair {
    int na, nb;
    int64_t a[4], b[4];
} shape_pair;

// Every promotion and broadcast rule of torch.matmul, including the folded
// grad_b of a batched a and a 2-D b.
Test(matmul_grad, every_rank_combination) {
    static const shape_pair pairs[] = {
        { 1, 1, { 4 }, { 4 } },
        { 1, 2, { 4 }, { 4, 3 } },
        { 2, 1, { 3, 4 }, { 4 } },
        { 2, 2, { 3, 4 }, { 4, 5 } },
        { 3, 2, { 2, 3, 4 }, { 4, 5 } },
        { 2, 3, { 3, 4 }, { 2, 4, 5 } },
        { 1, 3, { 4 }, { 2, 4, 3 } },
        { 3, 1, { 2, 3, 4 }, { 4 } },
        { 4, 3, { 2, 1, 3, 4 }, { 3, 4, 2 } },
        { 3, 3, { 1, 3, 2 }, { 2, 2, 3 } },
    };
    nsc_generator *gen = nsc_generator_new(12);
    for (int i = 0; i < NSCI_ARRAY_LEN(pairs); i++) {
        nsc_tensor *in[2] = { nsc_randn(gen, NSC_F64, pairs[i].na, pairs[i].a),
                              nsc_randn(gen, NSC_F64, pairs[i].nb, pairs[i].b) };
        gradcheck(NSC_OP_matmul, 2, in);
        nsc_free(in[0]);
        nsc_free(in[1]);
    }
    nsc_generator_free(gen);
}

Test(matmul_grad, linear_with_every_bias_form) {
    nsc_generator *gen = nsc_generator_new(13);
    const int64_t x_shapes[][3] = { { 2, 3, 4 }, { 4, 0, 0 } };
    const int x_ndims[] = { 3, 1 };
    for (int xs = 0; xs < 2; xs++) {
        for (int form = 0; form < 4; form++) { // [5], [1], 0-dim, none
            nsc_tensor *in[3] = { nsc_randn(gen, NSC_F64, x_ndims[xs], x_shapes[xs]),
                                  nsc_randn(gen, NSC_F64, NSC_SHAPE(5, 4)), NULL };
            if (form < 3) {
                int64_t n = form == 0 ? 5 : 1;
                in[2] = nsc_randn(gen, NSC_F64, form == 2 ? 0 : 1, &n);
            }
            gradcheck(NSC_OP_linear, form < 3 ? 3 : 2, in);
            for (int j = 0; j < 3; j++) {
                nsc_free(in[j]);
            }
        }
    }
    nsc_generator_free(gen);
}

// An integer product has no gradient: the rule passes NULL through.
Test(matmul_grad, integer_outputs_have_none) {
    nsc_tensor *a = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *b = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(3, 2));
    nsc_tensor *in[2] = { a, b }, *grad[2] = { 0 };
    nsc_tensor *out = nsc_matmul(a, b);
    nsci_meta in_meta[2], out_meta;
    meta_of(a, &in_meta[0]);
    meta_of(b, &in_meta[1]);
    meta_of(out, &out_meta);
    bool needs[2] = { true, true };
    nsc_tensor *g = NULL;
    nsci_grad_ctx ctx = { .def = &nsci_op_matmul,
                          .n_in = 2,
                          .in_meta = in_meta,
                          .in = in,
                          .n_out = 1,
                          .out_meta = &out_meta,
                          .out = &out,
                          .needs_grad = needs };
    cr_expect_eq(nsci_op_matmul.backward(&ctx, &g, grad), NSC_OK);
    cr_expect(!grad[0] && !grad[1]);
    nsc_free(out);
    nsc_free(a);
    nsc_free(b);
}
