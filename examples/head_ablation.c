// head_ablation: which attention heads does copying need? Zero one head's
// output at a time and measure how much the loss on the copied half of
// "s|s" rises. On the shipped model head 0 of layer 0 stands out (+2.2), then head 3 of layer 1
// (+0.87) and head 2 of layer 0 (+0.59), the rest under 0.35: no previous-token head and
// induction head pair, since the model copies by distance (docs/SHIPPED_MODEL.md).
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
#include <string.h>

#include "examples/common.h"

const char example_name[] = "head_ablation";

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

// --- 4b. the loss rise per head: a table and a heatmap ---
static void show(nsc_trace *tr, const experiment *x, const char *svg) {
    double base = example_trace_get_scalar(tr, x->base_loss);
    static example_grid g;
    example_grid_init(&g, x->layers, x->heads);
    printf("Head ablation on \"%s\": loss on the second copy %.3f; each cell is the rise when "
           "that head's output (hook_z) is zeroed\n\n",
           TEXT, base);
    for (int h = 0; h < x->heads; h++) {
        example_grid_set_col_name(&g, h, "head %d", h);
    }
    example_grid_print_header(&g, "", 8);
    for (int l = 0; l < x->layers; l++) {
        example_grid_set_row_name(&g, l, "layer %d", l);
        example_grid_print_row_name(&g, l, 8);
        for (int h = 0; h < x->heads; h++) {
            double rise = example_trace_get_scalar(tr, x->loss[l][h]) - base;
            example_grid_set_cell(&g, l, h, rise, "%+.2f", rise);
            printf(" %8.3f", rise);
        }
    }
    svg_heatmap map = { .title = "Head ablation: the loss rise when one head is zeroed",
                        .subtitle =
                            "loss = cross-entropy on the second copy of \"qzkfebmw|qzkfebmw\"",
                        .x_label = "head",
                        .y_label = "layer",
                        .lo = 0,
                        .hi = 0, // the data's range
                        .diverging = true,
                        .scale_label = "loss rise (nats)" };
    example_grid_write_svg(&g, map, svg);
    printf("\n\nheatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    example_args args = example_args_parse(argc, argv, "head_ablation.svg", NULL);
    example_model m = example_model_load(args.model_dir);
    experiment x = { .layers = (int)m.config.n_layer,
                     .heads = (int)m.config.n_head,
                     .len = (int64_t)(strlen(TEXT) - 1) / 2,
                     .vocab = m.config.vocab_size };
    CHECK(x.layers <= MAX_LAYERS && x.heads <= MAX_HEADS && 1 + x.layers * x.heads <= 64);
    // Input: the text without its last letter; targets: the second copy.
    nsc_tensor *all = nsc_tokenizer_encode_tensor(m.tok, TEXT, strlen(TEXT)); // [2 len + 1]
    CHECK(all);
    nsc_tensor *input = nsc_narrow(all, 0, 0, 2 * x.len);
    nsc_tensor *ids = nsc_reshape(input, NSC_SHAPE(1, 2 * x.len)); // [1, T]
    nsc_tensor *targets = nsc_narrow(all, 0, x.len + 1, x.len);    // [len]

    nsc_trace *tr = nsc_trace_new(m.model);
    build(tr, ids, targets, &x);
    if (args.graph_out) { // 4a. the graph as text
        example_graph_write(tr, NULL, args.graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK);
    show(tr, &x, args.svg);

    nsc_trace_free(tr);
    nsc_free(targets);
    nsc_free(ids);
    nsc_free(input);
    nsc_free(all);
    example_model_free(&m);
    return 0;
}
