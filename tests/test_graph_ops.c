// Every op of the table applied to hook-point proxies gives, after the run,
// exactly what the eager op gives on the same values (issue 6 item 7); and
// the graph's memory rule on a 12-block model (item 3).
#include <criterion/criterion.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"

static bool make_all(const nsct_case *c, nsc_tensor **x) {
    for (int i = 0; i < c->n_in; i++) {
        if (!(x[i] = nsct_make_input(c, i, c->in[i].dtype, NSC_CPU))) {
            return false;
        }
    }
    return true;
}

static void free_all(nsc_tensor **t, int n) {
    for (int i = 0; i < n; i++) {
        nsc_free(t[i]);
        t[i] = NULL;
    }
}

// Runs case c as a graph on the feed model's input hook points.
static int run_traced(nsc_module *feed, const nsct_case *c, nsc_tensor **got, char *why,
                      size_t why_bytes) {
    nsc_tensor *x[NSCT_MAX_INPUTS] = { 0 }, *proxies[NSCT_MAX_INPUTS], *out[NSCT_MAX_OUTPUTS] = { 0 };
    int n_out = -1;
    nsc_trace *tr = nsc_trace_new(feed);
    if (!make_all(c, x)) {
        snprintf(why, why_bytes, "inputs: %s", nsc_last_error());
        goto done;
    }
    nsc_invoke *inv = nsc_trace_invoke(tr, c->n_in, x);
    for (int i = 0; i < c->n_in; i++) {
        proxies[i] = nsc_invoke_input(inv, "feed", i, 0);
    }
    n_out = c->run(proxies, out);
    for (int k = 0; k < n_out; k++) {
        nsc_save(out[k]);
    }
    for (int k = 0; k < n_out; k++) {
        nsc_free(out[k]); // drops the in-place rows' extra reference; the trace keeps its own
    }
    if (n_out < 0 || nsc_trace_run(tr) != NSC_OK) {
        snprintf(why, why_bytes, "%s", nsc_last_error());
        n_out = -1;
        goto done;
    }
    for (int k = 0; k < n_out; k++) {
        got[k] = nsc_trace_get(tr, out[k]);
    }
done:
    nsc_trace_free(tr);
    free_all(x, c->n_in);
    return n_out;
}

Test(graph_ops, every_op_on_proxies_matches_eager) {
    nsc_module *feed = nsct_feed_model();
    int failures = 0, checked = 0;
    for (int i = 0; i < nsct_n_cases; i++) {
        const nsct_case *c = &nsct_all_cases[i];
        if (nsci_op_defs[c->op]->data_dependent_shape || nsci_op_defs[c->op]->no_graph) {
            continue; // cannot be a graph node (tests/test_optim_ops.c checks the refusal)
        }
        nsc_tensor *x[NSCT_MAX_INPUTS] = { 0 }, *want[NSCT_MAX_OUTPUTS] = { 0 };
        nsc_tensor *got[NSCT_MAX_OUTPUTS] = { 0 };
        char why[1200] = "";
        bool ok = make_all(c, x);
        int n_want = ok ? c->run(x, want) : -1;
        int n_got = n_want > 0 ? run_traced(feed, c, got, why, sizeof why) : -1;
        ok = n_want > 0 && n_got == n_want;
        for (int k = 0; ok && k < n_want; k++) {
            ok = nsct_close(got[k], want[k], TOL_EXACT, why, sizeof why);
        }
        if (!ok) {
            cr_log_error("case %s: %s", c->name, why);
            failures++;
        }
        checked++;
        free_all(x, c->n_in);
        free_all(want, NSCT_MAX_OUTPUTS);
        free_all(got, NSCT_MAX_OUTPUTS);
        nsc_clear_error();
    }
    nsc_module_free(feed);
    cr_expect_eq(failures, 0, "%d of %d cases differ through the graph", failures, checked);
}

// A 12-block model where each read feeds out[l+1] - out[l]: the graph holds
// at most two block outputs plus the saved differences at any time, and
// nothing once the trace is freed.
Test(graph_memory, reads_are_released_after_their_last_use) {
    const int64_t batch = 8, width = 64;
    nsc_module *model = nsct_chain_model(12, width);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(batch, width));
    int64_t start = nsct_live_blocks();
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *prev = nsc_invoke_output(inv, "h.0", 0);
    nsc_tensor *diffs[11];
    for (int l = 1; l < 12; l++) {
        char path[16];
        snprintf(path, sizeof path, "h.%d", l);
        nsc_tensor *cur = nsc_invoke_output(inv, path, 0);
        diffs[l - 1] = nsc_save(nsc_sub(cur, prev));
        prev = cur;
    }
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    int64_t block_bytes = batch * width * 4;
    int64_t saved_bytes = 11 * block_bytes;
    cr_expect_leq(nsc_trace_peak_held_bytes(tr), 2 * block_bytes + saved_bytes,
                  "peak %lld bytes", (long long)nsc_trace_peak_held_bytes(tr));
    cr_expect_eq(nsc_trace_held_bytes(tr), saved_bytes, "only the saved values remain");
    nsc_tensor *d = nsc_trace_get(tr, diffs[3]);
    cr_expect_eq(nsc_tensor_numel(d), batch * width);
    nsc_free(d);
    nsc_trace_free(tr);
    cr_expect_eq(nsct_live_blocks(), start, "the counters are back where they started");
    nsc_free(x);
    nsc_module_free(model);
}

// Protocols: one table, each with its run-time function and its DOT style
// from the reference; reads and bridges are never gated.
Test(graph_protocols, the_table_is_complete) {
    for (int i = 0; i < NSCI_N_PROTOCOLS; i++) {
        const nsci_protocol *p = nsci_protocols[i];
        cr_assert(p && p->name && p->execute, "protocol %d is incomplete", i);
        cr_expect(p->style.color && p->style.shape, "protocol %s has no style", p->name);
    }
    cr_expect_not(nsci_protocols[NSCI_PROTO_intervention]->condition);
    cr_expect_not(nsci_protocols[NSCI_PROTO_lock]->redirect);
    cr_expect_str_eq(nsci_protocols[NSCI_PROTO_apply_module]->style.color, "blue");
    cr_expect_str_eq(nsci_protocols[NSCI_PROTO_lock]->style.color, "brown");
}
