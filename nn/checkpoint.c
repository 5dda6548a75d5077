// GPT-2 checkpoints: a directory with config.json and model.safetensors, in
// transformers' save_pretrained layout ("transformer." names, lm_head.weight
// present or not) or the hub's "gpt2" layout (no prefix, attn.bias and
// attn.masked_bias buffers). Every name, dtype and shape is checked against
// the model before any data is read; tensors load into new tensors and are
// swapped in all at once, so a failure changes nothing. docs/MODELS.md has
// the rules.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/nn_impl.h"
#include "nsc/io.h"

// One parameter of the model and where its value comes from.
typedef struct entry {
    nsc_module *owner;
    int slot;              // index into owner->params
    char path[NSCI_TENSOR_PATH_BYTES]; // the model's name: "transformer.h.0.attn.c_attn.weight"
    const char *key;       // the file's name (into path); NULL when tied to wte
    nsc_tensor *loaded;    // the new value (a reference), before the swap
} entry;

typedef struct plan {
    entry *items;
    int n, cap;
    bool hub;    // names without the "transformer." prefix
    int tied_to; // index of transformer.wte.weight when lm_head is tied, else -1
} plan;

static void plan_free(plan *p) {
    for (int i = 0; i < p->n; i++) {
        nsc_free(p->items[i].loaded);
    }
    nsci_free(p->items);
}

// A path that does not fit NSCI_TENSOR_PATH_BYTES (prefix, then name).
static nsc_status refuse_long_path(const char *prefix, const char *name) {
    return nsci_fail(NSC_ERR_ARG,
                     "gpt2 checkpoint: parameter \"%.64s...%s\": its path is longer than %d "
                     "bytes, the limit of a tensor path",
                     prefix, name, NSCI_TENSOR_PATH_BYTES - 1);
}

// Collects every parameter in iteration order (pre-order, as nsc_module_param_at).
static nsc_status collect(plan *p, nsc_module *m, const char *prefix) {
    for (int i = 0; i < m->n_params; i++) {
        if (p->n == p->cap) {
            int cap = p->cap ? 2 * p->cap : 64;
            entry *grown = nsci_realloc(p->items, (size_t)cap * sizeof *grown);
            if (!grown) {
                return nsc_last_status();
            }
            p->items = grown;
            p->cap = cap;
        }
        entry *e = &p->items[p->n++];
        memset(e, 0, sizeof *e);
        e->owner = m;
        e->slot = i;
        if (snprintf(e->path, sizeof e->path, "%s%s", prefix, m->params[i].name) >=
            (int)sizeof e->path) {
            return refuse_long_path(prefix, m->params[i].name);
        }
    }
    for (int i = 0; i < m->n_children; i++) {
        char child[NSCI_TENSOR_PATH_BYTES];
        if (snprintf(child, sizeof child, "%s%s.", prefix, m->children[i]->name) >=
            (int)sizeof child) {
            return refuse_long_path(prefix, m->children[i]->name);
        }
        if (collect(p, m->children[i], child) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

static int find_path(const plan *p, const char *path) {
    for (int i = 0; i < p->n; i++) {
        if (strcmp(p->items[i].path, path) == 0) {
            return i;
        }
    }
    return -1;
}

// The hub's and older save_pretrained files carry the attention's causal mask
// buffers; transformers ignores them on load, and so does nsc.
static bool ignored_key(const char *key) {
    const char *rest = strncmp(key, "transformer.", 12) == 0 ? key + 12 : key;
    int layer = -1, used = 0;
    if (sscanf(rest, "h.%d.%n", &layer, &used) != 1 || used == 0) {
        return false;
    }
    return strcmp(rest + used, "attn.bias") == 0 || strcmp(rest + used, "attn.masked_bias") == 0;
}

// Decides the layout from the file's names and sets each entry's key.
static void assign_keys(plan *p, const nsc_safetensors *st, const nsci_gpt2 *g) {
    p->hub = true;
    for (int64_t i = 0; i < nsc_safetensors_count(st); i++) {
        if (strncmp(nsc_safetensors_name(st, i), "transformer.", 12) == 0) {
            p->hub = false;
        }
    }
    p->tied_to = g->config.tie_word_embeddings ? find_path(p, "transformer.wte.weight") : -1;
    for (int i = 0; i < p->n; i++) {
        entry *e = &p->items[i];
        bool in_transformer = strncmp(e->path, "transformer.", 12) == 0;
        bool tied = p->tied_to >= 0 && strcmp(e->path, "lm_head.weight") == 0;
        e->key = tied ? NULL : (p->hub && in_transformer ? e->path + 12 : e->path);
    }
}

// Checks one file tensor against the parameter it feeds.
static nsc_status check_entry(const entry *e, const nsc_safetensors *st, const char *file) {
    nsc_safetensors_info info;
    if (!nsc_safetensors_has(st, e->key)) {
        return nsci_fail(NSC_ERR_FORMAT, "gpt2 load: %s: tensor \"%s\" is missing (for %s)", file,
                         e->key, e->path);
    }
    nsc_safetensors_get_info(st, e->key, &info);
    const nsc_tensor *want = e->owner->params[e->slot].tensor;
    bool same = info.ndim == want->ndim;
    for (int d = 0; same && d < info.ndim; d++) {
        same = info.shape[d] == want->shape[d];
    }
    if (!same) {
        char got[160] = "", exp[160];
        if (info.ndim <= NSC_MAX_DIMS) {
            nsci_shape_str(got, sizeof got, info.ndim, info.shape);
        } else {
            snprintf(got, sizeof got, "of rank %d", info.ndim);
        }
        return nsci_fail(NSC_ERR_SHAPE, "gpt2 load: %s: tensor \"%s\": shape %s: expected %s", file,
                         e->key, got, nsci_shape_str(exp, sizeof exp, want->ndim, want->shape));
    }
    static const char *const floats[] = { "F32", "F16", "BF16", "F64" };
    for (int i = 0; i < NSCI_ARRAY_LEN(floats); i++) {
        if (strcmp(info.dtype, floats[i]) == 0) {
            return NSC_OK;
        }
    }
    return nsci_fail(NSC_ERR_DTYPE,
                     "gpt2 load: %s: tensor \"%s\": dtype %s: expected F32, F16, "
                     "BF16 or F64",
                     file, e->key, info.dtype);
}

// Every file tensor must feed a parameter or be an ignored buffer.
static nsc_status check_unknown(const plan *p, const nsc_safetensors *st, const char *file) {
    for (int64_t i = 0; i < nsc_safetensors_count(st); i++) {
        const char *name = nsc_safetensors_name(st, i);
        bool known = ignored_key(name) || (p->tied_to >= 0 && strcmp(name, "lm_head.weight") == 0);
        for (int k = 0; !known && k < p->n; k++) {
            known = p->items[k].key && strcmp(p->items[k].key, name) == 0;
        }
        if (!known) {
            return nsci_fail(NSC_ERR_FORMAT,
                             "gpt2 load: %s: unknown tensor \"%s\" (expected the %s layout%s)",
                             file, name, p->hub ? "hub's gpt2" : "save_pretrained",
                             p->hub ? ", names without \"transformer.\"" : "");
        }
    }
    return NSC_OK;
}

// Builds and checks the plan for model against st; nothing is loaded.
static nsc_status plan_for(plan *p, nsc_module *model, const nsc_safetensors *st,
                           const char *file) {
    nsci_gpt2 *g = nsci_gpt2_of(model, "gpt2 load");
    memset(p, 0, sizeof *p);
    if (!g || collect(p, model, "") != NSC_OK) {
        return nsc_last_status();
    }
    assign_keys(p, st, g);
    for (int i = 0; i < p->n; i++) {
        if (p->items[i].key && check_entry(&p->items[i], st, file) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return check_unknown(p, st, file);
}

// f32 t on device: CPU data for a CPU or META parameter (nsc_gpt2_load
// builds on META and loads), a copy on the GPU for a CUDA one, so a model
// moved there stays there. Consumes t.
static nsc_tensor *on_device_of(nsc_tensor *t, const nsc_tensor *param) {
    nsc_device device = nsc_tensor_device(param);
    if (!t || device == NSC_CPU || device == NSC_META) {
        return t;
    }
    nsc_tensor *moved = nsc_to(t, device);
    nsc_free(t);
    return moved;
}

// Reads every planned tensor (f32 on the device of the parameter it
// replaces, marked for grad like it).
static nsc_status load_all(plan *p, const nsc_safetensors *st) {
    for (int i = 0; i < p->n; i++) {
        entry *e = &p->items[i];
        if (!e->key) {
            continue;
        }
        const nsc_tensor *param = e->owner->params[e->slot].tensor;
        nsc_tensor *t = nsc_safetensors_load(st, e->key);
        nsc_tensor *f = t ? nsc_to_dtype(t, NSC_F32) : NULL;
        nsc_free(t);
        e->loaded = f = on_device_of(f, param);
        if (!f || (nsc_tensor_requires_grad(param) && nsc_requires_grad_(f, true) != NSC_OK)) {
            return nsc_last_status();
        }
    }
    if (p->tied_to >= 0) {
        int head = find_path(p, "lm_head.weight");
        p->items[head].loaded = nsc_retain(p->items[p->tied_to].loaded);
    }
    return NSC_OK;
}

// Puts every loaded tensor in. A parameter with data takes the values in
// place (torch's load_state_dict: param.copy_ under no_grad), so whatever
// holds it (an optimizer built before the load, hooks, .grad) goes on with
// the same tensor; a META one (a model built for shapes) is swapped for the
// loaded tensor. Reading came first, so only a device fault can fail here.
static nsc_status put_in(plan *p) {
    nsc_status status = NSC_OK;
    nsc_no_grad_begin();
    for (int i = 0; i < p->n && status == NSC_OK; i++) {
        entry *e = &p->items[i];
        nsc_tensor *old = e->owner->params[e->slot].tensor;
        if (nsc_tensor_device(old) != NSC_META) {
            status = nsc_copy_(old, e->loaded);
            continue;
        }
        e->owner->params[e->slot].tensor = e->loaded;
        e->loaded = old; // released by plan_free
    }
    nsc_no_grad_end();
    return status;
}

static nsc_status load_file(nsc_module *model, const char *file, bool header_only) {
    nsc_safetensors *st =
        header_only ? nsc_safetensors_open_header(file) : nsc_safetensors_open(file);
    if (!st) {
        return nsc_last_status();
    }
    plan p;
    nsc_status s = plan_for(&p, model, st, file);
    if (s == NSC_OK && !header_only) {
        s = load_all(&p, st);
        if (s == NSC_OK) {
            s = put_in(&p);
        }
    }
    plan_free(&p);
    nsc_safetensors_free(st);
    return s;
}

nsc_status nsc_gpt2_load_weights(nsc_module *model, const char *path) {
    if (!path) {
        return nsci_fail(NSC_ERR_ARG, "gpt2_load_weights: path is NULL");
    }
    return load_file(model, path, false);
}

static nsc_module *load_dir(const char *dir, bool meta) {
    if (!dir) {
        return nsci_fail_null(NSC_ERR_ARG, "gpt2_load: dir is NULL");
    }
    char config_path[4096], weights_path[4096];
    snprintf(config_path, sizeof config_path, "%s/config.json", dir);
    snprintf(weights_path, sizeof weights_path, "%s/model.safetensors", dir);
    nsc_gpt2_config config;
    if (nsc_gpt2_config_load(config_path, &config) != NSC_OK) {
        return NULL;
    }
    nsc_module *model = nsci_gpt2_build(&config, NULL, true); // shapes only, no data yet
    if (model && load_file(model, weights_path, meta) != NSC_OK) {
        nsc_module_free(model);
        model = NULL;
    }
    return model;
}

nsc_module *nsc_gpt2_load(const char *dir) {
    return load_dir(dir, false);
}

nsc_module *nsc_gpt2_load_meta(const char *dir) {
    return load_dir(dir, true);
}

// --- saving ---

// Every tensor save writes must have data: checked before the directory is
// made, as every argument is before anything is written.
static nsc_status check_saveable(const char *dir, int n, const char *const *names,
                                 nsc_tensor *const *tensors) {
    for (int i = 0; i < n; i++) {
        if (nsc_tensor_device(tensors[i]) == NSC_META) {
            return nsci_fail(NSC_ERR_DEVICE,
                             "gpt2_save: %s: %s is on meta and has no data: expected a model "
                             "with weights (nsc_gpt2_load, not nsc_gpt2_load_meta)",
                             dir, names[i]);
        }
    }
    return NSC_OK;
}

nsc_status nsc_gpt2_save(nsc_module *model, const char *dir) {
    nsci_gpt2 *g = nsci_gpt2_of(model, "gpt2_save");
    if (!g || !dir) {
        return g ? nsci_fail(NSC_ERR_ARG, "gpt2_save: dir is NULL") : nsc_last_status();
    }
    plan p;
    memset(&p, 0, sizeof p);
    nsc_status s = collect(&p, model, "");
    const char **names = s == NSC_OK ? nsci_malloc((size_t)p.n * sizeof *names) : NULL;
    nsc_tensor **tensors = names ? nsci_malloc((size_t)p.n * sizeof *tensors) : NULL;
    int n = 0;
    for (int i = 0; tensors && i < p.n; i++) {
        bool tied = g->config.tie_word_embeddings && strcmp(p.items[i].path, "lm_head.weight") == 0;
        if (!tied) { // safetensors holds no shared tensors: transformers drops the tied head
            names[n] = p.items[i].path;
            tensors[n++] = p.items[i].owner->params[p.items[i].slot].tensor;
        }
    }
    s = tensors ? check_saveable(dir, n, names, tensors) : nsc_last_status();
    if (s == NSC_OK && mkdir(dir, 0755) != 0 && errno != EEXIST) {
        s = nsci_fail(NSC_ERR_IO, "gpt2_save: %s: cannot create the directory: %s", dir,
                      strerror(errno));
    }
    char path[4096];
    if (s == NSC_OK) {
        static const char *const keys[] = { "format" }, *const values[] = { "pt" };
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        s = nsc_safetensors_save(path, n, names, tensors, 1, keys, values);
    }
    if (s == NSC_OK) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        s = nsc_gpt2_config_save(&g->config, path);
    }
    nsci_free(names);
    nsci_free(tensors);
    plan_free(&p);
    return s;
}
