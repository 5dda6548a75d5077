// Reductions, softmax and layer_norm beyond the case table: every error
// class (status, message with op and shapes, inputs unchanged, no leak),
// NaN and infinity rules, ties across the parallel chunks of one long run,
// large sizes against double references, out-of-memory sweeps, and the
// backward rules against f64 central differences (also run on META).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/reduce.h"
#include "tests/expect.h"
#include "tests/harness.h"

// --- helpers ---

// 0, 1, 2, ... as dtype.
static nsc_tensor *iota(nsc_dtype dtype, int ndim, const int64_t *shape) {
    int64_t n = nsci_numel(ndim, shape);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) {
        v[i] = (double)i;
    }
    nsc_tensor *t = nsct_from_values(dtype, ndim, shape, v);
    free(v);
    return t;
}

// --- errors ---

Test(reduce_errors, dims_and_dtypes) {
    nsc_tensor *x = iota(NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *xi = iota(NSC_I64, NSC_SHAPE(2, 3));
    nsc_tensor *xb = nsc_gt_scalar(x, 2.0);
    double *before = nsct_values_of(x);
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_sum(x, NSC_DIMS(2), false), NSC_ERR_ARG,
                      "sum: [2,3]: dim 2 is out of range for rank 2");
    nsct_expect_error(nsc_mean(x, NSC_DIMS(-3), false), NSC_ERR_ARG, "mean: [2,3]: dim -3 is out");
    nsct_expect_error(nsc_sum(x, NSC_DIMS(1, -1), false), NSC_ERR_ARG,
                      "sum: [2,3]: dim -1 appears more than once");
    nsct_expect_error(nsc_sum(x, 9, (int[9]){ 0 }, false), NSC_ERR_ARG,
                      "sum: [2,3]: malformed dims");
    nsct_expect_error(nsc_sum(x, 1, NULL, false), NSC_ERR_ARG, "sum: [2,3]: malformed dims");
    nsct_expect_error(nsc_mean(xi, NSC_DIMS(0), false), NSC_ERR_DTYPE,
                      "mean: [2,3]: input dtype i64: expected f32 or f64");
    nsct_expect_error(nsc_var(xb, 0, NULL, true, false), NSC_ERR_DTYPE,
                      "var: [2,3]: input dtype bool");
    nsct_expect_error(nsc_std(xi, NSC_DIMS(1), true, false), NSC_ERR_DTYPE,
                      "std: [2,3]: input dtype");
    nsct_expect_error(nsc_logsumexp(x, NSC_DIMS(5), false), NSC_ERR_ARG, "logsumexp: [2,3]: dim 5");
    nsct_expect_error(nsc_all(x, NSC_DIMS(0, 0), false), NSC_ERR_ARG, "all: [2,3]: dim 0 appears");
    nsct_expect_error(nsc_any(x, NSC_DIMS(-4), true), NSC_ERR_ARG, "any: [2,3]: dim -4 is out");
    nsct_expect_error(nsc_argmax(xb, 0, false), NSC_ERR_DTYPE, "argmax: [2,3]: bool input");
    nsct_expect_error(nsc_argmin_all(xb), NSC_ERR_DTYPE, "argmin: [2,3]: bool input");
    nsct_expect_error(nsc_argmax(x, 2, false), NSC_ERR_ARG, "argmax: [2,3]: dim 2 is out of range");
    nsct_expect_error(nsc_softmax(xi, 1), NSC_ERR_DTYPE, "softmax: [2,3]: input dtype i64");
    nsct_expect_error(nsc_log_softmax(x, -3), NSC_ERR_ARG, "log_softmax: [2,3]: dim -3 is out");
    nsct_expect_error(nsc_sum(NULL, 0, NULL, false), NSC_ERR_ARG, "sum: input 0 is NULL");
    nsci_reduce_params two = nsci_reduce_pack(2, (int[]){ 0, 1 }, false);
    nsct_expect_error(nsci_run(NSC_OP_argmax, 1, &x, &two), NSC_ERR_ARG,
                      "argmax: [2,3]: 2 dims given: expected one");
    cr_expect_eq(nsct_live_blocks(), blocks, "leaked %lld blocks",
                 (long long)(nsct_live_blocks() - blocks));
    nsct_expect_values(x, before);
    free(before);
    nsc_free(x);
    nsc_free(xi);
    nsc_free(xb);
}

Test(reduce_errors, empty_extremes_and_sizes) {
    nsc_tensor *empty = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 0));
    nsc_tensor *x = iota(NSC_F64, NSC_SHAPE(2, 3));
    double *before = nsct_values_of(x);
    nsc_tensor *v = (nsc_tensor *)1, *i = (nsc_tensor *)1;
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_max(empty), NSC_ERR_SHAPE, "max: [2,0]: an empty input has no max");
    nsct_expect_error(nsc_min(empty), NSC_ERR_SHAPE, "min: [2,0]: an empty input has no min");
    nsct_expect_error(nsc_argmax_all(empty), NSC_ERR_SHAPE, "argmax: [2,0]: an empty input");
    nsct_expect_error(nsc_argmin(empty, 1, false), NSC_ERR_SHAPE,
                      "argmin: [2,0]: dim 1 has size 0");
    cr_expect_eq(nsc_max_dim(empty, -1, true, &v, &i), NSC_ERR_SHAPE);
    cr_expect(v == NULL && i == NULL, "outputs are cleared on failure");
    cr_expect(strstr(nsc_last_error(), "max_dim: [2,0]: dim -1 has size 0"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_min_dim(x, 2, false, &v, &i), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "min_dim: [2,3]: dim 2 is out of range"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_max_dim(x, 0, false, NULL, &i), NSC_ERR_ARG);
    nsct_expect_error(nsc_sum_to_size(x, NSC_SHAPE(2)), NSC_ERR_SHAPE,
                      "sum_to_size: [2,3]: size [2] does not broadcast");
    nsct_expect_error(nsc_sum_to_size(x, NSC_SHAPE(1, 2, 3)), NSC_ERR_SHAPE,
                      "sum_to_size: [2,3]: a rank-3 size");
    nsct_expect_error(nsc_sum_to_size(x, 9, NULL), NSC_ERR_SHAPE, "sum_to_size: [2,3]: a rank--1");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsct_expect_values(x, before);
    free(before);
    nsc_free(x);
    nsc_free(empty);
}

Test(reduce_errors, softmax_backward_and_layer_norm) {
    nsc_tensor *x = iota(NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *y = iota(NSC_F32, NSC_SHAPE(3, 2));
    nsc_tensor *yd = iota(NSC_F64, NSC_SHAPE(2, 3));
    nsc_tensor *w = iota(NSC_F32, NSC_SHAPE(3));
    nsc_tensor *w2 = iota(NSC_F32, NSC_SHAPE(2));
    nsc_tensor *wd = iota(NSC_F64, NSC_SHAPE(3));
    nsc_tensor *xi = iota(NSC_I64, NSC_SHAPE(2, 3));
    nsc_tensor *s = nsc_scalar(NSC_F32, 1.0);
    double *before = nsct_values_of(x);
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsci_softmax_backward(x, y, 1), NSC_ERR_SHAPE,
                      "softmax_backward: [2,3], [3,2]: the gradient and the output differ");
    nsct_expect_error(nsci_log_softmax_backward(x, yd, 1), NSC_ERR_DTYPE,
                      "log_softmax_backward: [2,3], [2,3]: dtypes f32 and f64");
    nsct_expect_error(nsci_softmax_backward(x, x, 2), NSC_ERR_ARG, "dim 2 is out of range");
    nsct_expect_error(nsc_layer_norm(x, 1, w2, NULL, 1e-5), NSC_ERR_SHAPE,
                      "layer_norm: [2,3], [2]: weight has shape [2]: expected [3]");
    nsct_expect_error(nsc_layer_norm(x, 1, w, w2, 1e-5), NSC_ERR_SHAPE,
                      "layer_norm: [2,3], [3], [2]: bias has shape [2]: expected [3]");
    nsct_expect_error(nsc_layer_norm(x, 1, wd, NULL, 1e-5), NSC_ERR_DTYPE,
                      "layer_norm: [2,3], [3]: weight has dtype f64: expected f32");
    nsct_expect_error(nsc_layer_norm(x, 3, NULL, NULL, 1e-5), NSC_ERR_SHAPE,
                      "layer_norm: [2,3]: 3 normalized dims of a rank-2 input");
    nsct_expect_error(nsc_layer_norm(x, 0, NULL, NULL, 1e-5), NSC_ERR_SHAPE, "0 normalized dims");
    nsct_expect_error(nsc_layer_norm(s, 1, NULL, NULL, 1e-5), NSC_ERR_SHAPE,
                      "layer_norm: []: 1 normalized dims of a rank-0 input");
    nsct_expect_error(nsc_layer_norm(xi, 1, NULL, NULL, 1e-5), NSC_ERR_DTYPE,
                      "layer_norm: [2,3]: input dtype i64");
    nsc_tensor *out[3] = { NULL, NULL, NULL };
    cr_expect_eq(nsci_layer_norm_backward(x, x, w2, w2, NULL, 1, out), NSC_ERR_SHAPE);
    cr_expect(strstr(nsc_last_error(), "layer_norm_backward: [2,3], [2,3], [2], [2]: mean has "
                                       "shape [2]: expected [2,1]"),
              "%s", nsc_last_error());
    cr_expect(!out[0] && !out[1] && !out[2]);
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsct_expect_values(x, before);
    free(before);
    nsc_tensor *all[] = { x, y, yd, w, w2, wd, xi, s };
    for (int k = 0; k < NSCI_ARRAY_LEN(all); k++) {
        nsc_free(all[k]);
    }
}

// A META tensor whose value will live on CUDA disagrees with a CPU tensor.
Test(reduce_errors, devices) {
    nsc_tensor *x = iota(NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *w = nsc_empty(NSC_F32, NSC_META, NSC_SHAPE(3));
    w->target_device = NSC_CUDA;
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_layer_norm(x, 1, w, NULL, 1e-5), NSC_ERR_DEVICE,
                      "layer_norm: [2,3], [3]: input 0 is on cpu and input 1 on cuda");
    nsct_expect_error(nsci_softmax_backward(x, w, 0), NSC_ERR_DEVICE,
                      "softmax_backward: [2,3], [3]: input 0 is on cpu");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_free(x);
    nsc_free(w);
}

// --- NaN, infinities, ties ---

Test(reduce, nan_rules) {
    nsc_tensor *x = nsct_from_values(NSC_F32, NSC_SHAPE(4), (double[]){ 1, NAN, 3, NAN });
    cr_expect(isnan(nsct_item_free(nsc_max(x))) && isnan(nsct_item_free(nsc_min(x))));
    cr_expect_eq(nsct_item_free(nsc_argmax_all(x)), 1.0, "the first NaN wins");
    cr_expect_eq(nsct_item_free(nsc_argmin(x, 0, false)), 1.0);
    cr_expect(isnan(nsct_item_free(nsc_sum_all(x))) &&
              isnan(nsct_item_free(nsc_logsumexp(x, 0, NULL, false))));
    cr_expect(isnan(nsct_item_free(nsc_var(x, 0, NULL, false, false))));
    cr_expect_eq(nsct_item_free(nsc_all(x, 0, NULL, false)), 1.0, "NaN is nonzero");
    nsc_tensor *sm = nsc_softmax(x, 0);
    double *v = nsct_values_of(sm);
    for (int i = 0; i < 4; i++) {
        cr_expect(isnan(v[i]), "softmax of a row with NaN is NaN at %d", i);
    }
    free(v);
    nsc_free(sm);
    nsc_tensor *m = nsct_from_values(NSC_F64, NSC_SHAPE(2, 3), (double[]){ 1, 2, 2, NAN, 0, NAN });
    nsc_tensor *values, *indices;
    cr_assert_eq(nsc_max_dim(m, 1, false, &values, &indices), NSC_OK);
    double *mv = nsct_values_of(values), *mi = nsct_values_of(indices);
    cr_expect(mv[0] == 2 && mi[0] == 1, "first of the tied maxima: %g at %g", mv[0], mi[0]);
    cr_expect(isnan(mv[1]) && mi[1] == 0, "NaN at its first index: %g", mi[1]);
    free(mv);
    free(mi);
    nsc_free(values);
    nsc_free(indices);
    nsc_free(m);
    nsc_free(x);
}

Test(reduce, infinities_and_degenerate_counts) {
    nsc_tensor *ninf = nsct_from_values(NSC_F32, NSC_SHAPE(2), (double[]){ -INFINITY, -INFINITY });
    nsc_tensor *pinf = nsct_from_values(NSC_F32, NSC_SHAPE(2), (double[]){ INFINITY, 1 });
    nsc_tensor *mixed = nsct_from_values(NSC_F32, NSC_SHAPE(2), (double[]){ -INFINITY, 0 });
    cr_expect_eq(nsct_item_free(nsc_logsumexp(ninf, 0, NULL, false)), -INFINITY, "not NaN");
    cr_expect_eq(nsct_item_free(nsc_logsumexp(pinf, 0, NULL, false)), INFINITY);
    cr_expect_eq(nsct_item_free(nsc_logsumexp(mixed, 0, NULL, false)), 0.0);
    // A long run split into chunks: the all -inf chunks add nothing to chunks
    // whose max is below -709 (0 * exp(709+) was NaN): log(60000) - 1000.
    nsc_tensor *deep = nsc_full(NSC_F64, NSC_CPU, NSC_SHAPE(100000), -1000.0);
    double *dp = nsc_tensor_data(deep);
    for (int i = 0; i < 40000; i++) {
        dp[i] = -INFINITY;
    }
    double lse = nsct_item_free(nsc_logsumexp(deep, 0, NULL, false));
    cr_expect(fabs(lse - (log(60000.0) - 1000.0)) < 1e-9, "logsumexp across -inf chunks: %g", lse);
    nsc_free(deep);
    nsc_tensor *soft = nsc_softmax(mixed, 0), *log_soft = nsc_log_softmax(mixed, 0);
    double *sm = nsct_values_of(soft), *lsm = nsct_values_of(log_soft);
    cr_expect(sm[0] == 0.0 && sm[1] == 1.0 && lsm[0] == -(double)INFINITY && lsm[1] == 0.0);
    free(sm);
    free(lsm);
    nsc_free(soft);
    nsc_free(log_soft);
    nsc_tensor *one = nsct_from_values(NSC_F64, NSC_SHAPE(1), (double[]){ 5 });
    cr_expect(isnan(nsct_item_free(nsc_var(one, 0, NULL, true, false))),
              "n - 1 == 0: NaN as torch");
    cr_expect_eq(nsct_item_free(nsc_var(one, 0, NULL, false, false)), 0.0);
    cr_expect(isnan(nsct_item_free(nsc_std(one, NSC_DIMS(0), true, false))));
    nsc_tensor *empty = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(0));
    cr_expect(isnan(nsct_item_free(nsc_mean(empty, 0, NULL, false))));
    cr_expect_eq(nsct_item_free(nsc_sum_all(empty)), 0.0);
    cr_expect_eq(nsct_item_free(nsc_all(empty, 0, NULL, false)), 1.0);
    cr_expect_eq(nsct_item_free(nsc_any(empty, 0, NULL, false)), 0.0);
    cr_expect_eq(nsct_item_free(nsc_logsumexp(empty, 0, NULL, false)), -INFINITY);
    nsc_tensor *big = nsct_from_values(NSC_I64, NSC_SHAPE(2),
                                       (double[]){ 4611686018427387904.0, 4611686018427387904.0 });
    cr_expect_eq(nsc_tensor_dtype(big), NSC_I64);
    nsc_tensor *wrapped = nsc_sum_all(big);
    int64_t w = 0;
    nsc_tensor_copy_to(wrapped, NSC_I64, &w, sizeof w);
    cr_expect_eq(w, INT64_MIN, "int64 sums wrap as torch's");
    nsc_tensor *all[] = { ninf, pinf, mixed, one, empty, big, wrapped };
    for (int k = 0; k < NSCI_ARRAY_LEN(all); k++) {
        nsc_free(all[k]);
    }
}

// One long run is reduced in chunks on several threads: the first of equal
// maxima and the first NaN must still win across chunk borders.
Test(reduce, ties_across_chunks) {
    int64_t n = 5 * NSCI_REDUCE_CHUNK + 17;
    nsc_tensor *x = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(n));
    float *p = nsc_tensor_data(x);
    p[2 * NSCI_REDUCE_CHUNK + 3] = 7.0f;
    p[4 * NSCI_REDUCE_CHUNK + 1] = 7.0f;
    p[NSCI_REDUCE_CHUNK - 1] = -7.0f;
    p[n - 1] = -7.0f;
    cr_expect_eq(nsct_item_free(nsc_argmax_all(x)), (double)(2 * NSCI_REDUCE_CHUNK + 3));
    cr_expect_eq(nsct_item_free(nsc_argmin_all(x)), (double)(NSCI_REDUCE_CHUNK - 1));
    cr_expect_eq(nsct_item_free(nsc_max(x)), 7.0);
    p[3 * NSCI_REDUCE_CHUNK + 5] = NAN;
    p[n - 2] = NAN;
    cr_expect_eq(nsct_item_free(nsc_argmax_all(x)), (double)(3 * NSCI_REDUCE_CHUNK + 5));
    cr_expect(isnan(nsct_item_free(nsc_min(x))));
    nsc_free(x);
}

// --- large sizes against double references ---

Test(reduce, large_against_double) {
    int64_t rows = 2048, cols = 300, n = rows * cols;
    nsc_generator *gen = nsc_generator_new(11);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(rows, cols));
    const float *p = nsc_tensor_data(x);
    double total = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        total += (double)p[i];
    }
    for (int64_t i = 0; i < n; i++) {
        double d = (double)p[i] - total / (double)n;
        sq += d * d;
    }
    cr_expect(fabs(nsct_item_free(nsc_sum_all(x)) - total) < 1e-3);
    cr_expect(fabs(nsct_item_free(nsc_mean(x, 0, NULL, false)) - total / (double)n) < 1e-7);
    cr_expect(fabs(nsct_item_free(nsc_var(x, 0, NULL, true, false)) - sq / (double)(n - 1)) < 1e-6);
    nsc_tensor *cs = nsc_sum(x, NSC_DIMS(0), false);
    nsc_tensor *rs = nsc_sum_to_size(x, NSC_SHAPE(rows, 1));
    double *c = nsct_values_of(cs), *r = nsct_values_of(rs);
    for (int64_t j = 0; j < cols; j += 37) {
        double want = 0;
        for (int64_t i = 0; i < rows; i++) {
            want += (double)p[i * cols + j];
        }
        cr_expect(fabs(c[j] - want) < 1e-3, "column %lld: %g vs %g", (long long)j, c[j], want);
    }
    for (int64_t i = 0; i < rows; i += 101) {
        double want = 0;
        for (int64_t j = 0; j < cols; j++) {
            want += (double)p[i * cols + j];
        }
        cr_expect(fabs(r[i] - want) < 1e-4, "row %lld: %g vs %g", (long long)i, r[i], want);
    }
    free(c);
    free(r);
    nsc_free(cs);
    nsc_free(rs);
    nsc_free(x);
    nsc_generator_free(gen);
}

Test(reduce, sum_to_size_of_the_same_shape_is_a_view) {
    nsc_tensor *x = iota(NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *y = nsc_sum_to_size(x, NSC_SHAPE(2, 3));
    cr_assert(y);
    cr_expect(nsc_tensor_shares_storage(x, y));
    nsc_tensor *z = nsc_sum_to_size(x, NSC_SHAPE(1, 3));
    cr_expect(!nsc_tensor_shares_storage(x, z));
    nsc_free(y);
    nsc_free(z);
    nsc_free(x);
}

// --- out of memory: every allocation of a call may fail ---

typedef nsc_tensor *(*unary_call)(nsc_tensor *x);

static nsc_tensor *sum_split(nsc_tensor *x) {
    return nsc_sum(x, NSC_DIMS(0, 2), false);
}
static nsc_tensor *var_all(nsc_tensor *x) {
    return nsc_var(x, 0, NULL, true, false);
}
static nsc_tensor *softmax0(nsc_tensor *x) {
    return nsc_softmax(x, 0);
}
static nsc_tensor *layer_norm2(nsc_tensor *x) {
    return nsc_layer_norm(x, 2, NULL, NULL, 1e-5);
}
static nsc_tensor *ln_backward(nsc_tensor *x) {
    nsc_tensor *out[3], *stats = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(9000, 1, 1));
    nsc_status status = nsci_layer_norm_backward(x, x, stats, stats, NULL, 2, out);
    nsc_free(stats);
    if (status != NSC_OK) {
        return NULL;
    }
    nsc_free(out[1]);
    nsc_free(out[2]);
    return out[0];
}

Test(reduce, out_of_memory_sweep) {
    unary_call calls[] = { sum_split, var_all, softmax0, layer_norm2, ln_backward, nsc_argmax_all };
    nsc_tensor *big = iota(NSC_F32, NSC_SHAPE(3, 4, 9000));
    nsc_tensor *x = nsc_transpose(big, 0, 2); // non-contiguous: plans copy
    for (int k = 0; k < NSCI_ARRAY_LEN(calls); k++) {
        bool done = false;
        for (int64_t n = 1; n < 100 && !done; n++) {
            int64_t blocks = nsct_live_blocks();
            nsc_mem_fail_after(n);
            nsc_tensor *r = calls[k](x);
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
    nsc_free(x);
    nsc_free(big);
}

// --- backward rules against central differences (f64) ---

static void meta_of(const nsc_tensor *t, nsci_meta *m) {
    memset(m, 0, sizeof *m);
    m->dtype = (nsc_dtype)t->dtype;
    m->device = (nsc_device)t->target_device;
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof t->shape);
}

// Runs op forward; out[] receives the outputs (n_out returned).
static int forward(nsc_op op, int n_in, nsc_tensor **in, const void *params, nsc_tensor **out) {
    nsci_call c = { .op = op, .n_in = n_in, .in = in, .params = params };
    cr_assert_eq(nsci_dispatch(&c), NSC_OK, "%s", nsc_last_error());
    for (int k = 0; k < c.n_out; k++) {
        out[k] = c.out[k];
    }
    return c.n_out;
}

// sum over outputs of <g[k], out[k]> (float outputs with a gradient).
static double objective(nsc_op op, int n_in, nsc_tensor **in, const void *params, nsc_tensor **g) {
    nsc_tensor *out[NSCI_MAX_OUTPUTS];
    int n_out = forward(op, n_in, in, params, out);
    double total = 0;
    for (int k = 0; k < n_out; k++) {
        if (g[k]) {
            double *o = nsct_values_of(out[k]), *w = nsct_values_of(g[k]);
            for (int64_t i = 0; i < nsc_tensor_numel(out[k]); i++) {
                total += o[i] * w[i];
            }
            free(o);
            free(w);
        }
        nsc_free(out[k]);
    }
    return total;
}

// Calls op's backward rule with grads g for its outputs; fills grad_in.
static void run_backward(nsc_op op, int n_in, nsc_tensor **in, const void *params, nsc_tensor **out,
                         int n_out, nsc_tensor **g, nsc_tensor **grad_in) {
    nsci_meta in_meta[NSCT_MAX_INPUTS], out_meta[NSCI_MAX_OUTPUTS];
    bool needs[NSCT_MAX_INPUTS];
    for (int j = 0; j < n_in; j++) {
        meta_of(in[j], &in_meta[j]);
        needs[j] = true;
    }
    for (int k = 0; k < n_out; k++) {
        meta_of(out[k], &out_meta[k]);
    }
    const nsci_op_def *def = nsci_op_defs[op];
    nsci_grad_ctx ctx = { .def = def,
                          .params = params,
                          .n_in = n_in,
                          .in_meta = in_meta,
                          .in = in,
                          .n_out = n_out,
                          .out_meta = out_meta,
                          .out = out,
                          .needs_grad = needs };
    cr_assert(def->backward, "%s has no backward rule", def->name);
    cr_assert_eq(def->backward(&ctx, g, grad_in), NSC_OK, "%s: %s", def->name, nsc_last_error());
}

// Output 0 gets a random gradient, other float outputs zeros (as the engine
// passes for outputs nothing flowed into), integer outputs NULL.
static void make_grads(nsc_tensor **out, int n_out, nsc_generator *gen, nsc_tensor **g) {
    for (int k = 0; k < n_out; k++) {
        g[k] = NULL;
        if (nsci_is_float((nsc_dtype)out[k]->dtype)) {
            g[k] = k == 0 ? nsc_randn(gen, NSC_F64, out[k]->ndim, out[k]->shape)
                          : nsc_zeros_like(out[k]);
        }
    }
}

// The same call on META inputs: the rule runs shape-only and gives the
// inputs' shapes.
static void check_meta_backward(nsc_op op, int n_in, nsc_tensor **in, const void *params) {
    nsc_tensor *min[NSCT_MAX_INPUTS], *mout[NSCI_MAX_OUTPUTS], *mg[NSCI_MAX_OUTPUTS];
    nsc_tensor *mgrad[NSCT_MAX_INPUTS] = { 0 };
    for (int j = 0; j < n_in; j++) {
        min[j] = nsc_empty(NSC_F64, NSC_META, in[j]->ndim, in[j]->shape);
    }
    int n_out = forward(op, n_in, min, params, mout);
    for (int k = 0; k < n_out; k++) {
        mg[k] = nsci_is_float((nsc_dtype)mout[k]->dtype) ? nsc_zeros_like(mout[k]) : NULL;
    }
    run_backward(op, n_in, min, params, mout, n_out, mg, mgrad);
    for (int j = 0; j < n_in; j++) {
        cr_expect(mgrad[j] && nsc_tensor_device(mgrad[j]) == NSC_META &&
                      mgrad[j]->ndim == in[j]->ndim &&
                      !memcmp(mgrad[j]->shape, in[j]->shape, sizeof in[j]->shape[0] * in[j]->ndim),
                  "%s: META gradient %d", nsci_op_defs[op]->name, j);
        nsc_free(mgrad[j]);
        nsc_free(min[j]);
    }
    for (int k = 0; k < n_out; k++) {
        nsc_free(mout[k]);
        nsc_free(mg[k]);
    }
}

// Compares op's backward rule with central differences of <g, op(x)> for
// every element of every input (contiguous f64 inputs).
static void gradcheck(nsc_op op, int n_in, nsc_tensor **in, const void *params) {
    const double h = 1e-6, tol = 1e-6;
    nsc_generator *gen = nsc_generator_new(3);
    nsc_tensor *out[NSCI_MAX_OUTPUTS], *g[NSCI_MAX_OUTPUTS], *grad[NSCT_MAX_INPUTS] = { 0 };
    int n_out = forward(op, n_in, in, params, out);
    make_grads(out, n_out, gen, g);
    run_backward(op, n_in, in, params, out, n_out, g, grad);
    for (int j = 0; j < n_in; j++) {
        cr_assert(grad[j], "%s: no gradient for input %d", nsci_op_defs[op]->name, j);
        cr_assert_eq(nsc_tensor_numel(grad[j]), nsc_tensor_numel(in[j]));
        double *analytic = nsct_values_of(grad[j]), *x = nsc_tensor_data(in[j]);
        for (int64_t e = 0; e < nsc_tensor_numel(in[j]); e++) {
            double keep = x[e];
            x[e] = keep + h;
            double up = objective(op, n_in, in, params, g);
            x[e] = keep - h;
            double down = objective(op, n_in, in, params, g);
            x[e] = keep;
            double numeric = (up - down) / (2 * h);
            cr_expect(fabs(numeric - analytic[e]) <= tol * (1 + fabs(numeric)),
                      "%s: d/d input %d [%lld]: analytic %.9g, numeric %.9g",
                      nsci_op_defs[op]->name, j, (long long)e, analytic[e], numeric);
        }
        free(analytic);
        nsc_free(grad[j]);
    }
    for (int k = 0; k < n_out; k++) {
        nsc_free(out[k]);
        nsc_free(g[k]);
    }
    nsc_generator_free(gen);
    check_meta_backward(op, n_in, in, params);
}

static nsc_tensor *randn64(nsc_generator *gen, int ndim, const int64_t *shape) {
    return nsc_randn(gen, NSC_F64, ndim, shape);
}

Test(reduce_grad, sums) {
    nsc_generator *gen = nsc_generator_new(5);
    nsc_tensor *x = randn64(gen, NSC_SHAPE(2, 3, 4));
    nsci_reduce_params p = nsci_reduce_pack(2, (int[]){ 0, 2 }, false);
    gradcheck(NSC_OP_sum, 1, &x, &p);
    p = nsci_reduce_pack(1, (int[]){ -2 }, true);
    gradcheck(NSC_OP_sum, 1, &x, &p);
    gradcheck(NSC_OP_mean, 1, &x, &p);
    p = nsci_reduce_pack(0, NULL, false);
    gradcheck(NSC_OP_mean, 1, &x, &p);
    struct {
        int ndim;
        int64_t shape[NSC_MAX_DIMS];
    } to = { 2, { 3, 1 } };
    gradcheck(NSC_OP_sum_to_size, 1, &x, &to);
    nsc_free(x);
    nsc_generator_free(gen);
}

Test(reduce_grad, extremes) {
    nsc_generator *gen = nsc_generator_new(6);
    nsc_tensor *x = randn64(gen, NSC_SHAPE(3, 4));
    gradcheck(NSC_OP_max, 1, &x, NULL);
    gradcheck(NSC_OP_min, 1, &x, NULL);
    nsci_reduce_params p = nsci_reduce_pack(1, (int[]){ 1 }, false);
    gradcheck(NSC_OP_max_dim, 1, &x, &p);
    p = nsci_reduce_pack(1, (int[]){ 0 }, true);
    gradcheck(NSC_OP_min_dim, 1, &x, &p);
    nsc_free(x);
    nsc_generator_free(gen);
}

// torch.max() shares the gradient among tied maxima; max_dim gives it to the
// selected index only.
Test(reduce_grad, ties) {
    nsc_tensor *x = nsct_from_values(NSC_F64, NSC_SHAPE(1, 4), (double[]){ 1, 3, 3, 2 });
    nsc_tensor *out[2], *g[2], *grad = NULL;
    forward(NSC_OP_max, 1, &x, NULL, out);
    g[0] = nsc_scalar(NSC_F64, 2.0);
    run_backward(NSC_OP_max, 1, &x, NULL, out, 1, g, &grad);
    double *v = nsct_values_of(grad);
    cr_expect(v[0] == 0 && v[1] == 1 && v[2] == 1 && v[3] == 0);
    free(v);
    nsc_free(grad);
    nsc_free(out[0]);
    nsc_free(g[0]);
    nsci_reduce_params p = nsci_reduce_pack(1, (int[]){ 1 }, false);
    forward(NSC_OP_max_dim, 1, &x, &p, out);
    g[0] = nsct_from_values(NSC_F64, NSC_SHAPE(1), (double[]){ 2 });
    g[1] = NULL;
    run_backward(NSC_OP_max_dim, 1, &x, &p, out, 2, g, &grad);
    v = nsct_values_of(grad);
    cr_expect(v[0] == 0 && v[1] == 2 && v[2] == 0 && v[3] == 0);
    free(v);
    nsc_free(grad);
    nsc_free(out[0]);
    nsc_free(out[1]);
    nsc_free(g[0]);
    nsc_free(x);
}

Test(reduce_grad, statistics) {
    nsc_generator *gen = nsc_generator_new(8);
    nsc_tensor *x = randn64(gen, NSC_SHAPE(3, 5));
    nsci_reduce_params p = nsci_reduce_pack(1, (int[]){ 1 }, false);
    p.unbiased = true;
    gradcheck(NSC_OP_var, 1, &x, &p);
    gradcheck(NSC_OP_std, 1, &x, &p);
    gradcheck(NSC_OP_logsumexp, 1, &x, &p);
    p = nsci_reduce_pack(0, NULL, true);
    gradcheck(NSC_OP_var, 1, &x, &p);
    gradcheck(NSC_OP_std, 1, &x, &p);
    gradcheck(NSC_OP_logsumexp, 1, &x, &p);
    nsc_free(x);
    nsc_generator_free(gen);
}

Test(reduce_grad, softmax) {
    nsc_generator *gen = nsc_generator_new(9);
    nsc_tensor *x = randn64(gen, NSC_SHAPE(3, 4));
    for (int dim = -1; dim <= 0; dim++) {
        int p = dim;
        gradcheck(NSC_OP_softmax, 1, &x, &p);
        gradcheck(NSC_OP_log_softmax, 1, &x, &p);
    }
    nsc_free(x);
    nsc_generator_free(gen);
}

// The params layout of op_norm.c's layer_norm_params.
typedef struct ln_params {
    int n_normalized;
    double eps;
    bool has_weight, has_bias;
} ln_params;

Test(reduce_grad, layer_norm) {
    nsc_generator *gen = nsc_generator_new(10);
    nsc_tensor *in[3] = { randn64(gen, NSC_SHAPE(3, 2, 4)), randn64(gen, NSC_SHAPE(2, 4)),
                          randn64(gen, NSC_SHAPE(2, 4)) };
    ln_params p = { 2, 1e-5, true, true };
    gradcheck(NSC_OP_layer_norm, 3, in, &p);
    p = (ln_params){ 2, 1e-5, false, true };
    nsc_tensor *no_weight[2] = { in[0], in[2] };
    gradcheck(NSC_OP_layer_norm, 2, no_weight, &p);
    p = (ln_params){ 1, 0.1, false, false };
    gradcheck(NSC_OP_layer_norm, 1, in, &p);
    cr_expect_eq(sizeof p, nsci_op_layer_norm.params_size, "ln_params mirrors op_norm.c");
    for (int i = 0; i < 3; i++) {
        nsc_free(in[i]);
    }
    nsc_generator_free(gen);
}
