// libFuzzer target: loading an optimizer's saved state (nn/optim_state.c)
// from arbitrary bytes, into an AdamW optimizer over parameters of shapes
// [5,7], [7] (group 0, amsgrad) and [4,6] (group 1, without). A load either
// succeeds, and then every state tensor has its parameter's shape, each
// parameter holds exactly the state its group keeps, and every step count is
// >= 0, or fails with an error and leaves the optimizer exactly as it was;
// nothing leaks.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/optim_impl.h"
#include "nsc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    N_PARAMS = 3
};

static void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

static nsc_optim *g_opt;
static nsc_tensor *g_params[N_PARAMS];

static void setup(void) {
    const int64_t shapes[N_PARAMS][2] = { { 5, 7 }, { 7, 0 }, { 4, 6 } };
    for (int i = 0; i < N_PARAMS; i++) {
        g_params[i] = nsc_ones(NSC_F32, NSC_CPU, i == 1 ? 1 : 2, shapes[i]);
        nsc_requires_grad_(g_params[i], true);
    }
    nsc_adamw_config c = nsc_adamw_defaults();
    c.amsgrad = true;
    g_opt = nsc_optim_adamw_new(N_PARAMS - 1, g_params, &c);
    check(g_opt != NULL);
    c.amsgrad = false;
    check(nsc_optim_add_param_group_adamw(g_opt, 1, g_params + N_PARAMS - 1, &c) == NSC_OK);
}

typedef struct snapshot {
    int64_t steps[N_PARAMS];
    nsc_tensor *state[N_PARAMS * NSCI_OPTIM_MAX_STATE];
    nsci_optim_group groups[2];
} snapshot;

static snapshot snap(void) {
    snapshot s;
    memset(&s, 0, sizeof s);
    memcpy(s.groups, g_opt->groups, sizeof s.groups);
    memcpy(s.steps, g_opt->steps, sizeof s.steps);
    memcpy(s.state, g_opt->state, sizeof s.state);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_opt) {
        setup();
    }
    int64_t before_blocks = nsc_mem_stats_get().live_blocks;
    nsc_safetensors *st = nsc_safetensors_open_memory(data, size, "fuzz.safetensors");
    if (!st) {
        check(nsc_last_status() == NSC_ERR_FORMAT || nsc_last_status() == NSC_ERR_OOM);
        check(nsc_mem_stats_get().live_blocks == before_blocks);
        nsc_clear_error();
        return 0;
    }
    snapshot before = snap();
    nsc_status status = nsci_optim_load_from(g_opt, st, "fuzz.safetensors");
    nsc_safetensors_free(st);
    if (status != NSC_OK) {
        snapshot after = snap();
        check(memcmp(&before, &after, sizeof before) == 0);
        check(nsc_last_error()[0] != '\0');
        check(nsc_mem_stats_get().live_blocks == before_blocks);
    } else {
        for (int64_t i = 0; i < N_PARAMS; i++) {
            check(g_opt->steps[i] >= 0);
            for (int s = 0; s < NSCI_OPTIM_MAX_STATE; s++) {
                nsc_tensor *t = g_opt->state[i * NSCI_OPTIM_MAX_STATE + s];
                int kept = nsci_optim_n_state(g_opt, nsci_optim_group_of(g_opt, i));
                check(!t == (g_opt->steps[i] == 0 || s >= kept));
                check(!t || (nsc_tensor_numel(t) == nsc_tensor_numel(g_params[i]) &&
                             nsc_tensor_dtype(t) == NSC_F32));
            }
        }
    }
    nsc_clear_error();
    return 0;
}
