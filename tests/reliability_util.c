// Helpers shared by the reliability suites (see reliability_util.h).
#include "tests/reliability_util.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdlib.h>
#include <string.h>

#include "tests/st_util.h"

enum {
    MAX_LOGGED = 8
}; // problems logged per sweep; the rest are counted

int64_t nsct_rel_live_blocks(void) {
    nsc_mem_trim();
    return nsc_mem_stats_get().live_blocks;
}

// Logs one problem of a sweep (the first few only).
static void problem(nsct_oom_result *r, const char *name, int64_t k, const char *what) {
    if (r->problems++ < MAX_LOGGED) {
        cr_log_error("%s, allocation %lld: %s", name, (long long)k, what);
    }
}

// Checks a failed run: the status, the message and the live blocks.
static void check_failure(nsct_oom_result *r, const nsct_oom_op *op, int64_t k, int64_t before) {
    char what[1400];
    if (nsc_last_status() != NSC_ERR_OOM || !strstr(nsc_last_error(), "memory")) {
        snprintf(what, sizeof what, "failed with %s: \"%s\" (want NSC_ERR_OOM naming memory)",
                 nsc_status_name(nsc_last_status()), nsc_last_error());
        problem(r, op->name, k, what);
    }
    int64_t after = nsct_rel_live_blocks();
    if (after != before) {
        snprintf(what, sizeof what, "%lld blocks leaked", (long long)(after - before));
        problem(r, op->name, k, what);
    }
}

nsct_oom_result nsct_oom_sweep(const nsct_oom_op *op, int64_t max_points) {
    nsct_oom_result r = { 0 };
    for (int64_t k = 1; k <= max_points; k++) {
        int64_t before = nsct_rel_live_blocks();
        nsc_clear_error();
        nsc_mem_fail_after(k);
        bool done = op->run(op->ctx);
        int64_t failed = nsc_mem_failed_count();
        nsc_mem_fail_after(0);
        if (!done) {
            check_failure(&r, op, k, before);
            if (failed == 0) {
                problem(&r, op->name, k, "failed with no allocation failed");
                return r;
            }
            continue;
        }
        if (!op->verify(op->ctx)) {
            problem(&r, op->name, k, "completed with results that differ from the reference");
        }
        if (!op->keeps_blocks && nsct_rel_live_blocks() != before) {
            problem(&r, op->name, k, "a completed run leaked");
        }
        if (failed == 0) {
            r.points = k - 1;
            cr_log_info("oom sweep %s: %lld allocation points, %lld absorbed", op->name,
                        (long long)r.points, (long long)r.absorbed);
            return r;
        }
        r.absorbed++;
    }
    problem(&r, op->name, max_points, "never completed");
    return r;
}

// --- snapshots ---

nsct_snapshot nsct_snapshot_take(nsc_module *model) {
    nsct_snapshot s = { 0 };
    int64_t n_params = nsc_module_n_params(model), n_buffers = nsc_module_n_buffers(model);
    s.n = n_params + n_buffers;
    s.tensors = calloc((size_t)(s.n ? s.n : 1), sizeof *s.tensors);
    for (int64_t i = 0; i < s.n; i++) {
        nsc_tensor *t = i < n_params ? nsc_module_param_at(model, i, NULL)
                                     : nsc_module_buffer_at(model, i - n_params, NULL);
        s.tensors[i] = nsc_clone(t);
    }
    return s;
}

bool nsct_snapshot_equal(nsc_module *model, const nsct_snapshot *snap) {
    int64_t n_params = nsc_module_n_params(model), n_buffers = nsc_module_n_buffers(model);
    if (n_params + n_buffers != snap->n) {
        return false;
    }
    for (int64_t i = 0; i < snap->n; i++) {
        nsc_tensor *t = i < n_params ? nsc_module_param_at(model, i, NULL)
                                     : nsc_module_buffer_at(model, i - n_params, NULL);
        if (!nsct_st_equal(t, snap->tensors[i])) {
            return false;
        }
    }
    return true;
}

nsc_status nsct_snapshot_restore(nsc_module *model, const nsct_snapshot *snap) {
    int64_t n_params = nsc_module_n_params(model);
    for (int64_t i = 0; i < snap->n; i++) {
        nsc_tensor *t = i < n_params ? nsc_module_param_at(model, i, NULL)
                                     : nsc_module_buffer_at(model, i - n_params, NULL);
        if (nsc_copy_(t, snap->tensors[i]) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return NSC_OK;
}

void nsct_snapshot_free(nsct_snapshot *snap) {
    for (int64_t i = 0; i < snap->n; i++) {
        nsc_free(snap->tensors[i]);
    }
    free(snap->tensors);
    snap->tensors = NULL;
    snap->n = 0;
}

void nsct_warm_paths(nsc_module *model) {
    for (int64_t i = 0; i < nsc_module_n_modules(model); i++) {
        nsc_module_path(nsc_module_at(model, i));
    }
}
