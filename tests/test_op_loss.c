// Losses and dropout beyond the case table: every error class (status,
// message with the op, shapes, target value and position, inputs unchanged,
// no leak), numerical stability, ignore_index and empty reductions, large
// sizes against double references, the fused cross-entropy gradient through
// the autograd engine, dropout's statistics and determinism, and
// out-of-memory sweeps.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"

// --- helpers ---

static nsc_tensor *randn(uint64_t seed, nsc_dtype dtype, int ndim, const int64_t *shape) {
    nsc_generator *gen = nsc_generator_new(seed);
    nsc_tensor *t = nsc_randn(gen, dtype, ndim, shape);
    nsc_generator_free(gen);
    cr_assert(t);
    return t;
}

static nsc_tensor *randint(uint64_t seed, int64_t high, int ndim, const int64_t *shape) {
    nsc_generator *gen = nsc_generator_new(seed);
    nsc_tensor *t = nsc_randint(gen, 0, high, ndim, shape);
    nsc_generator_free(gen);
    cr_assert(t);
    return t;
}

static void free_all(nsc_tensor **t, int n) {
    for (int i = 0; i < n; i++) {
        nsc_free(t[i]);
    }
}

// Reference cross-entropy rows in double: lse(x_i) - x_i[t_i].
static double ce_row(const double *x, int64_t classes, int64_t t) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < classes; j++) {
        m = fmax(m, x[j]);
    }
    for (int64_t j = 0; j < classes; j++) {
        s += exp(x[j] - m);
    }
    return m + log(s) - x[t];
}

// --- errors ---

Test(loss_errors, out_of_range_targets_name_value_and_position) {
    nsc_tensor *x = randn(1, NSC_F32, NSC_SHAPE(3, 4));
    nsc_tensor *t = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 1, 4, 0 });
    nsc_tensor *neg = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 1, 2, -3 });
    nsc_tensor *ignored = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 1, -100, 3 });
    nsc_tensor *g = nsc_scalar(NSC_F32, 1);
    double *before = nsct_values_of(x);
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(
        nsc_cross_entropy(x, t, NSC_REDUCTION_MEAN, -100), NSC_ERR_ARG,
        "cross_entropy: [3,4], [3]: target 4 at position [1] is out of range [0, 4) and "
        "not ignore_index -100");
    nsct_expect_error(nsc_nll_loss(x, neg, NSC_REDUCTION_SUM, -100), NSC_ERR_ARG,
                      "nll_loss: [3,4], [3]: target -3 at position [2] is out of range [0, 4)");
    nsct_expect_error(nsci_cross_entropy_backward(g, x, t, NSC_REDUCTION_MEAN, -100), NSC_ERR_ARG,
                      "cross_entropy_backward: [], [3,4], [3]: target 4 at position [1]");
    // The same target is fine when it is the ignore_index.
    nsc_tensor *ok = nsc_cross_entropy(x, ignored, NSC_REDUCTION_NONE, -100);
    cr_assert(ok, "%s", nsc_last_error());
    nsc_free(ok);
    cr_expect_eq(nsct_live_blocks(), blocks);
    double *after = nsct_values_of(x);
    cr_expect(memcmp(before, after, 12 * sizeof *before) == 0, "logits changed");
    free(before);
    free(after);
    nsc_tensor *all[] = { x, t, neg, ignored, g };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(loss_errors, dtypes_shapes_and_arguments) {
    nsc_tensor *x = randn(2, NSC_F32, NSC_SHAPE(3, 4));
    nsc_tensor *xi = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(3, 4));
    nsc_tensor *x3 = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 4));
    nsc_tensor *t = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 1, 2, 0 });
    nsc_tensor *tf = nsct_from_values(NSC_F32, NSC_SHAPE(3), (double[]){ 1, 2, 0 });
    nsc_tensor *t4 = nsct_from_values(NSC_I64, NSC_SHAPE(4), (double[]){ 1, 2, 0, 1 });
    nsc_tensor *g2 = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    nsc_tensor *b = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(3, 5));
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_cross_entropy(xi, t, NSC_REDUCTION_MEAN, -100), NSC_ERR_DTYPE,
                      "cross_entropy: [3,4], [3]: scores are i64: expected f32 or f64");
    nsct_expect_error(nsc_cross_entropy(x, tf, NSC_REDUCTION_MEAN, -100), NSC_ERR_DTYPE,
                      "target dtype f32: expected i64");
    nsct_expect_error(nsc_nll_loss(x, t4, NSC_REDUCTION_MEAN, -100), NSC_ERR_SHAPE,
                      "nll_loss: [3,4], [4]: expected scores [N, C] with target [N]");
    nsct_expect_error(nsc_cross_entropy(x3, t, NSC_REDUCTION_MEAN, -100), NSC_ERR_SHAPE,
                      "expected scores [N, C] with target [N], or scores [C] with a 0-dim target");
    nsct_expect_error(nsc_cross_entropy(x, t, (nsc_reduction)7, -100), NSC_ERR_ARG,
                      "unknown reduction 7");
    nsct_expect_error(nsci_cross_entropy_backward(g2, x, t, NSC_REDUCTION_NONE, -100),
                      NSC_ERR_SHAPE, "grad must be a float tensor of the loss's shape [3]");
    nsct_expect_error(nsc_mse_loss(x, b, NSC_REDUCTION_MEAN), NSC_ERR_SHAPE,
                      "mse_loss: [3,4], [3,5]: sizes 4 and 5 at dim -1 cannot broadcast");
    nsct_expect_error(nsc_mse_loss(xi, xi, NSC_REDUCTION_SUM), NSC_ERR_DTYPE,
                      "mse_loss: [3,4], [3,4]: inputs promote to i64: expected f32 or f64");
    nsct_expect_error(nsc_mse_loss(x, x, (nsc_reduction)-1), NSC_ERR_ARG, "unknown reduction -1");
    nsct_expect_error(nsc_dropout(x, 1.5, true, NULL), NSC_ERR_ARG,
                      "dropout: [3,4]: p 1.5: expected a probability in [0, 1]");
    nsct_expect_error(nsc_dropout(x, NAN, false, NULL), NSC_ERR_ARG, "expected a probability");
    nsct_expect_error(nsc_dropout(xi, 0.5, true, NULL), NSC_ERR_DTYPE,
                      "dropout: [3,4]: x is i64: expected f32 or f64");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_tensor *all[] = { x, xi, x3, t, tf, t4, g2, b };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(loss_errors, null_inputs_keep_the_first_error) {
    nsc_tensor *t = nsct_from_values(NSC_I64, NSC_SHAPE(1), (double[]){ 0 });
    nsci_fail(NSC_ERR_SHAPE, "first failure");
    cr_expect_null(nsc_cross_entropy(NULL, t, NSC_REDUCTION_MEAN, -100));
    cr_expect_null(nsc_dropout(NULL, 0.5, false, NULL));
    cr_expect_null(nsc_mse_loss(t, NULL, NSC_REDUCTION_MEAN));
    cr_expect_str_eq(nsc_last_error(), "first failure");
    nsc_clear_error();
    nsc_free(t);
}

// --- cross_entropy and nll_loss ---

Test(loss, cross_entropy_is_stable_for_huge_logits) {
    nsc_tensor *x =
        nsct_from_values(NSC_F32, NSC_SHAPE(2, 3), (double[]){ 1e4, 0, -1e4, 3e38, 3e38, 0 });
    nsc_tensor *t = nsct_from_values(NSC_I64, NSC_SHAPE(2), (double[]){ 0, 2 });
    nsc_tensor *l = nsc_cross_entropy(x, t, NSC_REDUCTION_NONE, -100);
    cr_assert(l);
    double *v = nsct_values_of(l);
    cr_expect(fabs(v[0]) < 1e-6, "%g", v[0]);
    cr_expect(isinf(v[1]) || v[1] > 1e38, "a huge margin gives a huge loss, not NaN: %g", v[1]);
    free(v);
    nsc_tensor *nan_row = nsct_from_values(NSC_F32, NSC_SHAPE(2), (double[]){ NAN, 0 });
    nsc_tensor *t0 = nsc_scalar(NSC_I64, 1);
    cr_expect(isnan(nsct_item_free(nsc_cross_entropy(nan_row, t0, NSC_REDUCTION_SUM, -100))));
    nsc_tensor *all[] = { x, t, l, nan_row, t0 };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(loss, ignored_rows_leave_the_mean_and_all_ignored_gives_nan) {
    nsc_tensor *x = nsct_from_values(NSC_F64, NSC_SHAPE(3, 2), (double[]){ 0, 1, 2, 0, 5, 5 });
    nsc_tensor *t = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 1, -100, 0 });
    double r0 = ce_row((double[]){ 0, 1 }, 2, 1), r2 = ce_row((double[]){ 5, 5 }, 2, 0);
    double mean = nsct_item_free(nsc_cross_entropy(x, t, NSC_REDUCTION_MEAN, -100));
    cr_expect(fabs(mean - (r0 + r2) / 2) < 1e-15, "%.17g", mean);
    double nll = nsct_item_free(nsc_nll_loss(x, t, NSC_REDUCTION_MEAN, -100));
    cr_expect(fabs(nll - (-1.0 - 5.0) / 2) < 1e-15, "%.17g", nll);
    nsc_tensor *all_ignored =
        nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ -100, -100, -100 });
    cr_expect(isnan(nsct_item_free(nsc_cross_entropy(x, all_ignored, NSC_REDUCTION_MEAN, -100))));
    cr_expect(nsct_item_free(nsc_cross_entropy(x, all_ignored, NSC_REDUCTION_SUM, -100)) == 0);
    nsc_tensor *none = nsc_nll_loss(x, all_ignored, NSC_REDUCTION_NONE, -100);
    double *v = nsct_values_of(none);
    cr_expect(v[0] == 0 && v[1] == 0 && v[2] == 0);
    free(v);
    nsc_tensor *all[] = { x, t, all_ignored, none };
    free_all(all, NSCI_ARRAY_LEN(all));
}

// GPT-2-like rows (many classes) across the thread pool against double.
Test(loss, cross_entropy_large_matches_double_and_its_fused_gradient) {
    const int64_t N = 96, C = 3001;
    nsc_tensor *x = randn(3, NSC_F32, NSC_SHAPE(N, C));
    nsc_tensor *t = randint(4, C, NSC_SHAPE(N));
    double *xv = nsct_values_of(x), *tv = nsct_values_of(t);
    double want = 0;
    for (int64_t i = 0; i < N; i++) {
        want += ce_row(&xv[i * C], C, (int64_t)tv[i]) / (double)N;
    }
    double got = nsct_item_free(nsc_cross_entropy(x, t, NSC_REDUCTION_MEAN, -100));
    cr_expect(fabs(got - want) < 1e-5 * fabs(want), "%.9g vs %.9g", got, want);
    nsc_tensor *g = nsc_scalar(NSC_F32, 2.0);
    nsc_tensor *dx = nsci_cross_entropy_backward(g, x, t, NSC_REDUCTION_MEAN, -100);
    cr_assert(dx, "%s", nsc_last_error());
    double *dv = nsct_values_of(dx);
    int bad = 0;
    for (int64_t i = 0; i < N; i++) {
        double lse = ce_row(&xv[i * C], C, 0) + xv[i * C];
        for (int64_t j = 0; j < C; j++) {
            double p = exp(xv[i * C + j] - lse) - (j == (int64_t)tv[i]);
            bad += fabs(dv[i * C + j] - 2.0 * p / (double)N) > 1e-7;
        }
    }
    cr_expect_eq(bad, 0, "%d gradient entries differ", bad);
    free(xv);
    free(tv);
    free(dv);
    nsc_tensor *all[] = { x, t, g, dx };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(loss, cross_entropy_equals_nll_of_log_softmax) {
    nsc_tensor *x = randn(5, NSC_F64, NSC_SHAPE(7, 5));
    nsc_tensor *t = randint(6, 5, NSC_SHAPE(7));
    nsc_tensor *lp = nsc_log_softmax(x, 1);
    for (int r = 0; r < 3; r++) {
        nsc_tensor *a = nsc_cross_entropy(x, t, (nsc_reduction)r, 3);
        nsc_tensor *b = nsc_nll_loss(lp, t, (nsc_reduction)r, 3);
        cr_expect(nsc_allclose(a, b, 1e-12, 1e-12, false), "reduction %d: %s", r, nsc_last_error());
        nsc_free(a);
        nsc_free(b);
    }
    nsc_tensor *all[] = { x, t, lp };
    free_all(all, NSCI_ARRAY_LEN(all));
}

// The engine calls the fused row; nll_loss's rule is built from scatter_add.
Test(loss_grad, cross_entropy_and_nll_backward_through_the_engine) {
    nsc_tensor *x = randn(7, NSC_F64, NSC_SHAPE(5, 4));
    nsc_tensor *t = nsct_from_values(NSC_I64, NSC_SHAPE(5), (double[]){ 3, 0, 0, 1, 2 });
    cr_assert_eq(nsc_requires_grad_(x, true), NSC_OK);
    nsc_tensor *loss = nsc_cross_entropy(x, t, NSC_REDUCTION_MEAN, 0);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *one = nsc_scalar(NSC_F64, 1);
    nsc_tensor *want = nsci_cross_entropy_backward(one, x, t, NSC_REDUCTION_MEAN, 0);
    nsc_tensor *got = nsc_tensor_get_grad(x);
    cr_expect(nsc_allclose(got, want, 0, 0, false), "%s", nsc_last_error());
    double *gv = nsct_values_of(got);
    cr_expect(gv[4] == 0 && gv[8] == 0 && gv[11] == 0, "ignored rows get no gradient");
    free(gv);
    cr_assert_eq(nsc_tensor_set_grad(x, NULL), NSC_OK);
    nsc_tensor *nll = nsc_nll_loss(x, t, NSC_REDUCTION_MEAN, 0);
    cr_assert_eq(nsc_backward(nll, NULL, false), NSC_OK, "%s", nsc_last_error());
    double *nv = nsct_values_of(nsc_tensor_get_grad(x));
    for (int64_t k = 0; k < 20; k++) {
        double expect = (k == 3 || k == 13 || k == 18) ? -1.0 / 3 : 0.0;
        cr_expect(fabs(nv[k] - expect) < 1e-15, "d nll / d x[%lld] = %g", (long long)k, nv[k]);
    }
    free(nv);
    nsc_tensor *all[] = { x, t, loss, one, want, nll };
    free_all(all, NSCI_ARRAY_LEN(all));
}

// --- mse_loss ---

Test(loss, mse_large_and_broadcast_gradients) {
    nsc_tensor *a = randn(8, NSC_F32, NSC_SHAPE(300, 500));
    nsc_tensor *b = randn(9, NSC_F32, NSC_SHAPE(500));
    double *av = nsct_values_of(a), *bv = nsct_values_of(b), want = 0;
    for (int64_t k = 0; k < 300 * 500; k++) {
        double d = av[k] - bv[k % 500];
        want += d * d;
    }
    double got = nsct_item_free(nsc_mse_loss(a, b, NSC_REDUCTION_SUM));
    cr_expect(fabs(got - want) < 1e-5 * want, "%.9g vs %.9g", got, want);
    free(av);
    free(bv);
    nsc_tensor *p = nsct_from_values(NSC_F64, NSC_SHAPE(2, 2), (double[]){ 1, 2, 3, 4 });
    nsc_tensor *q = nsct_from_values(NSC_F64, NSC_SHAPE(2), (double[]){ 0, 1 });
    cr_assert_eq(nsc_requires_grad_(p, true), NSC_OK);
    cr_assert_eq(nsc_requires_grad_(q, true), NSC_OK);
    nsc_tensor *loss = nsc_mse_loss(p, q, NSC_REDUCTION_MEAN);
    cr_expect(fabs(nsc_tensor_item(loss) - (1 + 1 + 9 + 9) / 4.0) < 1e-15);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    double *gp = nsct_values_of(nsc_tensor_get_grad(p)),
           *gq = nsct_values_of(nsc_tensor_get_grad(q));
    double want_p[] = { 0.5, 0.5, 1.5, 1.5 };
    for (int k = 0; k < 4; k++) {
        cr_expect(fabs(gp[k] - want_p[k]) < 1e-15, "dp[%d] = %g", k, gp[k]);
    }
    cr_expect(fabs(gq[0] + 2.0) < 1e-15 && fabs(gq[1] + 2.0) < 1e-15, "dq summed: %g %g", gq[0],
              gq[1]);
    free(gp);
    free(gq);
    nsc_tensor *all[] = { a, b, p, q, loss };
    free_all(all, NSCI_ARRAY_LEN(all));
}

// --- dropout ---

Test(dropout, statistics_scaling_and_determinism) {
    const int64_t n = 1 << 20;
    const double p = 0.3;
    nsc_tensor *x = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(n), 1.5);
    nsc_generator *gen = nsc_generator_new(42);
    nsc_tensor *y = nsc_dropout(x, p, true, gen);
    cr_assert(y, "%s", nsc_last_error());
    const float *yv = nsc_tensor_data(y);
    const float kept = 1.5f * (float)(1.0 / (1.0 - p));
    int64_t zeros = 0, odd = 0, zeros_first_half = 0;
    for (int64_t i = 0; i < n; i++) {
        zeros += yv[i] == 0;
        zeros_first_half += i < n / 2 && yv[i] == 0;
        odd += yv[i] != 0 && yv[i] != kept;
    }
    // Binomial standard deviation sqrt(p (1 - p) / n) ~ 4.5e-4: 10 sigma below.
    double fraction = (double)zeros / (double)n;
    cr_expect(fabs(fraction - p) < 5e-3, "zeroed fraction %g", fraction);
    cr_expect(fabs((double)zeros_first_half / (double)(n / 2) - p) < 7e-3);
    cr_expect_eq(odd, 0, "kept values are x / (1 - p) exactly");
    // Same seed, same mask; the next call draws a new one.
    nsc_generator *again = nsc_generator_new(42);
    nsc_tensor *y2 = nsc_dropout(x, p, true, again);
    nsc_tensor *y3 = nsc_dropout(x, p, true, again);
    cr_expect(nsc_allclose(y, y2, 0, 0, false), "a fixed seed repeats the mask");
    cr_expect(!nsc_allclose(y3, y2, 0, 0, false), "the generator moved on");
    nsc_clear_error();
    nsc_tensor *all[] = { x, y, y2, y3 };
    free_all(all, NSCI_ARRAY_LEN(all));
    nsc_generator_free(gen);
    nsc_generator_free(again);
}

Test(dropout, edge_probabilities_evaluation_and_meta) {
    nsc_tensor *x = nsct_from_values(NSC_F64, NSC_SHAPE(4), (double[]){ 1, NAN, -2, 3 });
    nsc_manual_seed(7);
    uint32_t first = nsc_generator_next_u32(nsc_generator_default());
    nsc_manual_seed(7);
    nsc_tensor *same = nsc_dropout(x, 0.0, true, NULL);
    cr_expect_eq(nsc_generator_next_u32(nsc_generator_default()), first,
                 "p = 0 draws nothing from the generator");
    nsc_tensor *all_dropped = nsc_dropout(x, 1.0, true, NULL);
    double *v = nsct_values_of(all_dropped);
    cr_expect(v[0] == 0 && isnan(v[1]) && v[2] == 0 && v[3] == 0, "x * 0 (NaN stays NaN)");
    free(v);
    nsc_tensor *eval = nsc_dropout(x, 0.9, false, NULL);
    cr_expect_eq(eval, x, "evaluation returns x itself");
    nsc_tensor *m = nsc_empty(NSC_F32, NSC_META, NSC_SHAPE(1000, 1000));
    int64_t data_bytes = nsc_mem_stats_get().data_bytes;
    nsc_manual_seed(7);
    nsc_tensor *mo = nsc_dropout(m, 0.5, true, NULL);
    cr_assert(mo && nsc_tensor_device(mo) == NSC_META);
    cr_expect_eq(nsc_mem_stats_get().data_bytes, data_bytes);
    cr_expect_eq(nsc_generator_next_u32(nsc_generator_default()), first,
                 "META draws nothing (torch's META dropout leaves the generator too)");
    nsc_tensor *all[] = { x, same, all_dropped, eval, m, mo };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(dropout, gradient_is_the_scaled_mask) {
    nsc_tensor *x = nsc_ones(NSC_F64, NSC_CPU, NSC_SHAPE(50, 40));
    cr_assert_eq(nsc_requires_grad_(x, true), NSC_OK);
    nsc_generator *gen = nsc_generator_new(3);
    nsc_tensor *y = nsc_dropout(x, 0.25, true, gen);
    nsc_tensor *loss = nsc_sum_all(y);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    // With x = 1 the output is the scaled mask itself, and so is the gradient.
    cr_expect(nsc_allclose(nsc_tensor_get_grad(x), y, 0, 0, false), "%s", nsc_last_error());
    nsc_tensor *all[] = { x, y, loss };
    free_all(all, NSCI_ARRAY_LEN(all));
    nsc_generator_free(gen);
}

// --- out of memory ---

typedef nsc_tensor *(*loss_call)(nsc_tensor *x, nsc_tensor *t);

static nsc_tensor *call_ce(nsc_tensor *x, nsc_tensor *t) {
    return nsc_cross_entropy(x, t, NSC_REDUCTION_MEAN, 0);
}
static nsc_tensor *call_ce_backward(nsc_tensor *x, nsc_tensor *t) {
    nsc_tensor *g = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(64));
    nsc_tensor *r = g ? nsci_cross_entropy_backward(g, x, t, NSC_REDUCTION_NONE, 0) : NULL;
    nsc_free(g);
    return r;
}
static nsc_tensor *call_nll(nsc_tensor *x, nsc_tensor *t) {
    return nsc_nll_loss(x, t, NSC_REDUCTION_SUM, 0);
}
static nsc_tensor *call_mse(nsc_tensor *x, nsc_tensor *t) {
    (void)t;
    return nsc_mse_loss(x, x, NSC_REDUCTION_MEAN);
}
static nsc_tensor *call_dropout(nsc_tensor *x, nsc_tensor *t) {
    (void)t;
    return nsc_dropout(x, 0.5, true, NULL);
}

Test(loss, out_of_memory_sweep) {
    loss_call calls[] = { call_ce, call_ce_backward, call_nll, call_mse, call_dropout };
    nsc_tensor *big = randn(10, NSC_F32, NSC_SHAPE(700, 64));
    nsc_tensor *x = nsc_transpose(big, 0, 1); // [64, 700], non-contiguous: kernels copy
    nsc_tensor *t = randint(11, 700, NSC_SHAPE(64));
    for (int k = 0; k < NSCI_ARRAY_LEN(calls); k++) {
        bool done = false;
        for (int64_t n = 1; n < 100 && !done; n++) {
            int64_t blocks = nsct_live_blocks();
            nsc_mem_fail_after(n);
            nsc_tensor *r = calls[k](x, t);
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
    nsc_free(t);
}
