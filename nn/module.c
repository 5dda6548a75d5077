// Modules as a tree: creation, children, parameters and buffers, paths,
// lookup, iteration in a fixed order, modes.
#include <stdio.h>
#include <string.h>

#include "nn/nn_impl.h"

nsc_module *nsc_module_new(const char *type, nsc_forward_fn forward, void *state,
                           void (*state_free)(void *state)) {
    nsc_module *m = nsci_calloc(1, sizeof *m);
    if (!m) {
        return NULL;
    }
    atomic_init(&m->refcount, 1);
    m->name = nsci_strdup("");
    m->type = nsci_strdup(type ? type : "Module");
    if (!m->name || !m->type) {
        nsci_free(m->name);
        nsci_free(m->type);
        nsci_free(m);
        return NULL;
    }
    m->forward = forward;
    m->state = state;
    m->state_free = state_free;
    m->training = true; // as torch.nn.Module
    return m;
}

nsc_module *nsc_module_retain(nsc_module *m) {
    if (m) {
        atomic_fetch_add(&m->refcount, 1);
    }
    return m;
}

static void forget_paths(nsc_module *m) {
    nsci_free(m->path);
    m->path = NULL;
    for (int i = 0; i < m->n_children; i++) {
        forget_paths(m->children[i]);
    }
}

// child leaves its parent: it becomes a root (name "", no cached path below
// it), as whoever still holds it sees it. Allocates nothing.
static void detach(nsc_module *child) {
    child->parent = NULL;
    child->name[0] = '\0';
    forget_paths(child);
}

static void free_named(nsci_named_tensor *items, int n) {
    for (int i = 0; i < n; i++) {
        nsci_free(items[i].name);
        nsc_free(items[i].tensor);
    }
    nsci_free(items);
}

void nsc_module_free(nsc_module *m) {
    if (!m || atomic_fetch_sub(&m->refcount, 1) != 1) {
        return;
    }
    for (int i = 0; i < m->n_children; i++) {
        detach(m->children[i]); // one retained elsewhere lives on as a root
        nsc_module_free(m->children[i]);
    }
    for (int i = 0; i < m->n_hooks; i++) {
        if (!m->hooks[i].removed && m->hooks[i].ctx_free) {
            m->hooks[i].ctx_free(m->hooks[i].ctx);
        }
    }
    if (m->slot_free) {
        m->slot_free(m->slot);
    }
    if (m->state_free) {
        m->state_free(m->state);
    }
    free_named(m->params, m->n_params);
    free_named(m->buffers, m->n_buffers);
    nsci_free(m->children);
    nsci_free(m->hooks);
    nsci_free(m->name);
    nsci_free(m->type);
    nsci_free(m->path);
    nsci_free(m);
}

// --- children, parameters, buffers ---

// What is wrong with name as a path segment, or NULL when it is valid.
static const char *segment_problem(const char *name) {
    if (!name || !*name) {
        return name ? "is empty" : "is NULL";
    }
    for (const char *c = name; *c; c++) {
        if (*c == '.' || *c == '*' || *c == ' ') {
            return "holds '.', '*' or a space";
        }
    }
    return strlen(name) >= NSCI_NAME_BYTES ? "is too long" : NULL;
}

// Refuses name (a segment_problem) for op; a long name is shown cut.
static nsc_status refuse_name(const char *op, const char *name, const char *problem) {
    if (!name) {
        return nsci_fail(NSC_ERR_ARG, "module %s: the name is NULL: expected a name", op);
    }
    size_t len = strlen(name);
    return nsci_fail(NSC_ERR_ARG,
                     "module %s: name \"%.64s%s\" (%zu bytes) %s: expected 1 to %d bytes "
                     "without '.', '*' or spaces",
                     op, name, len > 64 ? "..." : "", len, problem, NSCI_NAME_BYTES - 1);
}

static int child_index(const nsc_module *m, const char *name) {
    for (int i = 0; i < m->n_children; i++) {
        if (strcmp(m->children[i]->name, name) == 0) {
            return i;
        }
    }
    return -1;
}

static bool name_taken(const nsc_module *m, const char *name) {
    if (child_index(m, name) >= 0) {
        return true;
    }
    for (int i = 0; i < m->n_params; i++) {
        if (strcmp(m->params[i].name, name) == 0) {
            return true;
        }
    }
    for (int i = 0; i < m->n_buffers; i++) {
        if (strcmp(m->buffers[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

// A module's path for a message: its dotted path, or "the root (Type)".
static const char *describe(const nsc_module *m, char *buf, size_t buf_bytes) {
    const char *path = nsc_module_path(m);
    if (path && *path) {
        return path;
    }
    snprintf(buf, buf_bytes, "the root (%s)", m->type);
    return buf;
}

// name under m for a message: "path.name", or "name (on the root, Type)".
static const char *qualified(const nsc_module *m, const char *name, char *buf, size_t buf_bytes) {
    const char *path = nsc_module_path(m);
    if (path && *path) {
        snprintf(buf, buf_bytes, "%s.%s", path, name);
    } else {
        snprintf(buf, buf_bytes, "%s (on the root, %s)", name, m->type);
    }
    return buf;
}

// A child with no parent that is the parent or one of its ancestors would
// close a cycle: paths, iteration and free would recurse forever.
static nsc_status refuse_cycle(const char *op, const nsc_module *parent, const char *name,
                               const nsc_module *child) {
    for (const nsc_module *up = parent; up; up = up->parent) {
        if (up == child) {
            char a[96], b[96];
            return nsci_fail(NSC_ERR_ARG,
                             "module %s: %s as child \"%s\" of %s: it is %s; a module "
                             "cannot be its own descendant",
                             op, describe(child, a, sizeof a), name, describe(parent, b, sizeof b),
                             up == parent ? "the parent itself" : "an ancestor of the parent");
        }
    }
    return NSC_OK;
}

nsc_status nsc_module_add_child(nsc_module *parent, const char *name, nsc_module *child) {
    if (!parent || !child) {
        return nsci_fail(NSC_ERR_ARG, "module add_child: %s is NULL: expected a module",
                         parent ? "the child" : "the parent");
    }
    const char *problem = segment_problem(name);
    if (problem) {
        return refuse_name("add_child", name, problem);
    }
    if (refuse_cycle("add_child", parent, name, child) != NSC_OK) {
        return NSC_ERR_ARG;
    }
    if (child->parent) {
        char a[96];
        return nsci_fail(NSC_ERR_STATE, "module add_child: %s already has a parent (%s)", name,
                         describe(child->parent, a, sizeof a));
    }
    if (name_taken(parent, name)) {
        char a[320];
        return nsci_fail(NSC_ERR_ARG, "module add_child: %s already exists",
                         qualified(parent, name, a, sizeof a));
    }
    char *copy = nsci_strdup(name);
    if (!copy) {
        return NSC_ERR_OOM;
    }
    if (parent->n_children == parent->cap_children) {
        int cap = parent->cap_children ? parent->cap_children * 2 : 4;
        nsc_module **grown = nsci_realloc(parent->children, (size_t)cap * sizeof *grown);
        if (!grown) {
            nsci_free(copy);
            return NSC_ERR_OOM;
        }
        parent->children = grown;
        parent->cap_children = cap;
    }
    nsci_free(child->name);
    child->name = copy;
    child->parent = parent;
    parent->children[parent->n_children++] = nsc_module_retain(child);
    forget_paths(child);
    return NSC_OK;
}

nsc_status nsc_module_replace_child(nsc_module *parent, const char *name, nsc_module *child) {
    const char *problem = segment_problem(name);
    if (problem) { // a name too long for find cannot have been added
        return refuse_name("replace_child", name, problem);
    }
    int at = parent ? child_index(parent, name) : -1;
    if (at < 0 || !child || child->parent) {
        return nsci_fail(NSC_ERR_ARG, "module replace_child: %s: %s", name ? name : "(null)",
                         at < 0 ? "no such child" : "the new child is missing or has a parent");
    }
    if (refuse_cycle("replace_child", parent, name, child) != NSC_OK) {
        return NSC_ERR_ARG;
    }
    char *copy = nsci_strdup(name);
    if (!copy) {
        return NSC_ERR_OOM;
    }
    nsc_module *old = parent->children[at];
    detach(old); // one retained elsewhere lives on as a root
    nsc_module_free(old);
    nsci_free(child->name);
    child->name = copy;
    child->parent = parent;
    parent->children[at] = nsc_module_retain(child);
    forget_paths(child);
    return NSC_OK;
}

nsc_status nsci_named_append(nsci_named_tensor **items, int *n, int *cap, const char *name,
                             nsc_tensor *t) {
    if (*n == *cap) {
        int grown_cap = *cap ? *cap * 2 : 4;
        nsci_named_tensor *grown = nsci_realloc(*items, (size_t)grown_cap * sizeof *grown);
        if (!grown) {
            return NSC_ERR_OOM;
        }
        *items = grown;
        *cap = grown_cap;
    }
    char *copy = nsci_strdup(name);
    if (!copy) {
        return NSC_ERR_OOM;
    }
    (*items)[(*n)++] = (nsci_named_tensor){ copy, nsc_retain(t) };
    return NSC_OK;
}

static nsc_status add_tensor(nsc_module *m, const char *name, nsc_tensor *t, bool is_param) {
    const char *what = is_param ? "add_param" : "add_buffer";
    if (!m || !t) {
        return nsci_fail(NSC_ERR_ARG, "module %s: %s is NULL: expected a module and a tensor", what,
                         m ? "the tensor" : "the module");
    }
    const char *problem = segment_problem(name);
    if (problem) {
        return refuse_name(what, name, problem);
    }
    if (name_taken(m, name)) {
        char a[320];
        return nsci_fail(NSC_ERR_ARG, "module %s: %s already exists", what,
                         qualified(m, name, a, sizeof a));
    }
    return is_param ? nsci_named_append(&m->params, &m->n_params, &m->cap_params, name, t)
                    : nsci_named_append(&m->buffers, &m->n_buffers, &m->cap_buffers, name, t);
}

nsc_status nsc_module_add_param(nsc_module *m, const char *name, nsc_tensor *t) {
    return add_tensor(m, name, t, true);
}

nsc_status nsc_module_add_buffer(nsc_module *m, const char *name, nsc_tensor *t) {
    return add_tensor(m, name, t, false);
}

static nsci_named_tensor *find_named(nsci_named_tensor *items, int n, const char *name) {
    for (int i = 0; i < n; i++) {
        if (strcmp(items[i].name, name) == 0) {
            return &items[i];
        }
    }
    return NULL;
}

nsc_status nsc_module_set_tensor(nsc_module *m, const char *name, nsc_tensor *t) {
    if (!m) {
        return nsci_fail_keep(NSC_ERR_ARG, "module set_tensor: module is NULL");
    }
    if (!name || !t) {
        return nsci_fail(NSC_ERR_ARG,
                         "module set_tensor: the %s is NULL: expected a name and a "
                         "tensor",
                         name ? "tensor" : "name");
    }
    nsci_named_tensor *slot = find_named(m->params, m->n_params, name);
    if (!slot) {
        slot = find_named(m->buffers, m->n_buffers, name);
    }
    char at[320];
    if (!slot) {
        return nsci_fail(NSC_ERR_ARG, "module set_tensor: %s: no such parameter or buffer",
                         qualified(m, name, at, sizeof at));
    }
    nsc_tensor *old = slot->tensor;
    char a[160], b[160];
    if (old->ndim != t->ndim || memcmp(old->shape, t->shape, (size_t)t->ndim * 8) != 0 ||
        old->dtype != t->dtype) {
        return nsci_fail(
            NSC_ERR_SHAPE, "module set_tensor: %s: %s %s given, expected %s %s",
            qualified(m, name, at, sizeof at), nsci_shape_str(a, sizeof a, t->ndim, t->shape),
            nsc_dtype_name((nsc_dtype)t->dtype), nsci_shape_str(b, sizeof b, old->ndim, old->shape),
            nsc_dtype_name((nsc_dtype)old->dtype));
    }
    slot->tensor = nsc_retain(t);
    nsc_free(old);
    return NSC_OK;
}

// --- accessors ---
// A NULL module (a failed call's result) gives NULL, 0 or false and records
// NSC_ERR_ARG, unless an earlier error is already recorded.

static bool is_null(const nsc_module *m, const char *fn) {
    if (m) {
        return false;
    }
    if (nsc_last_status() == NSC_OK) {
        nsci_fail(NSC_ERR_ARG, "%s: module is NULL", fn);
    }
    return true;
}

const char *nsc_module_name(const nsc_module *m) {
    return is_null(m, "module_name") ? NULL : m->name;
}

const char *nsc_module_type(const nsc_module *m) {
    return is_null(m, "module_type") ? NULL : m->type;
}

nsc_module *nsc_module_parent(const nsc_module *m) {
    return is_null(m, "module_parent") ? NULL : m->parent;
}

// A lookup by name: false, with NSC_ERR_ARG recorded as is_null does, when
// the module or the name is NULL. An absent name is no error (NULL result).
static bool can_look_up(const nsc_module *m, const char *name, const char *fn) {
    if (is_null(m, fn)) {
        return false;
    }
    if (!name) {
        nsci_fail(NSC_ERR_ARG, "%s: name is NULL", fn);
        return false;
    }
    return true;
}

nsc_module *nsc_module_child(const nsc_module *m, const char *name) {
    int at = can_look_up(m, name, "module_child") ? child_index(m, name) : -1;
    return at >= 0 ? m->children[at] : NULL;
}

nsc_tensor *nsc_module_param(const nsc_module *m, const char *name) {
    nsci_named_tensor *t =
        can_look_up(m, name, "module_param") ? find_named(m->params, m->n_params, name) : NULL;
    return t ? t->tensor : NULL;
}

nsc_tensor *nsc_module_buffer(const nsc_module *m, const char *name) {
    nsci_named_tensor *t =
        can_look_up(m, name, "module_buffer") ? find_named(m->buffers, m->n_buffers, name) : NULL;
    return t ? t->tensor : NULL;
}

void *nsc_module_state(const nsc_module *m) {
    return is_null(m, "module_state") ? NULL : m->state;
}

const char *nsc_module_path(const nsc_module *m) {
    if (is_null(m, "module_path")) {
        return NULL;
    }
    nsc_module *mm = (nsc_module *)m; // the cache is logically const
    char *cached = __atomic_load_n(&mm->path, __ATOMIC_ACQUIRE);
    if (cached) {
        return cached;
    }
    if (!m->parent) {
        return ""; // a root: nothing to cache
    }
    const char *up = nsc_module_path(m->parent);
    nsci_buf b;
    nsci_buf_init(&b);
    if (*up) {
        nsci_buf_puts(&b, up);
        nsci_buf_puts(&b, ".");
    }
    nsci_buf_puts(&b, m->name);
    if (b.failed) {
        nsci_buf_free(&b);
        return m->name;
    }
    // Threads sharing a model may build the path at once: the first one
    // published is kept, the others free theirs.
    if (!__atomic_compare_exchange_n(&mm->path, &cached, b.data, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        nsci_buf_free(&b);
        return cached;
    }
    return b.data;
}

nsc_module *nsc_module_find(nsc_module *root, const char *path) {
    if (!root || !path) {
        return nsci_fail_null(NSC_ERR_ARG, "module find: root or path is NULL");
    }
    nsc_module *m = root;
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        char segment[NSCI_NAME_BYTES];
        if (len == 0 || (dot && dot[1] == '\0')) { // "a..b", ".a", "a." (torch raises too)
            return nsci_fail_null(NSC_ERR_ARG,
                                  "module path \"%s\": empty segment: expected names "
                                  "joined by single dots",
                                  path);
        }
        if (len >= sizeof segment) { // no name is this long (add_child refuses it)
            return nsci_fail_null(NSC_ERR_ARG,
                                  "module path \"%.64s...\": a segment of %zu bytes: expected "
                                  "at most %d",
                                  path, len, NSCI_NAME_BYTES - 1);
        }
        memcpy(segment, p, len);
        segment[len] = '\0';
        nsc_module *child = nsc_module_child(m, segment);
        if (!child) {
            return nsci_fail_null(NSC_ERR_ARG, "module path \"%s\": %s has no child \"%s\"", path,
                                  *nsc_module_path(m) ? nsc_module_path(m) : "the root", segment);
        }
        m = child;
        p += len + (dot ? 1 : 0);
    }
    return m;
}

// --- iteration ---

typedef struct walk {
    int64_t target, seen;
    nsc_module *found;
} walk;

static void walk_modules(nsc_module *m, walk *w) {
    if (w->found) {
        return;
    }
    if (w->seen++ == w->target) {
        w->found = m;
        return;
    }
    for (int i = 0; i < m->n_children; i++) {
        walk_modules(m->children[i], w);
    }
}

int64_t nsc_module_n_modules(nsc_module *root) {
    if (is_null(root, "module_n_modules")) {
        return 0;
    }
    int64_t n = 1;
    for (int i = 0; i < root->n_children; i++) {
        n += nsc_module_n_modules(root->children[i]);
    }
    return n;
}

nsc_module *nsc_module_at(nsc_module *root, int64_t index) {
    if (is_null(root, "module_at")) {
        return NULL;
    }
    walk w = { index, 0, NULL };
    walk_modules(root, &w);
    if (!w.found) {
        int64_t n = nsc_module_n_modules(root);
        return nsci_fail_null(NSC_ERR_ARG, "module_at: index %lld: expected 0..%lld (%lld modules)",
                              (long long)index, (long long)n - 1, (long long)n);
    }
    return w.found;
}

void nsc_module_train(nsc_module *m, bool training) {
    if (is_null(m, "module_train")) {
        return;
    }
    m->training = training;
    for (int i = 0; i < m->n_children; i++) {
        nsc_module_train(m->children[i], training);
    }
}

bool nsc_module_is_training(const nsc_module *m) {
    return is_null(m, "module_is_training") ? false : m->training;
}
