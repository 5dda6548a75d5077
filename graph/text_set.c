// Named tensor sets (a graph text's named inputs, a run's results, a
// safetensors file in memory) and names for saved values (nsc_save_as).
#include <ctype.h>
#include <string.h>

#include "graph/text_impl.h"
#include "nsc/io.h"

struct nsc_tensor_set {
    char **names;
    nsc_tensor **tensors;
    int64_t n, cap;
};

nsc_tensor_set *nsc_tensor_set_new(void) {
    return nsci_calloc(1, sizeof(nsc_tensor_set));
}

void nsc_tensor_set_free(nsc_tensor_set *set) {
    if (!set) {
        return;
    }
    for (int64_t i = 0; i < set->n; i++) {
        nsci_free(set->names[i]);
        nsc_free(set->tensors[i]);
    }
    nsci_free(set->names);
    nsci_free(set->tensors);
    nsci_free(set);
}

static int64_t find(const nsc_tensor_set *set, const char *name) {
    for (int64_t i = 0; set && name && i < set->n; i++) {
        if (strcmp(set->names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

static nsc_status grow(nsc_tensor_set *set) {
    if (set->n < set->cap) {
        return NSC_OK;
    }
    int64_t cap = set->cap ? set->cap * 2 : 8;
    char **names = nsci_realloc(set->names, (size_t)cap * sizeof *names);
    if (!names) {
        return NSC_ERR_OOM;
    }
    set->names = names;
    nsc_tensor **tensors = nsci_realloc(set->tensors, (size_t)cap * sizeof *tensors);
    if (!tensors) {
        return NSC_ERR_OOM;
    }
    set->tensors = tensors;
    set->cap = cap;
    return NSC_OK;
}

nsc_status nsc_tensor_set_put(nsc_tensor_set *set, const char *name, nsc_tensor *t) {
    if (!set || !name || !*name || !t) {
        return nsc_last_status() != NSC_OK && !t
                   ? nsc_last_status()
                   : nsci_fail(NSC_ERR_ARG, "tensor_set_put: set, name or tensor missing");
    }
    int64_t at = find(set, name);
    if (at >= 0) {
        nsc_tensor *old = set->tensors[at];
        set->tensors[at] = nsc_retain(t);
        nsc_free(old);
        return NSC_OK;
    }
    char *copy = nsci_strdup(name);
    if (!copy || grow(set) != NSC_OK) {
        nsci_free(copy);
        return NSC_ERR_OOM;
    }
    set->names[set->n] = copy;
    set->tensors[set->n++] = nsc_retain(t);
    return NSC_OK;
}

nsc_tensor *nsc_tensor_set_get(const nsc_tensor_set *set, const char *name) {
    int64_t at = find(set, name);
    return at >= 0 ? set->tensors[at] : NULL;
}

int64_t nsc_tensor_set_count(const nsc_tensor_set *set) {
    return set ? set->n : 0;
}

const char *nsc_tensor_set_name(const nsc_tensor_set *set, int64_t i) {
    return set && i >= 0 && i < set->n ? set->names[i] : NULL;
}

nsc_tensor *nsc_tensor_set_at(const nsc_tensor_set *set, int64_t i) {
    return set && i >= 0 && i < set->n ? set->tensors[i] : NULL;
}

nsc_tensor_set *nsc_tensor_set_load(const char *path) {
    nsc_safetensors *st = nsc_safetensors_open(path);
    nsc_tensor_set *set = st ? nsc_tensor_set_new() : NULL;
    for (int64_t i = 0; set && i < nsc_safetensors_count(st); i++) {
        const char *name = nsc_safetensors_name(st, i);
        nsc_tensor *t = nsc_safetensors_load(st, name);
        nsc_status status = t ? nsc_tensor_set_put(set, name, t) : nsc_last_status();
        nsc_free(t);
        if (status != NSC_OK) {
            nsc_tensor_set_free(set);
            set = NULL;
        }
    }
    nsc_safetensors_free(st);
    return set;
}

nsc_status nsc_tensor_set_save(const nsc_tensor_set *set, const char *path) {
    if (!set || !path) {
        return nsci_fail(NSC_ERR_ARG, "tensor_set_save: set or path is NULL");
    }
    if (set->n > INT32_MAX) {
        return nsci_fail(NSC_ERR_ARG, "tensor_set_save: too many tensors");
    }
    return nsc_safetensors_save(path, (int)set->n, (const char *const *)set->names, set->tensors, 0,
                                NULL, NULL);
}

// --- names of saved values ---

// "n<id>" or "n<id>.<output>", optionally after "t<trace>.": the names a
// run gives unnamed saves.
static bool automatic_name(const char *name) {
    const char *p = name;
    if (*p == 't' && isdigit((unsigned char)p[1])) {
        for (p++; isdigit((unsigned char)*p); p++) {
        }
        if (*p++ != '.') {
            return false;
        }
    }
    if (*p++ != 'n' || !isdigit((unsigned char)*p)) {
        return false;
    }
    while (isdigit((unsigned char)*p)) {
        p++;
    }
    if (*p == '.' && isdigit((unsigned char)p[1])) {
        for (p++; isdigit((unsigned char)*p); p++) {
        }
    }
    return *p == '\0';
}

static bool named_in(const nsc_trace *tr, const char *name) {
    for (int32_t i = 0; tr && i < tr->n_nodes; i++) {
        const nsci_gnode *n = &tr->nodes[i];
        if (n->protocol == NSCI_PROTO_lock && n->payload && strcmp(n->payload, name) == 0) {
            return true;
        }
    }
    return false;
}

// A run reports saves by name: a name must be one no other value has.
static bool name_taken(const nsc_trace *tr, const char *name) {
    const char *rest = name; // past a "t<trace>." prefix, which sessions add
    if (rest[0] == 't' && isdigit((unsigned char)rest[1])) {
        for (rest++; isdigit((unsigned char)*rest); rest++) {
        }
        rest = *rest == '.' ? rest + 1 : name;
    }
    if (automatic_name(name) || strncmp(rest, "cache.", 6) == 0 ||
        strncmp(name, "session.", 8) == 0 || strcmp(name, "generated") == 0) {
        return true;
    }
    const nsc_session *s = tr->session;
    for (int i = 0; s && i < s->n_traces; i++) {
        if (s->traces[i] != tr && named_in(s->traces[i], name)) {
            return true;
        }
    }
    return named_in(tr, name);
}

nsc_tensor *nsc_save_as(nsc_tensor *proxy, const char *name) {
    if (proxy && (!name || !*name)) {
        return nsci_fail_null(NSC_ERR_ARG, "save_as: the name is empty");
    }
    nsci_graph *owner = proxy ? nsci_proxy_graph(proxy, NULL, NULL) : NULL;
    if (owner && name_taken(owner, name)) {
        nsci_fail(NSC_ERR_ARG,
                  "save_as \"%.60s\": the name is taken (by another save, or one a run gives "
                  "unnamed saves and caches: n<id>, t<trace>.n<id>, cache.*, generated)",
                  name);
        nsci_graph_fail(owner, -1, NSC_ERR_ARG);
        return NULL;
    }
    nsc_tensor *saved = nsc_save(proxy);
    nsci_graph *g = saved ? nsci_proxy_graph(saved, NULL, NULL) : NULL;
    if (!g) {
        return NULL;
    }
    // nsc_save's Lock node is the last one: its payload is the name.
    nsci_gnode *lock = &g->nodes[g->n_nodes - 1];
    char *copy = nsci_strdup(name);
    if (!copy) {
        nsci_graph_fail(g, lock->id, NSC_ERR_OOM);
        return NULL;
    }
    nsci_free(lock->payload);
    lock->payload = copy;
    return saved;
}

void nsc_text_free(char *text) {
    nsci_free(text);
}
