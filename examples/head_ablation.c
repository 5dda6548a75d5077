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

// The mean cross-entropy of an invoke's predictions of the second copy:
// positions len .. 2 len - 1 predict its letters.
static nsc_tensor *copy_loss(nsc_invoke *inv, nsc_tensor *targets, int64_t len, int64_t vocab) {
    nsc_tensor *logits = nsc_narrow(nsc_invoke_output(inv, "", 0), 1, len, len); // [1, len, V]
    nsc_tensor *rows = nsc_reshape(logits, NSC_SHAPE(len, vocab));               // [len, V]
    return nsc_cross_entropy(rows, targets, NSC_REDUCTION_MEAN, -100);           // []
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
    CHECK(model && tok);
    nsc_gpt2_config c;
    CHECK(nsc_gpt2_get_config(model, &c) == NSC_OK);
    int layers = (int)c.n_layer, heads = (int)c.n_head;
    CHECK(layers <= MAX_LAYERS && heads <= MAX_HEADS && 1 + layers * heads <= 64);
    // Input: the text without its last letter; targets: the second copy.
    int64_t len = (int64_t)(strlen(TEXT) - 1) / 2;
    nsc_tensor *all = nsc_tokenizer_encode_tensor(tok, TEXT, strlen(TEXT)); // [2 len + 1]
    CHECK(all);
    nsc_tensor *input = nsc_narrow(all, 0, 0, 2 * len);
    nsc_tensor *ids = nsc_reshape(input, NSC_SHAPE(1, 2 * len)); // [1, T]
    nsc_tensor *targets = nsc_narrow(all, 0, len + 1, len);      // [len]

    // --- 1-3. a baseline invoke and one invoke per head with that head zeroed ---
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *base = nsc_trace_invoke(tr, 1, &ids), *ablated[MAX_LAYERS][MAX_HEADS];
    for (int l = 0; l < layers; l++) {
        for (int h = 0; h < heads; h++) {
            ablated[l][h] = nsc_trace_invoke(tr, 1, &ids);
        }
    }
    nsc_tensor *base_loss = nsc_save_as(copy_loss(base, targets, len, c.vocab_size), "loss.base");
    nsc_tensor *loss[MAX_LAYERS][MAX_HEADS];
    for (int l = 0; l < layers; l++) {
        char point[64], name[32];
        snprintf(point, sizeof point, "transformer.h.%d.attn.hook_z", l);
        for (int h = 0; h < heads; h++) {
            nsc_tensor *z = nsc_invoke_output(ablated[l][h], point, 0); // [1, T, H, D]
            CHECK(nsc_zero_(nsc_select(z, 2, h)) == NSC_OK);            // head h's [1, T, D]
            snprintf(name, sizeof name, "loss.%d.%d", l, h);
            loss[l][h] = nsc_save_as(copy_loss(ablated[l][h], targets, len, c.vocab_size), name);
        }
    }
    CHECK(loss[layers - 1][heads - 1]);

    // --- 4. the graph as text, then the run ---
    if (graph_out) {
        char *text = nsc_trace_to_text(tr, NULL);
        FILE *f = text ? fopen(graph_out, "w") : NULL;
        CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
        printf("wrote the graph to %s\n", graph_out);
        nsc_text_free(text);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK);

    nsc_tensor *b = nsc_trace_get(tr, base_loss);
    CHECK(b);
    double base_value = nsc_tensor_item(b);
    double cells[MAX_LAYERS * MAX_HEADS];
    char row_names[MAX_LAYERS][16], col_names[MAX_HEADS][16], numbers[MAX_LAYERS * MAX_HEADS][12];
    const char *rows[MAX_LAYERS], *cols[MAX_HEADS], *labels[MAX_LAYERS * MAX_HEADS];
    printf("Head ablation on \"%s\" (%s): loss on the second copy %.3f; each cell is the rise "
           "when that head's output (hook_z) is zeroed\n\n%-8s",
           TEXT, dir, base_value, "");
    for (int h = 0; h < heads; h++) {
        snprintf(col_names[h], sizeof col_names[h], "head %d", h);
        cols[h] = col_names[h];
        printf(" %8s", col_names[h]);
    }
    printf("\n");
    for (int l = 0; l < layers; l++) {
        snprintf(row_names[l], sizeof row_names[l], "layer %d", l);
        rows[l] = row_names[l];
        printf("%-8s", row_names[l]);
        for (int h = 0; h < heads; h++) {
            nsc_tensor *v = nsc_trace_get(tr, loss[l][h]);
            CHECK(v);
            int k = l * heads + h;
            cells[k] = nsc_tensor_item(v) - base_value;
            snprintf(numbers[k], sizeof numbers[k], "%+.2f", cells[k]);
            labels[k] = numbers[k];
            printf(" %8.3f", cells[k]);
            nsc_free(v);
        }
        printf("\n");
    }
    svg_heatmap map = { "Head ablation: the loss rise when one head is zeroed",
                        "loss = cross-entropy on the second copy of \"qzkfebmw|qzkfebmw\"",
                        "head",
                        "layer",
                        layers,
                        heads,
                        cells,
                        rows,
                        cols,
                        labels,
                        0,
                        0,
                        true,
                        "loss rise (nats)" };
    CHECK(svg_heatmap_write(svg, &map) == 0);
    printf("\nheatmap: %s\n", svg);

    nsc_free(b);
    nsc_trace_free(tr);
    nsc_free(targets);
    nsc_free(ids);
    nsc_free(input);
    nsc_free(all);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return 0;
}
