// Recording: the dispatch hooks that put a node on the tape after an op ran
// (and refuse, before it runs, in-place writes the tape could not undo).
// In-place writes re-point history as PyTorch does: the written tensor's
// grad_fn becomes the write; a written view makes its base's history a
// copy-slices node, and stale views regenerate from their base on next use.
#include <string.h>

#include "autograd/autograd_impl.h"

// Pre-write copies of the inputs an in-place op saves for its backward: the
// destination (mul_ needs its old value) and any other input sharing its
// storage (y.mul_(y), a.mul_(b) with b a view of a), which the write is about
// to change. Made by check, consumed by record in the same dispatch.
enum {
    PRE_WRITE_MAX = 32
}; // save_inputs is a 32-bit mask
static _Thread_local nsc_tensor *t_pre_write[PRE_WRITE_MAX];

// Bit i of an op's 32-bit save or nondiff mask. Inputs past 31 (a cat of
// 40 tensors) have no bit and are never saved; 1u << i is undefined there.
static bool has_bit(uint32_t mask, int i) {
    return i < 32 && ((mask >> i) & 1u);
}

static void drop_pre_writes(void) {
    for (int i = 0; i < PRE_WRITE_MAX; i++) {
        nsc_free(t_pre_write[i]);
        t_pre_write[i] = NULL;
    }
}

static bool base_requires_grad(const nsc_tensor *t) {
    return t->base && t->base->requires_grad;
}

static bool is_leaf(const nsc_tensor *t) {
    return !(t->autograd && t->autograd->grad_fn);
}

// torch's check_inplace: a leaf that requires grad, or a view requiring grad
// whose base is a leaf. base is the storage root, so a view of a view that
// was made a leaf (v = x[..]; v.requires_grad_(); v[..].mul_(2)) requires
// grad through v while x, not v, is its base: x is still a leaf.
static const char *inplace_refusal(const nsc_tensor *dst) {
    if (dst->requires_grad && is_leaf(dst)) {
        return "a leaf that requires grad";
    }
    if (dst->base && nsci_requires_grad(dst) && is_leaf(dst->base)) {
        return "a view of a leaf that requires grad";
    }
    return NULL;
}

nsc_status nsci_autograd_check(nsci_call *c) {
    if (!(c->def->flags & NSCI_OP_INPLACE)) {
        return NSC_OK;
    }
    nsc_tensor *dst = c->in[0];
    const char *refused = inplace_refusal(dst);
    if (refused) {
        return nsci_call_fail(c, NSC_ERR_STATE,
                              "%s is written in place: write under nsc_no_grad_begin(), or into a "
                              "clone",
                              refused);
    }
    drop_pre_writes();
    // Called only for ops that will be recorded: even when dst itself needs
    // no gradient (a.mul_(x) with x requiring grad), x's gradient needs a's
    // old value.
    for (int i = 0; i < c->n_in && i < PRE_WRITE_MAX; i++) {
        bool written = i == 0 || (c->in[i]->storage && c->in[i]->storage == dst->storage);
        if (!has_bit(c->def->save_inputs, i) || !written) {
            continue;
        }
        bool was = nsc_set_grad_enabled(false);
        t_pre_write[i] = nsc_clone(c->in[i]);
        nsc_set_grad_enabled(was);
        if (!t_pre_write[i]) {
            drop_pre_writes();
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static void meta_of(nsci_meta *m, const nsc_tensor *t) {
    m->dtype = (nsc_dtype)t->dtype;
    m->device = (nsc_device)(t->device == NSC_META ? t->target_device : t->device);
    m->ndim = t->ndim;
    memcpy(m->shape, t->shape, sizeof t->shape);
    memcpy(m->stride, t->stride, sizeof t->stride);
    m->offset = t->offset;
}

static int64_t version_of(const nsc_tensor *t) {
    return t->storage ? atomic_load(&t->storage->version) : 0;
}

static nsc_status save(nsc_tensor *t, nsc_tensor **slot, int64_t *version) {
    *slot = nsci_alias(t);
    *version = version_of(t);
    return *slot ? NSC_OK : nsc_last_status();
}

// A node for c with its inputs' edges and saved tensors (outputs not yet set).
static nsci_node *op_node(nsci_call *c) {
    const nsci_op_def *def = c->def;
    nsci_node *node = nsci_node_new(NSCI_NODE_OP, c->n_in);
    if (!node) {
        return NULL;
    }
    node->def = def;
    node->n_out = c->n_out;
    if (def->params_size) {
        node->params = nsci_malloc(def->params_size);
        if (!node->params) {
            goto fail;
        }
        memcpy(node->params, c->params, def->params_size);
    }
    for (int i = 0; i < c->n_in; i++) {
        nsc_tensor *t = c->in[i];
        meta_of(&node->in_meta[i], t);
        node->needs_grad[i] = nsci_requires_grad(t);
        if (node->needs_grad[i] && nsci_edge_of(t, &node->next[i]) != NSC_OK) {
            goto fail;
        }
        if (!has_bit(def->save_inputs, i)) {
            continue;
        }
        if ((def->flags & NSCI_OP_INPLACE) && i < PRE_WRITE_MAX && t_pre_write[i]) {
            node->saved_in[i] = t_pre_write[i]; // the value before the write
            node->saved_in_version[i] = version_of(t_pre_write[i]);
            t_pre_write[i] = NULL;
        } else if (save(t, &node->saved_in[i], &node->saved_in_version[i]) != NSC_OK) {
            goto fail;
        }
    }
    for (int k = 0; k < c->n_out; k++) {
        meta_of(&node->out_meta[k], c->out[k]);
        if (has_bit(def->save_outputs, k) &&
            save(c->out[k], &node->saved_out[k], &node->saved_out_version[k]) != NSC_OK) {
            goto fail;
        }
    }
    return node;
fail:
    nsci_node_release(node);
    return NULL;
}

// Geometry of view t relative to its base.
static nsci_view_geometry *geometry_of(const nsc_tensor *t) {
    nsci_view_geometry *v = nsci_calloc(1, sizeof *v);
    if (v) {
        v->ndim = t->ndim;
        memcpy(v->shape, t->shape, sizeof t->shape);
        memcpy(v->stride, t->stride, sizeof t->stride);
        v->offset = t->offset - t->base->offset;
        meta_of(&v->base, t->base);
    }
    return v;
}

// A view-of-base node for t whose gradient flows to edge (consumed).
static nsci_node *base_view_node(const nsc_tensor *t, nsci_edge *edge) {
    nsci_node *node = nsci_node_new(NSCI_NODE_BASE_VIEW, 1);
    if (!node || !(node->view = geometry_of(t))) {
        nsci_node_release(node);
        nsci_edge_clear(edge);
        return NULL;
    }
    node->n_out = 1;
    meta_of(&node->out_meta[0], t);
    node->in_meta[0] = node->view->base;
    node->needs_grad[0] = true;
    node->next[0] = *edge;
    return node;
}

nsc_status nsci_edge_of(nsc_tensor *t, nsci_edge *edge) {
    memset(edge, 0, sizeof *edge);
    struct nsci_autograd *ag = t->autograd;
    // A view taken before its base required grad requires grad now, as
    // torch's views follow their base: it gets its history here.
    bool late_view = !t->requires_grad && nsci_requires_grad(t);
    if (late_view) {
        if (!(ag = nsci_autograd_of(t))) {
            return nsc_last_status();
        }
        ag->slot->is_leaf = false; // its gradient flows on to the base
        ag->requires_grad = true;
        t->requires_grad = 1;
    }
    if (!t->requires_grad || !ag) {
        return NSC_OK;
    }
    // A view whose base was written in place since its history was set
    // regenerates that history from the base's current one.
    if (base_requires_grad(t) && (late_view || (ag->grad_fn && version_of(t) != ag->fn_version))) {
        nsci_edge base_edge;
        if (nsci_edge_of(t->base, &base_edge) != NSC_OK) {
            return nsc_last_status();
        }
        nsci_node *node = base_view_node(t, &base_edge);
        if (!node) {
            return nsc_last_status();
        }
        nsci_node_release(ag->grad_fn);
        ag->grad_fn = node; // keeps the slot: hooks stay with the tensor
        ag->output_index = 0;
        ag->fn_version = version_of(t);
        nsci_slot_release(node->out_slot[0]);
        node->out_slot[0] = nsci_slot_retain(ag->slot);
    }
    if (ag->grad_fn) {
        edge->node = nsci_node_retain(ag->grad_fn);
        edge->output_index = ag->output_index;
    } else {
        edge->leaf = nsci_slot_retain(ag->slot);
    }
    return NSC_OK;
}

static nsc_status attach_output(nsc_tensor *t, nsci_node *node, int k) {
    if (nsci_set_history(t, node, k) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_slot_release(node->out_slot[k]);
    node->out_slot[k] = nsci_slot_retain(t->autograd->slot);
    return NSC_OK;
}

// An in-place write into a view of base: base's history becomes
// copy-slices(base's old history, the write), the view's a view of it.
static nsc_status rebase_view_write(nsc_tensor *view, nsci_node *write) {
    nsc_tensor *base = view->base;
    nsci_node *cs = nsci_node_new(NSCI_NODE_COPY_SLICES, write->n_in);
    if (!cs || !(cs->view = geometry_of(view))) {
        nsci_node_release(cs);
        return nsc_last_status();
    }
    cs->n_out = 1;
    cs->inner = nsci_node_retain(write);
    meta_of(&cs->out_meta[0], base);
    cs->in_meta[0] = cs->view->base;
    cs->needs_grad[0] = base->requires_grad;
    if (cs->needs_grad[0] && nsci_edge_of(base, &cs->next[0]) != NSC_OK) {
        goto fail;
    }
    for (int i = 1; i < write->n_in; i++) {
        cs->in_meta[i] = write->in_meta[i];
        cs->needs_grad[i] = write->needs_grad[i];
        cs->next[i] = write->next[i]; // moved: the write's other gradients flow through cs
        memset(&write->next[i], 0, sizeof write->next[i]);
    }
    if (attach_output(base, cs, 0) != NSC_OK) {
        goto fail;
    }
    nsci_edge to_base = { nsci_node_retain(cs), 0, NULL };
    nsci_node *view_node = base_view_node(view, &to_base);
    nsci_node_release(cs);
    if (!view_node) {
        return nsc_last_status();
    }
    nsc_status status = attach_output(view, view_node, 0);
    nsci_node_release(view_node);
    return status;
fail:
    nsci_node_release(cs);
    return nsc_last_status();
}

static bool any_needs_grad(const nsci_node *node) {
    for (int i = 0; i < node->n_in; i++) {
        if (node->needs_grad[i]) {
            return true;
        }
    }
    return false;
}

nsc_status nsci_autograd_record(nsci_call *c) {
    const nsci_op_def *def = c->def;
    // Only the in-place op that made the pre-write copies may drop them: ops
    // its kernel dispatches on the way (a clone of an overlapping input) are
    // recorded in between.
    bool inplace = (def->flags & NSCI_OP_INPLACE) != 0;
    if (!def->backward) {
        if (inplace) {
            drop_pre_writes();
        }
        return NSC_OK; // no gradient flows through this op: outputs do not require grad
    }
    nsci_node *node = op_node(c);
    if (inplace) {
        drop_pre_writes(); // any the node did not take
    }
    if (!node) {
        return nsc_last_status();
    }
    nsc_status status = NSC_OK;
    if (!any_needs_grad(node)) {
        nsci_node_release(node);
        return NSC_OK;
    }
    for (int k = 0; k < c->n_out && status == NSC_OK; k++) {
        nsc_tensor *t = c->out[k];
        if (!nsci_is_float((nsc_dtype)t->dtype) || has_bit(def->nondiff_outputs, k)) {
            continue;
        }
        if (k == 0 && (def->flags & NSCI_OP_INPLACE) && t->base &&
            (t->base->requires_grad || any_needs_grad(node))) {
            status = rebase_view_write(t, node);
        } else {
            status = attach_output(t, node, k);
        }
    }
    nsci_node_release(node);
    return status;
}
