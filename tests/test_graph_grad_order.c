// When gradients exist inside a trace (NNSIGHT.md §1): each backward pass
// runs the nodes its gradients make ready and nothing created after it (a
// later loss is recorded, a later backward waits); the gradient of a read
// made after set_output is the replacement's; a set_grad may not need a
// gradient that arrives later in its pass; every-call bodies and
// generation traces take no gradients.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"

static nsc_tensor *loss_of(nsct_chain_trace *f, bool squared) {
    nsc_tensor *out = nsc_invoke_output(f->inv, "", 0);
    return nsc_sum_all(squared ? nsc_mul(out, out) : out);
}

static nsc_tensor *got(nsct_chain_trace *f, nsc_tensor *proxy) {
    nsc_tensor *v = nsc_trace_get(f->tr, proxy);
    cr_assert(v, "%s", nsc_last_error());
    return v;
}

// h.0's gradient for one loss, from a trace with one backward pass.
static nsc_tensor *one_pass(bool squared) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    nsc_tensor *g = nsc_save(nsc_proxy_grad(nsc_invoke_output(f.inv, "h.0", 0)));
    nsc_trace_backward(loss_of(&f, squared), false);
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v = got(&f, g);
    nsct_chain_finish(&f);
    return v;
}

// The second loss built before the first backward (it then ran inside the
// first pass: "saved tensors freed by an earlier backward" though the
// first kept them) or after it (then unrecorded: a zero gradient).
static void two_passes(bool late) {
    nsc_tensor *want1 = one_pass(true), *want2 = one_pass(false);
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    nsc_tensor *h0 = nsc_invoke_output(f.inv, "h.0", 0);
    nsc_tensor *loss1 = loss_of(&f, true);
    nsc_tensor *loss2 = late ? NULL : loss_of(&f, false);
    nsc_tensor *g1 = nsc_save(nsc_proxy_grad(h0));
    nsc_tensor *b1 = nsc_trace_backward(loss1, true);
    if (late) {
        loss2 = nsc_add(loss_of(&f, false), nsc_mul_scalar(b1, 0.0));
    }
    nsc_tensor *g2 = nsc_save(nsc_proxy_grad(h0));
    nsc_trace_backward(loss2, false);
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v1 = got(&f, g1), *v2 = got(&f, g2);
    cr_expect(nsc_allclose(v1, want1, 1e-6, 1e-7, false), "pass 0 (late %d)", late);
    cr_expect(nsc_allclose(v2, want2, 1e-6, 1e-7, false), "pass 1 (late %d): sum %g, want %g", late,
              nsct_sum(v2), nsct_sum(want2));
    nsc_tensor *all[] = { want1, want2, v1, v2 };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        nsc_free(all[i]);
    }
    nsct_chain_finish(&f);
}

Test(graph_grad_order, a_backward_pass_runs_nothing_created_after_it) {
    two_passes(false);
    two_passes(true);
}

// torch: a forward hook returning h * 2 and the replacement's .grad (half
// the original's, since d loss / d h = 2 * d loss / d (2h)).
Test(graph_grad_order, the_gradient_of_a_read_after_set_output_is_the_replacements) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    nsc_tensor *h0 = nsc_invoke_output(f.inv, "h.0", 0);
    nsc_tensor *g_before = nsc_save(nsc_proxy_grad(h0));
    cr_assert_eq(nsc_invoke_set_output(f.inv, "h.0", 0, nsc_mul_scalar(h0, 2.0)), NSC_OK, "%s",
                 nsc_last_error());
    nsc_tensor *g_after = nsc_save(nsc_proxy_grad(nsc_invoke_output(f.inv, "h.0", 0)));
    nsc_trace_backward(loss_of(&f, true), false);
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *before = got(&f, g_before), *after = got(&f, g_after);
    nsc_tensor *twice = nsc_mul_scalar(after, 2.0);
    cr_expect(nsct_sum(before) != 0.0);
    cr_expect(nsc_allclose(before, twice, 1e-6, 1e-7, false), "%g vs 2 * %g", nsct_sum(before),
              nsct_sum(after));
    nsc_free(before);
    nsc_free(after);
    nsc_free(twice);
    nsct_chain_finish(&f);
}

Test(graph_grad_order, a_set_grad_may_not_need_a_later_gradient) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    nsc_tensor *g0 = nsc_proxy_grad(nsc_invoke_output(f.inv, "h.0", 0));
    nsc_tensor *h1 = nsc_invoke_output(f.inv, "h.1", 0);
    cr_expect_eq(nsc_proxy_set_grad(h1, nsc_mul_scalar(g0, 0.0)), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "set_grad of h.1 output needs the gradient of h.0 output, "
                                       "which arrives later in the backward pass"),
              "%s", nsc_last_error());
    nsct_chain_finish(&f);
    // The other way round is the order gradients arrive in: h.1's, then h.0's.
    nsct_chain_start(&f, 2);
    nsc_tensor *h0 = nsc_invoke_output(f.inv, "h.0", 0);
    nsc_tensor *g1 = nsc_proxy_grad(nsc_invoke_output(f.inv, "h.1", 0));
    nsc_tensor *g0_after = nsc_save(nsc_proxy_grad(h0));
    cr_expect_eq(nsc_proxy_set_grad(h0, nsc_mul_scalar(g1, 0.0)), NSC_OK, "%s", nsc_last_error());
    nsc_trace_backward(loss_of(&f, true), false);
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v = got(&f, g0_after);
    cr_expect(nsct_sum(v) != 0.0, "a read taken before the replacement keeps the gradient");
    nsc_free(v);
    nsct_chain_finish(&f);
}

Test(graph_grad_order, every_call_bodies_and_generation_take_no_gradient) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    cr_expect_null(nsc_proxy_grad(nsc_invoke_output(f.inv, "h.0", NSC_EVERY_CALL)));
    cr_expect(strstr(nsc_last_error(), "has no one gradient"), "%s", nsc_last_error());
    nsct_chain_finish(&f);
    nsc_module *m = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(m, "%s", nsc_last_error());
    nsc_tensor *x = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, 3));
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 2;
    nsc_trace *tr = nsc_trace_new_generate(m, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h = nsc_invoke_output(inv, "transformer.h.0", 0);
    cr_expect_null(nsc_proxy_grad(h));
    cr_expect(strstr(nsc_last_error(), "a generation trace records no gradients"), "%s",
              nsc_last_error());
    nsc_trace_free(tr);
    tr = nsc_trace_new_generate(m, &o);
    inv = nsc_trace_invoke(tr, 1, &x);
    cr_expect_null(nsc_trace_backward(nsc_sum_all(nsc_invoke_output(inv, "lm_head", 0)), false));
    cr_expect(strstr(nsc_last_error(), "a generation trace records no gradients"), "%s",
              nsc_last_error());
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(m);
}
