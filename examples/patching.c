// patching: where does the model keep the information it copies? Activation
// patching runs a clean and a corrupted prompt, then copies one activation
// (a layer's residual stream at one position) from the clean run into the
// corrupted one and measures how much of the clean answer comes back.
//
// The prompts: clean "qzkfebmw|qzk" continues with "f" (the letter after "k"
// in the first half: induction). The corrupted prompt changes that one
// early letter, "qzkxebmw|qzk", and the model answers "x". The metric is the
// logit difference logit(f) - logit(x) at the last position; a cell shows
// (patched - corrupted) / (clean - corrupted): 1 = fully restored.
// Expected on the shipped model: f* recovers it at the embeddings (1.00), not after block 0
// (0.00: the letter has moved on to m and w, 0.25 and 0.54, where block 1 reads it), the last
// position after block 1 (1.00); the rest stays near 0 (a copy by distance: SHIPPED_MODEL.md).
//
// What it teaches, top to bottom:
//   1. several invokes in one trace, run as one batch (one forward pass);
//   2. patching across invokes: nsc_copy_ of one invoke's rows into another's
//      (an in-place write into a hook point through select views);
//   3. the metric computed inside the graph, saved per invoke;
//   4. the same graph as text for `nsc run`; a table and a heatmap.
//
// Run:  make && build/release/examples/patching [MODEL_DIR] [--svg FILE] [--graph-out FILE]
//       (defaults: models/induction, patching.svg)
// The same graph as text (examples/graphs/patching.json; the prompts are inside it):
//       build/release/nsc run --graph examples/graphs/patching.json
#include <math.h>
#include <stdio.h>

#include "examples/common.h"

const char example_name[] = "patching";

enum {
    MAX_ROWS = 8,
    MAX_T = 24
};

static const char *CLEAN = "qzkfebmw|qzk", *CORRUPT = "qzkxebmw|qzk";

// The experiment: rows are the embeddings and each block's output; cell
// (r, p) is an invoke of the corrupted prompt patched at row r, position p.
typedef struct experiment {
    int rows;
    int64_t t_len;
    char names[MAX_ROWS][16];
    nsc_tensor *ld_clean, *ld_corrupt, *ld[MAX_ROWS][MAX_T]; // saved proxies
} experiment;

// logit(good) - logit(bad) at the last position of an invoke's logits [1, T, V].
static nsc_tensor *logit_diff(nsc_invoke *inv, int64_t good, int64_t bad) {
    nsc_tensor *last = nsc_select(nsc_select(nsc_invoke_output(inv, "", 0), 1, -1), 0, 0); // [V]
    return nsc_sub(nsc_select(last, 0, good), nsc_select(last, 0, bad));                   // []
}

// --- 1-3. invokes (clean, corrupted, one patched copy per cell), patches, metric ---
static void build(nsc_trace *tr, nsc_tensor *clean, nsc_tensor *corrupt, int64_t good, int64_t bad,
                  experiment *x) {
    nsc_invoke *inv_clean = nsc_trace_invoke(tr, 1, &clean);
    nsc_invoke *inv_corrupt = nsc_trace_invoke(tr, 1, &corrupt);
    nsc_invoke *patched[MAX_ROWS][MAX_T];
    for (int r = 0; r < x->rows; r++) { // every invoke first: they form the batch
        for (int64_t p = 0; p < x->t_len; p++) {
            patched[r][p] = nsc_trace_invoke(tr, 1, &corrupt);
        }
    }
    x->ld_clean = nsc_save_as(logit_diff(inv_clean, good, bad), "ld.clean");
    x->ld_corrupt = nsc_save_as(logit_diff(inv_corrupt, good, bad), "ld.corrupt");
    for (int r = 0; r < x->rows; r++) {
        char point[32], name[64];
        snprintf(point, sizeof point, r ? "transformer.h.%d" : "transformer.drop", r - 1);
        snprintf(x->names[r], sizeof x->names[r], r ? "h.%d" : "embed", r - 1);
        nsc_tensor *source = nsc_invoke_output(inv_clean, point, 0); // [1, T, C]
        for (int64_t p = 0; p < x->t_len; p++) {
            nsc_tensor *target = nsc_invoke_output(patched[r][p], point, 0);
            CHECK(nsc_copy_(nsc_select(target, 1, p), nsc_select(source, 1, p)) == NSC_OK);
            snprintf(name, sizeof name, "ld.%s.%lld", x->names[r], (long long)p);
            x->ld[r][p] = nsc_save_as(logit_diff(patched[r][p], good, bad), name);
        }
    }
    CHECK(x->ld[x->rows - 1][x->t_len - 1]);
}

// --- 5. the fraction of the logit difference each patch restores ---
static void show(nsc_trace *tr, const experiment *x, const char *svg) {
    double lc = example_trace_get_scalar(tr, x->ld_clean);
    double lx = example_trace_get_scalar(tr, x->ld_corrupt);
    static example_grid g;
    example_grid_init(&g, x->rows, (int)x->t_len);
    printf("Activation patching, clean \"%s\" -> corrupted \"%s\"\n", CLEAN, CORRUPT);
    printf("logit(f) - logit(x): clean %.3f, corrupted %.3f; a cell is the fraction restored by "
           "patching that layer and position\n\n",
           lc, lx);
    for (int p = 0; p < g.n_cols; p++) { // the changed letter starred
        example_grid_set_col_name(&g, p, "%c%c", CLEAN[p], CLEAN[p] == CORRUPT[p] ? ' ' : '*');
    }
    example_grid_print_header(&g, "layer", 6);
    for (int r = 0; r < g.n_rows; r++) {
        example_grid_set_row_name(&g, r, "%s", x->names[r]);
        example_grid_print_row_name(&g, r, 6);
        for (int p = 0; p < g.n_cols; p++) {
            double restored = (example_trace_get_scalar(tr, x->ld[r][p]) - lx) / (lc - lx);
            example_grid_set_cell(&g, r, p, restored, fabs(restored) >= 0.05 ? "%.2f" : "",
                                  restored);
            printf(" %6.2f", restored);
        }
    }
    svg_heatmap map = { .title = "Activation patching: where the copied letter lives",
                        .subtitle = "clean \"qzkfebmw|qzk\" -> corrupted \"qzkxebmw|qzk\" (* the "
                                    "changed letter); metric logit(f) - logit(x)",
                        .x_label = "position patched (clean token)",
                        .y_label = "layer patched",
                        .lo = -1,
                        .hi = 1,
                        .diverging = true,
                        .scale_label = "fraction restored" };
    example_grid_write_svg(&g, map, svg);
    printf("\n\nheatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    example_args args = example_args_parse(argc, argv, "patching.svg", NULL);
    example_model m = example_model_load(args.model_dir);
    nsc_tensor *clean = example_prompt_encode(m.tok, CLEAN, MAX_T);
    nsc_tensor *corrupt = example_prompt_encode(m.tok, CORRUPT, MAX_T);
    experiment x = { .rows = (int)m.config.n_layer + 1, .t_len = nsc_tensor_size(clean, 1) };
    int64_t good = nsc_tokenizer_token_id(m.tok, "f"), bad = nsc_tokenizer_token_id(m.tok, "x");
    CHECK(good >= 0 && bad >= 0 && x.rows <= MAX_ROWS && 2 + x.rows * x.t_len <= 64);

    nsc_trace *tr = nsc_trace_new(m.model); // a trace takes up to 64 invokes
    build(tr, clean, corrupt, good, bad, &x);
    if (args.graph_out) { // 4. the graph as text, the prompts inline
        example_graph_write(tr, NULL, args.graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK); // one forward pass for every cell
    show(tr, &x, args.svg);

    nsc_trace_free(tr);
    nsc_free(clean);
    nsc_free(corrupt);
    example_model_free(&m);
    return 0;
}
