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
    int64_t input_len; // the tokens step 0 ran (the prompt, padded): -1 before it
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
    if (p->steps++ == 0) {
        p->input_len = nsc_tensor_ndim(values[0]) > 1 ? nsc_tensor_size(values[0], 1) : -1;
    }
    double now = cli_now();
    if (now - p->last >= 1.0) {
        fprintf(stderr, "\rnsc generate: step %lld/%lld, %.1f tokens/s", (long long)p->steps,
                (long long)p->total, (double)(p->steps - 1) / (now - p->start));
        p->last = now;
        p->shown = true;
    }
    return NSC_OK;
}

// Tokens of the prompt (the rows as step 0 ran them, padded) in tokens [B, T + n].
static int64_t prompt_len(const progress *p, nsc_tensor *tokens) {
    int64_t len = nsc_tensor_size(tokens, 1);
    return p->input_len >= 0 && p->input_len <= len ? p->input_len : len;
}

// The summary line on stderr after a run over a second, one that showed
// progress, or any with NSC_PROGRESS=1. It counts the tokens actually added
// (a stop token may end the run before --max-new-tokens): the generated
// trace's input length, not --prompt's, is what they follow, since a graph
// may hold its own inputs. A failed run only ends the progress line (its
// error follows).
static void summarize(const progress *p, nsc_tensor *tokens, double seconds) {
    const char *env = getenv("NSC_PROGRESS");
    bool always = env && strcmp(env, "1") == 0;
    if (!tokens) {
        if (p->shown) {
            fputc('\n', stderr);
        }
        return;
    }
    if (p->shown || always || seconds > 1.0) {
        int64_t added = nsc_tensor_size(tokens, 1) - prompt_len(p, tokens);
        fprintf(stderr, "%snsc generate: %lld tokens in %.2f s (%.1f tokens/s)\n",
                p->shown ? "\r" : "", (long long)added, seconds,
                seconds > 0 ? (double)added / seconds : 0.0);
    }
}

// Prints row as text ending in one newline (none added when the text ends
// in one: the shipped model's eos is the newline). A row that stopped
// before the others was filled with the stop token (Hugging Face's
// pad_token_id = eos): it ends at its first generated stop token, printed.
static int print_row(const nsc_tokenizer *tok, const int64_t *row, int64_t n, int64_t from,
                     int64_t stop) {
    for (int64_t j = from; stop >= 0 && j < n; j++) {
        if (row[j] == stop) {
            n = j + 1;
            break;
        }
    }
    int64_t bytes = nsc_tokenizer_decode(tok, row, n, NULL, 0);
    char *text = bytes >= 0 ? malloc((size_t)bytes + 1) : NULL;
    if (!text || nsc_tokenizer_decode(tok, row, n, text, (size_t)bytes + 1) < 0) {
        free(text);
        return cli_fail_nsc("generate", "decoding the tokens");
    }
    printf(bytes > 0 && text[bytes - 1] == '\n' ? "%s" : "%s\n", text);
    free(text);
    return CLI_OK;
}

// Prints each row of tokens [B, T + n] on its own line.
static int print_text(const nsc_tokenizer *tok, nsc_tensor *tokens, int64_t from, int64_t stop) {
    int64_t n = nsc_tensor_numel(tokens), width = nsc_tensor_size(tokens, 1);
    int64_t *ids = calloc((size_t)(n > 0 ? n : 1), sizeof *ids);
    if (!ids || nsc_tensor_copy_to(tokens, NSC_I64, ids, (size_t)n * sizeof *ids) != NSC_OK) {
        free(ids);
        return cli_fail_nsc("generate", "reading the tokens");
    }
    int code = CLI_OK;
    for (int64_t b = 0; code == CLI_OK && b < nsc_tensor_size(tokens, 0); b++) {
        code = print_row(tok, ids + b * width, width, from, stop);
    }
    free(ids);
    return code;
}

// The flags as generation options. Sampling when --temperature or --top-k
// is given (--top-k 0: no top-k filtering, as HF's top_k=0); without
// --stop-token the run stops at the config's eos_token_id as HF's generate
// does (none when the config has none in the vocabulary).
static nsc_generate_options options_of(const cli_args *a, const nsc_module *model) {
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = a->max_new_tokens;
    o.sample = a->temperature > 0 || a->top_k >= 0;
    o.temperature = a->temperature > 0 ? a->temperature : 1.0;
    o.top_k = a->top_k > 0 ? a->top_k : 0;
    o.seed = a->seed;
    o.stop_token = a->stop_token;
    nsc_gpt2_config c;
    if (a->stop_token == CLI_STOP_DEFAULT) {
        bool eos = nsc_gpt2_get_config(model, &c) == NSC_OK && c.eos_token_id >= 0 &&
                   c.eos_token_id < c.vocab_size;
        o.stop_token = eos ? c.eos_token_id : -1;
    }
    return o;
}

// Generates with the graph (a generation trace) or without one.
static nsc_status generate(const cli_args *a, nsc_module *model, nsc_tensor *prompt,
                           const nsc_generate_options *o, nsc_tensor **tokens,
                           nsc_tensor_set **results, bool *reported, int *code) {
    if (!a->graph) {
        return nsc_generate(model, prompt, NULL, o, tokens);
    }
    nsc_graph *g = cli_load_graph(a, model, prompt, o, code);
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
    if (!a->prompt && !a->tokens && !a->graph) {
        return cli_fail("generate", CLI_USAGE,
                        "--prompt TEXT (or --tokens) is required without a --graph holding its "
                        "own inputs");
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
    nsc_generate_options o = options_of(a, model);
    progress p = { .start = cli_now(), .total = o.max_new_tokens, .input_len = -1 };
    p.last = p.start;
    int64_t hook = nsc_module_add_hook(model, NSC_HOOK_OUTPUT, on_step, &p, NULL);
    bool reported = given && !prompt; // cli_prompt printed why
    nsc_status status = NSC_ERR_ARG;
    int code = CLI_FAILED;
    if (!reported) {
        cli_profile_begin(a);
        status = generate(a, model, prompt, &o, &tokens, &results, &reported, &code);
        cli_profile_end(a);
    }
    double seconds = cli_now() - p.start;
    summarize(&p, status == NSC_OK ? tokens : NULL, seconds);
    if (status == NSC_OK) {
        code = print_text(tok, tokens, prompt_len(&p, tokens), o.stop_token);
    } else if (!reported) {
        cli_fail_nsc("generate", NULL);
    }
    if (code == CLI_OK && nsc_tensor_set_count(results) > 1) { // beyond "generated"
        printf("\nsaved values:\n");
        cli_print_results(results, "generated", stdout); // the text says them
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
