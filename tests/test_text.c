// The graph's text form (issue 9): every shared test graph survives a round
// trip (the text reads back to the same bytes, and the graph read from it
// gives bit-equal saved values), the canonical form is pinned, and bad
// text fails with a clear error naming the line and column, leaking nothing.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "graph/text_impl.h"
#include "tests/expect.h"
#include "tests/graph_builders.h"
#include "tests/graph_models.h"
#include "tests/harness.h"
#include "tests/reliability_util.h"

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

// --- a hand-written text and its canonical form ---

static const char *HAND =
    "{\"format\": \"nsc-graph\", \"version\": 1, \"trace\": {\n"
    "  \"invokes\": [{\"inputs\": [{\"name\": \"x\"}]}],\n"
    "  \"nodes\": [\n"
    "    {\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"invoke\": 0},\n"
    "    {\"id\": 4, \"protocol\": \"Op\", \"op\": \"mul_scalar\", \"params\": {\"value\": 2},"
    " \"args\": [0]},\n"
    "    {\"id\": 7, \"protocol\": \"Lock\", \"name\": \"y\", \"args\": [4]}\n"
    "  ]}}\n";

static const char *HAND_CANONICAL =
    "{\n"
    "  \"format\": \"nsc-graph\",\n"
    "  \"version\": 1,\n"
    "  \"trace\": {\n"
    "    \"invokes\": [\n"
    "      {\"inputs\": [{\"name\": \"x\"}]}\n"
    "    ],\n"
    "    \"nodes\": [\n"
    "      {\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"kind\": \"output\", "
    "\"call\": 0, \"invoke\": 0, \"at\": \"hand.json:4:5\"},\n"
    "      {\"id\": 1, \"protocol\": \"Op\", \"op\": \"mul_scalar\", \"params\": {\"value\": 2.0}, "
    "\"args\": [0], \"at\": \"hand.json:5:5\"},\n"
    "      {\"id\": 2, \"protocol\": \"Lock\", \"name\": \"y\", \"args\": [1], \"at\": "
    "\"hand.json:6:5\"}\n"
    "    ]\n"
    "  }\n"
    "}\n";

typedef struct hand_env {
    nsc_module *model;
    nsc_tensor *x;
    nsc_tensor_set *tensors;
    nsc_graph_load_options options;
} hand_env;

static void hand_start(hand_env *e) {
    e->model = nsct_chain_model(3, 4);
    nsct_warm_paths(e->model); // errors describe nodes by path (cached once)
    e->x = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4), 0.25);
    e->tensors = nsc_tensor_set_new();
    nsc_tensor_set_put(e->tensors, "x", e->x);
    e->options =
        (nsc_graph_load_options){ .n_models = 1, .models = &e->model, .tensors = e->tensors };
}

static void hand_finish(hand_env *e) {
    nsc_tensor_set_free(e->tensors);
    nsc_free(e->x);
    nsc_module_free(e->model);
}

// The same graph with x written inline, loaded for a model on the GPU: the
// inline tensor is made there (nsc_graph_load_options.device). Without a GPU
// the load fails naming the tensor's place in the text.
static const char *INLINE_X =
    "{\"format\": \"nsc-graph\", \"version\": 1, \"trace\": {\n"
    "  \"invokes\": [{\"inputs\": [{\"dtype\": \"f32\", \"shape\": [2, 4], \"data\": "
    "[0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25]}]}],\n"
    "  \"nodes\": [\n"
    "    {\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"invoke\": 0},\n"
    "    {\"id\": 1, \"protocol\": \"Lock\", \"name\": \"y\", \"args\": [0]}\n"
    "  ]}}\n";

Test(text, inline_tensors_are_made_on_the_models_device) {
    int64_t start = nsct_live_blocks();
    hand_env e;
    hand_start(&e);
    nsc_tensor *want = nsc_module_forward(nsc_module_find(e.model, "h.0"), 1, &e.x);
    e.options.device = NSC_CUDA;
    if (!nsc_cuda_available()) {
        cr_expect_null(nsc_graph_parse(INLINE_X, strlen(INLINE_X), "inline.json", &e.options));
        cr_expect(strstr(nsc_last_error(), "inline.json: line 2") &&
                      strstr(nsc_last_error(), "a literal tensor to cuda"),
                  "%s", nsc_last_error());
    } else {
        cr_assert_eq(nsc_cuda_init(), NSC_OK, "%s", nsc_last_error());
        cr_assert_eq(nsc_module_to(e.model, NSC_CUDA), NSC_OK, "%s", nsc_last_error());
        nsc_graph *g = nsc_graph_parse(INLINE_X, strlen(INLINE_X), "inline.json", &e.options);
        cr_assert(g, "%s", nsc_last_error());
        cr_assert_eq(nsc_graph_run(g), NSC_OK, "%s", nsc_last_error());
        nsc_tensor_set *results = nsc_graph_results(g);
        nsc_tensor *y = nsc_tensor_set_get(results, "y");
        cr_assert(y);
        cr_expect_eq(nsc_tensor_device(y), NSC_CUDA, "the hook value stays on the GPU");
        nsct_expect_close(y, want, TOL_F32_MATMUL, "h.0 of the inline x on cuda");
        nsc_tensor_set_free(results);
        nsc_graph_free(g);
    }
    nsc_clear_error();
    nsc_free(want);
    hand_finish(&e);
    if (!nsc_cuda_available()) {
        cr_expect_eq(nsct_live_blocks(), start, "everything is released");
    }
}

Test(text, a_hand_written_text_runs_and_writes_canonically) {
    int64_t start = nsct_live_blocks();
    hand_env e;
    hand_start(&e);
    nsc_graph *g = nsc_graph_parse(HAND, strlen(HAND), "hand.json", &e.options);
    cr_assert(g, "%s", nsc_last_error());
    char *text = nsc_graph_to_text(g);
    cr_expect_str_eq(text, HAND_CANONICAL);
    cr_assert_eq(nsc_graph_run(g), NSC_OK, "%s", nsc_last_error());
    nsc_tensor_set *results = nsc_graph_results(g);
    cr_assert_eq(nsc_tensor_set_count(results), 1);
    cr_expect_str_eq(nsc_tensor_set_name(results, 0), "y");
    nsc_tensor *h0 = nsc_module_forward(nsc_module_find(e.model, "h.0"), 1, &e.x);
    nsc_tensor *want = nsc_mul_scalar(h0, 2.0);
    cr_expect(nsc_allclose(nsc_tensor_set_get(results, "y"), want, 0, 0, false), "%s",
              nsc_last_error());
    // The canonical text reads back to itself.
    nsc_graph *again = nsc_graph_parse(text, strlen(text), "canonical.json", &e.options);
    char *text2 = nsc_graph_to_text(again);
    cr_expect_str_eq(text2, text);
    nsc_text_free(text);
    nsc_text_free(text2);
    nsc_graph_free(again);
    nsc_tensor_set_free(results);
    nsc_free(h0);
    nsc_free(want);
    nsc_graph_free(g);
    hand_finish(&e);
    nsc_mem_trim();
    cr_expect_eq(nsct_live_blocks(), start);
}

// --- bad text: one clear error each, nothing leaked ---

typedef struct bad_case {
    const char *name;
    const char *nodes; // the "nodes" array's items (or a whole document when it starts with '!')
    nsc_status status;
    const char *want[3]; // substrings of the message
} bad_case;

#define NODE0 "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"invoke\": 0}"

static const bad_case BAD[] = {
    { "json",
      "!{\"format\": \"nsc-graph\", \"version\": 1, \"trace\": {\"nodes\": [}}",
      NSC_ERR_FORMAT,
      { "bad.json: line 1, column 59", "expected a value" } },
    { "format",
      "!{\"format\": \"nsc-grph\", \"version\": 1, \"trace\": {}}",
      NSC_ERR_FORMAT,
      { "line 1, column 12", "expected \"nsc-graph\"" } },
    { "version",
      "!{\"format\": \"nsc-graph\", \"version\": 2, \"trace\": {}}",
      NSC_ERR_FORMAT,
      { "version 2: this library reads version 1" } },
    { "neither",
      "!{\"format\": \"nsc-graph\", \"version\": 1}",
      NSC_ERR_FORMAT,
      { "one of \"trace\" and \"session\"" } },
    { "top key",
      "!{\"format\": \"nsc-graph\", \"version\": 1, \"trace\": {}, \"x\": 1}",
      NSC_ERR_FORMAT,
      { "unknown key \"x\"" } },
    { "protocol",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Foo\"}",
      NSC_ERR_FORMAT,
      { "line 4, column 23", "unknown protocol \"Foo\"" } },
    { "op",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"ad\", \"args\": [0, 0]}",
      NSC_ERR_FORMAT,
      { "line 4", "unknown op \"ad\"" } },
    { "param",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"mul_scalar\", \"params\": "
            "{\"valu\": 2}, \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "op mul_scalar has no param \"valu\"" } },
    { "param type",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"mul_scalar\", "
            "\"params\": {\"value\": \"2\"}, \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "param \"value\": expected a number" } },
    { "int param range",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"select\", "
            "\"params\": {\"dim\": 4294967296}, \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "param \"dim\": expected a 32-bit integer" } },
    { "dangling",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [5]}",
      NSC_ERR_FORMAT,
      { "line 4, column 40", "node 5 is not defined before this line" } },
    { "self",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [1]}",
      NSC_ERR_FORMAT,
      { "node 1 is not defined before this line" } },
    { "no value",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [0]},\n"
            "{\"id\": 2, \"protocol\": \"Lock\", \"args\": [1]}",
      NSC_ERR_FORMAT,
      { "node 1 has no value" } },
    { "output",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [[0, 3]]}",
      NSC_ERR_FORMAT,
      { "node 0 has no value at output 3" } },
    { "arg count",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"add\", \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "\"args\": expected an array of 2 node id(s)" } },
    { "invoke",
      "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"invoke\": 3}",
      NSC_ERR_FORMAT,
      { "\"invoke\": 3, but the trace has 1 invoke(s)" } },
    { "call",
      "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"invoke\": 0, "
      "\"call\": -2}",
      NSC_ERR_FORMAT,
      { "\"call\": expected a call index >= 0 or \"every\"" } },
    { "unreachable",
      "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", "
      "\"invoke\": 0, \"call\": 5}",
      NSC_ERR_ARG,
      { "bad.json:3:1", "call index 5 is unreachable", "line 3, column 1" } },
    { "index",
      "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"invoke\": 0, "
      "\"kind\": \"input\", \"index\": 9}",
      NSC_ERR_FORMAT,
      { "\"index\": 9 is out of range [0, 7]" } },
    { "kind",
      "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", \"invoke\": 0, "
      "\"kind\": \"outpt\"}",
      NSC_ERR_FORMAT,
      { "\"kind\": \"input\" or \"output\"" } },
    { "module",
      "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.9\", \"invoke\": 0}",
      NSC_ERR_ARG,
      { "bad.json:3:1", "h.9" } },
    { "shape",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"matmul\", \"args\": [0, 0], "
            "\"at\": \"mine.c:12\"}",
      NSC_ERR_SHAPE,
      { "mine.c:12: matmul: [2,4], [2,4]: inner sizes", "line 4, column 1" } },
    { "shape no at",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"matmul\", \"args\": "
            "[0, 0]}",
      NSC_ERR_SHAPE,
      { "bad.json:4:1: matmul" } },
    { "at",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [0], \"at\": \"mine.c\"}",
      NSC_ERR_FORMAT,
      { "\"at\": expected \"file:line\"" } },
    { "duplicate key",
      "{\"id\": 0, \"id\": 0, \"protocol\": \"Lock\"}",
      NSC_ERR_FORMAT,
      { "key \"id\" appears twice" } },
    { "unknown key",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [0], \"nme\": 1}",
      NSC_ERR_FORMAT,
      { "a Lock line has no key \"nme\"" } },
    { "increasing ids",
      NODE0 ",\n{\"id\": 0, \"protocol\": \"Lock\", \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "\"id\": 0 is out of range [1,", "node ids increase" } },
    { "save names",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"name\": \"a\", \"args\": "
            "[0]},\n{\"id\": 2, \"protocol\": \"Lock\", \"name\": \"a\", \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "a save named \"a\" exists already" } },
    { "bridge",
      "{\"id\": 0, \"protocol\": \"Bridge\", \"from\": {\"session\": 0}}",
      NSC_ERR_FORMAT,
      { "earlier trace of a session" } },
    { "update",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Update\", \"target\": 0, \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "only in sessions" } },
    { "literal count",
      "{\"id\": 0, \"protocol\": \"Value\", \"tensor\": {\"dtype\": \"f32\", "
      "\"shape\": [2, 2], \"data\": [1, 2, 3]}}",
      NSC_ERR_FORMAT,
      { "\"data\": expected an array of 4 values" } },
    { "dtype",
      "{\"id\": 0, \"protocol\": \"Value\", \"tensor\": {\"dtype\": \"f16\", "
      "\"shape\": [], \"data\": [1]}}",
      NSC_ERR_FORMAT,
      { "unknown dtype \"f16\"" } },
    { "f32 range",
      "{\"id\": 0, \"protocol\": \"Value\", \"tensor\": {\"dtype\": \"f32\", "
      "\"shape\": [1], \"data\": [1e39]}}",
      NSC_ERR_FORMAT,
      { "out of range for f32" } },
    { "utf8",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"name\": \"f\xff\", \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "bad.json: line 4, column 41: invalid UTF-8 in a string: a byte UTF-8 never uses" } },
    { "i64 data",
      "{\"id\": 0, \"protocol\": \"Value\", \"tensor\": {\"dtype\": \"i64\", "
      "\"shape\": [1], \"data\": [1.5]}}",
      NSC_ERR_FORMAT,
      { "expected integers" } },
    { "huge shape",
      "{\"id\": 0, \"protocol\": \"Value\", \"tensor\": {\"dtype\": \"f32\", "
      "\"shape\": [65536, 65536, 65536], \"data\": []}}",
      NSC_ERR_FORMAT,
      { "\"shape\": sizes are integers >= 0" } },
    { "name",
      "{\"id\": 0, \"protocol\": \"Value\", \"tensor\": {\"name\": \"steer\"}}",
      NSC_ERR_FORMAT,
      { "no tensor named \"steer\"" } },
    { "gate",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [0], \"if\": 0}",
      NSC_ERR_FORMAT,
      { "\"if\": expected the id of an earlier Conditional" } },
    { "gated read",
      "{\"id\": 0, \"protocol\": \"Intervention\", \"module\": \"h.0\", "
      "\"invoke\": 0, \"else\": 0}",
      NSC_ERR_FORMAT,
      { "never gated" } },
    { "grad swap",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"GradSwap\", \"grad\": 0, \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "expected the id of a Grad line" } },
    { "eager op",
      "{\"id\": 0, \"protocol\": \"Value\", \"tensor\": {\"dtype\": \"f32\", "
      "\"shape\": [], \"data\": [1]}},\n{\"id\": 1, \"protocol\": \"Op\", \"op\": "
      "\"neg\", \"args\": [0]}",
      NSC_ERR_FORMAT,
      { "needs an arg that is a node of this trace" } },
    { "function",
      NODE0 ",\n{\"id\": 1, \"protocol\": \"Function\", \"function\": \"nope\", "
            "\"args\": [0]}",
      NSC_ERR_ARG,
      { "no function registered as \"nope\"" } },
    // Found by fuzz_graph_text: a save of a bridged session value went into the session graph.
    { "foreign save",
      "!{\"format\": \"nsc-graph\", \"version\": 1, \"session\": [\n"
      "{\"id\": 0, \"value\": {\"dtype\": \"f32\", \"shape\": [], \"data\": [0]}},\n"
      "{\"trace\": 0, \"id\": 1, \"invokes\": [{\"inputs\": [{\"name\": \"x\"}]}], "
      "\"nodes\": [\n{\"id\": 0, \"protocol\": \"Bridge\", \"from\": {\"session\": 0}},\n"
      "{\"id\": 1, \"protocol\": \"Lock\", \"args\": [0]}]}]}",
      NSC_ERR_FORMAT,
      { "line 5, column 1", "this Lock belongs to the graph of its args" } },
    { "cache",
      "{\"id\": 0, \"protocol\": \"Cache\", \"module\": \"h.*\", \"invoke\": 0, "
      "\"inputs\": 1}",
      NSC_ERR_FORMAT,
      { "\"inputs\": expected true or false" } },
};

static char *document(const char *nodes) {
    if (nodes[0] == '!') {
        return strdup(nodes + 1);
    }
    const char *head = "{\"format\": \"nsc-graph\", \"version\": 1, \"trace\": {\n"
                       "\"invokes\": [{\"inputs\": [{\"name\": \"x\"}]}], \"nodes\": [\n";
    char *text = malloc(strlen(head) + strlen(nodes) + 8);
    sprintf(text, "%s%s]}}", head, nodes);
    return text;
}

Test(text, bad_text_fails_with_a_clear_error) {
    hand_env e;
    hand_start(&e);
    nsc_mem_trim();
    int64_t start = nsct_live_blocks();
    for (int i = 0; i < NSCI_ARRAY_LEN(BAD); i++) {
        char *text = document(BAD[i].nodes);
        nsc_graph *g = nsc_graph_parse(text, strlen(text), "bad.json", &e.options);
        cr_expect_null(g, "%s: parsed", BAD[i].name);
        cr_expect_eq(nsc_last_status(), BAD[i].status, "%s: status %s: %s", BAD[i].name,
                     nsc_status_name(nsc_last_status()), nsc_last_error());
        for (int k = 0; k < 3 && BAD[i].want[k]; k++) {
            cr_expect(strstr(nsc_last_error(), BAD[i].want[k]), "%s: \"%s\" not in: %s",
                      BAD[i].name, BAD[i].want[k], nsc_last_error());
        }
        nsc_graph_free(g);
        free(text);
        nsc_mem_trim();
        cr_expect_eq(nsct_live_blocks(), start, "%s: nothing leaked", BAD[i].name);
    }
    hand_finish(&e);
}

Test(text, limits_on_size_depth_and_nodes) {
    hand_env e;
    hand_start(&e);
    char *text = document(NODE0 ",\n{\"id\": 1, \"protocol\": \"Lock\", \"args\": [[[[[0]]]]]}");
    e.options.max_depth = 6;
    cr_expect_null(nsc_graph_parse(text, strlen(text), "deep.json", &e.options));
    cr_expect(strstr(nsc_last_error(), "deep.json: line 4") &&
                  strstr(nsc_last_error(), "nesting deeper than 6"),
              "%s", nsc_last_error());
    e.options.max_depth = 0;
    e.options.max_bytes = 64;
    cr_expect_null(nsc_graph_parse(text, strlen(text), "big.json", &e.options));
    cr_expect(strstr(nsc_last_error(), "over the limit of 64 bytes"), "%s", nsc_last_error());
    free(text);
    e.options.max_bytes = 0;
    e.options.max_nodes = 2;
    text =
        document(NODE0 ",\n{\"id\": 1, \"protocol\": \"Op\", \"op\": \"neg\", \"args\": "
                       "[0]},\n{\"id\": 2, \"protocol\": \"Op\", \"op\": \"neg\", \"args\": [1]}");
    cr_expect_null(nsc_graph_parse(text, strlen(text), "many.json", &e.options));
    cr_expect(strstr(nsc_last_error(), "more than 2 nodes"), "%s", nsc_last_error());
    free(text);
    hand_finish(&e);
}

// Every field of every op's params struct is in its desc table, so the
// text form writes the whole struct: the gaps between described fields are
// padding (smaller than the next field's alignment).
Test(text, every_op_param_is_described) {
    static const size_t align[] = {
        [NSCI_PARAM_I64] = 8,       [NSCI_PARAM_INT] = 4,      [NSCI_PARAM_F64] = 8,
        [NSCI_PARAM_BOOL] = 1,      [NSCI_PARAM_DTYPE] = 4,    [NSCI_PARAM_DEVICE] = 4,
        [NSCI_PARAM_I64_ARRAY] = 8, [NSCI_PARAM_INT_ARRAY] = 4
    };
    static const size_t size[] = { [NSCI_PARAM_I64] = 8,
                                   [NSCI_PARAM_INT] = 4,
                                   [NSCI_PARAM_F64] = 8,
                                   [NSCI_PARAM_BOOL] = 1,
                                   [NSCI_PARAM_DTYPE] = 4,
                                   [NSCI_PARAM_DEVICE] = 4,
                                   [NSCI_PARAM_I64_ARRAY] = 8 * NSC_MAX_DIMS,
                                   [NSCI_PARAM_INT_ARRAY] = 4 * NSC_MAX_DIMS };
    for (int op = 0; op < NSC_OP_COUNT; op++) {
        const nsci_op_def *d = nsci_op_defs[op];
        // to_dtype and to_device share one struct, each reading only its field.
        bool shared = op == NSC_OP_to_dtype || op == NSC_OP_to_device;
        if (!d->params_size || shared) {
            cr_expect(shared || !d->params, "%s", d->name);
            continue;
        }
        cr_assert(d->params, "%s has params but no desc table", d->name);
        char covered[512] = { 0 };
        size_t max_align = 1;
        for (const nsci_param_desc *p = d->params; p->type != NSCI_PARAM_END; p++) {
            memset(covered + p->offset, 1, size[p->type]);
            if (p->type == NSCI_PARAM_I64_ARRAY || p->type == NSCI_PARAM_INT_ARRAY) {
                memset(covered + p->count_offset, 1, sizeof(int));
            }
            max_align = align[p->type] > max_align ? align[p->type] : max_align;
        }
        size_t gap = 0;
        for (size_t b = 0; b <= d->params_size; b++) {
            if (b < d->params_size && !covered[b]) {
                gap++;
                continue;
            }
            cr_expect(gap < max_align, "%s: %zu undescribed bytes before byte %zu", d->name, gap,
                      b);
            gap = 0;
        }
    }
}

// The parse under an allocation-failure sweep: each failure is a clean
// NSC_ERR_OOM with nothing leaked.
Test(text, parsing_survives_every_allocation_failure) {
    nsc_module *models[1] = { nsct_builder_model(NSCT_CHAIN) };
    const nsct_graph_builder *gb = NULL;
    for (int i = 0; i < nsct_n_graph_builders; i++) {
        gb =
            strcmp(nsct_graph_builders[i].name, "conditionals") == 0 ? &nsct_graph_builders[i] : gb;
    }
    nsct_built b = gb->build(models);
    char *text = nsc_trace_to_text(b.trace, NULL);
    nsct_built_free(&b);
    nsc_graph_load_options o = { .n_models = 1, .models = models };
    nsc_graph *warm = nsc_graph_parse(text, strlen(text), "oom.json", &o); // module paths cached
    nsc_graph_free(warm);
    nsc_mem_trim();
    int64_t start = nsct_live_blocks(), k;
    for (k = 1; k < 100000; k++) {
        nsc_mem_fail_after(k);
        nsc_graph *g = nsc_graph_parse(text, strlen(text), "oom.json", &o);
        int64_t failed = nsc_mem_failed_count();
        nsc_mem_fail_after(0);
        if (g && failed == 0) {
            nsc_graph_free(g);
            break;
        }
        if (!g) {
            cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "allocation %lld: %s", (long long)k,
                         nsc_last_error());
        }
        nsc_graph_free(g);
        nsc_mem_trim();
        cr_expect_eq(nsct_live_blocks(), start, "allocation %lld failed: leaked", (long long)k);
    }
    cr_log_info("text: %lld allocation points swept", (long long)k);
    nsc_text_free(text);
    nsc_module_free(models[0]);
}

Test(text, tensor_sets_save_and_load) {
    char path[] = "/tmp/nsc_text_setXXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    nsc_tensor_set *set = nsc_tensor_set_new();
    nsc_tensor *a = nsc_arange(0, 6, 1, NSC_F32), *b = nsc_scalar(NSC_I64, 7);
    nsc_tensor_set_put(set, "a", a);
    nsc_tensor_set_put(set, "b", b);
    nsc_tensor_set_put(set, "a", b); // replaced
    cr_assert_eq(nsc_tensor_set_save(set, path), NSC_OK, "%s", nsc_last_error());
    nsc_tensor_set *back = nsc_tensor_set_load(path);
    cr_assert(back, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_set_count(back), 2);
    cr_expect(nsc_allclose(nsc_tensor_set_get(back, "a"), b, 0, 0, false));
    cr_expect_null(nsc_tensor_set_get(back, "c"));
    cr_expect_eq(nsc_tensor_set_put(set, "", a), NSC_ERR_ARG);
    remove(path);
    nsc_tensor_set_free(set);
    nsc_tensor_set_free(back);
    nsc_free(a);
    nsc_free(b);
}

static void count_protocols(const nsc_trace *tr, int *seen) {
    for (int32_t i = 0; tr && i < tr->n_nodes; i++) {
        seen[tr->nodes[i].protocol]++;
    }
}

// The shared builders cover every protocol (so the round trip above does).
Test(text, the_builders_cover_every_protocol) {
    int seen[NSCI_N_PROTOCOLS] = { 0 };
    for (int i = 0; i < nsct_n_graph_builders; i++) {
        const nsct_graph_builder *gb = &nsct_graph_builders[i];
        nsc_module *models[2];
        for (int k = 0; k < gb->n_models; k++) {
            models[k] = nsct_builder_model(gb->models[k]);
        }
        nsct_built b = gb->build(models);
        count_protocols(b.trace, seen);
        for (int t = 0; b.session && t < b.session->n_traces; t++) {
            count_protocols(b.session->traces[t], seen);
        }
        count_protocols(b.session ? b.session->values : NULL, seen);
        nsct_built_free(&b);
        for (int k = 0; k < gb->n_models; k++) {
            nsc_module_free(models[k]);
        }
    }
    for (int p = 0; p < NSCI_N_PROTOCOLS; p++) {
        cr_expect_gt(seen[p], 0, "no builder makes a %s node", nsci_protocols[p]->name);
    }
}

// Writing under an allocation-failure sweep: NULL with NSC_ERR_OOM, nothing leaked.
Test(text, writing_survives_every_allocation_failure) {
    nsc_module *models[1] = { nsct_builder_model(NSCT_CHAIN) };
    nsct_warm_paths(models[0]);
    nsct_built b = nsct_graph_builders[0].build(models); // reads
    char *want = nsc_trace_to_text(b.trace, NULL);
    nsc_mem_trim();
    int64_t start = nsct_live_blocks(), k;
    for (k = 1; k < 10000; k++) {
        nsc_mem_fail_after(k);
        char *text = nsc_trace_to_text(b.trace, NULL);
        int64_t failed = nsc_mem_failed_count();
        nsc_mem_fail_after(0);
        if (text && failed == 0) {
            cr_expect_str_eq(text, want);
            nsc_text_free(text);
            break;
        }
        cr_expect(text == NULL && nsc_last_status() == NSC_ERR_OOM, "allocation %lld: %s",
                  (long long)k, nsc_last_error());
        nsc_text_free(text);
        nsc_mem_trim();
        cr_expect_eq(nsct_live_blocks(), start, "allocation %lld failed: leaked", (long long)k);
    }
    cr_expect_gt(k, 1);
    nsc_text_free(want);
    nsct_built_free(&b);
    nsc_module_free(models[0]);
}

Test(text, generation_options_round_trip_with_a_64_bit_seed) {
    nsc_module *model = nsct_builder_model(NSCT_GPT2);
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 3;
    o.sample = true;
    o.temperature = 0.7;
    o.top_k = 5;
    o.seed = UINT64_MAX - 5;
    o.stop_token = 7;
    nsc_trace *tr = nsc_trace_new_generate(model, &o);
    int64_t ids[3] = { 1, 2, 3 };
    nsc_tensor *x = nsc_from_data(NSC_I64, NSC_SHAPE(1, 3), ids);
    nsc_save(nsc_invoke_output(nsc_trace_invoke(tr, 1, &x), "generator", 0));
    char *text = nsc_trace_to_text(tr, NULL);
    cr_assert(text, "%s", nsc_last_error());
    nsc_graph_load_options lo = { .n_models = 1, .models = &model };
    nsc_graph *g = nsc_graph_parse(text, strlen(text), "gen.json", &lo);
    cr_assert(g, "%s", nsc_last_error());
    const nsc_generate_options *back = &nsc_graph_trace(g, 0)->gen_options;
    cr_expect(back->seed == o.seed && back->sample && back->temperature == 0.7 &&
                  back->top_k == 5 && back->stop_token == 7 && back->max_new_tokens == 3,
              "%s", text);
    char *again = nsc_graph_to_text(g);
    cr_expect_str_eq(again, text);
    nsc_text_free(again);
    nsc_text_free(text);
    nsc_graph_free(g);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}
