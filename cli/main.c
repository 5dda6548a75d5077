// nsc: the command-line tool. One program with subcommands (info, run,
// generate, scan, dot), each in cli/cmd_<name>.c; this file reads the
// command line and prints the help. docs/CLI.md has an example session.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *const USAGE =
    "nsc: nnsight's intervention model in C, on the command line\n"
    "\n"
    "usage: nsc COMMAND [MODEL] [options]     (nsc COMMAND --help for more)\n"
    "\n"
    "  info [MODEL] [--length N]              module tree, hook-point shapes, parameters\n"
    "  run [MODEL] --graph G.json (--prompt TEXT | --tokens 1,2,3) [--tensors IN.safetensors]\n"
    "      [--save OUT.safetensors] [--device cpu|cuda] [--profile]\n"
    "                                         run an intervention graph, print its saved values\n"
    "  generate [MODEL] (--prompt TEXT | --tokens 1,2,3) [--graph G.json [--tensors IN]]\n"
    "           [--max-new-tokens N] [--temperature T] [--top-k K] [--seed S]\n"
    "           [--stop-token ID] [--device cpu|cuda] [--profile]\n"
    "                                         generate text, optionally with a graph\n"
    "  scan [MODEL] --graph G.json [--prompt TEXT | --tokens ... | --length N] [--tensors IN]\n"
    "                                         validate a graph and print every node's shape\n"
    "  dot (G.json | --graph G.json) [--model MODEL] [--prompt TEXT | --tokens ... |\n"
    "      --length N] [--tensors IN] [-o OUT.dot]\n"
    "                                         the graph in Graphviz DOT\n"
    "\n"
    "MODEL is a Hugging Face style directory (config.json, model.safetensors, vocab.json\n"
    "[+ merges.txt]); default: $NSC_MODEL, else models/induction (the shipped model).\n"
    "Graphs are JSON texts (docs/GRAPH_TEXT.md); \"prompt\" names the prompt's token ids.\n"
    "Each command refuses options it does not take. Exit status: 0 done, 1 the work failed,\n"
    "2 a bad command line.\n";

static const char *const HELP[][2] = {
    { "info", "usage: nsc info [MODEL] [--length N]\n"
              "Prints the model's configuration, then every module: its path, type, parameter\n"
              "count (its whole subtree) and the shapes of its input 0 and output for a prompt\n"
              "of N tokens (default 8), learned by a forward on META tensors (no compute).\n" },
    { "run", "usage: nsc run [MODEL] --graph G.json (--prompt TEXT | --tokens 1,2,3)\n"
             "               [--tensors IN.safetensors] [--save OUT.safetensors]\n"
             "               [--device cpu|cuda] [--profile]\n"
             "Builds the graph text against the model (every node validated), runs it once and\n"
             "prints every saved value by name; --save writes them as safetensors (PyTorch and\n"
             "numpy read it). The prompt's ids [1, T] are the tensor named \"prompt\"; --tensors\n"
             "adds the named tensors of a safetensors file. --device cuda moves the model, the\n"
             "prompt and the tensors to the GPU first (saved values are read back to print).\n"
             "--profile prints the op profile of the run on stderr: calls and milliseconds per\n"
             "op, largest first (GPU time on cuda).\n" },
    { "generate",
      "usage: nsc generate [MODEL] (--prompt TEXT | --tokens 1,2,3) [--graph G.json]\n"
      "                    [--tensors IN.safetensors] [--max-new-tokens N] [--temperature T]\n"
      "                    [--top-k K] [--seed S] [--stop-token ID] [--device cpu|cuda]\n"
      "                    [--profile]\n"
      "Generates up to N tokens (default 20) after the prompt and prints the text, one line\n"
      "per row. Greedy unless --temperature or --top-k is given (then sampled, seeded by\n"
      "--seed; --top-k 0 samples from every token). Stops at the config's eos_token_id, as\n"
      "Hugging Face's generate does, or at --stop-token ID (-1: never). With --graph the\n"
      "graph runs as a generation trace (call index k is step k; \"every\" calls steer every\n"
      "step) and its saved values are printed after the text; a graph that holds its own\n"
      "inputs needs no prompt and refuses one. A progress line with tokens/s goes to stderr\n"
      "for runs longer than a second. --device cuda runs the model on the GPU (tokens are\n"
      "chosen on the host, as with the CPU). --profile prints the op profile of the\n"
      "generation on stderr.\n" },
    { "scan",
      "usage: nsc scan [MODEL] --graph G.json [--prompt TEXT | --tokens 1,2,3 | --length N]\n"
      "                [--tensors IN.safetensors]\n"
      "Builds the graph without running the model: every node is checked by its shape\n"
      "rule on META tensors. Prints one line per node (id, protocol, shape, dtype, what\n"
      "it does, source position). Without a prompt, \"prompt\" is N zero tokens (8).\n" },
    { "dot", "usage: nsc dot (G.json | --graph G.json) [--model MODEL]\n"
             "               [--prompt TEXT | --tokens ... | --length N]\n"
             "               [--tensors IN.safetensors] [-o OUT.dot]\n"
             "Writes the graph in Graphviz DOT (each node styled by its protocol) to stdout or\n"
             "OUT.dot: dot -Tsvg OUT.dot > graph.svg.\n" },
};

static int usage_for(const char *command) {
    for (size_t i = 0; i < sizeof HELP / sizeof HELP[0]; i++) {
        if (strcmp(HELP[i][0], command) == 0) {
            fputs(HELP[i][1], stdout);
            return CLI_OK;
        }
    }
    fputs(USAGE, stdout);
    return CLI_OK;
}

static bool number(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

// One option with a value: "--name VALUE". Returns 1 if taken, 0 if not
// this option, -1 for a bad value.
static int take(const char *name, int argc, char **argv, int *i, const char **value) {
    if (strcmp(argv[*i], name) != 0) {
        return 0;
    }
    if (*i + 1 >= argc) {
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

static int take_int(const char *name, int argc, char **argv, int *i, int64_t lo, int64_t hi,
                    int64_t *out) {
    const char *v;
    int r = take(name, argc, argv, i, &v);
    return r == 1 && !number(v, lo, hi, out) ? -1 : r;
}

static int option(int argc, char **argv, int *i, cli_args *a) {
    const char *v = NULL;
    int64_t n = 0;
    int r;
    if ((r = take("--model", argc, argv, i, &a->model)) ||
        (r = take("--graph", argc, argv, i, &a->graph)) ||
        (r = take("--prompt", argc, argv, i, &a->prompt)) ||
        (r = take("--tokens", argc, argv, i, &a->tokens)) ||
        (r = take("--save", argc, argv, i, &a->save)) ||
        (r = take("--tensors", argc, argv, i, &a->tensors)) ||
        (r = take("-o", argc, argv, i, &a->out)) ||
        (r = take_int("--length", argc, argv, i, 1, 1 << 20, &a->length)) ||
        (r = take_int("--max-new-tokens", argc, argv, i, 0, 1 << 20, &a->max_new_tokens)) ||
        (r = take_int("--top-k", argc, argv, i, 0, 1 << 30, &a->top_k)) ||
        (r = take_int("--stop-token", argc, argv, i, -1, INT32_MAX, &a->stop_token))) {
        return r;
    }
    if ((r = take_int("--seed", argc, argv, i, 0, INT64_MAX, &n)) != 0) {
        a->seed = (uint64_t)n;
        return r;
    }
    if ((r = take("--device", argc, argv, i, &v)) == 1) {
        bool cuda = strcmp(v, "cuda") == 0;
        a->device = cuda ? NSC_CUDA : NSC_CPU;
        a->device_given = true;
        return cuda || strcmp(v, "cpu") == 0 ? 1 : -1;
    }
    if ((r = take("--temperature", argc, argv, i, &v)) == 1) {
        char *end;
        a->temperature = strtod(v, &end);
        return *end || end == v || !(a->temperature > 0 && a->temperature < 1e6) ? -1 : 1;
    }
    return r;
}

// The commands that take each option (docs/CLI.md); any other command
// refuses it, so a flag the command would ignore never passes silently.
static const struct {
    const char *name;
    const char *commands; // separated by spaces
} OPTIONS[] = {
    { "--model", "info run generate scan dot" },
    { "--graph", "run generate scan dot" },
    { "--prompt", "run generate scan dot" },
    { "--tokens", "run generate scan dot" },
    { "--tensors", "run generate scan dot" },
    { "--length", "info scan dot" },
    { "--save", "run" },
    { "-o", "dot" },
    { "--max-new-tokens", "generate" },
    { "--temperature", "generate" },
    { "--top-k", "generate" },
    { "--seed", "generate" },
    { "--stop-token", "generate" },
    { "--device", "run generate" },
    { "--profile", "run generate" },
};
enum {
    N_OPTIONS = sizeof OPTIONS / sizeof OPTIONS[0]
};

static bool has_word(const char *list, const char *word) {
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)) != NULL; p += n) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) {
            return true;
        }
    }
    return false;
}

// Refuses argv[i] when it is an option the command does not take or one
// given before; CLI_OK otherwise (unknown words are left to the caller).
static int check_option(const cli_args *a, const char *arg, bool *seen) {
    for (int k = 0; k < N_OPTIONS; k++) {
        if (strcmp(OPTIONS[k].name, arg) != 0) {
            continue;
        }
        bool computes = strcmp(arg, "--device") == 0 || strcmp(arg, "--profile") == 0;
        if (!has_word(OPTIONS[k].commands, a->command)) {
            // info, scan and dot refuse --device whatever its value: they
            // never compute, so even "cpu" would promise what they do not do.
            return computes ? cli_fail(a->command, CLI_USAGE,
                                       "%s: only run and generate compute (nsc %s works on META)",
                                       arg, a->command)
                            : cli_fail(a->command, CLI_USAGE,
                                       "%s: not an option of %s (nsc %s --help lists them)", arg,
                                       a->command, a->command);
        }
        bool positional = (strcmp(arg, "--model") == 0 && a->model) ||
                          (strcmp(arg, "--graph") == 0 && a->graph); // MODEL, dot's G.json
        if (seen[k] || positional) {
            return cli_fail(a->command, CLI_USAGE, "%s: given twice", arg);
        }
        seen[k] = true;
    }
    return CLI_OK;
}

// Combinations the commands would otherwise resolve silently, and --tokens'
// syntax (a malformed value is a bad command line, exit 2).
static int check_combinations(cli_args *a, const bool *seen) {
    if (a->prompt && a->tokens) {
        return cli_fail(a->command, CLI_USAGE, "give --prompt or --tokens, not both");
    }
    if (a->tensors && !a->graph) { // only a graph reads named tensors
        return cli_fail(a->command, CLI_USAGE,
                        "--tensors: only with --graph (a graph reads the "
                        "named tensors)");
    }
    if (a->tokens && cli_token_ids(a->tokens, NULL) < 0) {
        return cli_fail(a->command, CLI_USAGE, "--tokens %s: expected ids >= 0 separated by commas",
                        a->tokens);
    }
    bool length = false;
    for (int k = 0; k < N_OPTIONS; k++) {
        length = length || (seen[k] && strcmp(OPTIONS[k].name, "--length") == 0);
    }
    a->length_given = length;
    if (length && (a->prompt || a->tokens)) {
        return cli_fail(a->command, CLI_USAGE,
                        "--length: only without --prompt or --tokens (the prompt sets the length)");
    }
    return CLI_OK;
}

int cli_parse(int argc, char **argv, cli_args *a) {
    *a = (cli_args){ .command = argv[1],
                     .length = 8,
                     .max_new_tokens = 20,
                     .top_k = -1,
                     .stop_token = CLI_STOP_DEFAULT,
                     .device = NSC_CPU };
    // --help anywhere wins before any other check, even in a value's place
    // (`--prompt --help`, `--length zero --help`): a user who typed it wants
    // the usage, and CLI.md promises it after any command.
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            a->help = true;
            return CLI_OK;
        }
    }
    bool seen[N_OPTIONS] = { false };
    for (int i = 2; i < argc; i++) {
        int code = check_option(a, argv[i], seen);
        if (code != CLI_OK) {
            return code;
        }
        if (strcmp(argv[i], "--profile") == 0) {
            a->profile = true;
            continue;
        }
        int at = i;
        int r = option(argc, argv, &i, a);
        if (r < 0) {
            return at + 1 >= argc
                       ? cli_fail(a->command, CLI_USAGE, "%s: expected a value after it", argv[at])
                       : cli_fail(a->command, CLI_USAGE, "%s %s: not a valid value", argv[at],
                                  argv[at + 1]);
        }
        if (r == 1) {
            continue;
        }
        bool positional = argv[i][0] != '-' || strcmp(argv[i], "-") == 0;
        const char **slot = strcmp(a->command, "dot") == 0 ? (a->graph ? NULL : &a->graph)
                                                           : (a->model ? NULL : &a->model);
        if (!positional || !slot) {
            return cli_fail(a->command, CLI_USAGE, "unexpected argument \"%s\" (nsc %s --help)",
                            argv[i], a->command);
        }
        *slot = argv[i];
    }
    return check_combinations(a, seen);
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        if (argc > 2 && strcmp(argv[1], "help") == 0) {
            return usage_for(argv[2]);
        }
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    static const struct {
        const char *name;
        int (*run)(const cli_args *a);
    } commands[] = { { "info", cli_info },
                     { "run", cli_run },
                     { "generate", cli_generate },
                     { "scan", cli_scan },
                     { "dot", cli_dot } };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, argv[1]) != 0) {
            continue;
        }
        cli_args a;
        int code = cli_parse(argc, argv, &a);
        if (code != CLI_OK) {
            return code;
        }
        return a.help ? usage_for(a.command) : commands[i].run(&a);
    }
    return cli_fail("", CLI_USAGE, "unknown command \"%s\" (nsc --help lists them)", argv[1]);
}
