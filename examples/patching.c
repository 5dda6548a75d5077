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
// Expected on the shipped model: the corrupted position recovers it at the
// embeddings and after block 0 (the induction head in block 1 reads it
// there), the last position after block 1; everything else stays near 0.
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
#include <stdlib.h>
#include <string.h>

#include "examples/svg.h"
#include "nsc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "patching: %s failed: %s\n", #cond, nsc_last_error());                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

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

static nsc_tensor *encode(const nsc_tokenizer *tok, const char *text) {
    nsc_tensor *flat = nsc_tokenizer_encode_tensor(tok, text, strlen(text));
    CHECK(flat && nsc_tensor_numel(flat) <= MAX_T);
    nsc_tensor *ids = nsc_reshape(flat, NSC_SHAPE(1, nsc_tensor_numel(flat)));
    nsc_free(flat);
    return ids;
}

// logit(good) - logit(bad) at the last position of an invoke's logits [1, T, V].
static nsc_tensor *logit_diff(nsc_invoke *inv, int64_t good, int64_t bad) {
    nsc_tensor *last = nsc_select(nsc_select(nsc_invoke_output(inv, "", 0), 1, -1), 0, 0); // [V]
    return nsc_sub(nsc_select(last, 0, good), nsc_select(last, 0, bad));                   // []
}

static double value_of(nsc_trace *tr, nsc_tensor *proxy) {
    nsc_tensor *v = nsc_trace_get(tr, proxy);
    CHECK(v);
    double x = nsc_tensor_item(v);
    nsc_free(v);
    return x;
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

// --- 4. the graph as text (the prompts inline) ---
static void write_graph(nsc_trace *tr, const char *path) {
    char *text = nsc_trace_to_text(tr, NULL);
    FILE *f = text ? fopen(path, "w") : NULL;
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
    printf("wrote the graph to %s\n", path);
    nsc_text_free(text);
}

// --- 5. the fraction of the logit difference each patch restores ---
static void show(nsc_trace *tr, const experiment *x, const char *svg) {
    double lc = value_of(tr, x->ld_clean), lx = value_of(tr, x->ld_corrupt);
    static double cells[MAX_ROWS * MAX_T];
    static char tokens[MAX_T][8], numbers[MAX_ROWS * MAX_T][8];
    const char *rows[MAX_ROWS], *cols[MAX_T], *labels[MAX_ROWS * MAX_T];
    printf("Activation patching, clean \"%s\" -> corrupted \"%s\"\n", CLEAN, CORRUPT);
    printf("logit(f) - logit(x): clean %.3f, corrupted %.3f; a cell is the fraction restored by "
           "patching that layer and position\n\n%-6s",
           lc, lx, "layer");
    for (int64_t p = 0; p < x->t_len; p++) {
        snprintf(tokens[p], sizeof tokens[p], "%c%c", CLEAN[p], CLEAN[p] == CORRUPT[p] ? ' ' : '*');
        cols[p] = tokens[p];
        printf(" %6s", tokens[p]);
    }
    for (int r = 0; r < x->rows; r++) {
        rows[r] = x->names[r];
        printf("\n%-6s", rows[r]);
        for (int64_t p = 0; p < x->t_len; p++) {
            int k = r * (int)x->t_len + (int)p;
            cells[k] = (value_of(tr, x->ld[r][p]) - lx) / (lc - lx);
            snprintf(numbers[k], sizeof numbers[k], fabs(cells[k]) >= 0.05 ? "%.2f" : "", cells[k]);
            labels[k] = numbers[k];
            printf(" %6.2f", cells[k]);
        }
    }
    svg_heatmap map = { "Activation patching: where the copied letter lives",
                        "clean \"qzkfebmw|qzk\" -> corrupted \"qzkxebmw|qzk\" (* the changed "
                        "letter); metric logit(f) - logit(x)",
                        "position patched (clean token)",
                        "layer patched",
                        x->rows,
                        (int)x->t_len,
                        cells,
                        rows,
                        cols,
                        labels,
                        -1,
                        1,
                        true,
                        "fraction restored" };
    CHECK(svg_heatmap_write(svg, &map) == 0);
    printf("\n\nheatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    const char *dir = "models/induction", *svg = "patching.svg", *graph_out = NULL;
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
    CHECK(good >= 0 && bad >= 0 && x.rows <= MAX_ROWS && 2 + x.rows * x.t_len <= 64);

    nsc_trace *tr = nsc_trace_new(model); // a trace takes up to 64 invokes
    build(tr, clean, corrupt, good, bad, &x);
    if (graph_out) {
        write_graph(tr, graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK); // one forward pass for every cell
    show(tr, &x, svg);

    nsc_trace_free(tr);
    nsc_free(clean);
    nsc_free(corrupt);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return 0;
}
