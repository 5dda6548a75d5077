// common.h: the plumbing every example repeated, kept here so that each
// example file holds only its experiment: stopping on the first failure, the
// intervention examples' command line, loading a model directory, writing the
// graph text and reading saved scalars, and a grid of results shown as a
// table and an SVG heatmap. The graph-building calls stay in the examples:
// they are what the examples teach, and their source lines are the "at"
// positions recorded in examples/graphs/*.json.
#ifndef NSC_EXAMPLES_COMMON_H
#define NSC_EXAMPLES_COMMON_H

#include <stdint.h>

#include "examples/svg.h"
#include "nsc.h"

// --- stopping on failure ---

// Each example defines its name once, for its messages:
//     const char example_name[] = "patching";
extern const char example_name[];

// Stops at the first failure with "<example>: <cond> failed: <nsc's last
// error>" on stderr and exit status 1. Examples stop rather than unwind:
// they are read, not reused, and nsc's message names the op and the shapes.
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            example_fail(#cond);                                                                   \
        }                                                                                          \
    } while (0)

// Prints the failure line for cond (its source text) and exits with status 1.
_Noreturn void example_fail(const char *cond);

// --- the command line: [MODEL_DIR] [--svg FILE] [--graph-out FILE] [--prompt TEXT] ---

typedef struct example_args {
    const char *model_dir; // "models/induction" unless given
    const char *svg;       // where the heatmap goes
    const char *graph_out; // where the graph text goes, or NULL: not written
    const char *prompt;    // --prompt's text, else the example's default
} example_args;

// Reads argv. A flag takes the next word; any other word, a flag without its
// value included, is the model directory. default_prompt NULL: the example
// takes no --prompt, and the word is a model directory like any other.
// Borrows argv and the defaults; never fails.
example_args example_args_parse(int argc, char **argv, const char *default_svg,
                                const char *default_prompt);

// --- the model ---

typedef struct example_model {
    nsc_module *model;      // the GPT-2 of config.json and model.safetensors
    nsc_tokenizer *tok;     // vocab.json
    nsc_gpt2_config config; // its sizes
} example_model;

// Loads the model directory dir; stops with nsc's message when a file is
// missing or wrong. Release with example_model_free.
example_model example_model_load(const char *dir);
void example_model_free(example_model *m);

// The token ids of text as a batch of one, [1, T] i64 (caller nsc_free()s).
// Stops when the tokenizer fails or T is not in 1..max_t.
nsc_tensor *example_prompt_encode(const nsc_tokenizer *tok, const char *text, int64_t max_t);

// --- the trace ---

// Writes tr's graph as text to path, for `nsc run`, and says so on stdout.
// named_prompt: an input written by the name "prompt", so that `nsc run
// --prompt TEXT` supplies it; NULL writes every input inline. Stops on failure.
void example_graph_write(nsc_trace *tr, nsc_tensor *named_prompt, const char *path);

// The value of the scalar the run saved for proxy (what nsc_save returned);
// stops when there is none.
double example_trace_get_scalar(nsc_trace *tr, nsc_tensor *proxy);

// --- a grid of results: a table on stdout and an SVG heatmap ---

enum {
    EXAMPLE_GRID_MAX_ROWS = 32,
    EXAMPLE_GRID_MAX_COLS = 64,
    EXAMPLE_GRID_NAME_BYTES = 24,
    EXAMPLE_GRID_LABEL_BYTES = 8 // 7 characters: a heatmap cell is 28-40 px wide
};

// Rows and columns with names, and per cell a value (its color) and a label
// (its text in the heatmap). The example prints each cell itself, in its own
// format, between example_grid_print_row_name calls; the grid then draws the
// heatmap. Large (~36 KB): examples keep one in static storage.
typedef struct example_grid {
    int n_rows, n_cols;
    // Borrowed names; example_grid_set_row_name/_col_name point them at the
    // grid's own storage below.
    const char *row_names[EXAMPLE_GRID_MAX_ROWS], *col_names[EXAMPLE_GRID_MAX_COLS];
    double values[EXAMPLE_GRID_MAX_ROWS * EXAMPLE_GRID_MAX_COLS]; // row-major
    char labels[EXAMPLE_GRID_MAX_ROWS * EXAMPLE_GRID_MAX_COLS][EXAMPLE_GRID_LABEL_BYTES];
    char row_text[EXAMPLE_GRID_MAX_ROWS][EXAMPLE_GRID_NAME_BYTES];
    char col_text[EXAMPLE_GRID_MAX_COLS][EXAMPLE_GRID_NAME_BYTES];
} example_grid;

// Empties g for n_rows x n_cols cells; stops when that exceeds the maximum.
void example_grid_init(example_grid *g, int n_rows, int n_cols);

// Names row r (column c) with printf's fmt, cut to EXAMPLE_GRID_NAME_BYTES - 1.
void example_grid_set_row_name(example_grid *g, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void example_grid_set_col_name(example_grid *g, int c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Sets cell (r, c): its value, and its label from printf's label_fmt (cut to
// 7 characters).
void example_grid_set_cell(example_grid *g, int r, int c, double value, const char *label_fmt, ...)
    __attribute__((format(printf, 5, 6)));

// The table's first line, without a newline: corner, then each column's name,
// in columns width characters wide (corner left-aligned, names right-aligned).
void example_grid_print_header(const example_grid *g, const char *corner, int width);

// Starts row r of the table: a newline, then its name left-aligned in width.
void example_grid_print_row_name(const example_grid *g, int r, int width);

// Writes the grid to the file svg as a heatmap. map gives the title,
// subtitle, axis names, color range and scale label; its size, values and
// labels are the grid's. Stops when the file cannot be written.
void example_grid_write_svg(const example_grid *g, svg_heatmap map, const char *svg);

#endif
