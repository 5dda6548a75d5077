// What the nsc subcommands share: errors as one line on stderr, the model
// directory and its tokenizer, the prompt, named tensors, printing values.
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

int cli_fail(const char *command, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, *command ? "nsc %s: " : "nsc: ", command);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

int cli_fail_nsc(const char *command, const char *what) {
    // One line: the library's message has no newline of its own.
    return cli_fail(command, CLI_FAILED, "%s%s%s", what ? what : "", what ? ": " : "",
                    nsc_last_error());
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

const char *cli_model_dir(const cli_args *a) {
    static char beside[PATH_MAX + 32];
    if (a->model) {
        return a->model;
    }
    const char *env = getenv("NSC_MODEL");
    if (env && *env) {
        return env;
    }
    if (is_dir("models/induction")) {
        return "models/induction";
    }
    // The binary sits in build/<config>/: the repository is two levels up.
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(beside, sizeof beside, "%s/../../models/induction", exe);
            if (is_dir(beside)) {
                return beside;
            }
        }
    }
    return "models/induction";
}

nsc_module *cli_load_model(const char *command, const char *dir, nsc_tokenizer **tok,
                           bool want_tokenizer) {
    if (!is_dir(dir)) {
        nsc_clear_error();
        cli_fail(command, CLI_FAILED,
                 "%s: no such model directory (config.json, model.safetensors, vocab.json)", dir);
        return NULL;
    }
    nsc_module *model = nsc_gpt2_load(dir);
    if (!model) {
        cli_fail(command, CLI_FAILED, "%s: %s", dir, nsc_last_error());
        return NULL;
    }
    if (want_tokenizer && !(*tok = nsc_tokenizer_load(dir))) {
        cli_fail(command, CLI_FAILED, "%s: %s", dir, nsc_last_error());
        nsc_module_free(model);
        return NULL;
    }
    return model;
}

int cli_to_device(const cli_args *a, nsc_module *model) {
    if (a->device == NSC_CPU) {
        return CLI_OK;
    }
    if (nsc_cuda_init() != NSC_OK || nsc_module_to(model, a->device) != NSC_OK) {
        return cli_fail_nsc(a->command, "--device cuda");
    }
    return CLI_OK;
}

// t on a->device (t itself on the CPU); consumes t.
static nsc_tensor *on_device(const cli_args *a, nsc_tensor *t) {
    if (!t || a->device == NSC_CPU) {
        return t;
    }
    nsc_tensor *moved = nsc_to(t, a->device);
    if (!moved) {
        fprintf(stderr, "nsc %s: --device: %s\n", a->command, nsc_last_error());
    }
    nsc_free(t);
    return moved;
}

int64_t cli_token_ids(const char *s, int64_t *ids) {
    int64_t n = 0;
    for (const char *p = s;; n++) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        // strtoll skips spaces and takes a sign: ids are digits only.
        if (errno || end == p || *p < '0' || *p > '9' || (*end && *end != ',')) {
            return -1;
        }
        if (ids) {
            ids[n] = v;
        }
        if (!*end) {
            return n + 1;
        }
        p = end + 1;
    }
}

// The ids of --tokens (checked by cli_parse) as a [1, n] tensor, or NULL
// after printing why.
static nsc_tensor *parse_tokens(const cli_args *a) {
    int64_t n = cli_token_ids(a->tokens, NULL);
    int64_t *ids = n > 0 ? calloc((size_t)n, sizeof *ids) : NULL;
    nsc_tensor *t = ids && cli_token_ids(a->tokens, ids) == n
                        ? nsc_from_data(NSC_I64, NSC_SHAPE(1, n), ids)
                        : NULL;
    if (!t) {
        fprintf(stderr, "nsc %s: --tokens: %s\n", a->command,
                ids ? nsc_last_error() : "out of memory");
    }
    free(ids);
    return t;
}

nsc_tensor *cli_prompt(const cli_args *a, const nsc_tokenizer *tok, bool *given) {
    *given = a->prompt || a->tokens; // not both: cli_parse refuses that
    if (a->tokens) {
        return on_device(a, parse_tokens(a));
    }
    if (!a->prompt) {
        return NULL;
    }
    nsc_tensor *ids = nsc_tokenizer_encode_tensor(tok, a->prompt, strlen(a->prompt));
    if (!ids || nsc_tensor_numel(ids) == 0) {
        fprintf(stderr, "nsc %s: --prompt: %s\n", a->command,
                ids ? "the prompt has no tokens" : nsc_last_error());
        nsc_free(ids);
        return NULL;
    }
    nsc_tensor *row = nsc_reshape(ids, NSC_SHAPE(1, nsc_tensor_numel(ids)));
    nsc_free(ids);
    return on_device(a, row);
}

nsc_tensor_set *cli_tensors(const cli_args *a, nsc_tensor *prompt, int *code) {
    *code = CLI_FAILED;
    nsc_tensor_set *set = a->tensors ? nsc_tensor_set_load(a->tensors) : nsc_tensor_set_new();
    if (!set) {
        fprintf(stderr, "nsc %s: --tensors %s: %s\n", a->command, a->tensors, nsc_last_error());
        return NULL;
    }
    if (nsc_tensor_set_get(set, "prompt")) {
        if (a->prompt || a->tokens) { // one would silently override the other
            nsc_tensor_set_free(set);
            *code = cli_fail(a->command, CLI_USAGE,
                             "%s: --tensors %s holds a tensor named \"prompt\" already: give "
                             "one or the other",
                             a->prompt ? "--prompt" : "--tokens", a->tensors);
            return NULL;
        }
        prompt = NULL; // the file's prompt, not --length zeros (scan, dot)
    }
    for (int64_t i = 0; a->device != NSC_CPU && i < nsc_tensor_set_count(set); i++) {
        nsc_tensor *moved = on_device(a, nsc_retain(nsc_tensor_set_at(set, i)));
        if (!moved || nsc_tensor_set_put(set, nsc_tensor_set_name(set, i), moved) != NSC_OK) {
            nsc_free(moved);
            nsc_tensor_set_free(set);
            return NULL;
        }
        nsc_free(moved);
    }
    if (prompt && nsc_tensor_set_put(set, "prompt", prompt) != NSC_OK) {
        nsc_tensor_set_free(set);
        return NULL;
    }
    return set;
}

const char *cli_shape(const nsc_tensor *t, char *buf, size_t bytes) {
    size_t used = (size_t)snprintf(buf, bytes, "[");
    for (int d = 0; d < nsc_tensor_ndim(t) && used < bytes; d++) {
        used += (size_t)snprintf(buf + used, bytes - used, d ? ",%lld" : "%lld",
                                 (long long)nsc_tensor_size(t, d));
    }
    if (used < bytes) {
        snprintf(buf + used, bytes - used, "] %s", nsc_dtype_name(nsc_tensor_dtype(t)));
    }
    return buf;
}

void cli_print_values(nsc_tensor *t, int max, FILE *out) {
    int64_t n = nsc_tensor_numel(t);
    int64_t shown = n < max ? n : max;
    // Integers are read as int64: through a double, ids past 2^53 would lose digits.
    bool integral = nsc_tensor_dtype(t) == NSC_I64 || nsc_tensor_dtype(t) == NSC_BOOL;
    void *values = calloc((size_t)(n > 0 ? n : 1), 8); // an int64 or a double each
    if (!values ||
        nsc_tensor_copy_to(t, integral ? NSC_I64 : NSC_F64, values, (size_t)n * 8) != NSC_OK) {
        fprintf(out, "(unreadable)");
        free(values);
        return;
    }
    for (int64_t i = 0; i < shown; i++) {
        if (integral) {
            fprintf(out, "%s%lld", i ? " " : "", (long long)((const int64_t *)values)[i]);
        } else {
            fprintf(out, "%s%.4g", i ? " " : "", ((const double *)values)[i]);
        }
    }
    if (shown < n) {
        fprintf(out, " ... (%lld values)", (long long)n);
    }
    free(values);
}

nsc_graph *cli_load_graph(const cli_args *a, nsc_module *model, nsc_tensor *prompt,
                          const nsc_generate_options *generate, int *code) {
    *code = CLI_FAILED;
    nsc_tensor_set *tensors = cli_tensors(a, prompt, code);
    if (!tensors) {
        return NULL;
    }
    nsc_graph_load_options o = { .n_models = 1,
                                 .models = &model,
                                 .tensors = tensors,
                                 .generate = generate,
                                 .device = a->device };
    nsc_graph *g = nsc_graph_load(a->graph, &o);
    nsc_tensor_set_free(tensors); // traces hold what they use
    if (!g) {
        cli_fail_nsc(a->command, NULL);
        return NULL;
    }
    // A graph that holds its own inputs would ignore the prompt: say so
    // rather than print results that never saw it.
    if ((a->prompt || a->tokens || a->length_given) && !nsc_graph_uses_tensor(g, "prompt")) {
        *code = cli_fail(a->command, CLI_USAGE,
                         "%s: %s: the graph holds its own inputs (it reads no tensor named "
                         "\"prompt\"); leave the option out",
                         a->prompt   ? "--prompt"
                         : a->tokens ? "--tokens"
                                     : "--length",
                         a->graph);
        nsc_graph_free(g);
        return NULL;
    }
    return g;
}

void cli_print_results(nsc_tensor_set *results, const char *leave_out, FILE *out) {
    size_t width = 4;
    for (int64_t i = 0; i < nsc_tensor_set_count(results); i++) {
        size_t w = strlen(nsc_tensor_set_name(results, i));
        width = w > width ? w : width;
    }
    width = width > 40 ? 40 : width;
    fprintf(out, "%-*s  %-18s %s\n", (int)width, "name", "shape", "values");
    for (int64_t i = 0; i < nsc_tensor_set_count(results); i++) {
        if (leave_out && strcmp(nsc_tensor_set_name(results, i), leave_out) == 0) {
            continue;
        }
        char shape[128];
        nsc_tensor *t = nsc_tensor_set_at(results, i);
        fprintf(out, "%-*s  %-18s ", (int)width, nsc_tensor_set_name(results, i),
                cli_shape(t, shape, sizeof shape));
        cli_print_values(t, 8, out);
        fputc('\n', out);
    }
}

void cli_profile_begin(const cli_args *a) {
    if (a->profile && nsc_profile_start() != NSC_OK) {
        fprintf(stderr, "nsc %s: --profile: %s\n", a->command, nsc_last_error());
    }
}

void cli_profile_end(const cli_args *a) {
    if (!a->profile) {
        return;
    }
    nsc_status status = nsc_profile_stop();
    fprintf(stderr, "nsc %s: op profile%s%s\n", a->command, status == NSC_OK ? "" : ": ",
            status == NSC_OK ? "" : nsc_last_error());
    nsc_profile_print(stderr);
}
