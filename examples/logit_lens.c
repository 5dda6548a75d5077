// logit_lens: what would the model predict if it stopped after each layer?
// The logit lens (nostalgebraist, 2020) reads an intermediate residual stream
// out through the model's own final layer norm and unembedding; on the
// shipped induction model (strings "s|s": a random string, a separator,
// the same string again) it shows the copy appearing only after the layer
// that holds the induction heads.
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
#include <stdlib.h>
#include <string.h>

#include "examples/svg.h"
#include "nsc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "logit_lens: %s failed: %s\n", #cond, nsc_last_error());               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

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

// --- 4. the graph as text, the prompt by name ---
static void write_graph(nsc_trace *tr, nsc_tensor *ids, const char *path) {
    nsc_tensor_set *named = nsc_tensor_set_new();
    nsc_tensor_set_put(named, "prompt", ids);
    nsc_graph_text_options o = { .names = named };
    char *text = nsc_trace_to_text(tr, &o);
    FILE *f = text ? fopen(path, "w") : NULL;
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
    printf("wrote the graph to %s\n", path);
    nsc_text_free(text);
    nsc_tensor_set_free(named);
}

// --- 5. the values: a table and a heatmap ---
static void show(nsc_trace *tr, const lens *ln, const nsc_tokenizer *tok, nsc_tensor *ids,
                 const char *prompt, const char *svg) {
    int64_t t_len = nsc_tensor_size(ids, 1);
    static double cells[MAX_LAYERS * MAX_T];
    static char labels[MAX_LAYERS * MAX_T][8];
    const char *cell_labels[MAX_LAYERS * MAX_T], *rows[MAX_LAYERS], *cols[MAX_T];
    printf("Logit lens on \"%s\": the top next-token guess after each layer, and its "
           "probability\n\n%-6s",
           prompt, "layer");
    for (int64_t t = 0; t < t_len; t++) {
        cols[t] = token_text(tok, value_at(ids, t));
        printf(" %6s", cols[t]);
    }
    for (int l = 0; l < ln->n_layers; l++) {
        nsc_tensor *tops = nsc_trace_get(tr, ln->top[l]), *probs = nsc_trace_get(tr, ln->prob[l]);
        CHECK(tops && probs);
        rows[l] = ln->names[l];
        printf("\n%-6s", rows[l]);
        for (int64_t t = 0; t < t_len; t++) {
            int k = l * (int)t_len + (int)t;
            cells[k] = (double)((const float *)nsc_tensor_data(probs))[t];
            snprintf(labels[k], sizeof labels[k], "%s", token_text(tok, value_at(tops, t)));
            cell_labels[k] = labels[k];
            int percent = (int)(100 * cells[k]);
            printf(" %3s:%02d", labels[k], percent > 99 ? 99 : percent);
        }
        nsc_free(tops);
        nsc_free(probs);
    }
    char subtitle[160];
    snprintf(subtitle, sizeof subtitle,
             "prompt \"%s\"; each cell: the top token after ln_f + lm_head, colored by its "
             "probability",
             prompt);
    svg_heatmap map = { "Logit lens: the model's guess after each layer",
                        subtitle,
                        "input position (the token there)",
                        "read out after",
                        ln->n_layers,
                        (int)t_len,
                        cells,
                        rows,
                        cols,
                        cell_labels,
                        0,
                        1,
                        false,
                        "probability" };
    CHECK(svg_heatmap_write(svg, &map) == 0);
    printf("\n\n(cells: top token:probability %%, 99 = certain) heatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    const char *dir = "models/induction", *prompt = "qzkfebmw|qzkf", *svg = "logit_lens.svg";
    const char *graph_out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) {
            prompt = argv[++i];
        } else if (strcmp(argv[i], "--svg") == 0 && i + 1 < argc) {
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
    CHECK(config.n_layer < MAX_LAYERS);
    nsc_tensor *flat = nsc_tokenizer_encode_tensor(tok, prompt, strlen(prompt));
    CHECK(flat && nsc_tensor_numel(flat) > 0 && nsc_tensor_numel(flat) <= MAX_T);
    nsc_tensor *ids = nsc_reshape(flat, NSC_SHAPE(1, nsc_tensor_numel(flat))); // [B=1, T]

    nsc_trace *tr = nsc_trace_new(model);
    lens ln;
    build_lens(tr, nsc_trace_invoke(tr, 1, &ids), (int)config.n_layer, &ln);
    if (graph_out) {
        write_graph(tr, ids, graph_out);
    }
    CHECK(nsc_trace_run(tr) == NSC_OK);
    show(tr, &ln, tok, ids, prompt, svg);

    nsc_trace_free(tr);
    nsc_free(ids);
    nsc_free(flat);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return 0;
}
