// Saving and resuming an optimizer (torch.save(optimizer.state_dict()) and
// load_state_dict): per-parameter state and step counts as tensors of a
// safetensors file, the kind and hyper-parameters as its metadata. Loading
// checks the whole file against the optimizer before changing anything.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/optim_impl.h"
#include "nsc/io.h"

enum {
    KEY_BYTES = 64,
    N_HYPER = 7
};

static const char *slot_name(nsci_optim_kind kind, int slot) {
    static const char *const sgd[] = { "momentum_buffer" };
    static const char *const adamw[] = { "exp_avg", "exp_avg_sq", "max_exp_avg_sq" };
    return kind == NSCI_OPTIM_SGD ? sgd[slot] : adamw[slot];
}

// A group's hyper-parameters as metadata keys and values (lr first: the
// current learning rate, as torch's param_groups hold it). Group 0's keys are
// bare ("lr", as files written before groups existed), group g's are
// "group.<g>.lr".
typedef struct hyper {
    char key[KEY_BYTES];
    double value;
} hyper;

static int hypers_of(nsci_optim_kind kind, int g, const nsci_optim_group *group, hyper *h) {
    static const char *const sgd_keys[] = { "lr",           "momentum", "dampening",
                                            "weight_decay", "nesterov", "maximize" };
    static const char *const adamw_keys[] = { "lr",           "beta1",   "beta2",   "eps",
                                              "weight_decay", "amsgrad", "maximize" };
    const nsc_sgd_config *s = &group->sgd;
    const nsc_adamw_config *a = &group->adamw;
    double sgd_values[] = { s->lr,
                            s->momentum,
                            s->dampening,
                            s->weight_decay,
                            s->nesterov ? 1.0 : 0.0,
                            s->maximize ? 1.0 : 0.0 };
    double adamw_values[] = { a->lr,
                              a->beta1,
                              a->beta2,
                              a->eps,
                              a->weight_decay,
                              a->amsgrad ? 1.0 : 0.0,
                              a->maximize ? 1.0 : 0.0 };
    bool sgd = kind == NSCI_OPTIM_SGD;
    int n = sgd ? 6 : 7;
    for (int k = 0; k < n; k++) {
        const char *key = sgd ? sgd_keys[k] : adamw_keys[k];
        if (g == 0) {
            snprintf(h[k].key, KEY_BYTES, "%s", key);
        } else {
            snprintf(h[k].key, KEY_BYTES, "group.%d.%s", g, key);
        }
        h[k].value = sgd ? sgd_values[k] : adamw_values[k];
    }
    return n;
}

// --- saving ---

nsc_status nsc_optim_save(const nsc_optim *opt, const char *path) {
    if (!opt || !path) {
        return nsci_fail(NSC_ERR_ARG, "optim save: %s is NULL", opt ? "path" : "optimizer");
    }
    int64_t cap = opt->n_params * (NSCI_OPTIM_MAX_STATE + 1);
    if (cap > 0x7fffffff) {
        return nsci_fail(NSC_ERR_ARG, "optim save: %lld parameters: too many for one file",
                         (long long)opt->n_params);
    }
    char(*names)[KEY_BYTES] = nsci_calloc((size_t)NSCI_MAX(cap, 1), sizeof *names);
    const char **name_ptrs = nsci_calloc((size_t)NSCI_MAX(cap, 1), sizeof *name_ptrs);
    nsc_tensor **tensors = nsci_calloc((size_t)NSCI_MAX(cap, 1), sizeof *tensors);
    int n = 0;
    nsc_status status = names && name_ptrs && tensors ? NSC_OK : NSC_ERR_OOM;
    for (int64_t i = 0; status == NSC_OK && i < opt->n_params; i++) {
        if (opt->steps[i] == 0) {
            continue; // no state yet, as torch leaves it out of state_dict
        }
        snprintf(names[n], KEY_BYTES, "state.%lld.step", (long long)i);
        tensors[n] = nsc_scalar(NSC_I64, (double)opt->steps[i]);
        status = tensors[n] ? NSC_OK : nsc_last_status();
        name_ptrs[n] = names[n];
        n++;
        int n_state = nsci_optim_n_state(opt, nsci_optim_group_of(opt, i));
        for (int s = 0; status == NSC_OK && s < n_state; s++) {
            snprintf(names[n], KEY_BYTES, "state.%lld.%s", (long long)i, slot_name(opt->kind, s));
            name_ptrs[n] = names[n];
            tensors[n++] = nsc_retain(opt->state[i * NSCI_OPTIM_MAX_STATE + s]);
        }
    }
    // "optimizer", "n_params", "n_groups", then per group its parameter
    // count and hyper-parameters.
    int n_meta = 3 + opt->n_groups * (N_HYPER + 1);
    hyper *meta = nsci_calloc((size_t)n_meta, sizeof *meta);
    char(*values)[NSCI_DOUBLE_TEXT_BYTES] = nsci_calloc((size_t)n_meta, sizeof *values);
    const char **keys = nsci_calloc((size_t)n_meta, sizeof *keys);
    const char **vals = nsci_calloc((size_t)n_meta, sizeof *vals);
    if (status == NSC_OK && !(meta && values && keys && vals)) {
        status = nsci_fail(NSC_ERR_OOM, "optim save: out of memory");
    }
    int m = 0;
    if (status == NSC_OK) {
        snprintf(meta[m].key, KEY_BYTES, "optimizer");
        snprintf(values[m++], sizeof values[0], "%s", nsc_optim_name(opt));
        snprintf(meta[m].key, KEY_BYTES, "n_params");
        snprintf(values[m++], sizeof values[0], "%lld", (long long)opt->n_params);
        snprintf(meta[m].key, KEY_BYTES, "n_groups");
        snprintf(values[m++], sizeof values[0], "%d", opt->n_groups);
        for (int g = 0; g < opt->n_groups; g++) {
            snprintf(meta[m].key, KEY_BYTES, "group.%d.n_params", g);
            snprintf(values[m++], sizeof values[0], "%lld", (long long)opt->groups[g].count);
            hyper h[N_HYPER];
            int n_hyper = hypers_of(opt->kind, g, &opt->groups[g], h);
            for (int k = 0; k < n_hyper; k++) {
                meta[m] = h[k];
                nsci_format_double(values[m++], sizeof values[0], h[k].value);
            }
        }
        for (int k = 0; k < m; k++) {
            keys[k] = meta[k].key;
            vals[k] = values[k];
        }
    }
    if (status == NSC_OK) {
        status = nsc_safetensors_save(path, n, name_ptrs, tensors, m, keys, vals);
    }
    nsci_free(meta);
    nsci_free(values);
    nsci_free(keys);
    nsci_free(vals);
    for (int k = 0; k < n; k++) {
        nsc_free(tensors[k]);
    }
    nsci_free(names);
    nsci_free(name_ptrs);
    nsci_free(tensors);
    return status;
}

// --- loading ---

// A metadata number, or fails naming the key.
static nsc_status meta_number(const nsc_safetensors *st, const char *path, const char *key,
                              double *out) {
    const char *text = nsc_safetensors_get_metadata(st, key);
    char *end = NULL;
    errno = 0;
    double v = text ? nsci_strtod(text, &end) : 0.0;
    if (!text || end == text || *end != '\0' || errno == ERANGE || isnan(v)) {
        return nsci_fail(NSC_ERR_FORMAT,
                         "optim load: %s: metadata \"%s\" is %s%s%s: expected a number", path, key,
                         text ? "\"" : "missing", text ? text : "", text ? "\"" : "");
    }
    *out = v;
    return NSC_OK;
}

// What the file gives one parameter: its step count and state, converted to
// the parameter's dtype and device (NULLs when the file has none for it).
typedef struct loaded {
    int64_t step;
    nsc_tensor *state[NSCI_OPTIM_MAX_STATE];
} loaded;

static nsc_status load_param(const nsc_optim *opt, const nsc_safetensors *st, const char *path,
                             int64_t i, loaded *out) {
    char key[KEY_BYTES];
    snprintf(key, sizeof key, "state.%lld.step", (long long)i);
    if (!nsc_safetensors_has(st, key)) {
        // Not stepped: then it has no state either. State without a step
        // (torch's SGD writes none) would be dropped without a word.
        for (int s = 0; s < nsci_optim_n_state(opt, nsci_optim_group_of(opt, i)); s++) {
            char state_key[KEY_BYTES];
            snprintf(state_key, sizeof state_key, "state.%lld.%s", (long long)i,
                     slot_name(opt->kind, s));
            if (nsc_safetensors_has(st, state_key)) {
                return nsci_fail(NSC_ERR_FORMAT,
                                 "optim load: %s: %s is present but %s is missing: a "
                                 "parameter's state needs its step count",
                                 path, state_key, key);
            }
        }
        return NSC_OK; // this parameter has not stepped
    }
    nsc_tensor *step = nsc_safetensors_load(st, key);
    if (!step) {
        return nsc_last_status();
    }
    // torch keeps step as a float tensor, nsc as i64: either is read as a
    // double, which holds every count up to 2^53 exactly.
    double v = nsc_tensor_numel(step) == 1 ? nsc_tensor_item(step) : -1;
    nsc_free(step);
    if (!(v >= 1 && v <= 9007199254740992.0 && v == floor(v))) {
        return nsci_fail(NSC_ERR_FORMAT,
                         "optim load: %s: %s is %g: expected one whole step count in [1, 2^53]",
                         path, key, v);
    }
    out->step = (int64_t)v;
    const nsc_tensor *p = opt->params[i];
    for (int s = 0; s < nsci_optim_n_state(opt, nsci_optim_group_of(opt, i)); s++) {
        snprintf(key, sizeof key, "state.%lld.%s", (long long)i, slot_name(opt->kind, s));
        bool present = nsc_safetensors_has(st, key);
        nsc_tensor *raw = present ? nsc_safetensors_load(st, key) : NULL;
        if (present && !raw) {
            return nsc_last_status(); // out of memory, or a dtype nsc cannot read
        }
        if (!raw || raw->ndim != p->ndim ||
            memcmp(raw->shape, p->shape, sizeof(int64_t) * (size_t)p->ndim) != 0 ||
            !nsci_is_float((nsc_dtype)raw->dtype)) {
            char got[200] = "missing", want[160];
            nsci_shape_str(want, sizeof want, p->ndim, p->shape);
            if (raw) {
                size_t used = strlen(nsci_shape_str(got, sizeof got, raw->ndim, raw->shape));
                snprintf(got + used, sizeof got - used, " %s",
                         nsc_dtype_name((nsc_dtype)raw->dtype));
            }
            nsc_free(raw);
            return nsci_fail(NSC_ERR_FORMAT,
                             "optim load: %s: %s is %s: expected a float tensor %s (parameter "
                             "%lld%s%s)",
                             path, key, got, want, (long long)i,
                             opt->names && opt->names[i] ? " " : "",
                             opt->names && opt->names[i] ? opt->names[i] : "");
        }
        nsc_tensor *cast = nsc_to_dtype(raw, (nsc_dtype)p->dtype);
        nsc_tensor *moved = cast ? nsc_to(cast, (nsc_device)p->device) : NULL;
        // a copy of its own: the state is written in place by every step
        out->state[s] = moved ? nsc_clone(moved) : NULL;
        nsc_free(raw);
        nsc_free(cast);
        nsc_free(moved);
        if (!out->state[s]) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

// The kind, the parameter count and the group structure must be opt's. A
// file without "n_groups" (written before groups existed) has one group.
static nsc_status check_header(const nsc_optim *opt, const nsc_safetensors *st, const char *path) {
    const char *kind = nsc_safetensors_get_metadata(st, "optimizer");
    if (!kind || strcmp(kind, nsc_optim_name(opt)) != 0) {
        return nsci_fail(
            NSC_ERR_FORMAT, "optim load: %s: metadata \"optimizer\" is %s%s%s: expected \"%s\"",
            path, kind ? "\"" : "missing", kind ? kind : "", kind ? "\"" : "", nsc_optim_name(opt));
    }
    double n_params = 0, n_groups = 1;
    if (meta_number(st, path, "n_params", &n_params) != NSC_OK) {
        return nsc_last_status();
    }
    if (n_params != (double)opt->n_params) {
        return nsci_fail(NSC_ERR_FORMAT,
                         "optim load: %s: saved for %.0f parameters: this optimizer has %lld", path,
                         n_params, (long long)opt->n_params);
    }
    bool grouped = nsc_safetensors_get_metadata(st, "n_groups") != NULL;
    if (grouped && meta_number(st, path, "n_groups", &n_groups) != NSC_OK) {
        return nsc_last_status();
    }
    if (n_groups != (double)opt->n_groups) {
        return nsci_fail(NSC_ERR_FORMAT,
                         "optim load: %s: saved with %.0f parameter groups: this optimizer has %d "
                         "(add the same groups before loading)",
                         path, n_groups, opt->n_groups);
    }
    for (int g = 0; grouped && g < opt->n_groups; g++) {
        char key[KEY_BYTES];
        double count = 0;
        snprintf(key, sizeof key, "group.%d.n_params", g);
        if (meta_number(st, path, key, &count) != NSC_OK) {
            return nsc_last_status();
        }
        if (count != (double)opt->groups[g].count) {
            return nsci_fail(NSC_ERR_FORMAT,
                             "optim load: %s: group %d saved with %.0f parameters: here it has "
                             "%lld",
                             path, g, count, (long long)opt->groups[g].count);
        }
    }
    return NSC_OK;
}

// A constructor's refusal of loaded hyper-parameters, as a format error of
// the file naming it and the group.
static nsc_status bad_hypers(nsc_status status, const char *path, int g) {
    if (status == NSC_OK) {
        return NSC_OK;
    }
    char why[512];
    snprintf(why, sizeof why, "%s", nsc_last_error());
    return nsci_fail(NSC_ERR_FORMAT, "optim load: %s: group %d: %s", path, g, why);
}

// Group g's hyper-parameters from the file into *into, validated as the
// constructors validate theirs; the kind of state kept (momentum or not,
// amsgrad or not) must match the group's.
static nsc_status load_group(const nsc_optim *opt, const nsc_safetensors *st, const char *path,
                             int g, nsci_optim_group *into) {
    const nsci_optim_group *have = &opt->groups[g];
    hyper h[N_HYPER];
    int n_hyper = hypers_of(opt->kind, g, have, h);
    for (int k = 0; k < n_hyper; k++) {
        bool last = k == n_hyper - 1; // maximize: absent from files written before it existed
        if (last && !nsc_safetensors_get_metadata(st, h[k].key)) {
            h[k].value = 0;
        } else if (meta_number(st, path, h[k].key, &h[k].value) != NSC_OK) {
            return nsc_last_status();
        }
    }
    *into = *have;
    if (opt->kind == NSCI_OPTIM_SGD) {
        into->sgd = (nsc_sgd_config){ .lr = h[0].value,
                                      .momentum = h[1].value,
                                      .dampening = h[2].value,
                                      .weight_decay = h[3].value,
                                      .nesterov = h[4].value != 0,
                                      .maximize = h[5].value != 0 };
        if ((h[1].value != 0) != (have->sgd.momentum != 0)) {
            return nsci_fail(NSC_ERR_FORMAT,
                             "optim load: %s: group %d: momentum %g saved, %g here: the state "
                             "kept differs",
                             path, g, h[1].value, have->sgd.momentum);
        }
        return bad_hypers(nsci_optim_check_sgd(&into->sgd), path, g);
    }
    into->adamw = (nsc_adamw_config){ .lr = h[0].value,
                                      .beta1 = h[1].value,
                                      .beta2 = h[2].value,
                                      .eps = h[3].value,
                                      .weight_decay = h[4].value,
                                      .amsgrad = h[5].value != 0,
                                      .maximize = h[6].value != 0 };
    if (into->adamw.amsgrad != have->adamw.amsgrad) {
        return nsci_fail(NSC_ERR_FORMAT,
                         "optim load: %s: group %d: amsgrad %s saved, %s here: the state kept "
                         "differs",
                         path, g, into->adamw.amsgrad ? "on" : "off",
                         have->adamw.amsgrad ? "on" : "off");
    }
    return bad_hypers(nsci_optim_check_adamw(&into->adamw), path, g);
}

nsc_status nsci_optim_load_from(nsc_optim *opt, const nsc_safetensors *st, const char *path) {
    loaded *got = nsci_calloc((size_t)opt->n_params, sizeof *got);
    nsci_optim_group *groups = nsci_calloc((size_t)opt->n_groups, sizeof *groups);
    nsc_status status = got && groups ? check_header(opt, st, path) : NSC_ERR_OOM;
    for (int g = 0; status == NSC_OK && g < opt->n_groups; g++) {
        status = load_group(opt, st, path, g, &groups[g]);
    }
    for (int64_t i = 0; status == NSC_OK && i < opt->n_params; i++) {
        status = load_param(opt, st, path, i, &got[i]);
    }
    for (int64_t i = 0; got && i < opt->n_params; i++) {
        for (int s = 0; s < NSCI_OPTIM_MAX_STATE; s++) {
            nsc_tensor **slot = &opt->state[i * NSCI_OPTIM_MAX_STATE + s];
            if (status == NSC_OK) { // swap in; a parameter the file leaves out restarts
                nsc_free(*slot);
                *slot = got[i].state[s];
            } else {
                nsc_free(got[i].state[s]);
            }
        }
        if (status == NSC_OK) {
            opt->steps[i] = got[i].step;
        }
    }
    if (status == NSC_OK) {
        memcpy(opt->groups, groups, (size_t)opt->n_groups * sizeof *groups);
    }
    nsci_free(got);
    nsci_free(groups);
    return status;
}

nsc_status nsc_optim_load(nsc_optim *opt, const char *path) {
    if (!opt || !path) {
        return nsci_fail(NSC_ERR_ARG, "optim load: %s is NULL", opt ? "path" : "optimizer");
    }
    nsc_safetensors *st = nsc_safetensors_open(path);
    if (!st) {
        return nsc_last_status();
    }
    nsc_status status = nsci_optim_load_from(opt, st, path);
    nsc_safetensors_free(st);
    return status;
}
