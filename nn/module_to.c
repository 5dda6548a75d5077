// Moving a module tree to a device (torch.nn.Module.to(device)): every
// parameter and buffer is copied first, and only when all copies exist are
// they swapped in, so a failure leaves the module as it was.
#include <string.h>

#include "nn/nn_impl.h"

// A distinct tensor of the tree and its copy on the target device. A tensor
// held by several slots (GPT-2's tied wte and lm_head) is copied once, so
// the copies stay tied.
typedef struct moved_tensor {
    nsc_tensor *from, *to;
} moved_tensor;

typedef struct move_plan {
    nsc_device device;
    moved_tensor *items;
    int64_t n, cap;
} move_plan;

static void plan_free(move_plan *plan) {
    for (int64_t i = 0; i < plan->n; i++) {
        nsc_free(plan->items[i].to);
    }
    nsci_free(plan->items);
}

static nsc_tensor *planned(const move_plan *plan, const nsc_tensor *t) {
    for (int64_t i = 0; i < plan->n; i++) {
        if (plan->items[i].from == t) {
            return plan->items[i].to;
        }
    }
    return NULL;
}

// t's copy on the device: a leaf with t's requires_grad and, when t has one,
// its .grad moved along (torch moves param.grad with the parameter). A
// tensor already there is kept as it is.
static nsc_tensor *copy_leaf(nsc_tensor *t, nsc_device device) {
    if (t->device == (int)device) {
        return nsc_retain(t);
    }
    nsc_no_grad_begin(); // the copy is a new leaf, not a node of t's history
    nsc_tensor *copy = nsc_to(t, device);
    nsc_tensor *grad = nsc_tensor_get_grad(t);
    nsc_tensor *grad_copy = copy && grad ? nsc_to(grad, device) : NULL;
    nsc_no_grad_end();
    bool ok = copy && (!grad || grad_copy);
    if (ok && nsc_tensor_requires_grad(t)) {
        ok = nsc_requires_grad_(copy, true) == NSC_OK &&
             (!grad_copy || nsc_tensor_set_grad(copy, grad_copy) == NSC_OK);
    }
    nsc_free(grad_copy);
    if (!ok) {
        nsc_free(copy);
        return NULL;
    }
    return copy;
}

static nsc_status plan_one(move_plan *plan, nsc_module *m, const nsci_named_tensor *slot) {
    if (planned(plan, slot->tensor)) {
        return NSC_OK;
    }
    if (plan->n == plan->cap) {
        int64_t cap = plan->cap ? plan->cap * 2 : 16;
        moved_tensor *grown = nsci_realloc(plan->items, (size_t)cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        plan->items = grown;
        plan->cap = cap;
    }
    nsc_tensor *to = copy_leaf(slot->tensor, plan->device);
    if (!to) {
        char why[512], shape[160];
        const nsc_tensor *t = slot->tensor;
        snprintf(why, sizeof why, "%s", nsc_last_error());
        const char *path = nsc_module_path(m);
        return nsci_fail(nsc_last_status(), "module to %s: %s%s%s %s %s on %s: %s",
                         nsc_device_name(plan->device), path, *path ? "." : "", slot->name,
                         nsci_shape_str(shape, sizeof shape, t->ndim, t->shape),
                         nsc_dtype_name((nsc_dtype)t->dtype),
                         nsc_device_name((nsc_device)t->device), why);
    }
    plan->items[plan->n++] = (moved_tensor){ slot->tensor, to };
    return NSC_OK;
}

static nsc_status plan_tree(move_plan *plan, nsc_module *m) {
    for (int i = 0; i < m->n_params; i++) {
        if (plan_one(plan, m, &m->params[i]) != NSC_OK) {
            return nsc_last_status();
        }
    }
    for (int i = 0; i < m->n_buffers; i++) {
        if (plan_one(plan, m, &m->buffers[i]) != NSC_OK) {
            return nsc_last_status();
        }
    }
    for (int i = 0; i < m->n_children; i++) {
        if (plan_tree(plan, m->children[i]) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static void swap_slots(nsci_named_tensor *slots, int n, const move_plan *plan) {
    for (int i = 0; i < n; i++) {
        nsc_tensor *to = nsc_retain(planned(plan, slots[i].tensor));
        nsc_free(slots[i].tensor);
        slots[i].tensor = to;
    }
}

static void apply_tree(nsc_module *m, const move_plan *plan) {
    swap_slots(m->params, m->n_params, plan);
    swap_slots(m->buffers, m->n_buffers, plan);
    for (int i = 0; i < m->n_children; i++) {
        apply_tree(m->children[i], plan);
    }
}

nsc_status nsc_module_to(nsc_module *m, nsc_device device) {
    if (!m) {
        return nsci_fail(NSC_ERR_ARG, "module to: module is NULL");
    }
    if (device != NSC_CPU && device != NSC_CUDA) {
        return nsci_fail(NSC_ERR_DEVICE, "module to %s: expected cpu or cuda",
                         nsc_device_name(device));
    }
    move_plan plan = { .device = device };
    nsc_status status = plan_tree(&plan, m);
    if (status == NSC_OK) {
        apply_tree(m, &plan);
    }
    plan_free(&plan);
    return status;
}
