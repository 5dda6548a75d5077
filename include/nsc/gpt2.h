// GPT-2 with Hugging Face's module tree and names (GPT2LMHeadModel), its
// configuration (config.json) and checkpoints (model.safetensors, both the
// save_pretrained layout and the hub's "gpt2" layout). The module tree, the
// inputs of every module, the hook points and the checkpoint rules are in
// docs/MODELS.md.
#ifndef NSC_GPT2_H
#define NSC_GPT2_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/module.h"
#include "nsc/nn.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- configuration (transformers.GPT2Config) ---

typedef struct nsc_gpt2_config {
    int64_t vocab_size;        // V
    int64_t n_positions;       // longest sequence, cache included
    int64_t n_embd;            // C
    int64_t n_layer;           // blocks
    int64_t n_head;            // H; head size D = C / H
    int64_t n_inner;           // MLP width; 0 means 4 * n_embd (config null)
    nsc_activation activation; // activation_function
    double layer_norm_epsilon;
    double resid_pdrop, embd_pdrop, attn_pdrop; // dropout probabilities
    double initializer_range;                   // std of the random initialization
    bool scale_attn_weights;                    // scores * D^-0.5 (true for GPT-2)
    bool scale_attn_by_inverse_layer_idx;       // scores / (layer + 1)
    bool tie_word_embeddings;                   // lm_head.weight is transformer.wte.weight
    int64_t bos_token_id, eos_token_id;         // -1 when absent
} nsc_gpt2_config;

// GPT2Config()'s defaults: GPT-2 small (124M parameters: 12 layers, 12
// heads, 768 wide, 50257 tokens, 1024 positions, gelu_new, dropouts 0.1).
nsc_gpt2_config nsc_gpt2_config_default(void);

// Checks every field: sizes positive and bounded, n_embd divisible by n_head,
// probabilities in [0, 1), epsilon in (0, 1). Fails with NSC_ERR_ARG naming
// the field and its value.
nsc_status nsc_gpt2_config_validate(const nsc_gpt2_config *config);

// Reads a Hugging Face config.json into *config (validated). A missing,
// mistyped, repeated or absurd field fails with NSC_ERR_FORMAT naming the
// path and the field; *config is untouched on failure.
nsc_status nsc_gpt2_config_load(const char *path, nsc_gpt2_config *config);

// Writes config as a config.json that transformers reads (model_type "gpt2",
// architectures ["GPT2LMHeadModel"]). Written beside path and renamed.
nsc_status nsc_gpt2_config_save(const nsc_gpt2_config *config, const char *path);

// --- the model ---

// A GPT-2 with Hugging Face's random initialization: weights normal(0,
// initializer_range), the two residual projections (attn.c_proj, mlp.c_proj)
// with std / sqrt(2 * n_layer), biases zero, layer norms one and zero.
// Returned in evaluation mode (dropout off; nsc_module_train turns it on).
// Returns the root module (caller nsc_module_free()s) or NULL.
nsc_module *nsc_gpt2_new(const nsc_gpt2_config *config, nsc_generator *gen);

// True when m is the root of a GPT-2 made by this library.
bool nsc_is_gpt2(const nsc_module *m);

// Copies the configuration of a GPT-2 root into *config.
nsc_status nsc_gpt2_get_config(const nsc_module *model, nsc_gpt2_config *config);

// HF's position ids for a left-padded batch: cumsum(mask, -1) - 1, with 1
// where mask is 0 (transformers 4.x; transformers 5 writes 0 there; either
// only changes the padded rows). mask: [B, S], any dtype, any device (the
// result is on the mask's device; a GPU mask is read on the host).
// Returns [B, S] i64 (caller frees) or NULL.
nsc_tensor *nsc_gpt2_position_ids(nsc_tensor *attention_mask);

// --- checkpoints (directory = config.json + model.safetensors) ---

// Loads dir/config.json and dir/model.safetensors (save_pretrained layout,
// with or without lm_head.weight, or the hub's layout without the
// "transformer." prefix, whose attn.bias and attn.masked_bias buffers are
// ignored). F16/BF16/F64 weights are converted to f32. Every tensor name and
// shape is checked before any is used: a missing, unknown or mis-shaped
// tensor, a truncated file or a bad header or config fails naming the tensor,
// the field or the byte offset. Returns the model in evaluation mode, or NULL.
nsc_module *nsc_gpt2_load(const char *dir);

// The same checks from the header alone (the file's data may be absent), and
// a model whose parameters are META tensors: shapes without data, for
// validating an intervention on a checkpoint too large to read.
nsc_module *nsc_gpt2_load_meta(const char *dir);

// Loads the weights of a safetensors file (either layout) into an existing
// GPT-2 whose configuration matches: every tensor is read first, so a bad
// file leaves the model unchanged; then each parameter takes its values in
// place, as torch's load_state_dict copies, so an optimizer built before the
// load (and hooks, and .grad) keeps working with the same tensors. They stay
// on their device and keep requires_grad. A META model's parameters are
// replaced by CPU tensors instead. Only a device fault while copying can
// leave the model partly loaded.
nsc_status nsc_gpt2_load_weights(nsc_module *model, const char *path);

// Writes dir/config.json and dir/model.safetensors in the save_pretrained
// layout (transformer.* names; lm_head.weight omitted when tied, as
// transformers does), creating dir if needed. Parameters must be on the CPU.
// Every parameter is checked first: a META one (nsc_gpt2_load_meta) is
// NSC_ERR_DEVICE, a path past 1023 bytes NSC_ERR_ARG, and dir is not made.
nsc_status nsc_gpt2_save(nsc_module *model, const char *dir);

#ifdef __cplusplus
}
#endif

#endif
