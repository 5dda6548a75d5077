// Graph III (issue 8): sessions of several traces with bridged values,
// iterators with updates and exit, re-validation on a new item shape, a
// training loop in a session, and the session's DOT.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"

static nsc_tensor *input(int64_t rows, double scale) {
    nsc_tensor *a = nsc_arange(0, (double)(rows * 4), 1, NSC_F32);
    nsc_tensor *s = nsc_mul_scalar(a, scale);
    nsc_tensor *x = nsc_reshape(s, NSC_SHAPE(rows, 4));
    nsc_free(a);
    nsc_free(s);
    return x;
}

// A value of model A's trace patched into model B's, without saving it.
Test(graph_session, a_later_trace_uses_an_earlier_value) {
    int64_t start = nsct_live_blocks();
    nsc_module *a = nsct_chain_model(2, 4), *b = nsct_chain_model(2, 4);
    nsc_tensor *x = input(2, 0.1), *y = input(2, -0.3);
    nsc_session *s = nsc_session_new();
    nsc_trace *t1 = nsc_session_trace(s, a);
    nsc_invoke *i1 = nsc_trace_invoke(t1, 1, &x);
    nsc_tensor *from_a = nsc_invoke_output(i1, "h.0", 0); // not saved
    nsc_trace *t2 = nsc_session_trace(s, b);
    nsc_invoke *i2 = nsc_trace_invoke(t2, 1, &y);
    cr_assert_eq(nsc_invoke_set_output(i2, "h.0", 0, from_a), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *out = nsc_save(nsc_invoke_output(i2, "", 0));
    cr_expect_eq(nsc_trace_run(t1), NSC_ERR_STATE, "session traces run with their session");
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_session_get(s, out);
    nsc_tensor *ha = nsc_module_forward(nsc_module_find(a, "h.0"), 1, &x);
    nsc_tensor *hb = nsc_module_forward(nsc_module_find(b, "h.1"), 1, &ha);
    nsc_tensor *want = nsc_module_forward(nsc_module_find(b, "head"), 1, &hb);
    cr_expect(nsc_allclose(got, want, 1e-6, 1e-6, false), "%s", nsc_last_error());
    cr_expect_null(nsc_session_get(s, from_a), "a bridged value is released after its last use");
    nsc_tensor *all[] = { got, ha, hb, want, x, y };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
    nsc_session_free(s);
    nsc_module_free(a);
    nsc_module_free(b);
    cr_expect_eq(nsct_live_blocks(), start);
}

Test(graph_session, every_trace_is_validated_before_anything_runs) {
    nsc_module *a = nsct_chain_model(2, 4);
    nsc_tensor *x = input(2, 0.1);
    nsc_session *s = nsc_session_new();
    nsc_trace *t1 = nsc_session_trace(s, a);
    nsc_invoke *i1 = nsc_trace_invoke(t1, 1, &x);
    nsc_save(nsc_invoke_output(i1, "h.0", 0));
    nsc_trace *t2 = nsc_session_trace(s, a);
    nsc_invoke *i2 = nsc_trace_invoke(t2, 1, &x);
    nsc_tensor *h = nsc_invoke_output(i2, "h.0", 0);
    cr_expect_null(nsc_matmul(h, h));
    int64_t kernels = nsci_kernel_count();
    cr_expect_eq(nsc_session_run(s), NSC_ERR_SHAPE);
    cr_expect(strstr(nsc_last_error(), "step 1"), "%s", nsc_last_error());
    cr_expect_eq(nsci_kernel_count(), kernels, "nothing ran");
    nsc_session_free(s);
    nsc_free(x);
    nsc_module_free(a);
}

Test(graph_session, a_value_not_ready_at_its_turn_is_an_error) {
    nsc_module *a = nsct_chain_model(2, 4);
    nsc_tensor *x = input(2, 0.1);
    nsc_session *s = nsc_session_new();
    nsc_trace *t1 = nsc_session_trace(s, a);
    nsc_invoke *i1 = nsc_trace_invoke(t1, 1, &x);
    nsc_tensor *late = nsc_invoke_output(i1, "h.1", 0);
    nsc_trace_stop(t1, "h.0", 0); // h.1 never runs
    nsc_trace *t2 = nsc_session_trace(s, a);
    nsc_invoke *i2 = nsc_trace_invoke(t2, 1, &x);
    nsc_invoke_set_output(i2, "h.0", 0, late);
    cr_expect_eq(nsc_session_run(s), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "not ready") && strstr(nsc_last_error(), "h.1 output"), "%s",
              nsc_last_error());
    nsc_session_free(s);
    nsc_free(x);
    nsc_module_free(a);
}

// An iterator carries a running sum across items in a session value.
Test(graph_session, an_iterator_updates_a_running_sum) {
    nsc_module *a = nsct_chain_model(1, 4);
    nsc_tensor *items[3] = { input(2, 0.1), input(2, 0.2), input(2, -0.1) };
    nsc_session *s = nsc_session_new();
    nsc_tensor *zero = nsc_zeros(NSC_F32, NSC_CPU, 0, NULL);
    nsc_tensor *total = nsc_session_value(s, zero);
    nsc_iterator *it = nsc_session_iterate(s, 3, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, a);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
    nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
    cr_assert_eq(nsc_update(total, nsc_add(total, nsc_sum_all(h))), NSC_OK, "%s",
                 nsc_last_error());
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_iterator_iterations(it), 3);
    double want = 0;
    for (int i = 0; i < 3; i++) {
        nsc_tensor *hh = nsc_module_forward(nsc_module_find(a, "h.0"), 1, &items[i]);
        want += nsct_sum(hh);
        nsc_free(hh);
    }
    nsc_tensor *got = nsc_session_get(s, total);
    double got_v = nsc_tensor_item(got);
    cr_expect_float_eq(got_v, want, 1e-5);
    nsc_free(got);
    nsc_session_free(s);
    for (int i = 0; i < 3; i++) {
        nsc_free(items[i]);
    }
    nsc_free(zero);
    nsc_module_free(a);
}

static char *session_dot(nsc_session *s) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    cr_assert_eq(nsc_session_dot(s, out), NSC_OK, "%s", nsc_last_error());
    fclose(out);
    return text;
}

// The k-th allocation of nsc_session_value (phase 0) or nsc_session_iterate
// (phase 1) fails: the call adds nothing (the DOT is as before; a
// half-built iterator was left as a step and the run crashed on it), the
// rest of the build goes on, and the run refuses with that first failure.
Test(graph_session, a_failed_building_call_adds_nothing_and_the_run_refuses) {
    int64_t start = nsct_live_blocks();
    nsc_module *a = nsct_chain_model(1, 4);
    nsc_tensor *items[3] = { input(2, 0.1), input(2, 0.2), input(2, -0.1) };
    nsc_tensor *zero = nsc_zeros(NSC_F32, NSC_CPU, 0, NULL);
    int refused[2] = { 0, 0 };
    for (int phase = 0; phase < 2; phase++) {
        for (int64_t k = 1; k < 100; k++) {
            nsc_session *s = nsc_session_new();
            nsc_tensor *total = phase == 1 ? nsc_session_value(s, zero) : NULL;
            char *before = session_dot(s);
            nsc_clear_error();
            nsc_mem_fail_after(k);
            void *made = phase == 0 ? (void *)(total = nsc_session_value(s, zero))
                                    : (void *)nsc_session_iterate(s, 3, items);
            nsc_mem_fail_after(0);
            if (made) {
                nsc_session_free(s);
                free(before);
                break; // no allocation left to fail
            }
            refused[phase]++;
            cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "phase %d, k %lld: %s", phase,
                         (long long)k, nsc_last_error());
            char *after = session_dot(s);
            cr_expect_str_eq(after, before, "phase %d, k %lld: the session changed", phase,
                             (long long)k);
            free(before);
            free(after);
            nsc_iterator *it = phase == 1 ? made : nsc_session_iterate(s, 3, items);
            nsc_tensor *item = nsc_iterator_item(it);
            nsc_trace *tr = nsc_iterator_trace(it, a);
            nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
            nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
            nsc_update(total, nsc_add(total, nsc_sum_all(h)));
            cr_expect_eq(nsc_session_run(s), NSC_ERR_OOM, "phase %d, k %lld", phase, (long long)k);
            cr_expect(strstr(nsc_last_error(), "session_run: the session has errors: out of "
                                               "memory"),
                      "phase %d, k %lld: %s", phase, (long long)k, nsc_last_error());
            nsc_session_free(s);
        }
    }
    cr_expect(refused[0] > 0 && refused[1] > 0, "%d and %d failing runs", refused[0], refused[1]);
    for (int i = 0; i < 3; i++) {
        nsc_free(items[i]);
    }
    nsc_free(zero);
    nsc_module_free(a);
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), start);
}

// A constant an iterator's trace reads (ones added to a hook point) is used
// again by every iteration, not freed after the first one.
Test(graph_session, a_constant_in_an_iterator_trace_serves_every_iteration) {
    nsc_module *a = nsct_chain_model(1, 4);
    nsc_tensor *items[3] = { input(1, 0.1), input(1, 0.2), input(1, -0.1) };
    nsc_session *s = nsc_session_new();
    nsc_tensor *zero = nsc_zeros(NSC_F32, NSC_CPU, 0, NULL);
    nsc_tensor *total = nsc_session_value(s, zero);
    nsc_iterator *it = nsc_session_iterate(s, 3, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, a);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
    nsc_tensor *ones = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(4));
    nsc_tensor *shifted = nsc_add(nsc_invoke_output(inv, "h.0", 0), ones);
    cr_assert_eq(nsc_update(total, nsc_add(total, nsc_sum_all(shifted))), NSC_OK, "%s",
                 nsc_last_error());
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_iterator_iterations(it), 3);
    double want = 0;
    for (int i = 0; i < 3; i++) {
        nsc_tensor *hh = nsc_module_forward(nsc_module_find(a, "h.0"), 1, &items[i]);
        want += nsct_sum(hh) + 4.0;
        nsc_free(hh);
    }
    nsc_tensor *got = nsc_session_get(s, total);
    cr_expect_float_eq(nsc_tensor_item(got), want, 1e-5);
    nsc_free(got);
    nsc_session_free(s);
    for (int i = 0; i < 3; i++) {
        nsc_free(items[i]);
    }
    nsc_free(ones);
    nsc_free(zero);
    nsc_module_free(a);
}

Test(graph_session, exit_leaves_the_iterator_on_a_condition) {
    nsc_module *a = nsct_chain_model(1, 4);
    nsc_tensor *items[5];
    for (int i = 0; i < 5; i++) {
        items[i] = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1, 4), (double)i);
    }
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 5, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, a);
    nsc_trace_invoke(tr, 1, &item);
    nsc_trace_if(tr, nsc_ge_scalar(nsc_max(item), 2.0));
    cr_assert_eq(nsc_iterator_exit(tr), NSC_OK, "%s", nsc_last_error());
    nsc_trace_end(tr);
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_iterator_iterations(it), 3, "items 0, 1, 2, then exit");
    nsc_session_free(s);
    for (int i = 0; i < 5; i++) {
        nsc_free(items[i]);
    }
    nsc_module_free(a);
}

// A new item shape validates the traces again: shapes follow the item.
Test(graph_session, a_new_item_shape_is_validated_again) {
    nsc_module *a = nsct_chain_model(1, 4);
    nsc_tensor *items[2] = { input(2, 0.1), input(3, 0.1) };
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 2, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, a);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
    nsc_tensor *rows = nsc_save(nsc_sum(nsc_invoke_output(inv, "h.0", 0), NSC_DIMS(1), false));
    cr_expect_eq(nsc_tensor_size(rows, 0), 2);
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_size(rows, 0), 3, "the proxy follows the last item");
    nsc_tensor *v = nsc_session_get(s, rows);
    cr_expect_eq(nsc_tensor_size(v, 0), 3);
    nsc_free(v);
    nsc_session_free(s);
    nsc_free(items[0]);
    nsc_free(items[1]);
    nsc_module_free(a);
}

// Writes whose shape rule depends on the item are checked again with it:
// an update keeps its session value's shape, a replacement must broadcast
// to the point. Both fail naming the node, before the iteration runs.
Test(graph_session, a_new_item_shape_checks_updates_and_replacements_again) {
    for (int kind = 0; kind < 2; kind++) {
        nsc_module *a = nsct_chain_model(2, 4);
        nsc_tensor *items[2] = { input(2, 0.1), input(3, 0.1) };
        nsc_session *s = nsc_session_new();
        nsc_tensor *init = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2));
        nsc_tensor *state = nsc_session_value(s, init);
        nsc_iterator *it = nsc_session_iterate(s, 2, items);
        nsc_tensor *item = nsc_iterator_item(it);
        nsc_trace *tr = nsc_iterator_trace(it, a);
        nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
        nsc_tensor *c = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
        nsc_tensor *per_row = nsc_sum(nsc_invoke_output(inv, "h.0", 0), NSC_DIMS(1), false);
        nsc_status st = kind == 0 ? nsc_update(state, per_row)
                                  : nsc_invoke_set_output(inv, "h.1", 0, c);
        cr_assert_eq(st, NSC_OK, "fits the first item: %s", nsc_last_error());
        cr_expect_eq(nsc_session_run(s), NSC_ERR_SHAPE, "kind %d", kind);
        cr_expect(strstr(nsc_last_error(), kind == 0 ? "update: value [3] f32 for a session "
                                                       "value [2] f32"
                                                     : "value [2,4] does not broadcast to the "
                                                       "point's shape [3,4]"),
                  "%s", nsc_last_error());
        cr_expect(strstr(nsc_last_error(), "item 1 changed shape"), "%s", nsc_last_error());
        nsc_tensor *v = nsc_session_get(s, state);
        cr_expect_eq(nsc_tensor_size(v, 0), 2, "the session value kept its shape");
        nsc_free(v);
        nsc_free(c);
        nsc_free(init);
        nsc_session_free(s);
        nsc_free(items[0]);
        nsc_free(items[1]);
        nsc_module_free(a);
    }
}

// A gradient that never arrives (the loss ignores the value) leaves no
// hook behind: not on the next iteration's value, not after the trace is
// freed (its hook's context was the freed node: ASan and valgrind stages).
Test(graph_session, a_gradient_that_never_comes_leaves_no_hook) {
    nsc_module *a = nsct_chain_model(2, 4);
    nsc_tensor *items[3] = { input(2, 0.1), input(2, 0.2), input(2, 0.3) };
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 3, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, a);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
    nsc_tensor *h = nsc_save(nsc_mul_scalar(nsc_invoke_output(inv, "h.0", 0), 2.0));
    cr_assert(nsc_proxy_grad(h), "%s", nsc_last_error());
    cr_assert(nsc_trace_backward(nsc_sum_all(nsc_invoke_output(inv, "h.1", 0)), false), "%s",
              nsc_last_error());
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v = nsc_session_get(s, h);
    cr_assert(v && nsc_tensor_requires_grad(v), "%s", nsc_last_error());
    nsc_session_free(s);
    nsc_tensor *loss = nsc_sum_all(v); // a backward through the freed trace's value
    cr_expect_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_free(loss);
    nsc_free(v);
    for (int i = 0; i < 3; i++) {
        nsc_free(items[i]);
    }
    nsc_module_free(a);
}

// --- a training loop in a session ---

typedef struct sgd {
    nsc_module *model;
    double lr;
} sgd;

// Plain SGD over the model's parameters, as a registered graph function.
static nsc_tensor *sgd_step(int n, nsc_tensor *const *args, void *ctx) {
    (void)n;
    sgd *opt = ctx;
    if (nsc_tensor_device(args[0]) == NSC_META) {
        return nsc_empty(NSC_F32, NSC_META, 0, NULL);
    }
    nsc_no_grad_begin();
    for (int64_t i = 0; i < nsc_module_n_params(opt->model); i++) {
        nsc_tensor *p = nsc_module_param_at(opt->model, i, NULL);
        nsc_tensor *g = nsc_tensor_get_grad(p);
        nsc_tensor *step = g ? nsc_mul_scalar(g, -opt->lr) : NULL;
        if (step) {
            nsc_add_(p, step);
        }
        nsc_free(step);
        nsc_tensor_set_grad(p, NULL);
    }
    nsc_no_grad_end();
    return nsc_zeros(NSC_F32, NSC_CPU, 0, NULL);
}

static void train_eager(nsc_module *model, nsc_tensor **items, int n, double lr) {
    for (int i = 0; i < n; i++) {
        nsc_tensor *out = nsc_module_call(model, 1, &items[i]);
        nsc_tensor *sq = nsc_mul(out, out);
        nsc_tensor *loss = nsc_sum_all(sq);
        nsc_backward(loss, NULL, false);
        sgd opt = { model, lr };
        nsc_tensor *unused = sgd_step(1, &loss, &opt);
        nsc_free(unused);
        nsc_free(out);
        nsc_free(sq);
        nsc_free(loss);
    }
}

Test(graph_session, a_training_loop_runs_in_a_session) {
    nsc_module *model = nsct_chain_model(2, 4), *twin = nsct_chain_model(2, 4);
    nsc_module_requires_grad_(model, true);
    nsc_module_requires_grad_(twin, true);
    nsc_tensor *items[3] = { input(2, 0.1), input(2, 0.3), input(2, -0.2) };
    sgd opt = { model, 0.05 };
    cr_assert_eq(nsc_function_register("test.sgd", sgd_step, &opt), NSC_OK);
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 3, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &item);
    nsc_tensor *out = nsc_invoke_output(inv, "", 0);
    nsc_tensor *done = nsc_trace_backward(nsc_sum_all(nsc_mul(out, out)), false);
    cr_assert(nsc_trace_call(tr, "test.sgd", 1, &done), "%s", nsc_last_error());
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    train_eager(twin, items, 3, 0.05);
    for (int64_t i = 0; i < nsc_module_n_params(model); i++) {
        nsc_tensor *p = nsc_module_param_at(model, i, NULL);
        nsc_tensor *q = nsc_module_param_at(twin, i, NULL);
        cr_expect(nsc_allclose(p, q, 1e-5, 1e-6, false), "param %lld: %s", (long long)i,
                  nsc_last_error());
    }
    nsc_session_free(s);
    for (int i = 0; i < 3; i++) {
        nsc_free(items[i]);
    }
    nsc_module_free(model);
    nsc_module_free(twin);
}

Test(graph_session, the_dot_draws_steps_and_iterators) {
    nsc_module *a = nsct_chain_model(1, 4);
    nsc_tensor *x = input(1, 0.1);
    nsc_session *s = nsc_session_new();
    nsc_trace *t1 = nsc_session_trace(s, a);
    nsc_invoke *i1 = nsc_trace_invoke(t1, 1, &x);
    nsc_tensor *h = nsc_invoke_output(i1, "h.0", 0);
    nsc_iterator *it = nsc_session_iterate(s, 1, &x);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *t2 = nsc_iterator_trace(it, a);
    nsc_invoke *i2 = nsc_trace_invoke(t2, 1, &item);
    nsc_invoke_set_output(i2, "h.0", 0, h);
    char path[] = "/tmp/nsc_session_XXXXXX";
    FILE *out = fdopen(mkstemp(path), "w");
    cr_assert_eq(nsc_session_dot(s, out), NSC_OK);
    fclose(out);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "grep -q cluster_iter1 %s && grep -q 'style=dotted' %s", path, path);
    cr_expect_eq(system(cmd), 0, "an iterator cluster and a bridge edge");
    if (system("command -v dot >/dev/null") == 0) {
        snprintf(cmd, sizeof cmd, "dot -Tsvg %s > /dev/null", path);
        cr_expect_eq(system(cmd), 0, "dot renders the session");
    }
    remove(path);
    nsc_session_free(s);
    nsc_free(x);
    nsc_module_free(a);
}

// Traces are made in the order they run: an iterator's trace made after a
// later step of the session is refused (a bridge from it, checked by
// creation order, was refused where it could run and accepted where it
// could not). And a save may not take a name the results give other values.
Test(graph_session, traces_are_made_in_step_order_and_result_names_are_kept) {
    nsc_module *model = nsct_chain_model(1, 4);
    nsc_tensor *items[2] = { input(1, 0.1), input(1, 0.2) }, *x = input(1, 0.3);
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 2, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *first = nsc_iterator_trace(it, model);
    cr_assert(first, "%s", nsc_last_error());
    nsc_trace *later = nsc_session_trace(s, model);
    nsc_invoke *inv = nsc_trace_invoke(later, 1, &x);
    cr_expect_null(nsc_iterator_trace(it, model));
    cr_expect(strstr(nsc_last_error(), "add an iterator's traces before the session's later "
                                       "steps"),
              "%s", nsc_last_error());
    nsc_session_free(s);
    nsc_tensor *init = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1, 4));
    const char *taken[] = { "session.0", "t0.cache.0.h.0.output" };
    for (int i = 0; i < 2; i++) {
        s = nsc_session_new();
        cr_assert(nsc_session_value(s, init), "%s", nsc_last_error());
        nsc_trace *tr = nsc_session_trace(s, model);
        inv = nsc_trace_invoke(tr, 1, &x);
        cr_assert_eq(nsc_trace_cache(tr, inv, "h.0", false), 1, "%s", nsc_last_error());
        nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
        nsc_tensor *twice = nsc_mul_scalar(h, 2.0);
        cr_assert(twice, "%s", nsc_last_error());
        cr_expect_null(nsc_save_as(twice, taken[i]), "%s", taken[i]);
        cr_expect(strstr(nsc_last_error(), "the name is taken"), "%s", nsc_last_error());
        nsc_session_free(s);
    }
    (void)item;
    nsc_free(init);
    nsc_free(items[0]);
    nsc_free(items[1]);
    nsc_free(x);
    nsc_module_free(model);
}

// A later trace reading a value of an iterator whose items change shape was
// checked with item 0's shape; the last iteration's value of another shape
// is an error naming the bridge, where it was saved silently under a proxy
// of the wrong shape.
Test(graph_session, a_later_trace_refuses_a_value_of_another_shape) {
    nsc_module *model = nsct_chain_model(1, 4);
    nsc_tensor *items[2] = { input(1, 0.1), input(3, 0.2) }, *x = input(1, 0.3);
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 2, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *inner = nsc_iterator_trace(it, model);
    nsc_tensor *hi = nsc_invoke_output(nsc_trace_invoke(inner, 1, &item), "h.0", 0);
    nsc_trace *later = nsc_session_trace(s, model);
    nsc_invoke *inv = nsc_trace_invoke(later, 1, &x);
    nsc_tensor *d = nsc_save(nsc_sub(nsc_invoke_output(inv, "h.0", 0), hi));
    cr_assert(d, "%s", nsc_last_error());
    cr_expect_eq(nsc_session_run(s), NSC_ERR_SHAPE);
    cr_expect(strstr(nsc_last_error(), "is [3,4] f32 at step 1's turn, but step 1 was checked "
                                       "with [1,4] f32"),
              "%s", nsc_last_error());
    nsc_session_free(s);
    nsc_free(items[0]);
    nsc_free(items[1]);
    nsc_free(x);
    nsc_module_free(model);
}

// An item whose dtype changes, its shape not, is named as such.
Test(graph_session, an_item_of_another_dtype_is_named_as_such) {
    nsc_module *model = nsct_chain_model(1, 4);
    nsc_tensor *f32 = input(1, 0.1), *f64 = nsc_to_dtype(f32, NSC_F64);
    nsc_tensor *items[2] = { f32, f64 };
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 2, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *tr = nsc_iterator_trace(it, model);
    nsc_save(nsc_invoke_output(nsc_trace_invoke(tr, 1, &item), "h.0", 0));
    cr_expect_neq(nsc_session_run(s), NSC_OK);
    cr_expect(strstr(nsc_last_error(), "item 1 changed dtype"), "%s", nsc_last_error());
    nsc_session_free(s);
    nsc_free(f32);
    nsc_free(f64);
    nsc_module_free(model);
}
