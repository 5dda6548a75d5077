// What a node sees and when it acts (NNSIGHT.md §1): conditional blocks that
// gate module calls, functions, replacements and stops; writes seen by every
// later node whatever its protocol; reads after a replacement; persistent
// edits built before the user's nodes; values bridged between the traces of
// one iterator; the root's cache through the text form.
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"

// The saved value's sum after the run (consumes nothing).
static double saved_sum(nsc_trace *tr, nsc_tensor *proxy) {
    nsc_tensor *v = nsc_trace_get(tr, proxy);
    cr_assert(v, "%s", nsc_last_error());
    double s = nsct_sum(v);
    nsc_free(v);
    return s;
}

// A condition on h (its sum against a threshold), true or false.
static void open_block(nsc_trace *tr, nsc_tensor *h, bool truth) {
    nsc_tensor *cond = nsc_gt_scalar(nsc_sum_all(h), truth ? -1e9 : 1e9);
    cr_assert_eq(nsc_trace_if(tr, cond), NSC_OK, "%s", nsc_last_error());
}

static int g_calls, g_last_n;

static nsc_tensor *count_args(int n, nsc_tensor *const *args, void *ctx) {
    (void)ctx;
    g_calls++;
    g_last_n = n;
    for (int i = 0; i < n; i++) {
        if (!args[i]) {
            return NULL;
        }
    }
    return nsc_mul_scalar(args[0], 1.0);
}

Test(graph_order, a_gated_module_call_or_function_gets_only_its_inputs) {
    nsc_module *model = nsct_feed_model();
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h = nsc_invoke_output(inv, "feed", 0);
    nsc_tensor *xs[8] = { h, h, h, h, h, h, h, h };
    cr_assert_eq(nsc_function_register("count_args", count_args, NULL), NSC_OK);
    open_block(tr, h, true);
    // Eight inputs fill the module's input array: the gate edge is no input.
    nsc_tensor *y8 = nsc_save(nsc_trace_apply_n(tr, "feed", 8, xs, false));
    nsc_tensor *f1 = nsc_save(nsc_trace_call(tr, "count_args", 1, &h));
    cr_assert_eq(nsc_trace_end(tr), NSC_OK);
    g_calls = 0;
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(g_calls, 1, "the function ran once");
    cr_expect_eq(g_last_n, 1, "with its one argument, as validated");
    cr_expect_float_eq(saved_sum(tr, y8), 6.0, 1e-6);
    cr_expect_float_eq(saved_sum(tr, f1), 6.0, 1e-6);
    nsc_free(x);
    nsc_trace_free(tr);
    nsc_module_free(model);
}

Test(graph_order, replacements_and_stops_in_a_branch_not_taken_do_nothing) {
    for (int kind = 0; kind < 3; kind++) { // set_output, skip, stop
        nsct_chain_trace f;
        nsct_chain_start(&f, 3);
        nsc_tensor *z = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(4));
        open_block(f.tr, nsc_invoke_output(f.inv, "h.0", 0), false);
        nsc_status st = kind == 0   ? nsc_invoke_set_output(f.inv, "h.1", 0, z)
                        : kind == 1 ? nsc_invoke_skip(f.inv, "h.1", 0, z)
                                    : nsc_trace_stop(f.tr, "h.1", 0);
        cr_assert_eq(st, NSC_OK, "%s", nsc_last_error());
        cr_assert_eq(nsc_trace_end(f.tr), NSC_OK);
        nsc_tensor *out = nsc_save(nsc_invoke_output(f.inv, "", 0));
        cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "kind %d: %s", kind, nsc_last_error());
        nsc_tensor *want = nsc_module_forward(f.model, 1, &f.x);
        cr_expect_float_eq(saved_sum(f.tr, out), nsct_sum(want), 1e-6, "kind %d: unchanged", kind);
        nsc_free(want);
        nsc_free(z);
        nsct_chain_finish(&f);
    }
}

Test(graph_order, a_stop_in_a_branch_taken_stops_and_needs_its_condition_in_time) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 3);
    open_block(f.tr, nsc_invoke_output(f.inv, "h.0", 0), true);
    cr_assert_eq(nsc_trace_stop(f.tr, "h.1", 0), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_trace_end(f.tr), NSC_OK);
    nsc_tensor *h2 = nsc_save(nsc_invoke_output(f.inv, "h.2", 0));
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_null(nsc_trace_get(f.tr, h2), "the pass stopped after h.1");
    (void)h2;
    nsct_chain_finish(&f);
    // A condition known only at h.2 cannot decide a stop after h.1.
    nsct_chain_start(&f, 3);
    open_block(f.tr, nsc_invoke_output(f.inv, "h.2", 0), true);
    cr_expect_eq(nsc_trace_stop(f.tr, "h.1", 0), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "the stop after h.1 output needs h.2 output"), "%s",
              nsc_last_error());
    nsct_chain_finish(&f);
}

static nsc_tensor *identity(int n, nsc_tensor *const *args, void *ctx) {
    (void)n, (void)ctx;
    return nsc_mul_scalar(args[0], 1.0);
}

// c is a clone of h.0 overwritten with h.1 in place; every later node reads
// h.1's values, whatever its protocol.
Test(graph_order, every_protocol_sees_an_earlier_in_place_write) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 3);
    cr_assert_eq(nsc_function_register("identity", identity, NULL), NSC_OK);
    nsc_tensor *c = nsc_clone(nsc_invoke_output(f.inv, "h.0", 0));
    cr_assert_eq(nsc_copy_(c, nsc_invoke_output(f.inv, "h.1", 0)), NSC_OK);
    nsc_tensor *by_op = nsc_save(nsc_mul_scalar(c, 1.0));
    nsc_tensor *by_fn = nsc_save(nsc_trace_call(f.tr, "identity", 1, &c));
    nsc_tensor *by_apply = nsc_save(nsc_trace_apply(f.tr, "head", c));
    char *logged = NULL;
    size_t logged_size = 0;
    FILE *log = open_memstream(&logged, &logged_size);
    nsc_trace_set_log(f.tr, log);
    cr_assert_eq(nsc_trace_log(f.tr, "c", c), NSC_OK);
    nsc_tensor *h1 = nsc_invoke_output(f.inv, "h.1", 0);
    nsc_tensor *want_apply = nsc_save(nsc_trace_apply(f.tr, "head", h1));
    nsc_tensor *want = nsc_save(nsc_mul_scalar(h1, 1.0));
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    fclose(log);
    double w = saved_sum(f.tr, want);
    cr_expect_float_eq(saved_sum(f.tr, by_op), w, 1e-6);
    cr_expect_float_eq(saved_sum(f.tr, by_fn), w, 1e-6, "the function ran after the write");
    cr_expect_float_eq(saved_sum(f.tr, by_apply), saved_sum(f.tr, want_apply), 1e-6,
                       "the module call ran after the write");
    nsc_tensor *v = nsc_trace_get(f.tr, want);
    char *text = nsct_printed(v);
    cr_expect(strncmp(logged, "c: ", 3) == 0 && strcmp(logged + 3, text) == 0,
              "the log printed the written value:\n%s\nexpected\n%s", logged, text);
    free(text);
    free(logged);
    nsc_free(v);
    nsct_chain_finish(&f);
}

static nsc_status zero_h0(nsc_trace *tr, nsc_invoke *inv, void *ctx) {
    (void)tr;
    (*(int *)ctx)++;
    return nsc_zero_(nsc_invoke_output(inv, "h.0", 0));
}

// nnsight's edit graph comes before the user's nodes: the user reads the
// edited model, in plain traces and session traces alike, and a graph read
// back from text is not edited twice.
Test(graph_order, persistent_edits_come_before_the_users_nodes) {
    nsc_module *model = nsct_chain_model(2, 4);
    int calls = 0;
    cr_assert_eq(nsc_model_edit(model, zero_h0, &calls, NULL), NSC_OK);
    nsc_tensor *x = nsct_chain_input(2, 0);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *seen = nsc_save(nsc_mul_scalar(nsc_invoke_output(inv, "h.0", 0), 1.0));
    cr_expect_eq(calls, 1, "the edit was built at the first hook-point read");
    char *text = nsc_trace_to_text(tr, NULL);
    cr_assert(text, "%s", nsc_last_error());
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(calls, 1, "and only then");
    cr_expect_float_eq(saved_sum(tr, seen), 0.0, 1e-12, "the user's read sees the edit");
    nsc_trace_free(tr);

    nsc_graph_load_options o = { .n_models = 1, .models = &model };
    nsc_graph *g = nsc_graph_parse(text, strlen(text), "edited.json", &o);
    cr_assert(g, "%s", nsc_last_error());
    char *again = nsc_graph_to_text(g);
    cr_expect_str_eq(again, text, "the text carries the edit's nodes, once");
    cr_expect_eq(calls, 1, "reading a text adds no edit");
    nsc_text_free(again);
    nsc_text_free(text);
    nsc_graph_free(g);

    nsc_session *s = nsc_session_new();
    nsc_trace *st = nsc_session_trace(s, model);
    nsc_invoke *si = nsc_trace_invoke(st, 1, &x);
    nsc_tensor *next = nsc_save(nsc_invoke_input(si, "h.1", 0, 0));
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v = nsc_session_get(s, next);
    cr_expect_float_eq(nsct_sum(v), 0.0, 1e-12, "session traces are edited too");
    cr_expect_eq(calls, 2);
    nsc_free(v);
    nsc_session_free(s);
    nsc_free(x);
    nsc_module_free(model);
}

// Traces of one iterator run in turn at each item: the second may use the
// first's values without saving them.
Test(graph_order, a_value_bridges_between_the_traces_of_one_iterator) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsc_tensor *items[2] = { nsct_chain_input(2, 0), nsct_chain_input(2, 3) };
    nsc_session *s = nsc_session_new();
    nsc_iterator *it = nsc_session_iterate(s, 2, items);
    nsc_tensor *item = nsc_iterator_item(it);
    nsc_trace *t1 = nsc_iterator_trace(it, model);
    nsc_invoke *i1 = nsc_trace_invoke(t1, 1, &item);
    nsc_tensor *h0 = nsc_invoke_output(i1, "h.0", 0); // not saved
    nsc_trace *t2 = nsc_iterator_trace(it, model);
    nsc_tensor *zeros = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    nsc_invoke *i2 = nsc_trace_invoke(t2, 1, &zeros);
    cr_assert_eq(nsc_invoke_set_output(i2, "h.0", 0, h0), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *out = nsc_save(nsc_invoke_output(i2, "", 0));
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_session_get(s, out);
    nsc_tensor *want = nsc_module_forward(model, 1, &items[1]); // the last item's pass
    cr_expect(nsc_allclose(got, want, 1e-6, 1e-6, false), "t2 ran on t1's h.0");
    cr_expect_eq(nsc_trace_held_bytes(t1), 0, "the bridged value went after the step");
    nsc_free(got);
    nsc_free(want);
    nsc_free(zeros);
    nsc_session_free(s);
    nsc_free(items[0]);
    nsc_free(items[1]);
    nsc_module_free(model);
}

Test(graph_order, the_roots_cache_survives_the_text_form) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    cr_assert_eq(nsc_trace_cache(f.tr, f.inv, "*", false), 4, "the root, h.0, h.1, head");
    char *text = nsc_trace_to_text(f.tr, NULL);
    nsc_graph_load_options o = { .n_models = 1, .models = &f.model };
    nsc_graph *g = text ? nsc_graph_parse(text, strlen(text), "cache.json", &o) : NULL;
    cr_assert(g, "%s", nsc_last_error());
    char *again = nsc_graph_to_text(g);
    cr_expect_str_eq(again, text);
    cr_assert_eq(nsc_graph_run(g), NSC_OK, "%s", nsc_last_error());
    nsc_tensor_set *res = nsc_graph_results(g);
    cr_expect_eq(nsc_tensor_set_count(res), 4);
    cr_expect(nsc_tensor_set_get(res, "cache.0..output") != NULL, "the root's output");
    nsc_tensor_set_free(res);
    nsc_text_free(again);
    nsc_graph_free(g);
    // A cache line for a module the reading model lacks is an error.
    char *bad = strdup(text);
    char *at = strstr(bad, "\"module\": \"h.1\"");
    cr_assert(at);
    memcpy(at, "\"module\": \"h.7\"", 15);
    cr_expect_null(nsc_graph_parse(bad, strlen(bad), "bad.json", &o));
    cr_expect(strstr(nsc_last_error(), "\"h.7\" matches no module"), "%s", nsc_last_error());
    free(bad);
    nsc_text_free(text);
    nsct_chain_finish(&f);
}

// The session graph holds values, never ops: an op on session values alone
// goes into the trace being built, and before the first trace it is refused
// at once (it used to become a node that never ran, failing the run later).
Test(graph_order, an_op_on_session_values_needs_a_trace_to_run_in) {
    nsc_module *model = nsct_chain_model(2, 4);
    nsc_session *s = nsc_session_new();
    nsc_tensor *init = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    nsc_tensor *v = nsc_session_value(s, init);
    cr_expect_null(nsc_mul_scalar(v, 3.0));
    cr_expect(strstr(nsc_last_error(), "create its first trace before the op"), "%s",
              nsc_last_error());
    nsc_trace *tr = nsc_session_trace(s, model);
    nsc_tensor *x = nsct_chain_input(2, 0);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *w = nsc_mul_scalar(v, 3.0); // into tr
    cr_assert(w, "%s", nsc_last_error());
    cr_assert_eq(nsc_invoke_set_output(inv, "h.0", 0, w), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *next = nsc_save(nsc_invoke_input(inv, "h.1", 0, 0));
    cr_assert_eq(nsc_session_run(s), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *got = nsc_session_get(s, next);
    cr_expect_float_eq(nsct_sum(got), 24.0, 1e-6, "h.0 replaced by 3 * ones");
    nsc_free(got);
    nsc_free(x);
    nsc_free(init);
    nsc_session_free(s);
    nsc_module_free(model);
}

// A false condition gating a long chain skips it without recursing per node:
// the chain runs on a thread with a 256 KiB stack, which the recursive skip
// overflowed at a few thousand nodes (a 300k-node text crashed `nsc run`).
static void *gated_chain(void *out) {
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
    open_block(f.tr, h, false);
    nsc_tensor *x = h;
    for (int i = 0; i < 50000 && x; i++) {
        x = nsc_add_scalar(x, 1.0);
    }
    nsc_tensor *kept = nsc_save(x);
    nsc_trace_end(f.tr);
    nsc_status *status = out;
    *status = kept ? nsc_trace_run(f.tr) : nsc_last_status();
    if (*status == NSC_OK) {
        nsc_tensor *v = nsc_trace_get(f.tr, kept);
        *status = v ? NSC_ERR_STATE : NSC_OK; // a skipped value is never computed
        nsc_free(v);
    }
    nsct_chain_finish(&f);
    return NULL;
}

Test(graph_order, a_false_condition_skips_a_long_chain_on_a_small_stack) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t thread;
    nsc_status status = NSC_ERR_STATE;
    cr_assert_eq(pthread_create(&thread, &attr, gated_chain, &status), 0);
    pthread_join(thread, NULL);
    pthread_attr_destroy(&attr);
    cr_expect_eq(status, NSC_OK, "%s", nsc_last_error());
}

// A run reports saves by name, so nsc_save_as refuses a name another value
// has: a second save of it (the text then failed to read back) or a name
// of the automatic form (nsc_graph_results then failed: "two values are
// named n1").
Test(graph_order, a_save_name_is_refused_when_another_value_has_it) {
    const char *taken[] = { "dup", "n1", "n12.1", "t0.n3", "cache.0.h.0.output", "generated" };
    for (size_t i = 0; i < sizeof taken / sizeof *taken; i++) {
        nsct_chain_trace f;
        nsct_chain_start(&f, 2);
        nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
        cr_assert(nsc_save_as(nsc_mul_scalar(h, 2.0), "dup"), "%s", nsc_last_error());
        cr_expect_null(nsc_save_as(nsc_mul_scalar(h, 3.0), taken[i]), "%s", taken[i]);
        cr_expect(strstr(nsc_last_error(), "the name is taken"), "%s", nsc_last_error());
        nsct_chain_finish(&f);
    }
    const char *free_names[] = { "n", "n1x", "nx1", "t1", "h1", "n1.", "tn1" };
    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
    for (size_t i = 0; i < sizeof free_names / sizeof *free_names; i++) {
        cr_expect(nsc_save_as(nsc_mul_scalar(h, 1.0), free_names[i]), "%s: %s", free_names[i],
                  nsc_last_error());
    }
    cr_expect_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsct_chain_finish(&f);
}

// Messages name the call of a point, once, and say why a value is missing.
Test(graph_order, messages_name_the_call_and_why_a_value_is_missing) {
    nsc_module *m = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(m, "%s", nsc_last_error());
    nsc_tensor *x = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, 3));
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 2;
    nsc_trace *tr = nsc_trace_new_generate(m, &o);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *later = nsc_invoke_output(inv, "lm_head", 1);
    cr_expect_neq(nsc_invoke_set_output(inv, "lm_head", 0, later), NSC_OK);
    const char *e = nsc_last_error();
    cr_expect(strstr(e, "needs lm_head output (call 1), which exists only after lm_head output "
                        "has passed (node "),
              "%s", e);
    cr_expect_null(strstr(strstr(e, "(node ") + 1, "(node "), "the node is named once: %s", e);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(m);

    nsct_chain_trace f;
    nsct_chain_start(&f, 2);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
    open_block(f.tr, h, false);
    nsc_tensor *inside = nsc_save(nsc_mul_scalar(h, 2.0));
    nsc_trace_end(f.tr);
    nsc_tensor *after = nsc_save(nsc_add_scalar(inside, 1.0));
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *proxies[] = { inside, after };
    for (int i = 0; i < 2; i++) {
        cr_expect_null(nsc_trace_get(f.tr, proxies[i]));
        cr_expect(strstr(nsc_last_error(), "a condition it depends on was false"), "%s",
                  nsc_last_error());
    }
    nsct_chain_finish(&f);
}
