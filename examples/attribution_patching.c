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

// Rows are the embeddings and each block's output.
typedef struct experiment {
    int rows;
    int64_t t_len;
    char names[MAX_ROWS][16];
    nsc_tensor *ld_clean, *ld_corrupt, *attribution[MAX_ROWS]; // saved proxies
} experiment;

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

// --- 3a. the graph as text ---
static void write_graph(nsc_trace *tr, const char *path) {
    char *text = nsc_trace_to_text(tr, NULL);
    FILE *f = text ? fopen(path, "w") : NULL;
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
    printf("wrote the graph to %s\n", path);
    nsc_text_free(text);
}

static double value_of(nsc_trace *tr, nsc_tensor *proxy) {
    nsc_tensor *v = nsc_trace_get(tr, proxy);
    CHECK(v);
    double x = nsc_tensor_item(v);
    nsc_free(v);
    return x;
}

// --- 3b. the estimates, as fractions of the clean - corrupted difference ---
static void show(nsc_trace *tr, const experiment *x, const char *svg) {
    double lc = value_of(tr, x->ld_clean), lx = value_of(tr, x->ld_corrupt);
    static double cells[MAX_ROWS * MAX_T];
    static char tokens[MAX_T][8], numbers[MAX_ROWS * MAX_T][8];
    const char *rows[MAX_ROWS], *cols[MAX_T], *labels[MAX_ROWS * MAX_T];
    printf("Attribution patching, clean \"%s\" -> corrupted \"%s\"\n", CLEAN, CORRUPT);
    printf("logit(f) - logit(x): clean %.3f, corrupted %.3f; a cell is gradient x (clean - "
           "corrupted), as a fraction of the difference\n\n%-6s",
           lc, lx, "layer");
    for (int64_t p = 0; p < x->t_len; p++) {
        snprintf(tokens[p], sizeof tokens[p], "%c%c", CLEAN[p], CLEAN[p] == CORRUPT[p] ? ' ' : '*');
        cols[p] = tokens[p];
        printf(" %6s", tokens[p]);
    }
    for (int r = 0; r < x->rows; r++) {
        nsc_tensor *a = nsc_trace_get(tr, x->attribution[r]);
        CHECK(a);
        rows[r] = x->names[r];
        printf("\n%-6s", rows[r]);
        for (int64_t p = 0; p < x->t_len; p++) {
            int k = r * (int)x->t_len + (int)p;
            cells[k] = (double)((const float *)nsc_tensor_data(a))[p] / (lc - lx);
            snprintf(numbers[k], sizeof numbers[k], fabs(cells[k]) >= 0.05 ? "%.2f" : "", cells[k]);
            labels[k] = numbers[k];
            printf(" %6.2f", cells[k]);
        }
        nsc_free(a);
    }
    svg_heatmap map = { "Attribution patching: patching to first order, one backward pass",
                        "clean \"qzkfebmw|qzk\" -> corrupted \"qzkxebmw|qzk\"; cell = "
                        "sum_c (h_clean - h_corrupt) * d(logit f - logit x)/dh",
                        "position (clean token)",
                        "layer",
                        x->rows,
                        (int)x->t_len,
                        cells,
                        rows,
                        cols,
                        labels,
                        -1,
                        1,
                        true,
                        "estimated fraction restored" };
    CHECK(svg_heatmap_write(svg, &map) == 0);
    printf("\n\nheatmap: %s (compare with patching.svg: a linear estimate finds the same cells "
           "but undershoots where the effect passes through saturating softmax and layer "
           "norm)\n",
           svg);
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
    nsc_gpt2_config config;
    CHECK(model && tok && nsc_gpt2_get_config(model, &config) == NSC_OK);
    nsc_tensor *clean = encode(tok, CLEAN), *corrupt = encode(tok, CORRUPT);
    experiment x = { .rows = (int)config.n_layer + 1, .t_len = nsc_tensor_size(clean, 1) };
    int64_t good = nsc_tokenizer_token_id(tok, "f"), bad = nsc_tokenizer_token_id(tok, "x");
    CHECK(good >= 0 && bad >= 0 && x.rows <= MAX_ROWS);

    nsc_trace *tr = nsc_trace_new(model);
    build(tr, clean, corrupt, good, bad, &x);
    if (graph_out) {
        write_graph(tr, graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK); // the forward, then the backward inside it
    show(tr, &x, svg);

    nsc_trace_free(tr);
    nsc_free(clean);
    nsc_free(corrupt);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return 0;
}
