// Macros that turn the rows of tests/cases/<family>.def into the case table.
// A row:
//   CASE(name, op, tol, "torch expression", body, inputs...)
// - name: unique C identifier; op: the ops.def name the row covers;
// - tol: a TOL_* constant from tests/harness.h;
// - torch expression: Python over x0, x1, ... (torch tensors), `torch`, `F`
//   (torch.nn.functional) and make_fixtures.py's sgd_step and adamw_step
//   (one torch.optim step); a tensor or a tuple of tensors;
// - body: OUT(expr) for one output, OUTS(n, status_call) for calls that write
//   out[0..n) (e.g. nsc_max_dim(x[0], 1, false, &out[0], &out[1])), or
//   INPLACE(status_call) whose output is x[0] after the call, or
//   WRITES(status_call, i, j, ...) whose outputs are x[i], x[j], ... after it;
// - inputs (x[0], x[1], ...):
//     IN(dtype, dims...)             values uniform in [-2, 2) (i64: [0, 5))
//     INR(dtype, lo, hi, dims...)    values in [lo, hi)
//     INT(dtype, dims...)            transposed layout (last two dims), rank >= 2
//     INS(dtype, dims...)            stepped layout (last dim, step 2), rank >= 1
//     INE(dtype, dims...)            expanded layout (dim 0 has stride 0), dims[0] > 1
//     IN0(dtype)                     rank 0
//     INX(dtype, layout, lo, hi, dims...)  everything explicit
//   dtype is F32, F64, I64 or BOOL. A dims list may contain 0 (size-0 dim).
// Layout flags (broadcast, transposed, stepped, expanded, rank 0, empty) are
// derived from the inputs; the registry test wants every applicable flag per op.
#ifndef NSC_TESTS_CASES_H
#define NSC_TESTS_CASES_H

#include <math.h>

#include "tests/harness.h"

#define NSCT_NARGS_(_1, _2, _3, _4, _5, _6, _7, _8, N, ...) N
#define NSCT_NARGS(...) NSCT_NARGS_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)

#define INX(dt, layout, lo, hi, ...)                                                               \
    { NSC_##dt, layout, lo, hi, NSCT_NARGS(__VA_ARGS__), { __VA_ARGS__ } }
#define NSCT_LO(dt) (NSC_##dt == NSC_I64 ? 0.0 : -2.0)
#define NSCT_HI(dt) (NSC_##dt == NSC_I64 ? 5.0 : 2.0)
#define IN(dt, ...) INX(dt, NSCT_CONTIG, NSCT_LO(dt), NSCT_HI(dt), __VA_ARGS__)
#define INR(dt, lo, hi, ...) INX(dt, NSCT_CONTIG, lo, hi, __VA_ARGS__)
#define INT(dt, ...) INX(dt, NSCT_TRANSPOSED, NSCT_LO(dt), NSCT_HI(dt), __VA_ARGS__)
#define INS(dt, ...) INX(dt, NSCT_STEPPED, NSCT_LO(dt), NSCT_HI(dt), __VA_ARGS__)
#define INE(dt, ...) INX(dt, NSCT_EXPANDED, NSCT_LO(dt), NSCT_HI(dt), __VA_ARGS__)
#define IN0(dt) { NSC_##dt, NSCT_CONTIG, NSCT_LO(dt), NSCT_HI(dt), 0, { 0 } }

#define NSCT_COUNT_INPUTS(...) (int)(sizeof((nsct_input[]){ __VA_ARGS__ }) / sizeof(nsct_input))

#define OUT(expr)                                                                                  \
    out[0] = (expr);                                                                               \
    return out[0] ? 1 : -1;
#define OUTS(n, call)                                                                              \
    if ((call) != NSC_OK) {                                                                        \
        return -1;                                                                                 \
    }                                                                                              \
    return n;
#define INPLACE(call)                                                                              \
    if ((call) != NSC_OK) {                                                                        \
        return -1;                                                                                 \
    }                                                                                              \
    out[0] = nsc_retain(x[0]);                                                                     \
    return 1;
// In-place calls that write several inputs (the optimizer updates): the
// outputs are the inputs at the listed positions after the call.
#define WRITES(call, ...)                                                                          \
    if ((call) != NSC_OK) {                                                                        \
        return -1;                                                                                 \
    }                                                                                              \
    static const int written_[] = { __VA_ARGS__ };                                                \
    for (size_t k = 0; k < sizeof written_ / sizeof written_[0]; k++) {                            \
        out[k] = nsc_retain(x[written_[k]]);                                                       \
    }                                                                                              \
    return (int)(sizeof written_ / sizeof written_[0]);

// First pass over a .def file: one run function per row.
#define NSCT_DEFINE_RUNS                                                                           \
    _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic ignored \"-Wunused-parameter\"")
#define CASE_RUN(name, op, tol, torch, body, ...)                                                  \
    static int run_##name(nsc_tensor **x, nsc_tensor **out) {                                      \
        (void)x;                                                                                   \
        body                                                                                       \
    }
// Second pass: the rows.
#define CASE_ROW(name, op, tol, torch, body, ...)                                                  \
    { #name, NSC_OP_##op, tol, torch, run_##name, NSCT_COUNT_INPUTS(__VA_ARGS__), { __VA_ARGS__ } },

#endif
