// nsc info: the model's configuration and module tree (paths, types,
// parameter counts) with every module's input and output shape for a prompt
// of --length tokens, learned through module hooks on a META forward.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

typedef struct seen {
    char in[96], out[96]; // shapes at the first call ("" when never called)
} seen;

static nsc_status record(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                         nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m;
    (void)replace;
    seen *s = ctx;
    if (call_index == 0 && n > 0 && values[0]) {
        char *slot = kind == NSC_HOOK_INPUT ? s->in : s->out;
        cli_shape(values[0], slot, sizeof s->in);
    }
    return NSC_OK;
}

static void print_config(const char *dir, nsc_module *model) {
    nsc_gpt2_config c;
    printf("model %s: %s, %lld parameters\n", dir, nsc_module_type(model),
           (long long)nsc_module_param_count(model));
    if (nsc_gpt2_get_config(model, &c) == NSC_OK) {
        printf("config: %lld layers, %lld heads of %lld, n_embd %lld, vocab %lld, %lld positions, "
               "%s\n",
               (long long)c.n_layer, (long long)c.n_head, (long long)(c.n_embd / c.n_head),
               (long long)c.n_embd, (long long)c.vocab_size, (long long)c.n_positions,
               nsc_activation_name(c.activation));
    }
}

int cli_info(const cli_args *a) {
    const char *dir = cli_model_dir(a);
    nsc_module *model = cli_load_model("info", dir, NULL, false);
    if (!model) {
        return CLI_FAILED;
    }
    int64_t n = nsc_module_n_modules(model);
    seen *s = calloc((size_t)n, sizeof *s);
    int64_t *handles = calloc((size_t)n * 2, sizeof *handles);
    for (int64_t i = 0; s && handles && i < n; i++) {
        nsc_module *m = nsc_module_at(model, i);
        handles[2 * i] = nsc_module_add_hook(m, NSC_HOOK_INPUT, record, &s[i], NULL);
        handles[2 * i + 1] = nsc_module_add_hook(m, NSC_HOOK_OUTPUT, record, &s[i], NULL);
    }
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_META, NSC_SHAPE(1, a->length));
    nsc_module_reset_calls(model);
    bool was = nsc_set_grad_enabled(false);
    nsc_tensor *out = s && handles ? nsc_module_call(model, 1, &ids) : NULL;
    nsc_set_grad_enabled(was);
    int code = out ? CLI_OK : cli_fail_nsc("info", "a forward on META inputs");
    if (out) {
        print_config(dir, model);
        printf("shapes for input_ids [1,%lld] (input 0 -> output, first call):\n\n",
               (long long)a->length);
        printf("%-40s %-16s %10s  %-16s %s\n", "module", "type", "params", "input 0", "output");
        for (int64_t i = 0; i < n; i++) {
            nsc_module *m = nsc_module_at(model, i);
            const char *path = nsc_module_path(m);
            printf("%-40s %-16s %10lld  %-16s %s\n", *path ? path : "(model)", nsc_module_type(m),
                   (long long)nsc_module_param_count(m), *s[i].in ? s[i].in : "-",
                   *s[i].out ? s[i].out : "-");
        }
    }
    for (int64_t i = 0; s && handles && i < n; i++) {
        nsc_module_remove_hook(nsc_module_at(model, i), handles[2 * i]);
        nsc_module_remove_hook(nsc_module_at(model, i), handles[2 * i + 1]);
    }
    nsc_free(out);
    nsc_free(ids);
    free(s);
    free(handles);
    nsc_module_free(model);
    return code;
}
