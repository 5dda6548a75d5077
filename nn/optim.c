// Optimizers: construction and validation, the step driver shared by SGD and
// AdamW (checks, state allocation, then one fused update op for each batch of
// parameters that step alike, tensor/op_optim.c), zero_grad, learning rate and state accessors.
#include <math.h>
#include <string.h>

#include "nn/optim_impl.h"
#include "tensor/op_params.h"

static const char *kind_name(nsci_optim_kind kind) {
    return kind == NSCI_OPTIM_SGD ? "sgd" : "adamw";
}

// "parameter 3 (fc1.weight [4,8] f32)": how errors name a parameter.
static const char *describe(char *buf, size_t bytes, int64_t i, const char *path,
                            const nsc_tensor *t) {
    char shape[160];
    if (!t) {
        snprintf(buf, bytes, "parameter %lld%s%s%s", (long long)i, path ? " (" : "",
                 path ? path : "", path ? ")" : "");
        return buf;
    }
    nsci_shape_str(shape, sizeof shape, t->ndim, t->shape);
    snprintf(buf, bytes, "parameter %lld (%s%s%s %s)", (long long)i, path ? path : "",
             path ? " " : "", shape, nsc_dtype_name((nsc_dtype)t->dtype));
    return buf;
}

// --- validation ---

nsc_status nsci_optim_check_sgd(const nsc_sgd_config *c) {
    char why[256];
    if (!c) {
        return nsci_fail(NSC_ERR_ARG, "sgd: config is NULL: expected an nsc_sgd_config");
    }
    if (nsci_sgd_config_problem(c, why, sizeof why)) {
        return nsci_fail(NSC_ERR_ARG, "sgd: %s", why);
    }
    return NSC_OK;
}

nsc_status nsci_optim_check_adamw(const nsc_adamw_config *c) {
    char why[256];
    if (!c) {
        return nsci_fail(NSC_ERR_ARG, "adamw: config is NULL: expected an nsc_adamw_config");
    }
    if (nsci_adamw_config_problem(c, why, sizeof why)) {
        return nsci_fail(NSC_ERR_ARG, "adamw: %s", why);
    }
    return NSC_OK;
}

int nsci_optim_repeated_dim(const nsc_tensor *t) {
    for (int d = 0; d < t->ndim; d++) {
        if (t->stride[d] == 0 && t->shape[d] > 1) {
            return d;
        }
    }
    return -1;
}

static nsc_status check_param(const char *op, nsc_tensor *const *params, int64_t i,
                              const char *path) {
    char what[256];
    nsc_tensor *t = params[i];
    describe(what, sizeof what, i, path, t);
    if (!t) {
        return nsci_fail(NSC_ERR_ARG, "%s: %s is NULL: expected a tensor", op, what);
    }
    if (!nsci_is_float((nsc_dtype)t->dtype)) {
        return nsci_fail(NSC_ERR_DTYPE, "%s: %s: expected f32 or f64", op, what);
    }
    if (t->device == NSC_META || nsc_tensor_is_proxy(t)) {
        return nsci_fail(NSC_ERR_DEVICE, "%s: %s on %s: expected a tensor with data (cpu or cuda)",
                         op, what, nsc_device_name((nsc_device)t->device));
    }
    if (!nsc_tensor_requires_grad(t) || !nsc_tensor_is_leaf(t)) {
        return nsci_fail(NSC_ERR_STATE,
                         "%s: %s %s: expected a leaf that requires grad "
                         "(nsc_requires_grad_ or nsc_module_requires_grad_)",
                         op, what,
                         nsc_tensor_requires_grad(t) ? "is not a leaf" : "does not require grad");
    }
    if (nsci_optim_repeated_dim(t) >= 0) {
        return nsci_fail(NSC_ERR_ARG,
                         "%s: %s has overlapping elements (stride 0): expected "
                         "a tensor that can be updated in place",
                         op, what);
    }
    for (int64_t k = 0; k < i; k++) {
        if (params[k] == t) {
            return nsci_fail(NSC_ERR_ARG,
                             "%s: %s is the same tensor as parameter %lld: "
                             "expected each parameter once",
                             op, what, (long long)k);
        }
    }
    return NSC_OK;
}

// --- creation ---

void nsc_optim_free(nsc_optim *opt) {
    if (!opt) {
        return;
    }
    for (int64_t i = 0; i < opt->n_params; i++) {
        nsc_free(opt->params[i]);
        if (opt->names) {
            nsci_free(opt->names[i]);
        }
        for (int s = 0; opt->state && s < NSCI_OPTIM_MAX_STATE; s++) {
            nsc_free(opt->state[i * NSCI_OPTIM_MAX_STATE + s]);
        }
    }
    nsci_free(opt->params);
    nsci_free(opt->names);
    nsci_free(opt->groups);
    nsci_free(opt->steps);
    nsci_free(opt->state);
    nsci_free(opt->scratch_index);
    nsci_free(opt->scratch_operands);
    nsci_free(opt);
}

// The common constructor: params validated, then retained (names copied when given).
static nsc_optim *optim_new(nsci_optim_kind kind, int64_t n_params, nsc_tensor *const *params,
                            const char *const *names) {
    const char *op = kind_name(kind);
    if (!params || n_params <= 0) {
        return nsci_fail_null(NSC_ERR_ARG, "%s: %lld parameters%s: expected a non-empty list", op,
                              (long long)n_params, params ? "" : " (NULL list)");
    }
    for (int64_t i = 0; i < n_params; i++) {
        if (check_param(op, params, i, names ? names[i] : NULL) != NSC_OK) {
            return NULL;
        }
    }
    size_t n = (size_t)n_params;
    nsc_optim *opt = nsci_calloc(1, sizeof *opt);
    if (!opt) {
        return NULL;
    }
    opt->kind = kind;
    opt->groups = nsci_calloc(1, sizeof *opt->groups);
    opt->params = nsci_calloc(n, sizeof *opt->params);
    opt->steps = nsci_calloc(n, sizeof *opt->steps);
    opt->state = nsci_calloc(n * NSCI_OPTIM_MAX_STATE, sizeof *opt->state);
    opt->names = names ? nsci_calloc(n, sizeof *opt->names) : NULL;
    opt->scratch_index = nsci_calloc(2 * n, sizeof *opt->scratch_index);
    opt->scratch_operands = nsci_calloc(NSCI_OPTIM_OPERANDS * n, sizeof *opt->scratch_operands);
    if (!opt->groups || !opt->params || !opt->steps || !opt->state || (names && !opt->names) ||
        !opt->scratch_index || !opt->scratch_operands) {
        goto fail;
    }
    for (int64_t i = 0; i < n_params; i++) {
        if (names && !(opt->names[i] = nsci_strdup(names[i]))) {
            goto fail;
        }
    }
    for (int64_t i = 0; i < n_params; i++) {
        opt->params[i] = nsc_retain(params[i]);
    }
    opt->n_params = n_params;
    opt->n_groups = 1;
    opt->groups[0] = (nsci_optim_group){ .first = 0, .count = n_params };
    return opt;
fail:
    if (opt->names) {
        for (int64_t i = 0; i < n_params; i++) {
            nsci_free(opt->names[i]);
        }
    }
    opt->n_params = 0;
    nsc_optim_free(opt);
    return NULL;
}

nsc_optim *nsc_optim_sgd_new(int64_t n_params, nsc_tensor *const *params,
                             const nsc_sgd_config *config) {
    if (nsci_optim_check_sgd(config) != NSC_OK) {
        return NULL;
    }
    nsc_optim *opt = optim_new(NSCI_OPTIM_SGD, n_params, params, NULL);
    if (opt) {
        opt->groups[0].sgd = *config;
    }
    return opt;
}

nsc_optim *nsc_optim_adamw_new(int64_t n_params, nsc_tensor *const *params,
                               const nsc_adamw_config *config) {
    if (nsci_optim_check_adamw(config) != NSC_OK) {
        return NULL;
    }
    nsc_optim *opt = optim_new(NSCI_OPTIM_ADAMW, n_params, params, NULL);
    if (opt) {
        opt->groups[0].adamw = *config;
    }
    return opt;
}

// --- parameter groups ---

// The arrays of an optimizer grown by a group of n parameters; all made or
// none (then NSC_ERR_OOM and the optimizer untouched).
typedef struct grown {
    nsc_tensor **params;
    char **names;
    int64_t *steps;
    nsc_tensor **state;
    nsci_optim_group *groups;
    int64_t *scratch_index;
    nsc_tensor **scratch_operands;
} grown;

static void grown_free(grown *g) {
    nsci_free(g->params);
    nsci_free(g->names);
    nsci_free(g->steps);
    nsci_free(g->state);
    nsci_free(g->groups);
    nsci_free(g->scratch_index);
    nsci_free(g->scratch_operands);
}

static nsc_status grow(const nsc_optim *opt, int64_t n, grown *g) {
    size_t old = (size_t)opt->n_params, total = old + (size_t)n;
    *g = (grown){
        .params = nsci_calloc(total, sizeof *g->params),
        .names = opt->names ? nsci_calloc(total, sizeof *g->names) : NULL,
        .steps = nsci_calloc(total, sizeof *g->steps),
        .state = nsci_calloc(total * NSCI_OPTIM_MAX_STATE, sizeof *g->state),
        .groups = nsci_calloc((size_t)opt->n_groups + 1, sizeof *g->groups),
        .scratch_index = nsci_calloc(2 * total, sizeof *g->scratch_index),
        .scratch_operands = nsci_calloc(NSCI_OPTIM_OPERANDS * total, sizeof *g->scratch_operands),
    };
    // the added parameters' names stay NULL: no path was given for them
    if (!g->params || !g->steps || !g->state || !g->groups || (opt->names && !g->names) ||
        !g->scratch_index || !g->scratch_operands) {
        grown_free(g);
        return NSC_ERR_OOM;
    }
    memcpy(g->params, opt->params, old * sizeof *g->params);
    memcpy(g->steps, opt->steps, old * sizeof *g->steps);
    memcpy(g->state, opt->state, old * NSCI_OPTIM_MAX_STATE * sizeof *g->state);
    memcpy(g->groups, opt->groups, (size_t)opt->n_groups * sizeof *g->groups);
    if (opt->names) {
        memcpy(g->names, opt->names, old * sizeof *g->names);
    }
    return NSC_OK;
}

// torch's add_param_group: params (checked as a constructor checks its
// list, and against every group's) become group opt->n_groups.
static nsc_status add_group(nsc_optim *opt, nsci_optim_kind kind, int64_t n,
                            nsc_tensor *const *params, nsci_optim_group *group) {
    const char *op = kind_name(kind);
    if (!opt) {
        return nsci_fail(NSC_ERR_ARG, "%s add_param_group: optimizer is NULL", op);
    }
    if (opt->kind != kind) {
        return nsci_fail(NSC_ERR_ARG, "%s add_param_group: the optimizer is %s: give an %s config",
                         op, kind_name(opt->kind), kind_name(opt->kind));
    }
    if (!params || n <= 0) {
        return nsci_fail(NSC_ERR_ARG,
                         "%s add_param_group: %lld parameters%s: expected a non-empty list", op,
                         (long long)n, params ? "" : " (NULL list)");
    }
    for (int64_t i = 0; i < n; i++) {
        if (check_param(op, params, i, NULL) != NSC_OK) {
            return nsc_last_status();
        }
        for (int64_t k = 0; k < opt->n_params; k++) {
            if (opt->params[k] == params[i]) {
                return nsci_fail(NSC_ERR_ARG,
                                 "%s add_param_group: parameter %lld is parameter %lld of group "
                                 "%d: expected each parameter in one group",
                                 op, (long long)i, (long long)k,
                                 (int)(nsci_optim_group_of(opt, k) - opt->groups));
            }
        }
    }
    grown g;
    if (grow(opt, n, &g) != NSC_OK) {
        return nsci_fail(NSC_ERR_OOM, "%s add_param_group: out of memory", op);
    }
    for (int64_t i = 0; i < n; i++) {
        g.params[opt->n_params + i] = nsc_retain(params[i]);
    }
    group->first = opt->n_params;
    group->count = n;
    g.groups[opt->n_groups] = *group;
    nsci_free(opt->params);
    nsci_free(opt->names);
    nsci_free(opt->steps);
    nsci_free(opt->state);
    nsci_free(opt->groups);
    nsci_free(opt->scratch_index);
    nsci_free(opt->scratch_operands);
    opt->params = g.params;
    opt->names = g.names;
    opt->steps = g.steps;
    opt->state = g.state;
    opt->groups = g.groups;
    opt->scratch_index = g.scratch_index;
    opt->scratch_operands = g.scratch_operands;
    opt->n_params += n;
    opt->n_groups++;
    return NSC_OK;
}

nsc_status nsc_optim_add_param_group_sgd(nsc_optim *opt, int64_t n_params,
                                         nsc_tensor *const *params, const nsc_sgd_config *config) {
    if (nsci_optim_check_sgd(config) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_optim_group group = { .sgd = *config };
    return add_group(opt, NSCI_OPTIM_SGD, n_params, params, &group);
}

nsc_status nsc_optim_add_param_group_adamw(nsc_optim *opt, int64_t n_params,
                                           nsc_tensor *const *params,
                                           const nsc_adamw_config *config) {
    if (nsci_optim_check_adamw(config) != NSC_OK) {
        return nsc_last_status();
    }
    nsci_optim_group group = { .adamw = *config };
    return add_group(opt, NSCI_OPTIM_ADAMW, n_params, params, &group);
}

nsc_adamw_config nsc_adamw_defaults(void) {
    return (nsc_adamw_config){
        .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2
    };
}

// Every parameter of root's tree once, with its path (copied: the module
// reuses the buffer nsc_module_param_at returns paths in).
static nsc_optim *optim_new_module(nsci_optim_kind kind, nsc_module *root) {
    if (!root) {
        return nsci_fail_null(NSC_ERR_ARG, "%s: module is NULL: expected a module tree",
                              kind_name(kind));
    }
    int64_t n_all = nsc_module_n_params(root), n = 0;
    nsc_tensor **params = nsci_calloc((size_t)NSCI_MAX(n_all, 1), sizeof *params);
    char **names = nsci_calloc((size_t)NSCI_MAX(n_all, 1), sizeof *names);
    nsc_optim *opt = NULL;
    bool ok = params && names;
    for (int64_t i = 0; ok && i < n_all; i++) {
        const char *path = NULL;
        nsc_tensor *t = nsc_module_param_at(root, i, &path);
        if (!t) { // a path too long to name the tensor by
            ok = false;
            break;
        }
        bool seen = false;
        for (int64_t k = 0; k < n && !seen; k++) {
            seen = params[k] == t;
        }
        if (!seen) {
            params[n] = t;
            ok = (names[n++] = nsci_strdup(path ? path : "")) != NULL;
        }
    }
    if (ok) {
        opt = optim_new(kind, n, params, (const char *const *)names);
    }
    for (int64_t k = 0; names && k < n; k++) {
        nsci_free(names[k]);
    }
    nsci_free(params);
    nsci_free(names);
    return opt;
}

nsc_optim *nsc_optim_sgd_new_module(nsc_module *root, const nsc_sgd_config *config) {
    if (nsci_optim_check_sgd(config) != NSC_OK) {
        return NULL;
    }
    nsc_optim *opt = optim_new_module(NSCI_OPTIM_SGD, root);
    if (opt) {
        opt->groups[0].sgd = *config;
    }
    return opt;
}

nsc_optim *nsc_optim_adamw_new_module(nsc_module *root, const nsc_adamw_config *config) {
    if (nsci_optim_check_adamw(config) != NSC_OK) {
        return NULL;
    }
    nsc_optim *opt = optim_new_module(NSCI_OPTIM_ADAMW, root);
    if (opt) {
        opt->groups[0].adamw = *config;
    }
    return opt;
}

// --- the step ---

const nsci_optim_group *nsci_optim_group_of(const nsc_optim *opt, int64_t i) {
    int g = opt->n_groups - 1;
    while (g > 0 && i < opt->groups[g].first) {
        g--;
    }
    return &opt->groups[g];
}

int nsci_optim_n_state(const nsc_optim *opt, const nsci_optim_group *g) {
    if (opt->kind == NSCI_OPTIM_SGD) {
        return g->sgd.momentum != 0 ? 1 : 0;
    }
    return g->adamw.amsgrad ? 3 : 2;
}

static nsc_status check_grad(const nsc_optim *opt, int64_t i, const nsc_tensor *g) {
    const nsc_tensor *p = opt->params[i];
    char what[256], got[160];
    if (g->dtype == p->dtype && g->device == p->device && g->ndim == p->ndim &&
        memcmp(g->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim) == 0) {
        return NSC_OK;
    }
    describe(what, sizeof what, i, opt->names ? opt->names[i] : NULL, p);
    nsci_shape_str(got, sizeof got, g->ndim, g->shape);
    return nsci_fail(g->dtype != p->dtype     ? NSC_ERR_DTYPE
                     : g->device != p->device ? NSC_ERR_DEVICE
                                              : NSC_ERR_SHAPE,
                     "%s step: gradient %s %s on %s: expected the shape, dtype and device of %s",
                     kind_name(opt->kind), got, nsc_dtype_name((nsc_dtype)g->dtype),
                     nsc_device_name((nsc_device)g->device), what);
}

// Drops the state made for parameters that have not stepped yet (undoes a
// failed allocation pass).
static void drop_new_state(nsc_optim *opt) {
    for (int64_t i = 0; i < opt->n_params; i++) {
        for (int s = 0; opt->steps[i] == 0 && s < NSCI_OPTIM_MAX_STATE; s++) {
            nsc_free(opt->state[i * NSCI_OPTIM_MAX_STATE + s]);
            opt->state[i * NSCI_OPTIM_MAX_STATE + s] = NULL;
        }
    }
}

static nsc_status alloc_state(nsc_optim *opt) {
    for (int64_t i = 0; i < opt->n_params; i++) {
        if (!nsc_tensor_get_grad(opt->params[i])) {
            continue;
        }
        int n_state = nsci_optim_n_state(opt, nsci_optim_group_of(opt, i));
        for (int s = 0; s < n_state; s++) {
            nsc_tensor **slot = &opt->state[i * NSCI_OPTIM_MAX_STATE + s];
            if (!*slot && !(*slot = nsc_zeros_like(opt->params[i]))) {
                nsc_status status = nsc_last_status();
                drop_new_state(opt);
                return status;
            }
        }
    }
    return NSC_OK;
}

// Lays the operands of parameters idx[0..n) out as the list op takes them:
// role r of parameter j at in[r * n + j].
static void list_operands(const nsc_optim *opt, const int64_t *idx, int64_t n, int roles,
                          nsc_tensor **in) {
    for (int64_t j = 0; j < n; j++) {
        in[j] = opt->params[idx[j]];
        in[n + j] = nsc_tensor_get_grad(in[j]);
        for (int s = 0; s < roles - 2; s++) {
            in[(2 + s) * n + j] = opt->state[idx[j] * NSCI_OPTIM_MAX_STATE + s];
        }
    }
}

static nsc_status run_list(const nsc_optim *opt, const nsci_optim_group *g, int64_t step, int64_t n,
                           int roles, nsc_tensor *const *in) {
    if (opt->kind == NSCI_OPTIM_SGD) {
        fused_sgd_params p = { g->sgd, step == 1 };
        return nsci_fused_sgd_run((int)(roles * n), in, &p);
    }
    fused_adamw_params p = { g->adamw, step };
    return nsci_fused_adamw_run((int)(roles * n), in, &p);
}

// The update of the parameters idx[0..n), their step counts already
// advanced and alike, as are their group, device and dtype: one fused op
// over their lists (in: scratch for NSCI_OPTIM_OPERANDS n operands), as
// torch's fused optimizers take a whole group. A parameter whose operands
// share storage with another's (parameters that are views of one buffer)
// moves to the end of idx and is updated by a call of its own: the list op
// refuses what separate updates of non-overlapping views allow, and such
// updates touch disjoint elements, so their order does not matter. It
// allocates nothing (take_batch keeps batches within
// NSCI_OPTIM_STACK_OPERANDS), so on the CPU it cannot fail once check_grad
// has passed; on a GPU only a device fault stops it. *done: how many of
// idx[0..n) (in their new order) were updated.
static nsc_status update(const nsc_optim *opt, int64_t *idx, int64_t n, nsc_tensor **in,
                         int64_t *done) {
    const nsci_optim_group *g = nsci_optim_group_of(opt, idx[0]);
    int roles = 2 + nsci_optim_n_state(opt, g);
    int64_t step = opt->steps[idx[0]], m = n; // idx[m..n) go one call each
    *done = 0;
    for (;;) {
        list_operands(opt, idx, m, roles, in);
        int shared, other;
        if (m <= 1) {
            break;
        }
        if (nsci_optim_shared_operands((int)(roles * m), roles, in, &shared, &other) != NSC_OK) {
            return nsc_last_status();
        }
        if (shared < 0) {
            break;
        }
        int64_t j = other % m, moved = idx[j];
        memmove(&idx[j], &idx[j + 1], (size_t)(m - 1 - j) * sizeof *idx);
        idx[--m] = moved;
    }
    if (m > 0 && run_list(opt, g, step, m, roles, in) != NSC_OK) {
        return nsc_last_status();
    }
    for (*done = m; *done < n; (*done)++) {
        list_operands(opt, &idx[*done], 1, roles, in);
        if (run_list(opt, g, step, 1, roles, in) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// Moves into batch (returning its length) the parameters of pending[0..*n)
// that step like pending[0] (same group, step count, device and dtype), as
// many as one call checks without allocating; pending keeps the others, in
// order.
static int64_t take_batch(const nsc_optim *opt, int64_t *pending, int64_t *n, int64_t *batch) {
    const nsc_tensor *first = opt->params[pending[0]];
    const nsci_optim_group *g = nsci_optim_group_of(opt, pending[0]);
    int64_t most = NSCI_OPTIM_STACK_OPERANDS / (2 + nsci_optim_n_state(opt, g));
    int64_t step = opt->steps[pending[0]], taken = 0, kept = 0;
    for (int64_t k = 0; k < *n; k++) {
        int64_t i = pending[k];
        const nsc_tensor *p = opt->params[i];
        bool alike = taken < most && nsci_optim_group_of(opt, i) == g && opt->steps[i] == step &&
                     p->device == first->device && p->dtype == first->dtype;
        if (alike) {
            batch[taken++] = i;
        } else {
            pending[kept++] = i;
        }
    }
    *n = kept;
    return taken;
}

nsc_status nsc_optim_step(nsc_optim *opt) {
    if (!opt) {
        return nsci_fail(NSC_ERR_ARG, "optim step: optimizer is NULL");
    }
    for (int64_t i = 0; i < opt->n_params; i++) {
        nsc_tensor *g = nsc_tensor_get_grad(opt->params[i]);
        if (g && check_grad(opt, i, g) != NSC_OK) {
            return nsc_last_status();
        }
    }
    if (alloc_state(opt) != NSC_OK) {
        return nsc_last_status();
    }
    int64_t *pending = opt->scratch_index, *batch = pending + opt->n_params, n_pending = 0;
    nsc_tensor **in = opt->scratch_operands;
    for (int64_t i = 0; i < opt->n_params; i++) {
        if (nsc_tensor_get_grad(opt->params[i])) {
            pending[n_pending++] = i;
        }
    }
    nsc_status status = NSC_OK;
    nsc_no_grad_begin();
    while (n_pending > 0 && status == NSC_OK) {
        int64_t n = take_batch(opt, pending, &n_pending, batch);
        for (int64_t j = 0; j < n; j++) {
            opt->steps[batch[j]]++;
        }
        int64_t done;
        status = update(opt, batch, n, in, &done);
        for (int64_t j = done; status != NSC_OK && j < n; j++) {
            opt->steps[batch[j]]--;
        }
    }
    nsc_no_grad_end();
    return status;
}

nsc_status nsc_optim_zero_grad(nsc_optim *opt, bool set_to_none) {
    if (!opt) {
        return nsci_fail(NSC_ERR_ARG, "optim zero_grad: optimizer is NULL");
    }
    for (int64_t i = 0; i < opt->n_params; i++) {
        nsc_tensor *g = nsc_tensor_get_grad(opt->params[i]);
        if (!g) {
            continue;
        }
        nsc_status status = set_to_none ? nsc_tensor_set_grad(opt->params[i], NULL) : nsc_zero_(g);
        if (status != NSC_OK) {
            return status;
        }
    }
    return NSC_OK;
}

// --- learning rate and state ---

static double *group_lr(nsc_optim *opt, int g) {
    return opt->kind == NSCI_OPTIM_SGD ? &opt->groups[g].sgd.lr : &opt->groups[g].adamw.lr;
}

double nsc_optim_get_lr(const nsc_optim *opt) {
    return nsc_optim_group_get_lr(opt, 0);
}

nsc_status nsc_optim_set_lr(nsc_optim *opt, double lr) {
    if (!opt || !(lr >= 0)) {
        return nsci_fail(NSC_ERR_ARG, "optim set_lr: lr %g%s: expected lr >= 0", lr,
                         opt ? "" : " on a NULL optimizer");
    }
    for (int g = 0; g < opt->n_groups; g++) {
        *group_lr(opt, g) = lr;
    }
    return NSC_OK;
}

int nsc_optim_n_groups(const nsc_optim *opt) {
    return opt ? opt->n_groups : 0;
}

int nsc_optim_group_of(const nsc_optim *opt, int64_t index) {
    if (!opt || index < 0 || index >= opt->n_params) {
        return -1;
    }
    return (int)(nsci_optim_group_of(opt, index) - opt->groups);
}

double nsc_optim_group_get_lr(const nsc_optim *opt, int group) {
    if (!opt || group < 0 || group >= opt->n_groups) {
        return (double)NAN;
    }
    return *group_lr((nsc_optim *)opt, group);
}

nsc_status nsc_optim_group_set_lr(nsc_optim *opt, int group, double lr) {
    if (!opt || group < 0 || group >= opt->n_groups || !(lr >= 0)) {
        return nsci_fail(NSC_ERR_ARG,
                         "optim group_set_lr: group %d, lr %g: expected a group in [0, %d) and "
                         "lr >= 0",
                         group, lr, opt ? opt->n_groups : 0);
    }
    *group_lr(opt, group) = lr;
    return NSC_OK;
}

const char *nsc_optim_name(const nsc_optim *opt) {
    return opt ? kind_name(opt->kind) : "";
}

int64_t nsc_optim_n_params(const nsc_optim *opt) {
    return opt ? opt->n_params : 0;
}

nsc_tensor *nsc_optim_param_at(const nsc_optim *opt, int64_t index) {
    return opt && index >= 0 && index < opt->n_params ? opt->params[index] : NULL;
}

int64_t nsc_optim_get_step(const nsc_optim *opt, int64_t index) {
    return opt && index >= 0 && index < opt->n_params ? opt->steps[index] : -1;
}

nsc_tensor *nsc_optim_get_state(const nsc_optim *opt, int64_t index, const char *name) {
    static const char *const sgd_names[] = { "momentum_buffer" };
    static const char *const adamw_names[] = { "exp_avg", "exp_avg_sq", "max_exp_avg_sq" };
    if (!opt || !name || index < 0 || index >= opt->n_params) {
        return NULL;
    }
    int n = opt->kind == NSCI_OPTIM_SGD ? NSCI_ARRAY_LEN(sgd_names) : NSCI_ARRAY_LEN(adamw_names);
    const char *const *names = opt->kind == NSCI_OPTIM_SGD ? sgd_names : adamw_names;
    for (int s = 0; s < n; s++) {
        if (strcmp(names[s], name) == 0) {
            return opt->state[index * NSCI_OPTIM_MAX_STATE + s];
        }
    }
    return NULL;
}
