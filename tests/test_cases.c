// Runs the one case table (tests/cases/*.def): every row against its
// PyTorch fixture on the CPU, every row on META against the CPU shapes, and
// the registry check that every op has its pieces and its rows.
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tests/harness.h"

static nsct_fixtures *g_fixtures;

static void load_fixtures(void) {
    g_fixtures = nsct_fixtures_load(nsct_fixture_path("ops.bin"));
    cr_assert(g_fixtures, "tests/fixtures/ops.bin is missing or unreadable: run `make fixtures`");
}

static void free_fixtures(void) {
    nsct_fixtures_free(g_fixtures);
}

// Builds the inputs of c on device; false (with inputs freed) on failure.
static bool make_inputs(const nsct_case *c, nsc_device device, nsc_tensor **x) {
    for (int i = 0; i < c->n_in; i++) {
        x[i] = nsct_make_input(c, i, c->in[i].dtype, device);
        if (!x[i]) {
            for (int k = 0; k < i; k++) {
                nsc_free(x[k]);
            }
            return false;
        }
    }
    return true;
}

static void free_all(nsc_tensor **t, int n) {
    for (int i = 0; i < n; i++) {
        nsc_free(t[i]);
        t[i] = NULL;
    }
}

// Checks one case on the CPU; returns false with a reason.
static bool check_values(const nsct_case *c, char *why, size_t why_bytes) {
    nsc_tensor *x[NSCT_MAX_INPUTS] = { 0 }, *out[NSCT_MAX_OUTPUTS] = { 0 };
    if (!make_inputs(c, NSC_CPU, x)) {
        snprintf(why, why_bytes, "building inputs failed: %s", nsc_last_error());
        return false;
    }
    int n_out = c->run(x, out);
    bool ok = n_out > 0;
    if (!ok) {
        snprintf(why, why_bytes, "the op failed: %s", nsc_last_error());
    }
    for (int k = 0; ok && k < n_out; k++) {
        char key[160];
        snprintf(key, sizeof key, "%s.out%d", c->name, k);
        nsc_tensor *want = nsct_fixture_get(g_fixtures, key);
        if (!want) {
            snprintf(why, why_bytes, "no fixture %s: run `make fixtures`", key);
            ok = false;
        } else if (!nsct_close(out[k], want, c->tol, why, why_bytes)) {
            ok = false;
        }
        nsc_free(want);
    }
    free_all(out, NSCT_MAX_OUTPUTS);
    free_all(x, c->n_in);
    return ok;
}

Test(cases, values_match_pytorch, .init = load_fixtures, .fini = free_fixtures) {
    int failures = 0;
    for (int i = 0; i < nsct_n_cases; i++) {
        const nsct_case *c = &nsct_all_cases[i];
        int64_t before = nsct_live_blocks();
        char why[1200];
        if (!check_values(c, why, sizeof why)) {
            cr_log_error("case %s: %s", c->name, why);
            failures++;
        } else if (nsct_live_blocks() != before) {
            cr_log_error("case %s: %lld blocks leaked", c->name,
                         (long long)(nsct_live_blocks() - before));
            failures++;
        }
        nsc_clear_error();
    }
    cr_expect_eq(failures, 0, "%d of %d cases failed (see the log above)", failures, nsct_n_cases);
}

// An op whose output shape depends on the input's values (nonzero) must
// refuse META inputs with NSC_ERR_UNSUPPORTED, allocating nothing.
static bool check_meta_refused(const nsct_case *c, char *why, size_t why_bytes) {
    nsc_tensor *mx[NSCT_MAX_INPUTS] = { 0 }, *mout[NSCT_MAX_OUTPUTS] = { 0 };
    bool ok = make_inputs(c, NSC_META, mx);
    int64_t data_before = nsc_mem_stats_get().data_bytes;
    int n_meta = ok ? c->run(mx, mout) : 0;
    ok = ok && n_meta < 0 && nsc_last_status() == NSC_ERR_UNSUPPORTED &&
         nsc_mem_stats_get().data_bytes == data_before;
    if (!ok) {
        snprintf(why, why_bytes, "a data-dependent shape on META gave %d outputs (%s); expected "
                                 "NSC_ERR_UNSUPPORTED",
                 n_meta, nsc_last_error());
    }
    free_all(mout, NSCT_MAX_OUTPUTS);
    free_all(mx, c->n_in);
    return ok;
}

// Runs a case on META inputs: same shapes and dtypes as on the CPU, no data
// allocated, no kernel run.
static bool check_meta(const nsct_case *c, char *why, size_t why_bytes) {
    if (nsci_op_defs[c->op]->data_dependent_shape) {
        return check_meta_refused(c, why, why_bytes);
    }
    nsc_tensor *x[NSCT_MAX_INPUTS] = { 0 }, *out[NSCT_MAX_OUTPUTS] = { 0 };
    nsc_tensor *mx[NSCT_MAX_INPUTS] = { 0 }, *mout[NSCT_MAX_OUTPUTS] = { 0 };
    bool ok = make_inputs(c, NSC_CPU, x) && make_inputs(c, NSC_META, mx);
    int n_out = ok ? c->run(x, out) : -1;
    int64_t data_before = nsc_mem_stats_get().data_bytes;
    int64_t kernels_before = nsci_kernel_count();
    int n_meta = ok ? c->run(mx, mout) : -1;
    ok = n_out > 0 && n_meta == n_out;
    if (!ok) {
        snprintf(why, why_bytes, "cpu gave %d outputs, meta %d: %s", n_out, n_meta,
                 nsc_last_error());
    } else if (nsc_mem_stats_get().data_bytes != data_before) {
        snprintf(why, why_bytes, "meta run allocated %lld data bytes",
                 (long long)(nsc_mem_stats_get().data_bytes - data_before));
        ok = false;
    } else if (nsci_kernel_count() != kernels_before) {
        snprintf(why, why_bytes, "meta run ran %lld kernels",
                 (long long)(nsci_kernel_count() - kernels_before));
        ok = false;
    }
    for (int k = 0; ok && k < n_out; k++) {
        char a[160], b[160];
        nsc_tensor *m = mout[k], *r = out[k];
        if (nsc_tensor_device(m) != NSC_META || m->ndim != r->ndim || m->dtype != r->dtype ||
            memcmp(m->shape, r->shape, (size_t)r->ndim * 8) != 0) {
            snprintf(why, why_bytes, "output %d: meta %s %s on %s, cpu %s %s", k,
                     nsci_shape_str(a, sizeof a, m->ndim, m->shape), nsc_dtype_name(m->dtype),
                     nsc_device_name(nsc_tensor_device(m)),
                     nsci_shape_str(b, sizeof b, r->ndim, r->shape), nsc_dtype_name(r->dtype));
            ok = false;
        }
    }
    free_all(out, NSCT_MAX_OUTPUTS);
    free_all(mout, NSCT_MAX_OUTPUTS);
    free_all(x, c->n_in);
    free_all(mx, c->n_in);
    return ok;
}

Test(cases, meta_matches_cpu_without_data) {
    int failures = 0;
    for (int i = 0; i < nsct_n_cases; i++) {
        char why[1200];
        if (!check_meta(&nsct_all_cases[i], why, sizeof why)) {
            cr_log_error("case %s: %s", nsct_all_cases[i].name, why);
            failures++;
        }
        nsc_clear_error();
    }
    cr_expect_eq(failures, 0, "%d cases failed on META (see the log above)", failures);
}

Test(cases, names_are_unique) {
    for (int i = 0; i < nsct_n_cases; i++) {
        for (int k = i + 1; k < nsct_n_cases; k++) {
            cr_expect_str_neq(nsct_all_cases[i].name, nsct_all_cases[k].name);
        }
    }
}

static const char *const flag_names[NSCI_N_CASE_FLAGS] = {
    "broadcast", "transposed", "stepped", "expanded", "rank 0", "empty",
};

// Every op has a shape rule, a CPU kernel (views excepted), a backward rule
// or a reason, and case rows for every layout flag that applies to it.
Test(registry, every_op_is_complete) {
    int problems = 0;
    for (int op = 0; op < NSC_OP_COUNT; op++) {
        const nsci_op_def *d = nsci_op_defs[op];
        uint32_t covered = 0;
        int rows = 0;
        for (int i = 0; i < nsct_n_cases; i++) {
            if ((int)nsct_all_cases[i].op == op) {
                covered |= nsct_case_flags(&nsct_all_cases[i]);
                rows++;
            }
        }
        const char *missing = !d->infer ? "a shape rule"
                              : (!d->cpu && !(d->flags & NSCI_OP_VIEW)) ? "a CPU kernel"
                              : (!d->backward && !d->no_grad) ? "a backward rule or a reason"
                              : rows == 0 ? "a case row"
                                          : NULL;
        if (missing) {
            cr_log_error("op %s lacks %s", d->name, missing);
            problems++;
        }
        for (int f = 0; f < NSCI_N_CASE_FLAGS; f++) {
            bool applies = f != NSCI_CASE_BROADCAST || (d->flags & NSCI_OP_BROADCAST);
            if (applies && !d->exempt[f] && !(covered & (1u << f))) {
                cr_log_error("op %s has no %s case row (or a stated exemption)", d->name,
                             flag_names[f]);
                problems++;
            }
        }
    }
    cr_expect_eq(problems, 0, "%d registry problems (see the log above)", problems);
}
