// Per-tensor autograd state and grad mode: requires_grad, .grad, retain_grad,
// grad slots and their hooks, and the dispatch hooks' installation.
#include <pthread.h>
#include <string.h>

#include "autograd/autograd_impl.h"

// --- grad mode (thread-local, STYLE.md's globals list) ---

// One flag, as torch's GradMode: nsc_set_grad_enabled writes it, and a
// no_grad scope saves it on a per-thread stack of bits and restores it at its
// end (torch's NoGradGuard), so set_grad_enabled(true) inside no_grad records.
enum {
    NO_GRAD_MAX_DEPTH = 4096 // saved bits; deeper scopes restore "off"
};
static _Thread_local bool t_disabled; // false: recording is on by default
static _Thread_local int t_no_grad_depth;
static _Thread_local uint64_t t_saved[NO_GRAD_MAX_DEPTH / 64]; // bit set: was disabled

bool nsc_grad_enabled(void) {
    return !t_disabled;
}

bool nsc_set_grad_enabled(bool enabled) {
    bool previous = !t_disabled;
    t_disabled = !enabled;
    return previous;
}

void nsc_no_grad_begin(void) {
    int d = t_no_grad_depth++;
    if (d < NO_GRAD_MAX_DEPTH) {
        uint64_t bit = 1ull << (d % 64);
        t_saved[d / 64] = t_disabled ? t_saved[d / 64] | bit : t_saved[d / 64] & ~bit;
    }
    t_disabled = true;
}

void nsc_no_grad_end(void) {
    if (t_no_grad_depth == 0) {
        return; // unmatched: nothing to restore
    }
    int d = --t_no_grad_depth;
    t_disabled = d >= NO_GRAD_MAX_DEPTH || (t_saved[d / 64] >> (d % 64)) & 1;
}

// --- grad slots ---

nsci_grad_slot *nsci_slot_new(bool is_leaf, nsc_device device) {
    nsci_grad_slot *slot = nsci_calloc(1, sizeof *slot);
    if (slot) {
        atomic_init(&slot->refcount, 1);
        slot->is_leaf = is_leaf;
        slot->device = (uint8_t)device;
    }
    return slot;
}

nsci_grad_slot *nsci_slot_retain(nsci_grad_slot *slot) {
    if (slot) {
        atomic_fetch_add(&slot->refcount, 1);
    }
    return slot;
}

void nsci_slot_release(nsci_grad_slot *slot) {
    if (!slot || atomic_fetch_sub(&slot->refcount, 1) != 1) {
        return;
    }
    for (int i = 0; i < slot->n_hooks; i++) {
        if (!slot->hooks[i].removed && slot->hooks[i].ctx_free) {
            slot->hooks[i].ctx_free(slot->hooks[i].ctx);
        }
    }
    nsci_free(slot->hooks);
    nsc_free(slot->grad);
    nsci_free(slot);
}

// A hook may change a gradient's values, never its shape, dtype or device
// (torch: "hook ... has changed the size of value").
static nsc_status check_replacement(int64_t handle, const nsc_tensor *grad,
                                    const nsc_tensor *replacement) {
    if (replacement->ndim == grad->ndim && replacement->dtype == grad->dtype &&
        replacement->device == grad->device &&
        memcmp(replacement->shape, grad->shape, (size_t)grad->ndim * sizeof grad->shape[0]) == 0) {
        return NSC_OK;
    }
    char a[160], b[160];
    return nsci_fail(
        NSC_ERR_SHAPE,
        "gradient hook %lld returned a gradient %s %s on %s for one %s %s on %s: a "
        "hook may change the values, not the shape, dtype or device",
        (long long)handle, nsci_shape_str(a, sizeof a, replacement->ndim, replacement->shape),
        nsc_dtype_name((nsc_dtype)replacement->dtype),
        nsc_device_name((nsc_device)replacement->device),
        nsci_shape_str(b, sizeof b, grad->ndim, grad->shape),
        nsc_dtype_name((nsc_dtype)grad->dtype), nsc_device_name((nsc_device)grad->device));
}

nsc_status nsci_slot_run_hooks(nsci_grad_slot *slot, nsc_tensor **grad) {
    if (!slot || slot->n_hooks == 0) {
        return NSC_OK;
    }
    nsc_status status = NSC_OK;
    slot->running_hooks++;
    // Index loop: hooks added by a hook are appended and run in this pass too.
    for (int i = 0; i < slot->n_hooks && status == NSC_OK; i++) {
        nsci_hook *h = &slot->hooks[i];
        if (h->removed) {
            continue;
        }
        nsc_tensor *replacement = NULL;
        int64_t handle = h->handle;
        nsc_clear_error(); // so that a status without a message can be told apart
        status = h->fn(*grad, &replacement, h->ctx); // h may dangle now: the array may grow
        if (status != NSC_OK && nsc_last_status() == NSC_OK) {
            nsci_fail(status, "gradient hook %lld returned %s", (long long)handle,
                      nsc_status_name(status));
        } else if (status == NSC_OK && replacement) {
            status = check_replacement(handle, *grad, replacement);
        }
        if (status == NSC_OK && replacement) {
            nsc_free(*grad);
            *grad = replacement;
        } else {
            nsc_free(replacement);
        }
    }
    slot->running_hooks--;
    return status;
}

// --- per-tensor state ---

struct nsci_autograd *nsci_autograd_of(nsc_tensor *t) {
    if (!t->autograd) {
        nsci_autograd_install();
        struct nsci_autograd *ag = nsci_calloc(1, sizeof *ag);
        if (!ag) {
            return NULL;
        }
        ag->slot = nsci_slot_new(true, (nsc_device)t->device);
        if (!ag->slot) {
            nsci_free(ag);
            return NULL;
        }
        t->autograd = ag;
    }
    return t->autograd;
}

void nsci_autograd_free(struct nsci_autograd *ag) {
    if (!ag) {
        return;
    }
    nsci_node_release(ag->grad_fn);
    nsci_slot_release(ag->slot);
    nsci_free(ag);
}

nsc_status nsci_set_history(nsc_tensor *t, nsci_node *node, int output_index) {
    struct nsci_autograd *ag = nsci_autograd_of(t);
    nsci_grad_slot *slot = ag ? nsci_slot_new(false, (nsc_device)t->device) : NULL;
    if (!slot) {
        return nsc_last_status();
    }
    // An in-place write gives t a new history: .grad and retain_grad move to
    // the new slot; hooks stay on the old one, where the old node still runs
    // them on the gradient of the value before the write (as torch's).
    slot->grad = ag->slot->grad;
    slot->retain_grad = ag->slot->retain_grad;
    ag->slot->grad = NULL;
    ag->slot->retain_grad = false;
    nsci_slot_release(ag->slot);
    ag->slot = slot;
    nsci_node_release(ag->grad_fn);
    ag->grad_fn = nsci_node_retain(node);
    ag->output_index = output_index;
    ag->requires_grad = true;
    ag->fn_version = t->storage ? atomic_load(&t->storage->version) : 0;
    t->requires_grad = 1;
    return NSC_OK;
}

nsc_tensor *nsci_alias(nsc_tensor *t) {
    nsc_tensor *a = nsci_tensor_header((nsc_dtype)t->dtype, (nsc_device)t->device, t->ndim,
                                       t->shape);
    if (!a) {
        return NULL;
    }
    memcpy(a->stride, t->stride, sizeof t->stride);
    a->offset = t->offset;
    a->target_device = t->target_device;
    a->storage = t->storage;
    if (a->storage) {
        atomic_fetch_add(&a->storage->refcount, 1);
    }
    return a;
}

// --- public accessors ---

nsc_status nsc_requires_grad_(nsc_tensor *t, bool requires_grad) {
    if (!t) {
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "requires_grad_: tensor is NULL");
    }
    if (t->autograd && t->autograd->grad_fn) {
        return nsci_fail(NSC_ERR_STATE, "requires_grad_: the tensor is not a leaf (it was produced "
                                        "by %s): detach it first",
                         nsci_node_name(t->autograd->grad_fn));
    }
    if (requires_grad && !nsci_is_float((nsc_dtype)t->dtype)) {
        return nsci_fail(NSC_ERR_DTYPE, "requires_grad_: dtype %s: only float tensors can require "
                                        "grad",
                         nsc_dtype_name((nsc_dtype)t->dtype));
    }
    struct nsci_autograd *ag = nsci_autograd_of(t);
    if (!ag) {
        return nsc_last_status();
    }
    ag->requires_grad = requires_grad;
    t->requires_grad = requires_grad;
    return NSC_OK;
}

bool nsc_tensor_requires_grad(const nsc_tensor *t) {
    return t && (t->requires_grad || nsci_requires_grad(t));
}

bool nsc_tensor_is_leaf(const nsc_tensor *t) {
    bool late_view = t && !t->requires_grad && nsci_requires_grad(t); // gets a history on use
    return t && !late_view && !(t->autograd && t->autograd->grad_fn);
}

nsc_tensor *nsc_tensor_get_grad(nsc_tensor *t) {
    return (t && t->autograd && t->autograd->slot) ? t->autograd->slot->grad : NULL;
}

nsc_status nsc_tensor_set_grad(nsc_tensor *t, nsc_tensor *grad) {
    if (!t) {
        return nsci_fail(NSC_ERR_ARG, "set_grad: tensor is NULL");
    }
    if (grad && (grad->ndim != t->ndim || memcmp(grad->shape, t->shape, (size_t)t->ndim * 8))) {
        char a[160], b[160];
        return nsci_fail(NSC_ERR_SHAPE, "set_grad: gradient %s for a tensor of shape %s",
                         nsci_shape_str(a, sizeof a, grad->ndim, grad->shape),
                         nsci_shape_str(b, sizeof b, t->ndim, t->shape));
    }
    if (grad == t) { // t's state would own t: a cycle nothing frees
        return nsci_fail(NSC_ERR_ARG, "set_grad: the gradient is the tensor itself: can't assign "
                                      "a tensor as its own grad");
    }
    if (grad && (grad->dtype != t->dtype || grad->device != t->device)) {
        return nsci_fail(
            NSC_ERR_DTYPE,
            "set_grad: gradient %s on %s for a tensor %s on %s: "
            "expected the tensor's dtype and device",
            nsc_dtype_name((nsc_dtype)grad->dtype), nsc_device_name((nsc_device)grad->device),
            nsc_dtype_name((nsc_dtype)t->dtype), nsc_device_name((nsc_device)t->device));
    }
    struct nsci_autograd *ag = nsci_autograd_of(t);
    if (!ag) {
        return nsc_last_status();
    }
    nsc_tensor *old = ag->slot->grad;
    ag->slot->grad = nsc_retain(grad);
    nsc_free(old);
    return NSC_OK;
}

// t's grad slot, when t requires grad: a view taken before its base required
// grad (which requires grad now, as torch's views follow their base) gets its
// history first, so that hooks and retain_grad live where backward looks.
static nsci_grad_slot *slot_requiring_grad(nsc_tensor *t, const char *op) {
    if (!t) {
        nsci_fail(NSC_ERR_ARG, "%s: the tensor is NULL", op);
        return NULL;
    }
    if (!nsci_requires_grad(t)) {
        nsci_fail(NSC_ERR_STATE, "%s: the tensor does not require grad", op);
        return NULL;
    }
    if (!t->requires_grad) {
        nsci_edge edge;
        if (nsci_edge_of(t, &edge) != NSC_OK) {
            return NULL;
        }
        nsci_edge_clear(&edge);
    }
    return t->autograd->slot;
}

nsc_status nsc_retain_grad(nsc_tensor *t) {
    nsci_grad_slot *slot = slot_requiring_grad(t, "retain_grad");
    if (!slot) {
        return nsc_last_status();
    }
    slot->retain_grad = true;
    return NSC_OK;
}

// --- hooks ---

static atomic_llong g_next_handle = 1; // atomic: hook handles are unique process-wide

int64_t nsc_tensor_register_hook(nsc_tensor *t, nsc_grad_hook_fn fn, void *ctx,
                                 void (*ctx_free)(void *ctx)) {
    if (!fn) {
        nsci_fail(NSC_ERR_ARG, "register_hook: the function is NULL");
        return -1;
    }
    nsci_grad_slot *slot = slot_requiring_grad(t, "register_hook");
    if (!slot) {
        return -1;
    }
    if (slot->n_hooks == slot->cap_hooks) {
        int cap = slot->cap_hooks ? slot->cap_hooks * 2 : 4;
        nsci_hook *grown = nsci_realloc(slot->hooks, (size_t)cap * sizeof *grown);
        if (!grown) {
            return -1;
        }
        slot->hooks = grown;
        slot->cap_hooks = cap;
    }
    int64_t handle = atomic_fetch_add(&g_next_handle, 1);
    slot->hooks[slot->n_hooks++] = (nsci_hook){ handle, fn, ctx, ctx_free, false };
    return handle;
}

nsc_status nsc_tensor_remove_hook(nsc_tensor *t, int64_t handle) {
    nsci_grad_slot *slot = (t && t->autograd) ? t->autograd->slot : NULL;
    for (int i = 0; slot && i < slot->n_hooks; i++) {
        nsci_hook *h = &slot->hooks[i];
        if (h->handle == handle && !h->removed) {
            h->removed = true;
            if (h->ctx_free) {
                h->ctx_free(h->ctx);
            }
            return NSC_OK;
        }
    }
    return nsci_fail(NSC_ERR_ARG, "remove_hook: no hook with handle %lld on this tensor",
                     (long long)handle);
}

// --- installation ---

static void install(void) {
    nsci_hook_table.free_autograd = nsci_autograd_free;
    nsci_hook_table.grad_enabled = nsc_grad_enabled;
    nsci_hook_table.check = nsci_autograd_check;
    nsci_hook_table.record = nsci_autograd_record;
}

void nsci_autograd_install(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, install);
}
