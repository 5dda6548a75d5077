// libFuzzer target: a GPT-2 config.json (nn/config.c) from arbitrary bytes.
// A load either fails with NSC_ERR_FORMAT (or OOM) leaving *config
// untouched, or gives a config that validates and survives a save + load
// unchanged; nothing may leak. See fuzz/README.md.
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nsc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

static char g_path[64], g_copy[64];

static bool same(const nsc_gpt2_config *a, const nsc_gpt2_config *b) {
    return a->vocab_size == b->vocab_size && a->n_positions == b->n_positions &&
           a->n_embd == b->n_embd && a->n_layer == b->n_layer && a->n_head == b->n_head &&
           a->n_inner == b->n_inner && a->activation == b->activation &&
           a->layer_norm_epsilon == b->layer_norm_epsilon && a->resid_pdrop == b->resid_pdrop &&
           a->embd_pdrop == b->embd_pdrop && a->attn_pdrop == b->attn_pdrop &&
           a->initializer_range == b->initializer_range &&
           a->scale_attn_weights == b->scale_attn_weights &&
           a->scale_attn_by_inverse_layer_idx == b->scale_attn_by_inverse_layer_idx &&
           a->tie_word_embeddings == b->tie_word_embeddings &&
           a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_path[0]) {
        snprintf(g_path, sizeof g_path, "/tmp/nsc_fuzz_config_%d.json", (int)getpid());
        snprintf(g_copy, sizeof g_copy, "/tmp/nsc_fuzz_config_%d_copy.json", (int)getpid());
    }
    FILE *f = fopen(g_path, "wb");
    if (!f) {
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    int64_t before = nsc_mem_stats_get().live_blocks;
    nsc_gpt2_config c, untouched;
    memset(&c, 0x5a, sizeof c);
    memcpy(&untouched, &c, sizeof c);
    nsc_clear_error();
    nsc_status s = nsc_gpt2_config_load(g_path, &c);
    if (s != NSC_OK) {
        check(s == NSC_ERR_FORMAT || s == NSC_ERR_OOM || s == NSC_ERR_IO);
        check(strstr(nsc_last_error(), g_path) != NULL); // the message names the file
        check(memcmp(&c, &untouched, sizeof c) == 0);
    } else {
        check(nsc_gpt2_config_validate(&c) == NSC_OK);
        nsc_gpt2_config back;
        check(nsc_gpt2_config_save(&c, g_copy) == NSC_OK);
        check(nsc_gpt2_config_load(g_copy, &back) == NSC_OK);
        check(same(&c, &back));
    }
    check(nsc_mem_stats_get().live_blocks == before);
    return 0;
}
