// Layers as modules: each forward against the op it wraps, PyTorch's
// default initializations (bounds and statistics, repeatable for a seed),
// Conv1D's [in, out] weight, dropout's train/eval switch and seeding,
// Sequential and MLP trees, hooks and early stops through containers,
// training through an MLP, and argument errors without leaks.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"

static nsc_tensor *call1(nsc_module *m, nsc_tensor *x) {
    return nsc_module_call(m, 1, &x);
}

static double scalar_of(nsc_tensor *t) {
    double v = nsc_tensor_item(t);
    nsc_free(t);
    return v;
}

static double max_abs(nsc_tensor *t) {
    nsc_tensor *a = nsc_abs(t);
    double v = scalar_of(nsc_max(a));
    nsc_free(a);
    return v;
}

// --- Linear and Conv1D ---

Test(layers, linear_matches_the_op_and_pytorch_init) {
    int64_t before = nsct_live_blocks();
    nsc_generator *gen = nsc_generator_new(3);
    nsc_module *lin = nsc_linear_new(400, 300, true, gen);
    cr_assert(lin, "%s", nsc_last_error());
    cr_expect_str_eq(nsc_module_type(lin), "Linear");
    nsc_tensor *w = nsc_module_param(lin, "weight"), *b = nsc_module_param(lin, "bias");
    cr_expect(nsc_tensor_size(w, 0) == 300 && nsc_tensor_size(w, 1) == 400, "weight [out, in]");
    double bound = 1 / sqrt(400.0);
    cr_expect(max_abs(w) <= bound && max_abs(w) > 0.95 * bound, "kaiming_uniform(a=sqrt(5))");
    cr_expect(max_abs(b) <= bound);
    double sd = scalar_of(nsc_std(w, 0, NULL, false, false));
    cr_expect(fabs(sd - bound / sqrt(3.0)) < 0.01 * bound, "uniform std %g", sd);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(2, 5, 400));
    nsc_tensor *y = call1(lin, x), *want = nsc_linear(x, w, b);
    nsct_expect_close(y, want, TOL_EXACT, "Linear = nsc_linear");
    nsc_module *again = nsc_linear_new(400, 300, true, NULL);
    nsc_manual_seed(9);
    nsc_module *a1 = nsc_linear_new(4, 3, false, NULL);
    nsc_manual_seed(9);
    nsc_module *a2 = nsc_linear_new(4, 3, false, NULL);
    nsct_expect_close(nsc_module_param(a1, "weight"), nsc_module_param(a2, "weight"), TOL_EXACT,
                      "the same seed, the same weights");
    cr_expect_null(nsc_module_param(a1, "bias"));
    nsc_free(x);
    nsc_free(y);
    nsc_free(want);
    nsc_module_free(lin);
    nsc_module_free(again);
    nsc_module_free(a1);
    nsc_module_free(a2);
    nsc_generator_free(gen);
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(layers, conv1d_stores_in_out_and_computes_x_w_plus_b) {
    nsc_generator *gen = nsc_generator_new(4);
    nsc_module *conv = nsc_conv1d_new(6, 9, gen);
    cr_assert(conv);
    nsc_tensor *w = nsc_module_param(conv, "weight"), *b = nsc_module_param(conv, "bias");
    cr_expect(nsc_tensor_size(w, 0) == 6 && nsc_tensor_size(w, 1) == 9, "weight [in, out]");
    cr_expect_eq(max_abs(b), 0.0);
    nsc_tensor *fill = nsc_randn(gen, NSC_F32, NSC_SHAPE(9));
    nsc_copy_(b, fill);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(3, 6));
    nsc_tensor *xw = nsc_matmul(x, w), *want = nsc_add(xw, b), *y = call1(conv, x);
    nsct_expect_close(y, want, TOL_F32_MATMUL, "Conv1D = x W + b");
    nsc_tensor *temps[] = { fill, x, xw, want, y };
    for (int i = 0; i < 5; i++) {
        nsc_free(temps[i]);
    }
    nsc_module_free(conv);
    nsc_generator_free(gen);
}

// --- Embedding, LayerNorm, activations ---

Test(layers, embedding_layer_norm_and_activations) {
    int64_t before = nsct_live_blocks();
    nsc_generator *gen = nsc_generator_new(5);
    nsc_module *emb = nsc_embedding_new(500, 64, gen);
    nsc_tensor *w = nsc_module_param(emb, "weight");
    double sd = scalar_of(nsc_std(w, 0, NULL, false, false));
    cr_expect(fabs(sd - 1) < 0.02, "normal(0, 1): std %g", sd);
    nsc_tensor *ids = nsc_randint(gen, 0, 500, NSC_SHAPE(2, 7));
    nsc_tensor *e = call1(emb, ids), *want = nsc_embedding(w, ids);
    nsct_expect_close(e, want, TOL_EXACT, "Embedding");
    nsc_module *ln = nsc_layer_norm_new(64, 1e-5);
    nsc_tensor *n = call1(ln, e);
    nsc_tensor *n_want = nsc_layer_norm(e, 1, NULL, NULL, 1e-5);
    nsct_expect_close(n, n_want, TOL_F32_REDUCE, "LayerNorm with ones and zeros");
    nsc_module *acts[] = { nsc_gelu_new(NSC_GELU_TANH), nsc_gelu_new(NSC_GELU_ERF), nsc_relu_new(),
                           nsc_activation_new(NSC_ACTIVATION_TANH),
                           nsc_activation_new(NSC_ACTIVATION_NONE) };
    nsc_tensor *wants[] = { nsc_gelu(n, NSC_GELU_TANH), nsc_gelu(n, NSC_GELU_ERF), nsc_relu(n),
                            nsc_tanh(n), nsc_retain(n) };
    static const char *const types[] = { "GELU", "GELU", "ReLU", "Tanh", "Identity" };
    for (int i = 0; i < 5; i++) {
        cr_expect_str_eq(nsc_module_type(acts[i]), types[i]);
        nsc_tensor *y = call1(acts[i], n);
        nsct_expect_close(y, wants[i], TOL_EXACT, types[i]);
        nsc_free(y);
        nsc_free(wants[i]);
        nsc_module_free(acts[i]);
    }
    cr_expect_str_eq(nsc_activation_name(NSC_ACTIVATION_GELU_TANH), "gelu_new");
    nsc_tensor *temps[] = { ids, e, want, n, n_want };
    for (int i = 0; i < 5; i++) {
        nsc_free(temps[i]);
    }
    nsc_module_free(emb);
    nsc_module_free(ln);
    nsc_generator_free(gen);
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(layers, identity_returns_its_input) {
    nsc_module *id = nsc_identity_new("HookPoint");
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *y = call1(id, x);
    cr_expect_eq(y, x, "the same tensor, a new reference");
    cr_expect_str_eq(nsc_module_type(id), "HookPoint");
    nsc_free(y);
    nsc_free(x);
    nsc_module_free(id);
}

// --- Dropout ---

Test(layers, dropout_follows_the_training_flag_and_its_seed) {
    nsc_module *d = nsc_dropout_new(0.25);
    cr_expect(nsc_module_is_training(d), "training at first, as torch.nn.Module");
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(4000));
    cr_assert_eq(nsc_dropout_set_seed(d, 77), NSC_OK);
    nsc_tensor *a = call1(d, x);
    double kept = scalar_of(nsc_sum_all(a)) / (4000 / 0.75);
    cr_expect(fabs(kept - 0.75) < 0.03, "kept fraction %g", kept);
    cr_expect(fabs(max_abs(a) - 1 / 0.75) < 1e-6, "scaled by 1/(1-p)");
    nsc_dropout_set_seed(d, 77);
    nsc_tensor *b = call1(d, x);
    nsct_expect_close(a, b, TOL_EXACT, "the same seed, the same mask");
    nsc_module_train(d, false);
    nsc_tensor *c = call1(d, x);
    cr_expect_eq(c, x, "evaluation: the identity");
    cr_expect_null(nsc_dropout_new(1.0));
    cr_expect(strstr(nsc_last_error(), "p = 1"), "%s", nsc_last_error());
    nsc_module *lin = nsc_relu_new();
    cr_expect_eq(nsc_dropout_set_seed(lin, 1), NSC_ERR_ARG);
    nsc_tensor *temps[] = { x, a, b, c };
    for (int i = 0; i < 4; i++) {
        nsc_free(temps[i]);
    }
    nsc_module_free(lin);
    nsc_module_free(d);
}

// --- containers ---

static nsc_status stop_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                            nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)values, (void)replace, (void)ctx;
    return NSC_STOPPED;
}

static nsc_status double_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                              nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)ctx;
    replace[0] = nsc_mul_scalar(values[0], 2.0);
    return NSC_OK;
}

Test(layers, sequential_and_mlp_build_call_and_stop) {
    int64_t before = nsct_live_blocks();
    nsc_generator *gen = nsc_generator_new(8);
    int64_t sizes[] = { 5, 16, 16, 3 };
    nsc_module *mlp = nsc_mlp_new(4, sizes, NSC_ACTIVATION_RELU, gen);
    cr_assert(mlp, "%s", nsc_last_error());
    cr_expect_str_eq(nsc_module_type(mlp), "MLP");
    static const char *const names[][2] = {
        { "0", "Linear" }, { "1", "ReLU" }, { "2", "Linear" }, { "3", "ReLU" }, { "4", "Linear" }
    };
    cr_expect_eq(nsc_module_n_modules(mlp), 6);
    for (int i = 0; i < 5; i++) {
        nsc_module *c = nsc_module_find(mlp, names[i][0]);
        cr_expect(c && strcmp(nsc_module_type(c), names[i][1]) == 0, "%s", names[i][0]);
    }
    cr_expect_eq(nsc_module_param_count(mlp), 5 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(4, 5));
    nsc_tensor *h = nsc_retain(x);
    for (int i = 0; i < 5; i++) { // the same chain by hand
        nsc_tensor *next = call1(nsc_module_find(mlp, names[i][0]), h);
        nsc_free(h);
        h = next;
    }
    nsc_tensor *y = call1(mlp, x);
    nsct_expect_close(y, h, TOL_EXACT, "MLP = its children in order");
    cr_expect(nsc_tensor_size(y, 1) == 3);
    nsc_free(y);
    // A hook on a child replaces its output; a stop propagates as NULL.
    nsc_module *first = nsc_module_find(mlp, "0");
    int64_t hd = nsc_module_add_hook(first, NSC_HOOK_OUTPUT, double_hook, NULL, NULL);
    y = call1(mlp, x);
    cr_expect_not(nsc_allclose(y, h, 1e-6, 1e-6, false), "the hook changed the result");
    nsc_free(y);
    nsc_module_remove_hook(first, hd);
    hd = nsc_module_add_hook(nsc_module_find(mlp, "2"), NSC_HOOK_OUTPUT, stop_hook, NULL, NULL);
    nsc_module_reset_calls(mlp);
    for (int64_t i = 0; i < nsc_module_n_modules(mlp); i++) {
        nsc_module_path(nsc_module_at(mlp, i)); // cached on first use: not a leak
    }
    int64_t live = nsct_live_blocks();
    y = call1(mlp, x);
    cr_expect_null(y);
    cr_expect_eq(nsc_last_status(), NSC_STOPPED);
    cr_expect_eq(nsct_live_blocks(), live, "the stop freed the intermediates");
    cr_expect_eq(nsc_module_call_count(nsc_module_find(mlp, "4")), 0);
    nsc_module_remove_hook(nsc_module_find(mlp, "2"), hd);
    // Sequential: append names in order; other modules are not Sequentials.
    nsc_module *seq = nsc_sequential_new();
    nsc_module *id = nsc_identity_new(NULL);
    cr_expect_eq(nsc_sequential_append(seq, id), NSC_OK);
    cr_expect_eq(nsc_sequential_append(seq, mlp), NSC_OK);
    cr_expect_eq(nsc_sequential_append(id, mlp), NSC_ERR_ARG);
    cr_expect_str_eq(nsc_module_path(nsc_module_find(seq, "1.4")), "1.4");
    y = call1(seq, x);
    nsct_expect_close(y, h, TOL_EXACT, "Sequential(identity, mlp)");
    nsc_free(y);
    nsc_module_free(id);
    nsc_module_free(mlp);
    nsc_module_free(seq);
    nsc_free(x);
    nsc_free(h);
    nsc_generator_free(gen);
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(layers, an_mlp_trains) {
    nsc_generator *gen = nsc_generator_new(10);
    int64_t sizes[] = { 3, 8, 1 };
    nsc_module *mlp = nsc_mlp_new(3, sizes, NSC_ACTIVATION_GELU_TANH, gen);
    cr_assert_eq(nsc_module_requires_grad_(mlp, true), NSC_OK);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(16, 3));
    nsc_tensor *y = call1(mlp, x);
    nsc_tensor *target = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(16, 1));
    nsc_tensor *loss = nsc_mse_loss(y, target, NSC_REDUCTION_MEAN);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    for (int64_t i = 0; i < nsc_module_n_params(mlp); i++) {
        const char *path;
        nsc_tensor *p = nsc_module_param_at(mlp, i, &path);
        nsc_tensor *g = nsc_tensor_get_grad(p);
        cr_expect(g && max_abs(g) > 0, "%s has a gradient", path);
    }
    nsc_tensor *temps[] = { x, y, target, loss };
    for (int i = 0; i < 4; i++) {
        nsc_free(temps[i]);
    }
    nsc_module_free(mlp);
    nsc_generator_free(gen);
}

// --- errors ---

Test(layers_errors, bad_arguments_are_refused_without_leaks) {
    int64_t before = nsct_live_blocks();
    cr_expect_null(nsc_linear_new(0, 3, true, NULL));
    cr_expect(strstr(nsc_last_error(), "in = 0"), "%s", nsc_last_error());
    cr_expect_null(nsc_conv1d_new(3, -1, NULL));
    cr_expect_null(nsc_embedding_new(0, 3, NULL));
    cr_expect_null(nsc_layer_norm_new(8, 0));
    cr_expect(strstr(nsc_last_error(), "eps"), "%s", nsc_last_error());
    cr_expect_null(nsc_mlp_new(1, (int64_t[]){ 3 }, NSC_ACTIVATION_RELU, NULL));
    cr_expect_null(nsc_mlp_new(2, (int64_t[]){ 3, 0 }, NSC_ACTIVATION_RELU, NULL));
    cr_expect(strstr(nsc_last_error(), "sizes[1]"), "%s", nsc_last_error());
    cr_expect_null(nsc_activation_new((nsc_activation)42));
    cr_expect_null(nsc_gelu_new((nsc_gelu_approx)7));
    cr_expect_eq(nsct_live_blocks(), before);
    nsc_module *lin = nsc_linear_new(4, 2, true, NULL);
    for (int64_t i = 0; i < nsc_module_n_modules(lin); i++) {
        nsc_module_path(nsc_module_at(lin, i));
    }
    before = nsct_live_blocks();
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 5));
    nsc_tensor *y = call1(lin, x);
    cr_expect_null(y);
    cr_expect_eq(nsc_last_status(), NSC_ERR_SHAPE);
    cr_expect(strstr(nsc_last_error(), "module Linear"), "%s", nsc_last_error());
    cr_expect_null(nsc_module_call(lin, 0, NULL));
    cr_expect(strstr(nsc_last_error(), "input 0 is missing"), "%s", nsc_last_error());
    nsc_free(x);
    cr_expect_eq(nsct_live_blocks(), before);
    nsc_module_free(lin);
    // Out of memory while building: every allocation fails in turn.
    int64_t start = nsc_mem_stats_get().n_allocs;
    nsc_module *mlp = nsc_mlp_new(3, (int64_t[]){ 4, 8, 2 }, NSC_ACTIVATION_RELU, NULL);
    int64_t n_allocs = nsc_mem_stats_get().n_allocs - start;
    nsc_module_free(mlp);
    for (int64_t k = 1; k <= n_allocs; k++) {
        int64_t live = nsct_live_blocks();
        nsc_mem_fail_after(k);
        mlp = nsc_mlp_new(3, (int64_t[]){ 4, 8, 2 }, NSC_ACTIVATION_RELU, NULL);
        nsc_mem_fail_after(0);
        cr_expect(mlp || nsc_last_status() == NSC_ERR_OOM, "allocation %lld: %s", (long long)k,
                  nsc_last_error());
        nsc_module_free(mlp);
        cr_expect_eq(nsct_live_blocks(), live, "allocation %lld leaked", (long long)k);
    }
    nsc_clear_error();
}
