// Helpers shared by the reliability suites (tests/test_reliability_*.c):
// the allocation-failure sweep, parameter snapshots for "the model is
// unchanged" checks, and bit-exact comparisons.
#ifndef NSC_TESTS_RELIABILITY_UTIL_H
#define NSC_TESTS_RELIABILITY_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc.h"

// One operation under an allocation-failure sweep.
typedef struct nsct_oom_op {
    const char *name;
    // Runs the operation. Returns true when it completed (results kept in
    // ctx), false when it failed, having released everything it made.
    bool (*run)(void *ctx);
    // Called after a completed run: true when the results equal the
    // reference bit for bit. Releases the results either way.
    bool (*verify)(void *ctx);
    void *ctx;
    // A completed run may keep blocks (it replaced a model's tensors): only
    // failed runs are held to the live block count.
    bool keeps_blocks;
} nsct_oom_op;

typedef struct nsct_oom_result {
    int64_t points;   // allocations failed in turn: k = 1 .. points
    int64_t absorbed; // runs that completed although an allocation failed
    int problems;     // failed checks (each logged with cr_log_error)
} nsct_oom_result;

// Runs op with nsc_mem_fail_after(k) for k = 1, 2, ... until a run completes
// with no allocation failed (at most max_points). Every failed run must give
// NSC_ERR_OOM with a message mentioning memory and leave the live block
// count where it was (storage cache trimmed before each count). Completed
// runs must verify. Logs the count with cr_log_info.
nsct_oom_result nsct_oom_sweep(const nsct_oom_op *op, int64_t max_points);

// Live blocks after trimming the storage cache.
int64_t nsct_rel_live_blocks(void);

// --- snapshots ---

// Clones of every parameter and buffer of model, in iteration order.
typedef struct nsct_snapshot {
    int64_t n;
    nsc_tensor **tensors;
} nsct_snapshot;

nsct_snapshot nsct_snapshot_take(nsc_module *model);
// True when every parameter and buffer of model equals the snapshot bit for
// bit (and still lives in the same place in the tree).
bool nsct_snapshot_equal(nsc_module *model, const nsct_snapshot *snap);
// Copies the snapshot's values back into model's tensors (nsc_copy_).
nsc_status nsct_snapshot_restore(nsc_module *model, const nsct_snapshot *snap);
void nsct_snapshot_free(nsct_snapshot *snap);

// Computes every module path of the tree once: the paths are cached on first
// use (an allocation the module owns), which would otherwise show up in
// leak counts as blocks that outlive an operation.
void nsct_warm_paths(nsc_module *model);

#endif
