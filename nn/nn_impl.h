// Internal view of modules, shared by nn/ files (and read by graph/).
#ifndef NSC_NN_NN_IMPL_H
#define NSC_NN_NN_IMPL_H

#include "nsc/autograd.h"
#include "nsc/module.h"
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
    int64_t call_count;
    int64_t hook_dispatches;
    nsci_module_hook *hooks;
    int n_hooks, cap_hooks;
    int running_hooks;
    int batch_dim_in[NSCI_MAX_MODULE_INPUTS];
    int batch_dim_out;
    void *slot;
    void (*slot_free)(void *slot);
    char *path; // cached dotted path, rebuilt when the tree changes
};

// Appends to a growable array of named tensors (retains t; copies name).
nsc_status nsci_named_append(nsci_named_tensor **items, int *n, int *cap, const char *name,
                             nsc_tensor *t);

#endif
