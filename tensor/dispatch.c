// The one dispatch function every op goes through (DESIGN.md "The op
// table"): check with the shape rule, hand proxies to the graph, run the
// device kernel, record on the tape.
#include <string.h>

#include "tensor/profile.h"
#include "tensor/tensor_impl.h"

static atomic_llong g_kernels_run; // atomic: kernels run, for tests of "nothing ran"

int64_t nsci_kernel_count(void) {
    return atomic_load(&g_kernels_run);
}

nsc_status nsci_call_fail(const nsci_call *c, nsc_status status, const char *fmt, ...) {
    char shapes[512] = "";
    size_t used = 0;
    int listed = c->n_in < 8 ? c->n_in : 8; // long lists (an optimizer's) are cut short
    for (int i = 0; i < listed && used < sizeof shapes; i++) {
        char buf[160];
        const nsc_tensor *t = c->in[i];
        used += (size_t)snprintf(shapes + used, sizeof shapes - used, "%s%s", i ? ", " : "",
                                 t ? nsci_shape_str(buf, sizeof buf, t->ndim, t->shape) : "NULL");
    }
    if (listed < c->n_in && used < sizeof shapes) {
        snprintf(shapes + used, sizeof shapes - used, ", ... (%d inputs)", c->n_in);
    }
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *name = c->def ? c->def->name : nsci_op_defs[c->op]->name;
    if (c->n_in > 0) {
        return nsci_fail(status, "%s: %s: %s", name, shapes, msg);
    }
    return nsci_fail(status, "%s: %s", name, msg);
}

// Agrees the inputs' devices: META inputs take part through the device their
// value will have (a proxy's target), so proxy + cpu tensor works.
static nsc_status resolve_device(nsci_call *c) {
    bool any_meta = false;
    int target = -1, first = -1;
    for (int i = 0; i < c->n_in; i++) {
        const nsc_tensor *t = c->in[i];
        any_meta |= t->device == NSC_META;
        int dev = t->device == NSC_META ? t->target_device : t->device;
        if (dev == NSC_META) {
            continue;
        }
        if (target < 0) {
            target = dev;
            first = i;
        } else if (target != dev) {
            return nsci_call_fail(c, NSC_ERR_DEVICE,
                                  "input %d is on %s and input %d on %s: expected one device",
                                  first, nsc_device_name((nsc_device)target), i,
                                  nsc_device_name((nsc_device)dev));
        }
    }
    c->target = target < 0 ? NSC_META : (nsc_device)target;
    c->device = (any_meta || c->n_in == 0) ? NSC_META : c->target;
    if (c->n_in == 0) {
        c->device = c->target;
    }
    return NSC_OK;
}

static void free_outputs(nsci_call *c) {
    for (int i = 0; i < NSCI_MAX_OUTPUTS; i++) {
        nsc_free(c->out[i]);
        c->out[i] = NULL;
    }
}

static bool same_shape(int ndim, const int64_t *shape, const nsc_tensor *t) {
    return ndim == t->ndim && (ndim == 0 || memcmp(shape, t->shape, (size_t)ndim * 8) == 0);
}

// Makes the output tensors the infer rule described; no kernel runs here.
static nsc_status create_outputs(nsci_call *c, nsc_device device) {
    for (int i = 0; i < c->n_out; i++) {
        const nsci_meta *m = &c->meta[i];
        if (i == 0 && (c->def->flags & NSCI_OP_INPLACE)) {
            if (!same_shape(m->ndim, m->shape, c->in[0])) {
                return nsci_call_fail(c, NSC_ERR_SHAPE, "in-place result would change the shape");
            }
            c->out[0] = nsc_retain(c->in[0]);
            continue;
        }
        if (i == 0 && m->is_view) {
            c->out[0] = nsci_tensor_view(c->in[0], m->ndim, m->shape, m->stride, m->offset);
            if (!c->out[0]) {
                return nsc_last_status();
            }
            if (c->op == NSC_OP_detach) { // shares the storage, not a view for autograd
                nsc_free(c->out[0]->base);
                c->out[0]->base = NULL;
            }
            continue;
        }
        nsc_device dev = device == NSC_META ? NSC_META : m->device;
        nsc_tensor *t = nsci_tensor_header(m->dtype, dev, m->ndim, m->shape);
        if (!t) {
            return nsc_last_status();
        }
        t->target_device = (uint8_t)m->device;
        c->out[i] = t;
        if (nsci_tensor_alloc_data(t) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static bool overlaps_storage(const nsc_tensor *a, const nsc_tensor *b) {
    if (!a->storage || a->storage != b->storage) {
        return false;
    }
    bool same_geometry = a->offset == b->offset && same_shape(a->ndim, a->shape, b) &&
                         (a->ndim == 0 || memcmp(a->stride, b->stride, (size_t)a->ndim * 8) == 0);
    return !same_geometry; // identical views are safe for elementwise writes
}

static nsc_status run_kernel(nsci_call *c) {
    const nsci_op_def *def = c->def;
    if (c->meta[0].is_view && !(def->flags & NSCI_OP_INPLACE)) {
        return NSC_OK; // a view shares storage: nothing to compute
    }
    nsc_device dev = c->device;
    if (def->flags & NSCI_OP_CROSS_DEVICE) {
        bool cuda = c->in[0]->device == NSC_CUDA || c->meta[0].device == NSC_CUDA;
        dev = cuda ? NSC_CUDA : NSC_CPU;
    }
    nsci_kernel_fn fn = dev == NSC_CPU ? def->cpu : nsci_device_kernels[dev][c->op];
    if (!fn) {
        return nsci_call_fail(c, NSC_ERR_UNSUPPORTED, "no kernel for device %s",
                              nsc_device_name(dev));
    }
    // An in-place write whose source overlaps the destination reads a copy.
    nsc_tensor *const *inputs = c->in;
    nsc_tensor *copies[8] = { 0 };
    nsc_tensor *patched[8];
    bool patch = false;
    if ((def->flags & NSCI_OP_INPLACE) && c->n_in <= 8) {
        for (int i = 0; i < c->n_in; i++) {
            patched[i] = c->in[i];
            if (i > 0 && overlaps_storage(c->in[0], c->in[i])) {
                copies[i] = nsc_clone(c->in[i]);
                if (!copies[i]) {
                    goto fail;
                }
                patched[i] = copies[i];
                patch = true;
            }
        }
    }
    if (patch) {
        c->in = patched;
    }
    atomic_fetch_add_explicit(&g_kernels_run, 1, memory_order_relaxed);
    nsci_profile_mark mark;
    nsci_profile_begin(&mark, dev);
    nsc_status status = fn(c);
    nsci_profile_end(&mark, c->op, dev);
    c->in = inputs;
    for (int i = 0; i < 8; i++) {
        nsc_free(copies[i]);
    }
    if (status == NSC_OK && (def->flags & NSCI_OP_INPLACE) && c->in[0]->storage) {
        atomic_fetch_add(&c->in[0]->storage->version, 1);
    }
    return status;
fail:
    for (int i = 0; i < 8; i++) {
        nsc_free(copies[i]);
    }
    return nsc_last_status();
}

// A float view of a base requiring grad counts, though made before the base
// required it (autograd gives it its history when the op is recorded).
static bool any_requires_grad(const nsci_call *c) {
    for (int i = 0; i < c->n_in; i++) {
        const nsc_tensor *t = c->in[i];
        if (t->requires_grad ||
            (t->base && t->base->requires_grad && nsci_is_float((nsc_dtype)t->dtype))) {
            return true;
        }
    }
    return false;
}

// Every output's element count must fit int64, and an allocated output's
// byte count size_t: an expand or a broadcast of huge sizes would otherwise
// give a numel that wraps, and a data allocation smaller than the tensor.
static nsc_status check_output_sizes(const nsci_call *c) {
    for (int i = 0; i < c->n_out; i++) {
        const nsci_meta *m = &c->meta[i];
        bool allocated = !m->is_view && !(i == 0 && (c->def->flags & NSCI_OP_INPLACE));
        int64_t n = 1;
        size_t bytes;
        bool numel_overflows = false;
        for (int d = 0; d < m->ndim && !numel_overflows; d++) {
            numel_overflows = nsci_mul_overflows(n, m->shape[d], &n);
        }
        bool bytes_overflow = !numel_overflows && allocated &&
                              __builtin_mul_overflow((size_t)n, nsc_dtype_size(m->dtype), &bytes);
        if (numel_overflows || bytes_overflow) {
            char buf[160];
            return nsci_call_fail(c, NSC_ERR_SHAPE, "output %d of shape %s: %s", i,
                                  nsci_shape_str(buf, sizeof buf, m->ndim, m->shape),
                                  numel_overflows ? "its element count overflows int64"
                                                  : "its byte count overflows size_t");
        }
    }
    return NSC_OK;
}

nsc_status nsci_dispatch(nsci_call *c) {
    c->def = nsci_op_defs[c->op];
    const nsci_op_def *def = c->def;
    memset(c->out, 0, sizeof c->out);
    for (int i = 0; i < c->n_in; i++) {
        if (!c->in[i]) {
            if (nsc_last_status() == NSC_OK) {
                nsci_fail(NSC_ERR_ARG, "%s: input %d is NULL", def->name, i);
            }
            return nsc_last_status();
        }
    }
    if (resolve_device(c) != NSC_OK) {
        return nsc_last_status();
    }
    c->n_out = def->n_outputs;
    memset(c->meta, 0, sizeof c->meta);
    for (int i = 0; i < c->n_out; i++) {
        c->meta[i].device = c->target;
    }
    bool any_proxy = false;
    for (int i = 0; i < c->n_in; i++) {
        any_proxy |= c->in[i]->proxy != NULL;
    }
    nsc_status status = def->infer(c);
    if (status == NSC_OK) {
        status = check_output_sizes(c);
    }
    if (status == NSC_OK && any_proxy && def->no_graph) {
        int i = 0;
        while (!c->in[i]->proxy) {
            i++;
        }
        status = nsci_call_fail(c, NSC_ERR_UNSUPPORTED,
                                "input %d is a proxy, and this op cannot be recorded in an "
                                "intervention graph: %s",
                                i, def->no_graph);
    }
    if (status != NSC_OK) {
        if (any_proxy && nsci_hook_table.proxy_error) {
            nsci_hook_table.proxy_error(c);
        }
        return status;
    }
    if (any_proxy && nsci_hook_table.proxy_op) {
        status = create_outputs(c, NSC_META);
        if (status == NSC_OK) {
            status = nsci_hook_table.proxy_op(c);
        }
        if (status != NSC_OK) {
            free_outputs(c);
        }
        return status;
    }
    if ((def->flags & NSCI_OP_INPLACE) && c->device == NSC_META && c->in[0]->device != NSC_META) {
        return nsci_call_fail(c, NSC_ERR_DEVICE,
                              "writes into a %s tensor from a META one: META "
                              "tensors have shapes only, no values",
                              nsc_device_name((nsc_device)c->in[0]->device));
    }
    bool record = nsci_hook_table.record && any_requires_grad(c) && nsci_hook_table.grad_enabled();
    if (record && nsci_hook_table.check) {
        status = nsci_hook_table.check(c); // refusals before anything is written
    }
    if (status == NSC_OK) {
        status = create_outputs(c, c->device);
    }
    if (status == NSC_OK && c->device != NSC_META) {
        status = run_kernel(c);
    }
    if (status == NSC_OK && record) {
        status = nsci_hook_table.record(c);
    }
    if (status != NSC_OK) {
        free_outputs(c);
    }
    return status;
}

nsc_tensor *nsci_run(nsc_op op, int n_in, nsc_tensor *const *in, const void *params) {
    nsci_call c = { .op = op, .n_in = n_in, .in = in, .params = params };
    if (nsci_dispatch(&c) != NSC_OK) {
        return NULL;
    }
    for (int i = 1; i < c.n_out; i++) {
        nsc_free(c.out[i]);
    }
    return c.out[0];
}

nsc_status nsci_run_inplace(nsc_op op, int n_in, nsc_tensor *const *in, const void *params) {
    nsci_call c = { .op = op, .n_in = n_in, .in = in, .params = params };
    nsc_status status = nsci_dispatch(&c);
    if (status == NSC_OK) {
        for (int i = 0; i < c.n_out; i++) {
            nsc_free(c.out[i]);
        }
    }
    return status;
}

nsc_status nsci_run_multi(nsc_op op, int n_in, nsc_tensor *const *in, const void *params,
                          nsc_tensor **out) {
    nsci_call c = { .op = op, .n_in = n_in, .in = in, .params = params };
    nsc_status status = nsci_dispatch(&c);
    if (status == NSC_OK) {
        for (int i = 0; i < c.n_out; i++) {
            out[i] = c.out[i];
        }
    }
    return status;
}
