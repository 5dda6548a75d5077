// nsc run: builds a graph text against the model (every node validated),
// runs it once on the prompt and prints (and saves) every saved value.
#include <stdio.h>

#include "cli/cli.h"

int cli_run(const cli_args *a) {
    if (!a->graph) {
        return cli_fail("run", CLI_USAGE, "--graph G.json is required (nsc run --help)");
    }
    const char *dir = cli_model_dir(a);
    nsc_tokenizer *tok = NULL;
    nsc_module *model = cli_load_model("run", dir, &tok, a->prompt != NULL);
    if (!model || cli_to_device(a, model) != CLI_OK) {
        nsc_tokenizer_free(tok);
        nsc_module_free(model);
        return CLI_FAILED;
    }
    bool given;
    nsc_tensor *prompt = cli_prompt(a, tok, &given);
    int code = CLI_FAILED;
    nsc_graph *g = given && !prompt ? NULL : cli_load_graph(a, model, prompt, NULL, &code);
    nsc_tensor_set *results = NULL;
    double start = cli_now();
    nsc_status ran = NSC_ERR_ARG; // without g: reported by cli_prompt or cli_load_graph
    if (g) {
        cli_profile_begin(a);
        ran = nsc_graph_run(g);
        if (ran != NSC_OK) {
            cli_fail_nsc("run", NULL); // before the profile's lines, which may fail too
        }
        cli_profile_end(a);
    }
    if (ran == NSC_OK && !(results = nsc_graph_results(g))) {
        cli_fail_nsc("run", "collecting the saved values");
    } else if (ran == NSC_OK) {
        double ms = 1e3 * (cli_now() - start);
        printf("ran %s on %s", a->graph, dir);
        if (a->device != NSC_CPU) {
            printf(" (%s)", nsc_device_name(a->device));
        }
        if (prompt) {
            printf(" (prompt of %lld tokens)", (long long)nsc_tensor_size(prompt, 1));
        }
        printf(" in %.1f ms: %lld saved values\n", ms, (long long)nsc_tensor_set_count(results));
        cli_print_results(results, NULL, stdout);
        code = CLI_OK;
        if (a->save && nsc_tensor_set_save(results, a->save) != NSC_OK) {
            code = cli_fail_nsc("run", a->save);
        } else if (a->save) {
            printf("saved %lld values to %s\n", (long long)nsc_tensor_set_count(results), a->save);
        }
    }
    nsc_tensor_set_free(results);
    nsc_graph_free(g);
    nsc_free(prompt);
    nsc_tokenizer_free(tok);
    nsc_module_free(model);
    return code;
}
