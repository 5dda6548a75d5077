// The nsc tool's shared pieces: argument scanning, loading a model
// directory (GPT-2 + tokenizer), making the prompt, printing tensors, and
// the one-line error convention (stderr, non-zero exit). docs/CLI.md.
#ifndef NSC_CLI_CLI_H
#define NSC_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nsc.h"

// Exit codes: 0 done, 1 the work failed (bad model, graph, prompt), 2 the
// command line is wrong.
enum {
    CLI_OK = 0,
    CLI_FAILED = 1,
    CLI_USAGE = 2
};

// cli_args.stop_token without --stop-token: generate stops at the model's
// eos_token_id (config.json), as Hugging Face's generate does.
#define CLI_STOP_DEFAULT (-2)

// The options of the command line; cli_parse refuses one the command does
// not take (main.c's table), so each command reads only its own.
typedef struct cli_args {
    const char *command;
    const char *model;   // a model directory (positional or --model)
    const char *graph;   // --graph, or dot's positional file
    const char *prompt;  // --prompt TEXT
    const char *tokens;  // --tokens 1,2,3
    const char *save;    // --save OUT.safetensors
    const char *tensors; // --tensors IN.safetensors: more named tensors
    const char *out;     // -o FILE
    int64_t length;      // --length N (info, scan, dot without a prompt)
    bool length_given;   // --length was on the command line (not the default 8)
    int64_t max_new_tokens;
    double temperature; // 0: not given
    int64_t top_k;      // -1: not given; 0: sample without top-k filtering (HF's top_k=0)
    uint64_t seed;
    int64_t stop_token; // -1: none; CLI_STOP_DEFAULT: the config's eos_token_id
    nsc_device device;  // --device cpu|cuda: where run and generate compute
    bool device_given;  // --device appeared (info, scan and dot refuse it, cpu too)
    bool profile;       // --profile: the op profile of the run on stderr (run, generate)
    bool help;
} cli_args;

// Parses argv[2..] into a (argv[1] is the command). Returns CLI_OK or
// CLI_USAGE after printing one line naming the bad argument.
int cli_parse(int argc, char **argv, cli_args *a);

// Prints "nsc <command>: <message>" on stderr and returns code.
int cli_fail(const char *command, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
// The same with nsc_last_error() as the message.
int cli_fail_nsc(const char *command, const char *what);

// The model directory to use: a's, $NSC_MODEL, ./models/induction, or the
// one shipped beside the binary.
const char *cli_model_dir(const cli_args *a);
// Loads dir's GPT-2 (and, when want_tokenizer, its vocab.json [+ merges.txt]),
// or prints "nsc <command>: <dir>: <why>" and returns NULL.
nsc_module *cli_load_model(const char *command, const char *dir, nsc_tokenizer **tok,
                           bool want_tokenizer);
// With --profile: starts the op profiler; after the work, stops it and
// prints its table on stderr under "nsc <command>: op profile".
void cli_profile_begin(const cli_args *a);
void cli_profile_end(const cli_args *a);
// Moves the model to a->device (torch's model.to("cuda")) after starting
// CUDA; CLI_OK, or CLI_FAILED after printing why (no GPU, a CPU-only build).
int cli_to_device(const cli_args *a, nsc_module *model);
// Reads --tokens' "1,2,3" into ids (NULL: only count them). Returns the
// count, or -1 unless s is decimal ids >= 0 separated by single commas.
int64_t cli_token_ids(const char *s, int64_t *ids);
// The prompt ids [1, T] (on a->device) from --prompt (tokenizer) or --tokens,
// or NULL: then *given is false when neither was given (an error is recorded
// otherwise).
nsc_tensor *cli_prompt(const cli_args *a, const nsc_tokenizer *tok, bool *given);
// Named tensors for a graph: "prompt" and the --tensors file's, on a->device.
// A file's "prompt" stands (scan's --length zeros do not replace it); with
// --prompt or --tokens too it is refused (*code CLI_USAGE). NULL after
// printing the error.
nsc_tensor_set *cli_tensors(const cli_args *a, nsc_tensor *prompt, int *code);

// Reads a->graph against model with "prompt" (may be NULL) and the
// --tensors file; generate non-NULL makes it a generation trace. Prints
// the error and returns NULL on failure, with *code the exit status:
// CLI_USAGE when --prompt or --tokens was given to a graph that reads no
// "prompt" (it holds its own inputs), CLI_FAILED otherwise.
nsc_graph *cli_load_graph(const cli_args *a, nsc_module *model, nsc_tensor *prompt,
                          const nsc_generate_options *generate, int *code);
// Prints a run's saved values: name, shape, the first values (all but the
// one named leave_out, which may be NULL).
void cli_print_results(nsc_tensor_set *results, const char *leave_out, FILE *out);
// Prints "[2,3] f32" into buf.
const char *cli_shape(const nsc_tensor *t, char *buf, size_t bytes);
// Prints up to max values of t on one line (", ..." after them).
void cli_print_values(nsc_tensor *t, int max, FILE *out);
// Seconds on a monotonic clock.
double cli_now(void);

// The subcommands: each returns the process's exit code.
int cli_info(const cli_args *a);
int cli_run(const cli_args *a);
int cli_generate(const cli_args *a);
int cli_scan(const cli_args *a);
int cli_dot(const cli_args *a);

#endif
