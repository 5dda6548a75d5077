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
#include <stdlib.h>
#include <string.h>

#include "examples/svg.h"
#include "nsc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "attribution_patching: %s failed: %s\n", #cond, nsc_last_error());     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum {
    MAX_ROWS = 8,
    MAX_T = 24
};

static const char *CLEAN = "qzkfebmw|qzk", *CORRUPT = "qzkxebmw|qzk";

static nsc_tensor *encode(const nsc_tokenizer *tok, const char *text) {
    nsc_tensor *flat = nsc_tokenizer_encode_tensor(tok, text, strlen(text));
    CHECK(flat && nsc_tensor_numel(flat) <= MAX_T);
    nsc_tensor *ids = nsc_reshape(flat, NSC_SHAPE(1, nsc_tensor_numel(flat)));
    nsc_free(flat);
    return ids;
}

static nsc_tensor *logit_diff(nsc_invoke *inv, int64_t good, int64_t bad) {
    nsc_tensor *last = nsc_select(nsc_select(nsc_invoke_output(inv, "", 0), 1, -1), 0, 0); // [V]
    return nsc_sub(nsc_select(last, 0, good), nsc_select(last, 0, bad));                   // []
}

int main(int argc, char **argv) {
    const char *dir = "models/induction", *svg = "attribution_patching.svg", *graph_out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--svg") == 0 && i + 1 < argc) {
            svg = argv[++i];
        } else if (strcmp(argv[i], "--graph-out") == 0 && i + 1 < argc) {
            graph_out = argv[++i];
        } else {
            dir = argv[i];
        }
    }
    nsc_module *model = nsc_gpt2_load(dir);
    nsc_tokenizer *tok = nsc_tokenizer_load(dir);
    CHECK(model && tok);
    nsc_gpt2_config config;
    CHECK(nsc_gpt2_get_config(model, &config) == NSC_OK && config.n_layer + 1 <= MAX_ROWS);
    nsc_tensor *clean = encode(tok, CLEAN), *corrupt = encode(tok, CORRUPT);
    int64_t t_len = nsc_tensor_size(clean, 1);
    int64_t good = nsc_tokenizer_token_id(tok, "f"), bad = nsc_tokenizer_token_id(tok, "x");
    int rows = (int)config.n_layer + 1;

    // --- 1-2. two invokes, the metric, its backward, gradient x difference ---
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv_clean = nsc_trace_invoke(tr, 1, &clean);
    nsc_invoke *inv_corrupt = nsc_trace_invoke(tr, 1, &corrupt);
    char names[MAX_ROWS][16], name[48];
    nsc_tensor *attribution[MAX_ROWS];
    for (int r = 0; r < rows; r++) {
        char point[32];
        snprintf(point, sizeof point, r ? "transformer.h.%d" : "transformer.drop", r - 1);
        snprintf(names[r], sizeof names[r], r ? "h.%d" : "embed", r - 1);
        nsc_tensor *h_clean = nsc_invoke_output(inv_clean, point, 0);     // [1, T, C]
        nsc_tensor *h_corrupt = nsc_invoke_output(inv_corrupt, point, 0); // [1, T, C]
        nsc_tensor *grad = nsc_proxy_grad(h_corrupt); // d metric / d h, in the backward below
        nsc_tensor *delta = nsc_sub(h_clean, h_corrupt);
        attribution[r] = nsc_sum(nsc_mul(delta, grad), 1, (int[]){ -1 }, false); // [1, T]
        snprintf(name, sizeof name, "attribution.%s", names[r]);
        CHECK(nsc_save_as(attribution[r], name));
    }
    nsc_tensor *ld_clean = nsc_save_as(logit_diff(inv_clean, good, bad), "ld.clean");
    nsc_tensor *ld_corrupt = nsc_save_as(logit_diff(inv_corrupt, good, bad), "ld.corrupt");
    CHECK(nsc_trace_backward(ld_corrupt, false)); // one backward for every layer's gradient

    // --- 3. the graph as text, then the run ---
    if (graph_out) {
        char *text = nsc_trace_to_text(tr, NULL);
        FILE *f = text ? fopen(graph_out, "w") : NULL;
        CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
        printf("wrote the graph to %s\n", graph_out);
        nsc_text_free(text);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK);

    nsc_tensor *vc = nsc_trace_get(tr, ld_clean), *vx = nsc_trace_get(tr, ld_corrupt);
    CHECK(vc && vx);
    double lc = nsc_tensor_item(vc), lx = nsc_tensor_item(vx);
    double cells[MAX_ROWS * MAX_T];
    char tokens[MAX_T][8], numbers[MAX_ROWS * MAX_T][8];
    const char *row_labels[MAX_ROWS], *col_labels[MAX_T], *cell_labels[MAX_ROWS * MAX_T];
    printf("Attribution patching, clean \"%s\" -> corrupted \"%s\" (%s)\n", CLEAN, CORRUPT, dir);
    printf("logit(f) - logit(x): clean %.3f, corrupted %.3f; a cell is gradient x (clean - "
           "corrupted), as a fraction of the difference\n\n%-6s",
           lc, lx, "layer");
    for (int64_t p = 0; p < t_len; p++) {
        snprintf(tokens[p], sizeof tokens[p], "%c%c", CLEAN[p], CLEAN[p] == CORRUPT[p] ? ' ' : '*');
        col_labels[p] = tokens[p];
        printf(" %6s", tokens[p]);
    }
    printf("\n");
    for (int r = 0; r < rows; r++) {
        nsc_tensor *a = nsc_trace_get(tr, attribution[r]);
        CHECK(a);
        row_labels[r] = names[r];
        printf("%-6s", names[r]);
        for (int64_t p = 0; p < t_len; p++) {
            int k = r * (int)t_len + (int)p;
            cells[k] = (double)((const float *)nsc_tensor_data(a))[p] / (lc - lx);
            snprintf(numbers[k], sizeof numbers[k], fabs(cells[k]) >= 0.05 ? "%.2f" : "", cells[k]);
            cell_labels[k] = numbers[k];
            printf(" %6.2f", cells[k]);
        }
        printf("\n");
        nsc_free(a);
    }
    svg_heatmap map = { "Attribution patching: patching to first order, one backward pass",
                        "clean \"qzkfebmw|qzk\" -> corrupted \"qzkxebmw|qzk\"; cell = "
                        "sum_c (h_clean - h_corrupt) * d(logit f - logit x)/dh",
                        "position (clean token)",
                        "layer",
                        rows,
                        (int)t_len,
                        cells,
                        row_labels,
                        col_labels,
                        cell_labels,
                        -1,
                        1,
                        true,
                        "estimated fraction restored" };
    CHECK(svg_heatmap_write(svg, &map) == 0);
    printf("\nheatmap: %s (compare with patching.svg: a linear estimate finds the same cells but "
           "undershoots where the effect passes through saturating softmax and layer norm)\n",
           svg);

    nsc_free(vc);
    nsc_free(vx);
    nsc_trace_free(tr);
    nsc_free(clean);
    nsc_free(corrupt);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return 0;
}
