// Backward nodes: their lifecycle, and running one node's backward (an op's
// rule, a regenerated view of a base, or copy-slices for a base whose view
// was written in place, as PyTorch's CopySlices).
#include <string.h>

#include "autograd/autograd_impl.h"

static atomic_ullong g_sequence; // atomic: node creation order across threads

uint64_t nsci_next_sequence(void) {
    return atomic_fetch_add(&g_sequence, 1) + 1;
}

nsci_node *nsci_node_new(nsci_node_kind kind, int n_in) {
    nsci_node *node = nsci_calloc(1, sizeof *node);
    if (!node) {
        return NULL;
    }
    atomic_init(&node->refcount, 1);
    node->kind = kind;
    node->sequence = nsci_next_sequence();
    node->n_in = n_in;
    size_t n = (size_t)(n_in > 0 ? n_in : 1);
    node->in_meta = nsci_calloc(n, sizeof *node->in_meta);
    node->needs_grad = nsci_calloc(n, sizeof *node->needs_grad);
    node->next = nsci_calloc(n, sizeof *node->next);
    node->saved_in = nsci_calloc(n, sizeof *node->saved_in);
    node->saved_in_version = nsci_calloc(n, sizeof *node->saved_in_version);
    if (!node->in_meta || !node->needs_grad || !node->next || !node->saved_in ||
        !node->saved_in_version) {
        nsci_node_release(node);
        return NULL;
    }
    return node;
}

nsci_node *nsci_node_retain(nsci_node *node) {
    if (node) {
        atomic_fetch_add(&node->refcount, 1);
    }
    return node;
}

void nsci_edge_clear(nsci_edge *edge) {
    nsci_node_release(edge->node);
    nsci_slot_release(edge->leaf);
    memset(edge, 0, sizeof *edge);
}

// After a backward without retain_graph, as torch frees a node's saved
// tensors: a node that saved some cannot run again; one that saved none
// (a transpose, a view) still can, so a second backward through it works.
// The edges stay: the graph lives as long as a tensor holds its grad_fn.
void nsci_node_release_saved(nsci_node *node) {
    bool saved = false;
    for (int i = 0; i < node->n_in; i++) {
        saved = saved || node->saved_in[i];
        nsc_free(node->saved_in[i]);
        node->saved_in[i] = NULL;
    }
    for (int k = 0; k < NSCI_MAX_OUTPUTS; k++) {
        saved = saved || node->saved_out[k];
        nsc_free(node->saved_out[k]);
        node->saved_out[k] = NULL;
    }
    if (node->inner) {
        nsci_node_release_saved(node->inner);
    }
    node->released = node->released || saved;
}

void nsci_node_release(nsci_node *node) {
    if (!node || atomic_fetch_sub(&node->refcount, 1) != 1) {
        return;
    }
    // Iterative over the chain of sole owners, so a deep graph (thousands of
    // nodes in a long training loop) does not recurse once per node.
    while (node) {
        nsci_node *next_to_free = NULL;
        for (int i = 0; node->next && i < node->n_in; i++) {
            nsc_free(node->saved_in ? node->saved_in[i] : NULL);
            nsci_node *child = node->next[i].node;
            nsci_slot_release(node->next[i].leaf);
            if (child && atomic_fetch_sub(&child->refcount, 1) == 1) {
                if (!next_to_free) {
                    next_to_free = child;
                } else {
                    atomic_fetch_add(&child->refcount, 1);
                    nsci_node_release(child);
                }
            }
        }
        for (int k = 0; k < NSCI_MAX_OUTPUTS; k++) {
            nsc_free(node->saved_out[k]);
            nsci_slot_release(node->out_slot[k]);
        }
        nsci_node_release(node->inner);
        nsci_free(node->in_meta);
        nsci_free(node->needs_grad);
        nsci_free(node->next);
        nsci_free(node->saved_in);
        nsci_free(node->saved_in_version);
        nsci_free(node->params);
        nsci_free(node->view);
        nsci_free(node);
        node = next_to_free;
    }
}

const char *nsci_node_name(const nsci_node *node) {
    switch (node->kind) {
        case NSCI_NODE_OP:
            return node->def->name;
        case NSCI_NODE_BASE_VIEW:
            return "view_of_base";
        default:
            return "copy_slices";
    }
}

// --- op nodes ---

static nsc_status check_version(const nsci_node *node, const nsc_tensor *saved, int64_t version,
                                const char *what, int index) {
    if (!saved || !saved->storage) {
        return NSC_OK;
    }
    int64_t now = atomic_load(&saved->storage->version);
    if (now == version) {
        return NSC_OK;
    }
    char buf[160];
    return nsci_fail(NSC_ERR_STATE,
                     "backward of %s: %s %d %s, saved for the gradient, was modified by an "
                     "in-place op (version %lld, expected %lld): clone it before writing into it",
                     nsci_node_name(node), what, index,
                     nsci_shape_str(buf, sizeof buf, saved->ndim, saved->shape), (long long)now,
                     (long long)version);
}

// Brings a rule's gradient to the input's shape (undoing broadcasts) and dtype.
static nsc_tensor *conform(nsc_tensor *g, const nsci_meta *m) {
    nsc_tensor *r = nsc_retain(g);
    if (r && (r->ndim != m->ndim || memcmp(r->shape, m->shape, (size_t)m->ndim * 8) != 0)) {
        nsc_tensor *reduced = nsc_sum_to_size(r, m->ndim, m->shape);
        nsc_free(r);
        r = reduced;
    }
    if (r && r->dtype != m->dtype && nsci_is_float(m->dtype)) {
        nsc_tensor *cast = nsc_to_dtype(r, m->dtype);
        nsc_free(r);
        r = cast;
    }
    return r;
}

nsc_tensor **nsci_grad_array(nsc_tensor **on_stack, int n) {
    return n <= 16 ? on_stack : nsci_calloc((size_t)n, sizeof(nsc_tensor *));
}

static nsc_status op_backward(nsci_node *node, nsc_tensor **grad_out, nsc_tensor **grad_in) {
    if (node->released) {
        return nsci_fail(NSC_ERR_STATE,
                         "backward of %s: its saved tensors were freed by an earlier backward: "
                         "pass retain_graph = true to the first nsc_backward",
                         nsci_node_name(node));
    }
    for (int i = 0; i < node->n_in; i++) {
        if (check_version(node, node->saved_in[i], node->saved_in_version[i], "input", i)) {
            return nsc_last_status();
        }
    }
    for (int k = 0; k < node->n_out; k++) {
        if (check_version(node, node->saved_out[k], node->saved_out_version[k], "output", k)) {
            return nsc_last_status();
        }
    }
    nsci_grad_ctx ctx = {
        .def = node->def,
        .params = node->params,
        .n_in = node->n_in,
        .in_meta = node->in_meta,
        .in = node->saved_in,
        .n_out = node->n_out,
        .out_meta = node->out_meta,
        .out = node->saved_out,
        .needs_grad = node->needs_grad,
    };
    nsc_tensor *on_stack[16] = { 0 };
    nsc_tensor **raw = nsci_grad_array(on_stack, node->n_in);
    if (!raw) {
        return nsc_last_status();
    }
    nsc_status status = node->def->backward(&ctx, grad_out, raw);
    for (int i = 0; i < node->n_in; i++) {
        if (status == NSC_OK && raw[i] && node->needs_grad[i]) {
            grad_in[i] = conform(raw[i], &node->in_meta[i]);
            if (!grad_in[i]) {
                status = nsc_last_status();
            }
        }
        nsc_free(raw[i]);
    }
    if (raw != on_stack) {
        nsci_free(raw);
    }
    if (status != NSC_OK) {
        nsci_error_context("backward of %s", nsci_node_name(node));
    }
    return status;
}

// --- views of a base ---

// Zeros laid out like the base (its strides), as one flat storage, plus the
// view of it with the base's geometry and the one with the view's.
static nsc_status base_buffers(const nsci_view_geometry *v, nsc_device device, nsc_tensor **flat,
                               nsc_tensor **as_base, nsc_tensor **as_view) {
    int64_t span = 1;
    for (int d = 0; d < v->base.ndim; d++) {
        span += (v->base.shape[d] - 1) * v->base.stride[d];
    }
    for (int d = 0; d < v->base.ndim; d++) {
        span = v->base.shape[d] == 0 ? 1 : span;
    }
    *flat = nsc_zeros(v->base.dtype, device, 1, &span);
    *as_base = nsc_as_strided(*flat, v->base.ndim, v->base.shape, v->base.stride, 0);
    *as_view = nsc_as_strided(*flat, v->ndim, v->shape, v->stride, v->offset);
    if (!*as_base || !*as_view) {
        nsc_free(*flat);
        nsc_free(*as_base);
        nsc_free(*as_view);
        return nsc_last_status();
    }
    return NSC_OK;
}

// Whether two elements of the view may share memory: a dim whose stride does
// not step over everything the smaller-stride dims reach (an expanded dim,
// an as_strided view). Copying a gradient into such a view would keep one
// element's share and lose the others'.
static bool overlapping(const nsci_view_geometry *v) {
    int order[NSC_MAX_DIMS], n = 0;
    for (int d = 0; d < v->ndim; d++) {
        if (v->shape[d] == 0) {
            return false; // no element at all
        }
        if (v->shape[d] > 1) {
            int k = n++;
            for (; k > 0 && v->stride[order[k - 1]] > v->stride[d]; k--) {
                order[k] = order[k - 1];
            }
            order[k] = d;
        }
    }
    int64_t reach = 0; // the largest offset the smaller dims reach
    for (int k = 0; k < n; k++) {
        int d = order[k];
        if (v->stride[d] <= reach) {
            return true;
        }
        reach += v->stride[d] * (v->shape[d] - 1);
    }
    return false;
}

// An expanded view's elements along a stride-0 dim are one base element:
// its gradient is their sum (torch's as_strided backward), so the view is
// taken with those dims of size 1 and the gradient summed over them. Any
// other overlap is refused.
static nsc_status base_view_backward(nsci_node *node, nsc_tensor **grad_out,
                                     nsc_tensor **grad_in) {
    nsci_view_geometry g = *node->view;
    int expanded[NSC_MAX_DIMS], n_expanded = 0;
    for (int d = 0; d < g.ndim; d++) {
        if (g.stride[d] == 0 && g.shape[d] > 1) {
            expanded[n_expanded++] = d;
            g.shape[d] = 1;
        }
    }
    if (overlapping(&g)) {
        return nsci_fail(NSC_ERR_UNSUPPORTED,
                         "backward through an as_strided view whose elements overlap, of a "
                         "tensor written in place, is not supported: clone the view first");
    }
    nsc_tensor *grad =
        n_expanded ? nsc_sum(grad_out[0], n_expanded, expanded, true) : nsc_retain(grad_out[0]);
    nsc_tensor *flat, *as_base, *as_view;
    if (!grad || base_buffers(&g, nsc_tensor_device(grad_out[0]), &flat, &as_base, &as_view)) {
        nsc_free(grad);
        return nsc_last_status();
    }
    nsc_status status = nsc_copy_(as_view, grad);
    grad_in[0] = status == NSC_OK ? nsc_retain(as_base) : NULL;
    nsc_free(grad);
    nsc_free(flat);
    nsc_free(as_base);
    nsc_free(as_view);
    return status;
}

// The base received grad; the written view's part of it goes through the
// in-place op's backward, the rest flows to the base's earlier history.
static nsc_status copy_slices_backward(nsci_node *node, nsc_tensor **grad_out,
                                       nsc_tensor **grad_in) {
    nsc_tensor *flat, *as_base, *as_view, *region = NULL;
    if (base_buffers(node->view, nsc_tensor_device(grad_out[0]), &flat, &as_base, &as_view)) {
        return nsc_last_status();
    }
    nsc_tensor *on_stack[16] = { 0 };
    nsci_node *inner = node->inner;
    nsc_tensor **inner_in = nsci_grad_array(on_stack, inner->n_in);
    nsc_status status = inner_in ? nsc_copy_(as_base, grad_out[0]) : nsc_last_status();
    // A copy, never an alias: as_view is zeroed below while the inner
    // backward's result (which may be region itself, for copy_) is alive.
    if (status == NSC_OK && !(region = nsc_clone(as_view))) {
        status = nsc_last_status();
    }
    if (status == NSC_OK) {
        status = nsci_node_backward(inner, &region, inner_in);
    }
    if (status == NSC_OK) {
        status = inner_in[0] ? nsc_copy_(as_view, inner_in[0]) : nsc_zero_(as_view);
    }
    for (int i = 0; inner_in && i < inner->n_in; i++) {
        if (status == NSC_OK && i > 0) {
            grad_in[i] = nsc_retain(inner_in[i]);
        }
        nsc_free(inner_in[i]);
    }
    if (inner_in != on_stack) {
        nsci_free(inner_in);
    }
    grad_in[0] = status == NSC_OK && node->needs_grad[0] ? nsc_retain(as_base) : NULL;
    nsc_free(region);
    nsc_free(flat);
    nsc_free(as_base);
    nsc_free(as_view);
    return status;
}

nsc_status nsci_node_backward(nsci_node *node, nsc_tensor **grad_out, nsc_tensor **grad_in) {
    switch (node->kind) {
        case NSCI_NODE_OP:
            return op_backward(node, grad_out, grad_in);
        case NSCI_NODE_BASE_VIEW:
            return base_view_backward(node, grad_out, grad_in);
        default:
            return copy_slices_backward(node, grad_out, grad_in);
    }
}
