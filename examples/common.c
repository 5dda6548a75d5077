// common.c: the plumbing the examples share (common.h): failing, the command
// line, the model directory, the graph text, saved scalars and the result
// grid. Linked into every example; not an example itself.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "examples/common.h"

// --- stopping on failure ---

_Noreturn void example_fail(const char *cond) {
    fprintf(stderr, "%s: %s failed: %s\n", example_name, cond, nsc_last_error());
    exit(1);
}

// --- the command line ---

example_args example_args_parse(int argc, char **argv, const char *default_svg,
                                const char *default_prompt) {
    example_args args = { .model_dir = "models/induction",
                          .svg = default_svg,
                          .prompt = default_prompt };
    for (int i = 1; i < argc; i++) {
        if (default_prompt && strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) {
            args.prompt = argv[++i];
        } else if (strcmp(argv[i], "--svg") == 0 && i + 1 < argc) {
            args.svg = argv[++i];
        } else if (strcmp(argv[i], "--graph-out") == 0 && i + 1 < argc) {
            args.graph_out = argv[++i];
        } else {
            args.model_dir = argv[i];
        }
    }
    return args;
}

// --- the model ---

example_model example_model_load(const char *dir) {
    nsc_module *model = nsc_gpt2_load(dir);
    nsc_tokenizer *tok = nsc_tokenizer_load(dir);
    nsc_gpt2_config config;
    CHECK(model && tok && nsc_gpt2_get_config(model, &config) == NSC_OK);
    return (example_model){ model, tok, config };
}

void example_model_free(example_model *m) {
    nsc_tokenizer_free(m->tok);
    nsc_module_free(m->model);
}

nsc_tensor *example_prompt_encode(const nsc_tokenizer *tok, const char *text, int64_t max_t) {
    nsc_tensor *flat = nsc_tokenizer_encode_tensor(tok, text, strlen(text)); // [T]
    CHECK(flat && nsc_tensor_numel(flat) > 0 && nsc_tensor_numel(flat) <= max_t);
    nsc_tensor *ids = nsc_reshape(flat, NSC_SHAPE(1, nsc_tensor_numel(flat))); // a view: [1, T]
    nsc_free(flat);
    CHECK(ids);
    return ids;
}

// --- the trace ---

void example_graph_write(nsc_trace *tr, nsc_tensor *named_prompt, const char *path) {
    nsc_tensor_set *named = NULL;
    if (named_prompt) {
        named = nsc_tensor_set_new();
        nsc_tensor_set_put(named, "prompt", named_prompt);
    }
    nsc_graph_text_options o = { .names = named };
    char *text = nsc_trace_to_text(tr, &o);
    FILE *f = text ? fopen(path, "w") : NULL;
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0);
    printf("wrote the graph to %s\n", path);
    nsc_text_free(text);
    nsc_tensor_set_free(named);
}

double example_trace_get_scalar(nsc_trace *tr, nsc_tensor *proxy) {
    nsc_tensor *v = nsc_trace_get(tr, proxy);
    CHECK(v);
    double value = nsc_tensor_item(v);
    nsc_free(v);
    return value;
}

// --- a grid of results ---

void example_grid_init(example_grid *g, int n_rows, int n_cols) {
    CHECK(n_rows >= 0 && n_rows <= EXAMPLE_GRID_MAX_ROWS && n_cols >= 0 &&
          n_cols <= EXAMPLE_GRID_MAX_COLS);
    memset(g, 0, sizeof *g);
    g->n_rows = n_rows;
    g->n_cols = n_cols;
}

void example_grid_set_row_name(example_grid *g, int r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->row_text[r], sizeof g->row_text[r], fmt, ap);
    va_end(ap);
    g->row_names[r] = g->row_text[r];
}

void example_grid_set_col_name(example_grid *g, int c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->col_text[c], sizeof g->col_text[c], fmt, ap);
    va_end(ap);
    g->col_names[c] = g->col_text[c];
}

void example_grid_set_cell(example_grid *g, int r, int c, double value, const char *label_fmt,
                           ...) {
    int k = r * g->n_cols + c;
    g->values[k] = value;
    va_list ap;
    va_start(ap, label_fmt);
    vsnprintf(g->labels[k], sizeof g->labels[k], label_fmt, ap);
    va_end(ap);
}

void example_grid_print_header(const example_grid *g, const char *corner, int width) {
    printf("%-*s", width, corner);
    for (int c = 0; c < g->n_cols; c++) {
        printf(" %*s", width, g->col_names[c]);
    }
}

void example_grid_print_row_name(const example_grid *g, int r, int width) {
    printf("\n%-*s", width, g->row_names[r]);
}

void example_grid_write_svg(const example_grid *g, svg_heatmap map, const char *svg) {
    static const char *labels[EXAMPLE_GRID_MAX_ROWS * EXAMPLE_GRID_MAX_COLS];
    for (int k = 0; k < g->n_rows * g->n_cols; k++) {
        labels[k] = g->labels[k];
    }
    map.rows = g->n_rows;
    map.cols = g->n_cols;
    map.values = g->values;
    map.row_labels = g->row_names;
    map.col_labels = g->col_names;
    map.cell_labels = labels;
    CHECK(svg_heatmap_write(svg, &map) == 0);
}
