// nsc generate: text from a prompt, greedy or sampled, optionally through a
// graph run as a generation trace (steering at every step); a progress line
// with tokens/s on stderr for runs over a second.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

typedef struct progress {
    double start, last;
    int64_t steps, total;
    bool shown;
} progress;

// Each step is one call of the model's root: count them, report each second.
// A graph's shape scan calls the root on META first; those are no steps.
static nsc_status on_step(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                          nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)replace;
    progress *p = ctx;
    if (n < 1 || nsc_tensor_device(values[0]) == NSC_META) {
        return NSC_OK;
    }
    p->steps++;
    double now = cli_now();
    if (now - p->last >= 1.0) {
        fprintf(stderr, "\rnsc generate: step %lld/%lld, %.1f tokens/s", (long long)p->steps,
                (long long)p->total, (double)(p->steps - 1) / (now - p->start));
        p->last = now;
        p->shown = true;
    }
    return NSC_OK;
}

// The summary line on stderr after a run over a second, one that showed
// progress, or any with NSC_PROGRESS=1. It counts the tokens actually added
// (a stop token may end the run before --max-new-tokens); a failed run only
// ends the progress line (its error follows).
static void summarize(const progress *p, nsc_tensor *tokens, nsc_tensor *prompt, double seconds) {
    const char *env = getenv("NSC_PROGRESS");
    bool always = env && strcmp(env, "1") == 0;
    if (!tokens) {
        if (p->shown) {
            fputc('\n', stderr);
        }
        return;
    }
    if (p->shown || always || seconds > 1.0) {
        int64_t added = nsc_tensor_size(tokens, 1) - nsc_tensor_size(prompt, 1);
        fprintf(stderr, "%snsc generate: %lld tokens in %.2f s (%.1f tokens/s)\n",
                p->shown ? "\r" : "", (long long)added, seconds,
                seconds > 0 ? (double)added / seconds : 0.0);
    }
}

static int print_text(const nsc_tokenizer *tok, nsc_tensor *tokens) {
    int64_t n = nsc_tensor_numel(tokens);
    int64_t *ids = calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
    if (!ids || nsc_tensor_copy_to(tokens, NSC_I64, ids, (size_t)n * sizeof *ids) != NSC_OK) {
        free(ids);
        return cli_fail_nsc("generate", "reading the tokens");
    }
    int64_t bytes = nsc_tokenizer_decode(tok, ids, n, NULL, 0);
    char *text = bytes >= 0 ? malloc((size_t)bytes + 1) : NULL;
    int code = CLI_OK;
    if (!text || nsc_tokenizer_decode(tok, ids, n, text, (size_t)bytes + 1) < 0) {
        code = cli_fail_nsc("generate", "decoding the tokens");
    } else {
        printf("%s\n", text);
    }
    free(text);
    free(ids);
    return code;
}

static nsc_generate_options options_of(const cli_args *a) {
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = a->max_new_tokens;
    o.sample = a->temperature > 0 || a->top_k > 0;
    o.temperature = a->temperature > 0 ? a->temperature : 1.0;
    o.top_k = a->top_k;
    o.seed = a->seed;
    o.stop_token = a->stop_token;
    return o;
}

// Generates with the graph (a generation trace) or without one.
static nsc_status generate(const cli_args *a, nsc_module *model, nsc_tensor *prompt,
                           const nsc_generate_options *o, nsc_tensor **tokens,
                           nsc_tensor_set **results, bool *reported) {
    if (!a->graph) {
        return nsc_generate(model, prompt, NULL, o, tokens);
    }
    nsc_graph *g = cli_load_graph(a, model, prompt, o);
    if (!g) {
        *reported = true;
        return NSC_ERR_ARG;
    }
    nsc_status status = nsc_graph_run(g);
    if (status == NSC_OK) {
        *tokens = nsc_trace_generated(nsc_graph_trace(g, 0));
        *results = nsc_graph_results(g);
        status = *tokens && *results ? NSC_OK : nsc_last_status();
    }
    nsc_graph_free(g);
    return status;
}

int cli_generate(const cli_args *a) {
    if (!a->prompt && !a->tokens) {
        return cli_fail("generate", CLI_USAGE, "--prompt TEXT (or --tokens) is required");
    }
    const char *dir = cli_model_dir(a);
    nsc_tokenizer *tok = NULL;
    nsc_module *model = cli_load_model("generate", dir, &tok, true);
    if (!model || cli_to_device(a, model) != CLI_OK) {
        nsc_tokenizer_free(tok);
        nsc_module_free(model);
        return CLI_FAILED;
    }
    bool given;
    nsc_tensor *prompt = cli_prompt(a, tok, &given), *tokens = NULL;
    nsc_tensor_set *results = NULL;
    nsc_generate_options o = options_of(a);
    progress p = { .start = cli_now(), .total = o.max_new_tokens };
    p.last = p.start;
    int64_t hook = prompt ? nsc_module_add_hook(model, NSC_HOOK_OUTPUT, on_step, &p, NULL) : -1;
    bool reported = !prompt; // cli_prompt printed why
    nsc_status status = NSC_ERR_ARG;
    if (prompt) {
        cli_profile_begin(a);
        status = generate(a, model, prompt, &o, &tokens, &results, &reported);
        cli_profile_end(a);
    }
    double seconds = cli_now() - p.start;
    int code = CLI_FAILED;
    summarize(&p, status == NSC_OK ? tokens : NULL, prompt, seconds);
    if (status == NSC_OK) {
        code = print_text(tok, tokens);
    } else if (!reported) {
        cli_fail_nsc("generate", NULL);
    }
    if (code == CLI_OK && nsc_tensor_set_count(results) > 1) { // beyond "generated"
        printf("\nsaved values:\n");
        cli_print_results(results, stdout);
    }
    if (hook > 0) {
        nsc_module_remove_hook(model, hook);
    }
    nsc_tensor_set_free(results);
    nsc_free(tokens);
    nsc_free(prompt);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return code;
}
