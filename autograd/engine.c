// nsc_backward: runs the recorded nodes reachable from a loss in reverse
// topological order (dependency counts; later-created nodes first among the
// ready), summing gradients that meet and accumulating into leaves (each
// leaf once, with the sum of its edges, as torch's AccumulateGrad).
#include <string.h>

#include "autograd/autograd_impl.h"

// A node to run, or a leaf's slot to deliver to (node NULL): its edges'
// gradients are summed in grads[0] and delivered, hooks first, once the last
// edge into it has run.
typedef struct task {
    const void *key;      // node or leaf: the map's key
    nsci_node *node;      // retained for the whole backward; NULL for a leaf
    nsci_grad_slot *leaf; // retained; a leaf's slot
    int pending;          // edges from unprocessed nodes still to deliver
    nsc_tensor *grads[NSCI_MAX_OUTPUTS];
} task;

typedef struct graph_walk {
    task *tasks;
    int n_tasks, cap_tasks;
    int *slots; // open-addressing map key -> task index (-1 empty)
    int n_slots;
    int *heap; // ready task indices, max-heap by sequence
    int n_heap;
} graph_walk;

static uint64_t hash_ptr(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    return x ^ (x >> 33);
}

static int find_task(const graph_walk *w, const void *key) {
    for (uint64_t h = hash_ptr(key);; h++) {
        int at = w->slots[h & (uint64_t)(w->n_slots - 1)];
        if (at < 0 || w->tasks[at].key == key) {
            return at;
        }
    }
}

static nsc_status grow(graph_walk *w) {
    int cap = w->cap_tasks ? w->cap_tasks * 2 : 64;
    task *tasks = nsci_realloc(w->tasks, (size_t)cap * sizeof *tasks);
    int *slots = tasks ? nsci_malloc((size_t)cap * 2 * sizeof *slots) : NULL;
    int *heap = slots ? nsci_realloc(w->heap, (size_t)cap * sizeof *heap) : NULL;
    if (tasks) {
        w->tasks = tasks;
    }
    if (!heap) {
        nsci_free(slots);
        return nsc_last_status();
    }
    w->heap = heap;
    w->cap_tasks = cap;
    nsci_free(w->slots);
    w->slots = slots;
    w->n_slots = cap * 2;
    memset(slots, -1, (size_t)w->n_slots * sizeof *slots);
    for (int i = 0; i < w->n_tasks; i++) {
        uint64_t h = hash_ptr(w->tasks[i].key);
        while (slots[h & (uint64_t)(w->n_slots - 1)] >= 0) {
            h++;
        }
        slots[h & (uint64_t)(w->n_slots - 1)] = i;
    }
    return NSC_OK;
}

static int add_task(graph_walk *w, nsci_node *node, nsci_grad_slot *leaf) {
    if (w->n_tasks * 2 >= w->cap_tasks && grow(w) != NSC_OK) {
        return -1;
    }
    int i = w->n_tasks++;
    memset(&w->tasks[i], 0, sizeof w->tasks[i]);
    w->tasks[i].node = nsci_node_retain(node);
    w->tasks[i].leaf = nsci_slot_retain(leaf);
    w->tasks[i].key = node ? (const void *)node : (const void *)leaf;
    uint64_t h = hash_ptr(w->tasks[i].key);
    while (w->slots[h & (uint64_t)(w->n_slots - 1)] >= 0) {
        h++;
    }
    w->slots[h & (uint64_t)(w->n_slots - 1)] = i;
    return i;
}

// Finds every node and leaf reachable from root and counts the edges into each.
static nsc_status discover(graph_walk *w, nsci_node *root) {
    if (add_task(w, root, NULL) < 0) {
        return nsc_last_status();
    }
    for (int i = 0; i < w->n_tasks; i++) {
        nsci_node *node = w->tasks[i].node;
        for (int k = 0; node && k < node->n_in; k++) {
            nsci_node *child = node->next[k].node;
            nsci_grad_slot *leaf = child ? NULL : node->next[k].leaf;
            if (!child && !leaf) {
                continue;
            }
            int at = find_task(w, child ? (const void *)child : (const void *)leaf);
            if (at < 0 && (at = add_task(w, child, leaf)) < 0) {
                return nsc_last_status();
            }
            w->tasks[at].pending++;
        }
    }
    return NSC_OK;
}

static bool later(const graph_walk *w, int a, int b) {
    return w->tasks[a].node->sequence > w->tasks[b].node->sequence;
}

static void heap_push(graph_walk *w, int t) {
    int i = w->n_heap++;
    w->heap[i] = t;
    while (i > 0 && later(w, w->heap[i], w->heap[(i - 1) / 2])) {
        int parent = (i - 1) / 2, tmp = w->heap[i];
        w->heap[i] = w->heap[parent];
        w->heap[parent] = tmp;
        i = parent;
    }
}

static int heap_pop(graph_walk *w) {
    int top = w->heap[0];
    w->heap[0] = w->heap[--w->n_heap];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, best = i;
        if (l < w->n_heap && later(w, w->heap[l], w->heap[best])) {
            best = l;
        }
        if (r < w->n_heap && later(w, w->heap[r], w->heap[best])) {
            best = r;
        }
        if (best == i) {
            break;
        }
        int tmp = w->heap[i];
        w->heap[i] = w->heap[best];
        w->heap[best] = tmp;
        i = best;
    }
    return top;
}

// *sum += g (taking ownership of g).
static nsc_status accumulate(nsc_tensor **sum, nsc_tensor *g) {
    if (!*sum) {
        *sum = g;
        return NSC_OK;
    }
    nsc_tensor *total = nsc_add(*sum, g);
    nsc_free(g);
    if (!total) {
        return nsc_last_status();
    }
    nsc_free(*sum);
    *sum = total;
    return NSC_OK;
}

// True when nothing but the caller's one reference can see g's memory: a
// contiguous tensor covering exactly its storage, held once, and when it is a
// view, its base is held by that view alone (a gradient that a backward rule
// reshaped). Such a gradient can become .grad without a copy (torch's
// AccumulateGrad steals it the same way).
static bool only_reference(const nsc_tensor *t) {
    return atomic_load(&t->refcount) == 1 && !t->autograd && !t->proxy && !t->pinned;
}

static bool exclusively_owned(const nsc_tensor *g) {
    const nsci_storage *st = g->storage;
    int holders = g->base ? 2 : 1; // the base keeps a storage reference of its own
    return only_reference(g) && (!g->base || only_reference(g->base)) && st &&
           atomic_load(&st->refcount) == holders && !st->release && g->offset == 0 &&
           nsci_is_contiguous(g) &&
           st->bytes == (size_t)nsci_numel(g->ndim, g->shape) * nsc_dtype_size(g->dtype);
}

static bool same_geometry(const nsc_tensor *a, const nsc_tensor *b) {
    return a->dtype == b->dtype && a->device == b->device && a->ndim == b->ndim &&
           memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof a->shape[0]) == 0;
}

// Adds g into .grad. The first gradient is stolen when *grad may be taken
// (may_take: the caller drops it afterwards) and nobody else can see it, else
// copied, so .grad never aliases a tensor the graph or the caller may write
// later. Later gradients are added in place, as torch does outside grad mode:
// one pass over memory instead of a copy, a new buffer and an add. A .grad
// the caller set to a non-contiguous tensor (an expanded one cannot be
// written in place) is replaced by the sum instead.
static nsc_status accumulate_grad(nsci_grad_slot *slot, nsc_tensor **grad, bool may_take) {
    nsc_tensor *g = *grad;
    if (g->device != slot->device) { // a loss computed from META (shape-only) tensors
        char a[160];
        return nsci_fail(NSC_ERR_DEVICE, "backward: a gradient %s on %s reached a tensor on %s%s",
                         nsci_shape_str(a, sizeof a, g->ndim, g->shape),
                         nsc_device_name((nsc_device)g->device),
                         nsc_device_name((nsc_device)slot->device),
                         g->device == NSC_META ? ": the loss was computed from META tensors, "
                                                 "which have shapes only"
                                               : "");
    }
    if (slot->grad && same_geometry(slot->grad, g) && nsci_is_contiguous(slot->grad) &&
        !slot->grad->requires_grad) {
        return nsc_add_(slot->grad, g);
    }
    nsc_tensor *own = NULL;
    if (!slot->grad && may_take && exclusively_owned(g)) {
        own = g;
        *grad = NULL;
    } else {
        own = nsc_clone(g);
    }
    return own ? accumulate(&slot->grad, own) : nsc_last_status();
}

// A gradient reaching a leaf (or a retained non-leaf): hooks, then .grad.
static nsc_status deliver_to_slot(nsci_grad_slot *slot, nsc_tensor **grad, bool run_hooks,
                                  bool may_take) {
    if (run_hooks && nsci_slot_run_hooks(slot, grad) != NSC_OK) {
        return nsc_last_status();
    }
    if (!slot->is_leaf && !slot->retain_grad) {
        return NSC_OK;
    }
    return accumulate_grad(slot, grad, may_take);
}

// *sum += g for a leaf's gradients (taking ownership of g): in place when
// nobody else can see *sum, as accumulate_grad adds into .grad, so that
// summing a tied weight's edges costs no extra buffer.
static nsc_status add_leaf_grad(nsc_tensor **sum, nsc_tensor *g) {
    if (*sum && exclusively_owned(*sum) && same_geometry(*sum, g)) {
        nsc_status status = nsc_add_(*sum, g);
        nsc_free(g);
        return status;
    }
    return accumulate(sum, g);
}

// The last edge into a leaf has run: its hooks see the sum once, then .grad.
static nsc_status deliver_leaf(task *t) {
    nsc_status status = NSC_OK;
    if (t->grads[0]) {
        status = deliver_to_slot(t->leaf, &t->grads[0], true, true);
        nsc_free(t->grads[0]);
        t->grads[0] = NULL;
    }
    return status;
}

static nsc_status run_task(graph_walk *w, task *t, bool retain_graph) {
    nsci_node *node = t->node;
    nsc_tensor *on_stack[16] = { 0 };
    nsc_tensor **grad_in = nsci_grad_array(on_stack, node->n_in);
    if (!grad_in) {
        return nsc_last_status();
    }
    nsc_status status = NSC_OK;
    for (int k = 0; k < node->n_out && status == NSC_OK; k++) {
        if (!t->grads[k] && nsci_is_float(node->out_meta[k].dtype)) {
            const nsci_meta *m = &node->out_meta[k];
            t->grads[k] = nsc_zeros(m->dtype, m->device, m->ndim, m->shape);
            status = t->grads[k] ? NSC_OK : nsc_last_status();
        } else if (t->grads[k] && node->out_slot[k]) {
            status = deliver_to_slot(node->out_slot[k], &t->grads[k], true, false);
        }
    }
    if (status == NSC_OK) {
        status = nsci_node_backward(node, t->grads, grad_in);
    }
    for (int k = 0; k < NSCI_MAX_OUTPUTS; k++) {
        nsc_free(t->grads[k]);
        t->grads[k] = NULL;
    }
    for (int i = 0; i < node->n_in; i++) {
        nsci_edge *e = &node->next[i];
        const void *key = e->node ? (const void *)e->node : (const void *)e->leaf;
        task *child = key ? &w->tasks[find_task(w, key)] : NULL;
        if (status == NSC_OK && grad_in[i] && child) {
            status = e->node ? accumulate(&child->grads[e->output_index], grad_in[i])
                             : add_leaf_grad(&child->grads[0], grad_in[i]);
            grad_in[i] = NULL;
        }
        nsc_free(grad_in[i]);
        if (child && --child->pending == 0) {
            if (e->node) {
                heap_push(w, (int)(child - w->tasks));
            } else if (status == NSC_OK) {
                status = deliver_leaf(child);
            }
        }
    }
    if (grad_in != on_stack) {
        nsci_free(grad_in);
    }
    if (status == NSC_OK && !retain_graph) {
        nsci_node_release_saved(node);
    }
    return status;
}

static void walk_free(graph_walk *w) {
    for (int i = 0; i < w->n_tasks; i++) {
        for (int k = 0; k < NSCI_MAX_OUTPUTS; k++) {
            nsc_free(w->tasks[i].grads[k]);
        }
        nsci_node_release(w->tasks[i].node);
        nsci_slot_release(w->tasks[i].leaf);
    }
    nsci_free(w->tasks);
    nsci_free(w->slots);
    nsci_free(w->heap);
}

static nsc_status check_root(nsc_tensor *loss, nsc_tensor *grad) {
    char a[160], b[160];
    if (!loss->requires_grad) {
        return nsci_fail(NSC_ERR_STATE,
                         "backward: the tensor %s does not require grad and has "
                         "no recorded history",
                         nsci_shape_str(a, sizeof a, loss->ndim, loss->shape));
    }
    if (!grad && nsci_numel(loss->ndim, loss->shape) != 1) {
        return nsci_fail(NSC_ERR_SHAPE,
                         "backward: loss %s has %lld elements: a gradient can be "
                         "implied only for one element; pass grad",
                         nsci_shape_str(a, sizeof a, loss->ndim, loss->shape),
                         (long long)nsci_numel(loss->ndim, loss->shape));
    }
    if (grad && (grad->ndim != loss->ndim ||
                 memcmp(grad->shape, loss->shape, (size_t)loss->ndim * 8) != 0)) {
        return nsci_fail(NSC_ERR_SHAPE, "backward: grad %s for a loss of shape %s",
                         nsci_shape_str(a, sizeof a, grad->ndim, grad->shape),
                         nsci_shape_str(b, sizeof b, loss->ndim, loss->shape));
    }
    if (grad && (grad->device != loss->device || !nsci_is_float((nsc_dtype)grad->dtype))) {
        return nsci_fail(
            NSC_ERR_DTYPE,
            "backward: grad %s on %s for a loss %s on %s: expected "
            "a float gradient on the loss's device",
            nsc_dtype_name((nsc_dtype)grad->dtype), nsc_device_name((nsc_device)grad->device),
            nsc_dtype_name((nsc_dtype)loss->dtype), nsc_device_name((nsc_device)loss->device));
    }
    return NSC_OK;
}

static nsc_status run_graph(nsci_edge *root, nsc_tensor *g, bool retain_graph) {
    if (root->leaf) {
        nsc_tensor *own = nsc_retain(g); // hooks may replace it
        nsc_status status = deliver_to_slot(root->leaf, &own, true, true);
        nsc_free(own);
        return status;
    }
    graph_walk w = { 0 };
    nsc_status status = discover(&w, root->node);
    if (status == NSC_OK) {
        w.tasks[0].grads[root->output_index] = nsc_retain(g);
        heap_push(&w, 0);
    }
    while (status == NSC_OK && w.n_heap > 0) {
        status = run_task(&w, &w.tasks[heap_pop(&w)], retain_graph);
    }
    walk_free(&w);
    return status;
}

nsc_status nsc_backward(nsc_tensor *loss, nsc_tensor *grad, bool retain_graph) {
    if (!loss) {
        return nsc_last_status() != NSC_OK ? nsc_last_status()
                                           : nsci_fail(NSC_ERR_ARG, "backward: loss is NULL");
    }
    if (check_root(loss, grad) != NSC_OK) {
        return nsc_last_status();
    }
    bool was = nsc_set_grad_enabled(false);
    // A gradient of another float dtype is cast to the loss's, as torch's
    // engine casts each incoming gradient to its tensor's dtype.
    nsc_tensor *g = !grad                        ? nsc_ones_like(loss)
                    : grad->dtype == loss->dtype ? nsc_retain(grad)
                                                 : nsc_to_dtype(grad, (nsc_dtype)loss->dtype);
    nsci_edge root;
    nsc_status status = g ? nsci_edge_of(loss, &root) : nsc_last_status();
    if (status == NSC_OK) {
        status = run_graph(&root, g, retain_graph);
        nsci_edge_clear(&root);
    }
    nsc_free(g);
    nsc_set_grad_enabled(was);
    return status;
}
