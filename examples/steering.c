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

#include "examples/common.h"

const char example_name[] = "steering";

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
    example_graph_write(tr, ids, path);
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
        out->p_x[a * N_NEW + k] = example_trace_get_scalar(tr, p_x[k]);
    }
    nsc_free(tokens);
    nsc_trace_free(tr);
}

// --- 5b. the table and the heatmap ---
static void show(results *r, const char *svg) {
    static example_grid g;
    example_grid_init(&g, N_ALPHAS, N_NEW);
    printf("Steering toward \"x\": alpha * wte(x) added to transformer.h.1's output at every "
           "step\n\n%-6s  %-26s %s\n",
           "alpha", "generated after the prompt", "P(x) at each step");
    for (int a = 0; a < N_ALPHAS; a++) {
        example_grid_set_row_name(&g, a, "%g", ALPHAS[a]);
        for (int k = 0; k < N_NEW; k++) { // the cell: the token generated, colored by P(x)
            char c = r->text[a][k];
            example_grid_set_cell(&g, a, k, r->p_x[a * N_NEW + k], "%s",
                                  c == '\n' ? "\\n" : (char[]){ c, 0 });
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
        example_grid_set_col_name(&g, k, "%d", k);
    }
    svg_heatmap map = { .title = "Steering generation toward \"x\"",
                        .subtitle = "alpha * wte(x) added to transformer.h.1's output at every "
                                    "step; cells: the token generated, colored by P(x)",
                        .x_label = "generation step",
                        .y_label = "alpha",
                        .lo = 0,
                        .hi = 1,
                        .diverging = false,
                        .scale_label = "P(x)" };
    example_grid_write_svg(&g, map, svg);
    printf("\n(\"/\" is the newline that ends a copy) heatmap: %s\n", svg);
}

int main(int argc, char **argv) {
    example_args args = example_args_parse(argc, argv, "steering.svg", NULL);
    example_model m = example_model_load(args.model_dir);
    int64_t letter = nsc_tokenizer_token_id(m.tok, "x");
    CHECK(letter >= 0);
    nsc_tensor *ids = example_prompt_encode(m.tok, PROMPT, m.config.n_positions);
    nsc_generate_options o = nsc_generate_options_default(); // greedy
    o.max_new_tokens = N_NEW;

    if (args.graph_out) {
        write_graph(m.model, &o, ids, letter, args.graph_out);
    }
    results r;
    for (int a = 0; a < N_ALPHAS; a++) {
        generate(m.model, &o, ids, m.tok, letter, a, &r);
    }
    show(&r, args.svg);

    nsc_free(ids);
    example_model_free(&m);
    return 0;
}
