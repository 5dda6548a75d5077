// Internal view of modules, shared by nn/ files (and read by graph/).
#ifndef NSC_NN_NN_IMPL_H
#define NSC_NN_NN_IMPL_H

#include "nsc/autograd.h"
#include "nsc/generate.h"
#include "nsc/gpt2.h"
#include "nsc/module.h"
#include "nsc/nn.h"
#include "tensor/tensor_impl.h"

typedef struct nsci_named_tensor {
    char *name;
    nsc_tensor *tensor;
} nsci_named_tensor;

typedef struct nsci_module_hook {
    int64_t handle;
    nsc_hook_kind kind;
    nsc_module_hook_fn fn;
    void *ctx;
    void (*ctx_free)(void *ctx);
    bool removed;
} nsci_module_hook;

enum { NSCI_MAX_MODULE_INPUTS = 8 };

// Limits of names and paths (module.h states them): a child, parameter or
// buffer name has at most NSCI_NAME_BYTES - 1 bytes (find copies segments
// into a buffer this size); a tensor path ("transformer.h.0.attn.c_attn.
// weight") at most NSCI_TENSOR_PATH_BYTES - 1 (param_at, find_tensor and
// checkpoints build it in fixed buffers, so that an exhausted allocator
// cannot cut it); a longer one is an error, never cut.
enum {
    NSCI_NAME_BYTES = 256,
    NSCI_TENSOR_PATH_BYTES = 1024
};

struct nsc_module {
    atomic_int refcount;
    char *name; // "" for a root
    char *type;
    nsc_module *parent; // not retained: a child never outlives its parent's reference
    nsc_module **children;
    int n_children, cap_children;
    nsci_named_tensor *params, *buffers;
    int n_params, cap_params, n_buffers, cap_buffers;
    bool training;
    nsc_forward_fn forward;
    void *state;
    void (*state_free)(void *state);
    atomic_llong call_count; // atomic: threads may call one module without hooks
    int64_t hook_dispatches;
    nsci_module_hook *hooks;
    int n_hooks, cap_hooks;
    int running_hooks;
    int batch_dim_in[NSCI_MAX_MODULE_INPUTS];
    int batch_dim_out;
    void *slot;
    void (*slot_free)(void *slot);
    char *path; // cached dotted path, rebuilt when the tree changes
    // Run when a call of m (nsc_module_call, output hooks and check
    // included) or a direct nsc_module_forward returns, with whether it
    // succeeded; NULL for most modules. GPT-2 commits its cache here.
    void (*call_done)(nsc_module *m, bool ok);
};

// Installed by graph/ (set once, before use): a module called on proxies
// becomes one ApplyModule node of their trace instead of running.
extern nsc_tensor *(*nsci_module_proxy_call)(nsc_module *m, int n_in, nsc_tensor *const *in,
                                             bool fire_hooks);

// Set by a hook-point reader for the current call of m: the output to use
// instead of running m's forward (skip). Consumed (and released) by the call.
void nsci_module_skip_next(nsc_module *m, nsc_tensor *output);

// The NaN/Inf check of nsc/check.h (nn/check_finite.c): returns out, or
// NULL with NSC_ERR_STATE naming m when the check is on for this thread and
// out holds a non-finite value (out is then released). NULL passes through.
nsc_tensor *nsci_check_finite_output(nsc_module *m, int64_t call_index, int n_in,
                                     nsc_tensor *const *in, nsc_tensor *out);

// Appends to a growable array of named tensors (retains t; copies name).
nsc_status nsci_named_append(nsci_named_tensor **items, int *n, int *cap, const char *name,
                             nsc_tensor *t);

// --- layers and GPT-2 (nn/layers*.c, nn/gpt2*.c, nn/kv_cache.c, nn/checkpoint.c) ---

// True when m has a hook that has not been removed (the attention's choice
// between the fused path and the materialized one with hook points).
bool nsci_module_has_hooks(const nsc_module *m);
// out, after adding "module <path>" to the error when out is NULL (not on
// NSC_STOPPED). For a forward's own op failures.
nsc_tensor *nsci_module_result(const nsc_module *m, nsc_tensor *out);
// in[index] (borrowed) or NULL with an error naming m when it is absent.
nsc_tensor *nsci_module_input(const nsc_module *m, int n_in, nsc_tensor *const *in, int index);
// normal(0, std) f32 of shape on the CPU.
nsc_tensor *nsci_normal(nsc_generator *gen, int ndim, const int64_t *shape, double std);
// Layers holding given tensors (retained; bias may be NULL): type "Linear"
// (weight [out, in]) or "Conv1D" (weight [in, out]); Embedding; LayerNorm.
nsc_module *nsci_linear_with(const char *type, nsc_tensor *weight, nsc_tensor *bias);
nsc_module *nsci_embedding_with(nsc_tensor *weight);
nsc_module *nsci_layer_norm_with(nsc_tensor *weight, nsc_tensor *bias, double eps);

// What every module of one GPT-2 shares (reference-counted: each module
// holding it owns one reference, so a block outliving its root stays valid).
typedef struct nsci_gpt2 {
    atomic_int refcount;
    nsc_gpt2_config config;
    nsc_kv_cache *cache; // attached by nsc_gpt2_set_cache (not owned), or NULL
    // Only while a cache is attached (without one, threads may share the model):
    int64_t pending; // tokens the current forward added, committed when its call succeeds
    int in_root;     // root forwards running (the transformer's call then does not commit)
} nsci_gpt2;

// State of a block or an attention module: the shared part and its layer.
typedef struct nsci_gpt2_part {
    nsci_gpt2 *model;
    int layer;
} nsci_gpt2_part;

void nsci_gpt2_release(nsci_gpt2 *g);
// The shared part of a GPT-2 root, or NULL with an error naming what m is.
nsci_gpt2 *nsci_gpt2_of(const nsc_module *model, const char *op);

// Child i of m (the fixed positions each GPT-2 module gives its children).
static inline nsc_module *nsci_child(const nsc_module *m, int i) {
    return m->children[i];
}

// Child positions of each GPT-2 module (the order Hugging Face adds them).
enum {
    NSCI_ROOT_TRANSFORMER,
    NSCI_ROOT_LM_HEAD,
    NSCI_ROOT_GENERATOR,
};
enum {
    NSCI_TF_WTE,
    NSCI_TF_WPE,
    NSCI_TF_DROP,
    NSCI_TF_H,
    NSCI_TF_LN_F,
};
enum {
    NSCI_BLOCK_LN_1,
    NSCI_BLOCK_ATTN,
    NSCI_BLOCK_LN_2,
    NSCI_BLOCK_MLP,
};
enum {
    NSCI_ATTN_C_ATTN,
    NSCI_ATTN_C_PROJ,
    NSCI_ATTN_DROPOUT,
    NSCI_ATTN_RESID_DROPOUT,
    NSCI_ATTN_HOOK_Q,
    NSCI_ATTN_HOOK_K,
    NSCI_ATTN_HOOK_V,
    NSCI_ATTN_HOOK_PATTERN,
    NSCI_ATTN_HOOK_Z,
    NSCI_ATTN_N_CHILDREN,
};
enum {
    NSCI_MLP_C_FC,
    NSCI_MLP_C_PROJ,
    NSCI_MLP_ACT,
    NSCI_MLP_DROPOUT,
};

// A module of type sharing g (one more reference) with state {g, layer}.
nsc_module *nsci_gpt2_part_module(const char *type, nsc_forward_fn forward, nsci_gpt2 *g,
                                  int layer);
// Builders of the module tree (nn/gpt2_block.c, nn/gpt2_attention.c); each
// takes a reference to g.
nsc_module *nsci_gpt2_block_new(nsci_gpt2 *g, int layer, nsc_generator *gen, bool meta);
nsc_module *nsci_gpt2_attention_new(nsci_gpt2 *g, int layer, nsc_generator *gen, bool meta);
// A new parameter of shape: META (no data) when meta, else normal(0, std)
// on the CPU, or zeros when std is 0.
nsc_tensor *nsci_gpt2_init(bool meta, nsc_generator *gen, int ndim, const int64_t *shape,
                           double std);
// LayerNorm of width c (ones and zeros) and Conv1D [in, out] (normal(0, std)
// weight, zero bias), on META when meta.
nsc_module *nsci_gpt2_layer_norm(bool meta, int64_t c, double eps);
nsc_module *nsci_gpt2_conv1d(bool meta, nsc_generator *gen, int64_t in, int64_t out, double std);
// A GPT-2 whose parameters are META tensors (shapes only) when meta.
nsc_module *nsci_gpt2_build(const nsc_gpt2_config *config, nsc_generator *gen, bool meta);

// The cache's keys and values of layer after appending k and v ([B, H, T, D],
// new tokens) at the current length: views [B, H, length + T, D] (new
// references). The length itself moves only on nsci_kv_cache_commit.
nsc_status nsci_kv_cache_append(nsc_kv_cache *cache, int layer, nsc_tensor *k, nsc_tensor *v,
                                nsc_tensor **k_all, nsc_tensor **v_all);
// Adds t tokens to the length (the outermost GPT-2 call succeeded, hooks
// included).
void nsci_kv_cache_commit(nsc_kv_cache *cache, int64_t t);
// The cache attached to model, a GPT-2 root (NULL without one or for any
// other module).
nsc_kv_cache *nsci_gpt2_attached_cache(const nsc_module *model);
// Attaches cache (NULL: none) in place of the current one, which it returns,
// leaving the running forward's bookkeeping alone: for forwards apart from
// the model's own (a shape scan, an applied module) that must neither read
// nor extend the user's cache. No-op for other modules.
nsc_kv_cache *nsci_gpt2_swap_cache(nsc_module *model, nsc_kv_cache *cache);
// The call counters of root's tree (nsci_free'd by restore), NULL on OOM.
int64_t *nsci_module_calls_save(nsc_module *root);
// Puts saved counters back (the tree unchanged since) and frees them.
void nsci_module_calls_restore(nsc_module *root, int64_t *saved);
// A cache with c's geometry and length whose buffers are made at the first
// write (META ones in a shape scan); NULL with an error.
nsc_kv_cache *nsci_kv_cache_shadow(const nsc_kv_cache *c);

// Checks generation options against config for a prompt of b rows of t
// tokens (t = 0: not known yet, at least one token): max_new_tokens within
// n_positions (without overflow), sampling settings, the stop token.
// NSC_ERR_ARG with a message starting "<op>: ".
nsc_status nsci_generate_check_options(const char *op, const nsc_generate_options *o, int64_t b,
                                       int64_t t, const nsc_gpt2_config *c);

#endif
