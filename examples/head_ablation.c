// head_ablation: which attention heads does copying need? Zero one head's
// output at a time and measure how much the loss on the copied half of
// "s|s" rises. On the shipped induction model the previous-token head of
// layer 0 and the induction head of layer 1 stand out; the others barely
// matter.
//
// What it teaches, top to bottom:
//   1. hook points inside a module's forward: GPT-2's per-head attention
//      result transformer.h.L.attn.hook_z [B, T, H, D] (docs/MODELS.md);
//   2. an in-place edit of one head through views (nsc_zero_ of a select),
//      one invoke per ablation, all in one forward pass;
//   3. a loss computed inside the graph per invoke (cross_entropy on the
//      predictions of the second copy), saved by name;
//   4. the same graph as text for `nsc run`; a table and a heatmap.
//
// Run:  make && build/release/examples/head_ablation [MODEL_DIR] [--svg FILE] [--graph-out FILE]
//       (defaults: models/induction, head_ablation.svg)
// The same graph as text: build/release/nsc run --graph examples/graphs/head_ablation.json
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/svg.h"
#include "nsc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "head_ablation: %s failed: %s\n", #cond, nsc_last_error());            \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum {
    MAX_LAYERS = 8,
    MAX_HEADS = 16
};

static const char *TEXT = "qzkfebmw|qzkfebmw"; // s | s: the second copy is predictable

typedef struct experiment {
    int layers, heads;
    int64_t len, vocab;                                  // len: the string's length
    nsc_tensor *base_loss, *loss[MAX_LAYERS][MAX_HEADS]; // saved proxies
} experiment;

// The mean cross-entropy of an invoke's predictions of the second copy:
// positions len .. 2 len - 1 predict its letters.
static nsc_tensor *copy_loss(nsc_invoke *inv, nsc_tensor *targets, const experiment *x) {
    nsc_tensor *logits = nsc_narrow(nsc_invoke_output(inv, "", 0), 1, x->len, x->len);
    nsc_tensor *rows = nsc_reshape(logits, NSC_SHAPE(x->len, x->vocab)); // [len, V]
    return nsc_cross_entropy(rows, targets, NSC_REDUCTION_MEAN, -100);   // []
}

// --- 1-3. a baseline invoke and one invoke per head with that head zeroed ---
static void build(nsc_trace *tr, nsc_tensor *ids, nsc_tensor *targets, experiment *x) {
    nsc_invoke *base = nsc_trace_invoke(tr, 1, &ids), *ablated[MAX_LAYERS][MAX_HEADS];
    for (int l = 0; l < x->layers; l++) {
        for (int h = 0; h < x->heads; h++) {
            ablated[l][h] = nsc_trace_invoke(tr, 1, &ids);
        }
    }
    x->base_loss = nsc_save_as(copy_loss(base, targets, x), "loss.base");
    for (int l = 0; l < x->layers; l++) {
        char point[64], name[32];
        snprintf(point, sizeof point, "transformer.h.%d.attn.hook_z", l);
        for (int h = 0; h < x->heads; h++) {
            nsc_tensor *z = nsc_invoke_output(ablated[l][h], point, 0); // [1, T, H, D]
            CHECK(nsc_zero_(nsc_select(z, 2, h)) == NSC_OK);            // head h's [1, T, D]
            snprintf(name, sizeof name, "loss.%d.%d", l, h);
            x->loss[l][h] = nsc_save_as(copy_loss(ablated[l][h], targets, x), name);
        }
    }
    CHECK(x->loss[x->layers - 1][x->heads - 1]);
}

// --- 4a. the graph as text ---
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
    double value = nsc_tensor_item(v);
    nsc_free(v);
    return value;
}

// --- 4b. the loss rise per head: a table and a heatmap ---
static void show(nsc_trace *tr, const experiment *x, const char *svg) {
    double base = value_of(tr, x->base_loss), cells[MAX_LAYERS * MAX_HEADS];
    char row_names[MAX_LAYERS][24], col_names[MAX_HEADS][24], numbers[MAX_LAYERS * MAX_HEADS][12];
    const char *rows[MAX_LAYERS], *cols[MAX_HEADS], *labels[MAX_LAYERS * MAX_HEADS];
    printf("Head ablation on \"%s\": loss on the second copy %.3f; each cell is the rise when "
           "that head's output (hook_z) is zeroed\n\n%-8s",
           TEXT, base, "");
    for (int h = 0; h < x->heads; h++) {
        snprintf(col_names[h], sizeof col_names[h], "head %d", h);
        cols[h] = col_names[h];
        printf(" %8s", col_names[h]);
    }
    for (int l = 0; l < x->layers; l++) {
        snprintf(row_names[l], sizeof row_names[l], "layer %d", l);
        rows[l] = row_names[l];
        printf("\n%-8s", row_names[l]);
        for (int h = 0; h < x->heads; h++) {
            int k = l * x->heads + h;
            cells[k] = value_of(tr, x->loss[l][h]) - base;
            snprintf(numbers[k], sizeof numbers[k], "%+.2f", cells[k]);
            labels[k] = numbers[k];
            printf(" %8.3f", cells[k]);
        }
    }
    svg_heatmap map = { "Head ablation: the loss rise when one head is zeroed",
                        "loss = cross-entropy on the second copy of \"qzkfebmw|qzkfebmw\"",
                        "head",
                        "layer",
                        x->layers,
                        x->heads,
                        cells,
                        rows,
                        cols,
                        labels,
                        0,
                        0,
                        true,
                        "loss rise (nats)" };
    CHECK(svg_heatmap_write(svg, &map) == 0);
    printf("\n\nheatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    const char *dir = "models/induction", *svg = "head_ablation.svg", *graph_out = NULL;
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
    nsc_gpt2_config c;
    CHECK(model && tok && nsc_gpt2_get_config(model, &c) == NSC_OK);
    experiment x = { .layers = (int)c.n_layer,
                     .heads = (int)c.n_head,
                     .len = (int64_t)(strlen(TEXT) - 1) / 2,
                     .vocab = c.vocab_size };
    CHECK(x.layers <= MAX_LAYERS && x.heads <= MAX_HEADS && 1 + x.layers * x.heads <= 64);
    // Input: the text without its last letter; targets: the second copy.
    nsc_tensor *all = nsc_tokenizer_encode_tensor(tok, TEXT, strlen(TEXT)); // [2 len + 1]
    CHECK(all);
    nsc_tensor *input = nsc_narrow(all, 0, 0, 2 * x.len);
    nsc_tensor *ids = nsc_reshape(input, NSC_SHAPE(1, 2 * x.len)); // [1, T]
    nsc_tensor *targets = nsc_narrow(all, 0, x.len + 1, x.len);    // [len]

    nsc_trace *tr = nsc_trace_new(model);
    build(tr, ids, targets, &x);
    if (graph_out) {
        write_graph(tr, graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK);
    show(tr, &x, svg);

    nsc_trace_free(tr);
    nsc_free(targets);
    nsc_free(ids);
    nsc_free(input);
    nsc_free(all);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return 0;
}
