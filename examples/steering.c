// steering: change what a model generates by adding a vector to its
// residual stream at every generation step (activation addition, Turner et
// al., 2023). The vector here is the unembedding direction of one letter:
// alpha * wte("x") added to the last block's output. With tied embeddings
// that raises logit("x") at every step, and as alpha grows the induction
// model stops copying and writes x's.
//
// What it teaches, top to bottom:
//   1. a generation trace (nsc_trace_new_generate): call index k of every
//      module is generation step k, with a key/value cache;
//   2. an every-call body (NSC_EVERY_CALL): one read and one replacement of
//      transformer.h.1's output, applied at each step without unrolling;
//   3. a value computed once in the graph from the model's own weights: the
//      token embedding module applied to a constant id (nsc_trace_apply);
//   4. reads of particular steps (call index k) next to the every-call body;
//   5. the steering graph as text for `nsc generate --graph`; a table and a
//      heatmap of P("x") per step and strength.
//
// Run:  make && build/release/examples/steering [MODEL_DIR] [--svg FILE] [--graph-out FILE]
//       (defaults: models/induction, steering.svg)
// The same steering (alpha 40) as text:
//       build/release/nsc generate --prompt "qzkfebmw|" --graph examples/graphs/steering.json
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/svg.h"
#include "nsc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "steering: %s failed: %s\n", #cond, nsc_last_error());                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum {
    N_ALPHAS = 5,
    N_NEW = 9
};

static const char *PROMPT = "qzkfebmw|";
static const double ALPHAS[N_ALPHAS] = { 0, 10, 20, 40, 80 };

// Builds the steering into tr's invoke: the last block's output plus
// alpha * wte(letter) at every step. With p_x, also saves P(letter) at each
// step's last position into p_x[k].
static void steer(nsc_trace *tr, nsc_invoke *inv, int64_t letter, double alpha, int n_new,
                  nsc_tensor **p_x) {
    nsc_tensor *id = nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(1), (double)letter);
    nsc_tensor *direction = nsc_trace_apply(tr, "transformer.wte", id); // [1, C], once
    nsc_tensor *vector = nsc_mul_scalar(direction, alpha);
    nsc_tensor *h = nsc_invoke_output(inv, "transformer.h.1", NSC_EVERY_CALL); // [1, T, C]
    CHECK(nsc_invoke_set_output(inv, "transformer.h.1", NSC_EVERY_CALL, nsc_add(h, vector)) ==
          NSC_OK);
    for (int k = 0; p_x && k < n_new; k++) {
        nsc_tensor *logits = nsc_invoke_output(inv, "", k); // step k: [1, T_k, V]
        nsc_tensor *last = nsc_softmax(nsc_select(nsc_select(logits, 1, -1), 0, 0), -1);
        p_x[k] = nsc_save(nsc_select(last, 0, letter));
        CHECK(p_x[k]);
    }
    nsc_free(id);
}

static void decode(const nsc_tokenizer *tok, nsc_tensor *tokens, int64_t from, char *out,
                   size_t bytes) {
    int64_t n = nsc_tensor_size(tokens, 1) - from;
    const int64_t *ids = (const int64_t *)nsc_tensor_data(tokens) + from;
    CHECK(nsc_tokenizer_decode(tok, ids, n, out, bytes) >= 0);
}

// --- 5a. the steering graph as text (alpha 40, the prompt by name) ---
static void write_graph(nsc_module *model, const nsc_generate_options *o, nsc_tensor *ids,
                        int64_t letter, const char *path) {
    nsc_trace *tr = nsc_trace_new_generate(model, o);
    steer(tr, nsc_trace_invoke(tr, 1, &ids), letter, 40.0, N_NEW, NULL);
    nsc_tensor_set *named = nsc_tensor_set_new();
    nsc_tensor_set_put(named, "prompt", ids);
    nsc_graph_text_options to = { .names = named };
    char *text = nsc_trace_to_text(tr, &to);
    FILE *f = text ? fopen(path, "w") : NULL;
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
    printf("wrote the graph to %s\n", path);
    nsc_text_free(text);
    nsc_tensor_set_free(named);
    nsc_trace_free(tr);
}

// The table and the heatmap: per strength, the text and P(x) at each step.
typedef struct results {
    double p_x[N_ALPHAS * N_NEW];
    char text[N_ALPHAS][64];
} results;

// --- 1-4. one generation per strength: text[a], P(x) per step ---
static void generate(nsc_module *model, const nsc_generate_options *o, nsc_tensor *ids,
                     const nsc_tokenizer *tok, int64_t letter, int a, results *out) {
    nsc_trace *tr = nsc_trace_new_generate(model, o);
    nsc_tensor *p_x[N_NEW];
    steer(tr, nsc_trace_invoke(tr, 1, &ids), letter, ALPHAS[a], N_NEW, p_x);
    CHECK(nsc_trace_run(tr) == NSC_OK);
    nsc_tensor *tokens = nsc_trace_generated(tr);
    CHECK(tokens);
    decode(tok, tokens, nsc_tensor_size(ids, 1), out->text[a], sizeof out->text[a]);
    for (int k = 0; k < N_NEW; k++) {
        nsc_tensor *v = nsc_trace_get(tr, p_x[k]);
        CHECK(v);
        out->p_x[a * N_NEW + k] = nsc_tensor_item(v);
        nsc_free(v);
    }
    nsc_free(tokens);
    nsc_trace_free(tr);
}

// --- 5b. the table and the heatmap ---
static void show(results *r, const char *svg) {
    char row_names[N_ALPHAS][16], col_names[N_NEW][12], chars[N_ALPHAS * N_NEW][4];
    const char *rows[N_ALPHAS], *cols[N_NEW], *labels[N_ALPHAS * N_NEW];
    printf("Steering toward \"x\": alpha * wte(x) added to transformer.h.1's output at every "
           "step\n\n%-6s  %-26s %s\n",
           "alpha", "generated after the prompt", "P(x) at each step");
    for (int a = 0; a < N_ALPHAS; a++) {
        snprintf(row_names[a], sizeof row_names[a], "%g", ALPHAS[a]);
        rows[a] = row_names[a];
        for (int k = 0; k < N_NEW; k++) {
            char c = r->text[a][k];
            snprintf(chars[a * N_NEW + k], 4, "%s", c == '\n' ? "\\n" : (char[]){ c, 0 });
            labels[a * N_NEW + k] = chars[a * N_NEW + k];
        }
        for (char *p = r->text[a]; *p; p++) {
            *p = *p == '\n' ? '/' : *p; // one line in the table
        }
        printf("%-6g  %-26s", ALPHAS[a], r->text[a]);
        for (int k = 0; k < N_NEW; k++) {
            printf(" %.2f", r->p_x[a * N_NEW + k]);
        }
        printf("\n");
    }
    for (int k = 0; k < N_NEW; k++) {
        snprintf(col_names[k], sizeof col_names[k], "%d", k);
        cols[k] = col_names[k];
    }
    svg_heatmap map = { "Steering generation toward \"x\"",
                        "alpha * wte(x) added to transformer.h.1's output at every step; "
                        "cells: the token generated, colored by P(x)",
                        "generation step",
                        "alpha",
                        N_ALPHAS,
                        N_NEW,
                        r->p_x,
                        rows,
                        cols,
                        labels,
                        0,
                        1,
                        false,
                        "P(x)" };
    CHECK(svg_heatmap_write(svg, &map) == 0);
    printf("\n(\"/\" is the newline that ends a copy) heatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    const char *dir = "models/induction", *svg = "steering.svg", *graph_out = NULL;
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
    int64_t letter = nsc_tokenizer_token_id(tok, "x");
    nsc_tensor *flat = nsc_tokenizer_encode_tensor(tok, PROMPT, strlen(PROMPT));
    CHECK(letter >= 0 && flat);
    nsc_tensor *ids = nsc_reshape(flat, NSC_SHAPE(1, nsc_tensor_numel(flat)));
    nsc_generate_options o = nsc_generate_options_default(); // greedy
    o.max_new_tokens = N_NEW;

    if (graph_out) {
        write_graph(model, &o, ids, letter, graph_out);
    }
    results r;
    for (int a = 0; a < N_ALPHAS; a++) {
        generate(model, &o, ids, tok, letter, a, &r);
    }
    show(&r, svg);

    nsc_free(ids);
    nsc_free(flat);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return 0;
}
