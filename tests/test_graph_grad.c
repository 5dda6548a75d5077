// Graph III (issue 8): backward and gradients inside a trace (read, edit,
// replace, several passes, leaves), and conditionals (if/else, nesting,
// release of what a false block would have consumed).
#include <criterion/criterion.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"

static nsc_tensor *input(int64_t rows) {
    nsc_tensor *a = nsc_arange(0, (double)(rows * 4), 1, NSC_F32);
    nsc_tensor *s = nsc_mul_scalar(a, 0.1);
    nsc_tensor *x = nsc_reshape(s, NSC_SHAPE(rows, 4));
    nsc_free(a);
    nsc_free(s);
    return x;
}

// Eager reference: d sum(model(x)) / d h.0's output, with the gradient at
// h.2's output passed through edit (NULL: unchanged).
static nsc_tensor *eager_grad_h0(nsc_module *model, nsc_tensor *x, double h2_scale) {
    nsc_tensor *h0 = nsc_module_forward(nsc_module_find(model, "h.0"), 1, &x);
    if (nsc_tensor_requires_grad(h0)) { // the weights require grad: h.0 is a non-leaf
        nsc_retain_grad(h0);
    } else {
        nsc_requires_grad_(h0, true);
    }
    nsc_tensor *h1 = nsc_module_forward(nsc_module_find(model, "h.1"), 1, &h0);
    nsc_tensor *h2 = nsc_module_forward(nsc_module_find(model, "h.2"), 1, &h1);
    nsc_tensor *scaled = nsc_mul_scalar(h2, h2_scale); // scales the gradient reaching h.2
    nsc_tensor *detached = nsc_detach(h2);
    nsc_tensor *rest = nsc_mul_scalar(detached, 1.0 - h2_scale);
    nsc_tensor *h2_used = nsc_add(scaled, rest);
    nsc_tensor *out = nsc_module_forward(nsc_module_find(model, "head"), 1, &h2_used);
    nsc_tensor *loss = nsc_sum_all(out);
    nsc_backward(loss, NULL, false);
    nsc_tensor *g = nsc_retain(nsc_tensor_get_grad(h0));
    for (int64_t i = 0; i < nsc_module_n_params(model); i++) { // leave the weights clean
        nsc_tensor_set_grad(nsc_module_param_at(model, i, NULL), NULL);
    }
    nsc_tensor *all[] = { h0, h1, h2, scaled, detached, rest, h2_used, out, loss };
    for (int i = 0; i < 9; i++) {
        nsc_free(all[i]);
    }
    return g;
}

Test(graph_grad, the_gradient_of_a_hook_point_matches_eager) {
    nsc_module *model = nsct_chain_model(3, 4);
    nsc_tensor *x = input(2);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_tensor *g0 = nsc_save(nsc_proxy_grad(h0));
    nsc_tensor *loss = nsc_sum_all(nsc_invoke_output(inv, "", 0));
    cr_assert(nsc_trace_backward(loss, false), "%s", nsc_last_error());
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_trace_get(tr, g0);
    nsc_tensor *want = eager_grad_h0(model, x, 1.0);
    cr_expect(nsc_allclose(got, want, 1e-5, 1e-6, false), "%s", nsc_last_error());
    nsc_free(got);
    nsc_free(want);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}

// A trace that asks for a gradient records its forward even when run inside
// nsc_no_grad_begin (torch: set_grad_enabled(True) inside no_grad records);
// it failed with "the value does not require grad".
Test(graph_grad, a_trace_with_a_gradient_runs_inside_no_grad) {
    nsc_module *model = nsct_chain_model(3, 4);
    nsc_tensor *x = input(2);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *g0 = nsc_save(nsc_proxy_grad(nsc_invoke_output(inv, "h.0", 0)));
    cr_assert(nsc_trace_backward(nsc_sum_all(nsc_invoke_output(inv, "", 0)), false), "%s",
              nsc_last_error());
    nsc_no_grad_begin();
    nsc_status status = nsc_trace_run(tr);
    cr_expect_not(nsc_grad_enabled(), "the run restores grad mode");
    nsc_no_grad_end();
    cr_assert_eq(status, NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_trace_get(tr, g0);
    nsc_tensor *want = eager_grad_h0(model, x, 1.0);
    cr_expect(nsc_allclose(got, want, 1e-5, 1e-6, false), "%s", nsc_last_error());
    nsc_free(got);
    nsc_free(want);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}

Test(graph_grad, edits_and_replacements_flow_to_earlier_layers_and_leaves) {
    nsc_module *model = nsct_chain_model(3, 4);
    cr_assert_eq(nsc_module_requires_grad_(model, true), NSC_OK);
    nsc_tensor *x = input(2);
    for (int mode = 0; mode < 2; mode++) {
        nsc_trace *tr = nsc_trace_new(model);
        nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
        nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
        nsc_tensor *h2 = nsc_invoke_output(inv, "h.2", 0);
        nsc_tensor *g0 = nsc_save(nsc_proxy_grad(h0));
        if (mode == 0) {
            cr_assert_eq(nsc_zero_(nsc_proxy_grad(h2)), NSC_OK, "%s", nsc_last_error());
        } else {
            nsc_tensor *g2 = nsc_proxy_grad(h2);
            cr_assert_eq(nsc_proxy_set_grad(h2, nsc_mul_scalar(g2, 3.0)), NSC_OK, "%s",
                         nsc_last_error());
        }
        nsc_trace_backward(nsc_sum_all(nsc_invoke_output(inv, "", 0)), false);
        cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
        nsc_tensor *w0 = nsc_module_find_tensor(model, "h.0.weight");
        double leaf = nsct_sum(nsc_tensor_get_grad(w0));
        if (mode == 0) {
            cr_expect_eq(leaf, 0.0, "a zeroed gradient reaches the leaves as zero");
        }
        nsc_tensor_set_grad(w0, NULL);
        nsc_tensor *got = nsc_trace_get(tr, g0);
        nsc_tensor *want = eager_grad_h0(model, x, mode == 0 ? 0.0 : 3.0);
        cr_expect(nsc_allclose(got, want, 1e-5, 1e-6, false), "mode %d: %s", mode,
                  nsc_last_error());
        nsc_free(got);
        nsc_free(want);
        nsc_trace_free(tr);
    }
    nsc_free(x);
    nsc_module_free(model);
}

Test(graph_grad, several_backward_passes_in_one_trace) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsc_tensor *x = input(2);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_tensor *loss = nsc_sum_all(nsc_invoke_output(inv, "", 0));
    nsc_tensor *g1 = nsc_save(nsc_proxy_grad(h0));
    nsc_tensor *after = nsc_trace_backward(loss, true);
    nsc_tensor *g2 = nsc_save(nsc_proxy_grad(h0));
    nsc_trace_backward(nsc_mul_scalar(nsc_add(loss, nsc_mul_scalar(after, 0.0)), 2.0), false);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v1 = nsc_trace_get(tr, g1), *v2 = nsc_trace_get(tr, g2);
    nsc_tensor *twice = nsc_mul_scalar(v1, 2.0);
    cr_expect(nsc_allclose(v2, twice, 1e-5, 1e-6, false), "%s", nsc_last_error());
    nsc_free(v1);
    nsc_free(v2);
    nsc_free(twice);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}

Test(graph_grad, a_gradient_of_a_value_the_loss_ignores_is_an_error) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsc_tensor *x = input(2);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_save(nsc_proxy_grad(h0));
    nsc_tensor *const_loss = nsc_sum_all(nsc_detach(h0));
    nsc_trace_backward(const_loss, false);
    cr_expect_neq(nsc_trace_run(tr), NSC_OK);
    cr_expect(strstr(nsc_last_error(), "backward"), "%s", nsc_last_error());
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}

// --- conditionals ---

static int64_t g_held_at_h1 = -1;

static nsc_tensor *record_held(int n, nsc_tensor *const *args, void *ctx) {
    (void)n;
    if (nsc_tensor_device(args[0]) != NSC_META) {
        g_held_at_h1 = nsc_trace_held_bytes(ctx);
    }
    return nsc_sum_all(args[0]);
}

static void run_conditional(double threshold, bool *took_if, bool *took_else) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsc_tensor *x = input(2);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_tensor *cond = nsc_gt_scalar(nsc_sum_all(h0), threshold);
    cr_assert_eq(nsc_trace_if(tr, cond), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *a = nsc_save(nsc_mul_scalar(h0, 2.0));
    nsc_trace_if(tr, nsc_gt_scalar(nsc_sum_all(h0), threshold + 1e9)); // nested, never true
    nsc_tensor *never = nsc_save(nsc_mul_scalar(h0, 5.0));
    nsc_trace_end(tr);
    nsc_trace_else(tr);
    nsc_tensor *b = nsc_save(nsc_mul_scalar(h0, 3.0));
    cr_assert_eq(nsc_trace_end(tr), NSC_OK);
    nsc_function_register("test.held", record_held, tr);
    nsc_tensor *h1 = nsc_invoke_output(inv, "h.1", 0);
    nsc_save(nsc_trace_call(tr, "test.held", 1, &h1));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *va = nsc_trace_get(tr, a), *vb = nsc_trace_get(tr, b);
    nsc_tensor *vn = nsc_trace_get(tr, never);
    *took_if = va != NULL;
    *took_else = vb != NULL;
    cr_expect_null(vn, "the nested block never ran");
    nsc_free(va);
    nsc_free(vb);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}

Test(graph_grad, conditionals_take_one_branch) {
    bool took_if, took_else;
    run_conditional(-1e9, &took_if, &took_else);
    cr_expect(took_if && !took_else);
    run_conditional(1e9, &took_if, &took_else);
    cr_expect(!took_if && took_else);
}

// A false block releases what it would have consumed at once: a read used
// only inside it is gone before the next point fires.
Test(graph_grad, a_false_block_releases_its_inputs) {
    nsc_module *model = nsct_chain_model(2, 64);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(16, 64));
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_trace_if(tr, nsc_lt_scalar(nsc_max(h0), -5.0)); // tanh > -5: false
    nsc_save(nsc_mul_scalar(h0, 2.0));
    nsc_trace_end(tr);
    nsc_function_register("test.held", record_held, tr);
    nsc_tensor *h1 = nsc_invoke_output(inv, "h.1", 0);
    nsc_save(nsc_trace_call(tr, "test.held", 1, &h1));
    g_held_at_h1 = -1;
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    int64_t block = 16 * 64 * 4;
    cr_expect_lt(g_held_at_h1, 2 * block, "h.0's value was released by the false block (%lld)",
                 (long long)g_held_at_h1);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}
