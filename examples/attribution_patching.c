// attribution_patching: activation patching's answer from one forward and
// one backward pass. Patching (examples/patching.c) runs the model once per
// (layer, position); attribution patching (Nanda, 2023) approximates each
// cell to first order: metric(patched) - metric(corrupted) is about
//     sum over channels of (h_clean - h_corrupted) * d metric / d h_corrupted
// so one backward pass from the corrupted run's metric gives every cell.
// Same prompts and metric as patching.c: clean "qzkfebmw|qzk" (answer f),
// corrupted "qzkxebmw|qzk" (answer x), metric logit(f) - logit(x).
//
// What it teaches, top to bottom:
//   1. gradients inside a trace: nsc_proxy_grad on a hook point's proxy, and
//      nsc_trace_backward from a metric computed in the graph (nnsight's
//      .grad and metric.backward());
//   2. ops on gradients (they run during the backward pass, when the
//      gradient exists) mixing both invokes' activations;
//   3. the same graph as text for `nsc run`; a table and a heatmap to put
//      next to patching.svg.
//
// Run:  make && build/release/examples/attribution_patching [MODEL_DIR] [--svg FILE]
//           [--graph-out FILE]     (defaults: models/induction, attribution_patching.svg)
// The same graph as text: build/release/nsc run --graph examples/graphs/attribution_patching.json
#include <math.h>
#include <stdio.h>

#include "examples/common.h"

const char example_name[] = "attribution_patching";

enum {
    MAX_ROWS = 8,
    MAX_T = 24
};

static const char *CLEAN = "qzkfebmw|qzk", *CORRUPT = "qzkxebmw|qzk";

// Rows are the embeddings and each block's output.
typedef struct experiment {
    int rows;
    int64_t t_len;
    char names[MAX_ROWS][16];
    nsc_tensor *ld_clean, *ld_corrupt, *attribution[MAX_ROWS]; // saved proxies
} experiment;

static nsc_tensor *logit_diff(nsc_invoke *inv, int64_t good, int64_t bad) {
    nsc_tensor *last = nsc_select(nsc_select(nsc_invoke_output(inv, "", 0), 1, -1), 0, 0); // [V]
    return nsc_sub(nsc_select(last, 0, good), nsc_select(last, 0, bad));                   // []
}

// --- 1-2. two invokes, the metric, its backward, gradient x difference ---
static void build(nsc_trace *tr, nsc_tensor *clean, nsc_tensor *corrupt, int64_t good, int64_t bad,
                  experiment *x) {
    nsc_invoke *inv_clean = nsc_trace_invoke(tr, 1, &clean);
    nsc_invoke *inv_corrupt = nsc_trace_invoke(tr, 1, &corrupt);
    for (int r = 0; r < x->rows; r++) {
        char point[32], name[48];
        snprintf(point, sizeof point, r ? "transformer.h.%d" : "transformer.drop", r - 1);
        snprintf(x->names[r], sizeof x->names[r], r ? "h.%d" : "embed", r - 1);
        nsc_tensor *h_clean = nsc_invoke_output(inv_clean, point, 0);     // [1, T, C]
        nsc_tensor *h_corrupt = nsc_invoke_output(inv_corrupt, point, 0); // [1, T, C]
        nsc_tensor *grad = nsc_proxy_grad(h_corrupt); // d metric / d h, in the backward below
        nsc_tensor *delta = nsc_sub(h_clean, h_corrupt);
        x->attribution[r] = nsc_sum(nsc_mul(delta, grad), 1, (int[]){ -1 }, false); // [1, T]
        snprintf(name, sizeof name, "attribution.%s", x->names[r]);
        CHECK(nsc_save_as(x->attribution[r], name));
    }
    x->ld_clean = nsc_save_as(logit_diff(inv_clean, good, bad), "ld.clean");
    x->ld_corrupt = nsc_save_as(logit_diff(inv_corrupt, good, bad), "ld.corrupt");
    CHECK(nsc_trace_backward(x->ld_corrupt, false)); // one backward for every layer's gradient
}

// --- 3b. the estimates, as fractions of the clean - corrupted difference ---
static void show(nsc_trace *tr, const experiment *x, const char *svg) {
    double lc = example_trace_get_scalar(tr, x->ld_clean);
    double lx = example_trace_get_scalar(tr, x->ld_corrupt);
    static example_grid g;
    example_grid_init(&g, x->rows, (int)x->t_len);
    printf("Attribution patching, clean \"%s\" -> corrupted \"%s\"\n", CLEAN, CORRUPT);
    printf("logit(f) - logit(x): clean %.3f, corrupted %.3f; a cell is gradient x (clean - "
           "corrupted), as a fraction of the difference\n\n",
           lc, lx);
    for (int p = 0; p < g.n_cols; p++) { // the changed letter starred
        example_grid_set_col_name(&g, p, "%c%c", CLEAN[p], CLEAN[p] == CORRUPT[p] ? ' ' : '*');
    }
    example_grid_print_header(&g, "layer", 6);
    for (int r = 0; r < g.n_rows; r++) {
        nsc_tensor *a = nsc_trace_get(tr, x->attribution[r]); // [1, T]
        CHECK(a);
        example_grid_set_row_name(&g, r, "%s", x->names[r]);
        example_grid_print_row_name(&g, r, 6);
        for (int p = 0; p < g.n_cols; p++) {
            double estimate = (double)((const float *)nsc_tensor_data(a))[p] / (lc - lx);
            example_grid_set_cell(&g, r, p, estimate, fabs(estimate) >= 0.05 ? "%.2f" : "",
                                  estimate);
            printf(" %6.2f", estimate);
        }
        nsc_free(a);
    }
    svg_heatmap map = { .title = "Attribution patching: patching to first order, one backward pass",
                        .subtitle = "clean \"qzkfebmw|qzk\" -> corrupted \"qzkxebmw|qzk\"; cell = "
                                    "sum_c (h_clean - h_corrupt) * d(logit f - logit x)/dh",
                        .x_label = "position (clean token)",
                        .y_label = "layer",
                        .lo = -1,
                        .hi = 1,
                        .diverging = true,
                        .scale_label = "estimated fraction restored" };
    example_grid_write_svg(&g, map, svg);
    printf("\n\nheatmap: %s (compare with patching.svg: a linear estimate finds the same cells "
           "but undershoots where the effect passes through saturating softmax and layer "
           "norm)\n",
           svg);
}

int main(int argc, char **argv) {
    example_args args = example_args_parse(argc, argv, "attribution_patching.svg", NULL);
    example_model m = example_model_load(args.model_dir);
    nsc_tensor *clean = example_prompt_encode(m.tok, CLEAN, MAX_T);
    nsc_tensor *corrupt = example_prompt_encode(m.tok, CORRUPT, MAX_T);
    experiment x = { .rows = (int)m.config.n_layer + 1, .t_len = nsc_tensor_size(clean, 1) };
    int64_t good = nsc_tokenizer_token_id(m.tok, "f"), bad = nsc_tokenizer_token_id(m.tok, "x");
    CHECK(good >= 0 && bad >= 0 && x.rows <= MAX_ROWS);

    nsc_trace *tr = nsc_trace_new(m.model);
    build(tr, clean, corrupt, good, bad, &x);
    if (args.graph_out) { // 3a. the graph as text
        example_graph_write(tr, NULL, args.graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK); // the forward, then the backward inside it
    show(tr, &x, args.svg);

    nsc_trace_free(tr);
    nsc_free(clean);
    nsc_free(corrupt);
    example_model_free(&m);
    return 0;
}
