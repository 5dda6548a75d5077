// nsc scan and nsc dot: build a graph text against the model without
// running it (every node checked by its shape rule on META tensors), then
// list its nodes or write it in Graphviz DOT.
#include <stdio.h>

#include "cli/cli.h"

// The graph of a, built against the model with the prompt given (or
// --length zero tokens); NULL after printing the error, *code the exit status.
static nsc_graph *build(const cli_args *a, nsc_module **model, nsc_tensor **prompt, int *code) {
    nsc_tokenizer *tok = NULL;
    *prompt = NULL;
    *code = CLI_FAILED;
    if (!(*model = cli_load_model(a->command, cli_model_dir(a), &tok, a->prompt != NULL))) {
        return NULL;
    }
    bool given;
    *prompt = cli_prompt(a, tok, &given);
    nsc_tokenizer_free(tok);
    if (!given) {
        *prompt = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, a->length));
    }
    nsc_graph *g = *prompt ? cli_load_graph(a, *model, *prompt, NULL, code) : NULL;
    for (int t = 0; g && t < nsc_graph_n_traces(g); t++) {
        if (nsc_trace_check(nsc_graph_trace(g, t)) != NSC_OK) {
            cli_fail_nsc(a->command, NULL);
            nsc_graph_free(g);
            return NULL;
        }
    }
    return g;
}

int cli_scan(const cli_args *a) {
    if (!a->graph) {
        return cli_fail("scan", CLI_USAGE, "--graph G.json is required (nsc scan --help)");
    }
    nsc_module *model;
    nsc_tensor *prompt;
    int code;
    nsc_graph *g = build(a, &model, &prompt, &code);
    if (g && nsc_graph_print(g, stdout) == NSC_OK) {
        int64_t nodes = 0;
        for (int t = 0; t < nsc_graph_n_traces(g); t++) {
            nodes += nsc_trace_n_nodes(nsc_graph_trace(g, t));
        }
        printf("ok: %lld nodes in %d trace(s) validated against %s\n", (long long)nodes,
               nsc_graph_n_traces(g), cli_model_dir(a));
        code = CLI_OK;
    }
    nsc_graph_free(g);
    nsc_free(prompt);
    nsc_module_free(model);
    return code;
}

int cli_dot(const cli_args *a) {
    if (!a->graph) {
        return cli_fail("dot", CLI_USAGE, "expected a graph file: nsc dot G.json");
    }
    nsc_module *model;
    nsc_tensor *prompt;
    int code;
    nsc_graph *g = build(a, &model, &prompt, &code);
    FILE *out = g && a->out ? fopen(a->out, "w") : stdout;
    if (g && !out) {
        cli_fail("dot", CLI_FAILED, "%s: cannot open for writing", a->out);
    } else if (g) {
        nsc_status status = nsc_graph_session(g) ? nsc_session_dot(nsc_graph_session(g), out)
                                                 : nsc_trace_dot(nsc_graph_trace(g, 0), out);
        code = status == NSC_OK ? CLI_OK : cli_fail_nsc("dot", NULL);
    }
    if (out && out != stdout && fclose(out) != 0 && code == CLI_OK) {
        code = cli_fail("dot", CLI_FAILED, "%s: writing failed", a->out);
    }
    nsc_graph_free(g);
    nsc_free(prompt);
    nsc_module_free(model);
    return code;
}
