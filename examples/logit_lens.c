// logit_lens: what would the model predict if it stopped after each layer?
// The logit lens (nostalgebraist, 2020) reads an intermediate residual stream
// out through the model's own final layer norm and unembedding; on the
// shipped induction model (strings "s|s": a random string, a separator, the same string again)
// it shows the copy only after the last layer: every letter of the second copy guessed at 99%
// after block 1, none after block 0 (a copy by distance, no induction head: SHIPPED_MODEL.md).
//
// What it teaches, top to bottom:
//   1. a trace with one invoke, and hook-point reads (nsc_invoke_output);
//   2. ApplyModule: the final layer norm and the unembedding called on an
//      intermediate value inside the graph (nsc_trace_apply; nnsight's
//      model.lm_head(model.transformer.ln_f(h))), without firing hooks;
//   3. tensor ops on proxies (softmax, max_dim) and named saves (nsc_save_as);
//   4. the same intervention written as a graph text that `nsc run` runs;
//   5. reading the saved values after the run: a table and a heatmap.
//
// Run:  make && build/release/examples/logit_lens [MODEL_DIR] [--prompt TEXT]
//           [--svg FILE] [--graph-out FILE]
//       (defaults: models/induction, "qzkfebmw|qzkf", logit_lens.svg)
// The same graph as text (examples/graphs/logit_lens.json, written by --graph-out):
//       build/release/nsc run --graph examples/graphs/logit_lens.json --prompt "qzkfebmw|qzkf"
#include <stdio.h>
#include <string.h>

#include "examples/common.h"

const char example_name[] = "logit_lens";

enum {
    MAX_LAYERS = 32,
    MAX_T = 64
};

// The readouts of one run: per layer, the top token [1, T] and its probability.
typedef struct lens {
    int n_layers; // the embeddings, then one per block
    char names[MAX_LAYERS][16];
    nsc_tensor *top[MAX_LAYERS], *prob[MAX_LAYERS]; // proxies, owned by the trace
} lens;

// A token as text ("\n" shown as \n).
static const char *token_text(const nsc_tokenizer *tok, int64_t id) {
    const char *t = nsc_tokenizer_token(tok, id);
    return !t ? "?" : strcmp(t, "\n") == 0 ? "\\n" : t;
}

static int64_t value_at(nsc_tensor *t, int64_t i) {
    return ((const int64_t *)nsc_tensor_data(t))[i];
}

// --- 1-3. the graph: one readout per layer ---
// Layer 0 is the embeddings (transformer.drop's output); layer l > 0 the
// residual stream after block l - 1.
static void build_lens(nsc_trace *tr, nsc_invoke *inv, int n_blocks, lens *out) {
    out->n_layers = n_blocks + 1;
    for (int l = 0; l < out->n_layers; l++) {
        char point[32], name[48];
        snprintf(point, sizeof point, l ? "transformer.h.%d" : "transformer.drop", l - 1);
        snprintf(out->names[l], sizeof out->names[l], l ? "h.%d" : "embed", l - 1);
        nsc_tensor *h = nsc_invoke_output(inv, point, 0);                            // [1, T, C]
        nsc_tensor *normed = nsc_trace_apply(tr, "transformer.ln_f", h);             // [1, T, C]
        nsc_tensor *probs = nsc_softmax(nsc_trace_apply(tr, "lm_head", normed), -1); // [1, T, V]
        CHECK(nsc_max_dim(probs, -1, false, &out->prob[l], &out->top[l]) == NSC_OK); // [1, T]
        snprintf(name, sizeof name, "top.%s", out->names[l]);
        nsc_save_as(out->top[l], name);
        snprintf(name, sizeof name, "prob.%s", out->names[l]);
        CHECK(nsc_save_as(out->prob[l], name));
    }
}

// --- 5. the values: a table and a heatmap ---
static void show(nsc_trace *tr, const lens *ln, const nsc_tokenizer *tok, nsc_tensor *ids,
                 const char *prompt, const char *svg) {
    static example_grid g;
    example_grid_init(&g, ln->n_layers, (int)nsc_tensor_size(ids, 1));
    printf("Logit lens on \"%s\": the top next-token guess after each layer, and its "
           "probability\n\n",
           prompt);
    for (int t = 0; t < g.n_cols; t++) {
        g.col_names[t] = token_text(tok, value_at(ids, t)); // borrowed: tokens can be long
    }
    example_grid_print_header(&g, "layer", 6);
    for (int l = 0; l < g.n_rows; l++) {
        nsc_tensor *tops = nsc_trace_get(tr, ln->top[l]), *probs = nsc_trace_get(tr, ln->prob[l]);
        CHECK(tops && probs);
        example_grid_set_row_name(&g, l, "%s", ln->names[l]);
        example_grid_print_row_name(&g, l, 6);
        for (int t = 0; t < g.n_cols; t++) {
            double p = (double)((const float *)nsc_tensor_data(probs))[t];
            example_grid_set_cell(&g, l, t, p, "%s", token_text(tok, value_at(tops, t)));
            int percent = (int)(100 * p);
            const char *label = g.labels[l * g.n_cols + t]; // cut to 7 characters, as drawn
            printf(" %3s:%02d", label, percent > 99 ? 99 : percent);
        }
        nsc_free(tops);
        nsc_free(probs);
    }
    char subtitle[160];
    snprintf(subtitle, sizeof subtitle,
             "prompt \"%s\"; each cell: the top token after ln_f + lm_head, colored by its "
             "probability",
             prompt);
    svg_heatmap map = { .title = "Logit lens: the model's guess after each layer",
                        .subtitle = subtitle,
                        .x_label = "input position (the token there)",
                        .y_label = "read out after",
                        .lo = 0,
                        .hi = 1,
                        .diverging = false,
                        .scale_label = "probability" };
    example_grid_write_svg(&g, map, svg);
    printf("\n\n(cells: top token:probability %%, 99 = certain) heatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    example_args args = example_args_parse(argc, argv, "logit_lens.svg", "qzkfebmw|qzkf");
    example_model m = example_model_load(args.model_dir);
    CHECK(m.config.n_layer < MAX_LAYERS);
    nsc_tensor *ids = example_prompt_encode(m.tok, args.prompt, MAX_T); // [B=1, T]

    nsc_trace *tr = nsc_trace_new(m.model);
    lens ln;
    build_lens(tr, nsc_trace_invoke(tr, 1, &ids), (int)m.config.n_layer, &ln);
    if (args.graph_out) { // 4. the graph as text, the prompt by name
        example_graph_write(tr, ids, args.graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK);
    show(tr, &ln, m.tok, ids, args.prompt, args.svg);

    nsc_trace_free(tr);
    nsc_free(ids);
    example_model_free(&m);
    return 0;
}
