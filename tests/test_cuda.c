// The CUDA device: the strided-index helpers on the CPU (always run), the
// kernel registry and the "built without CUDA" answers (no GPU needed), and
// on a GPU: every case-table row against the CPU with no hidden transfer,
// gradients against the CPU's, the GPT-2 fixture's forward and backward, a
// trace with interventions, cached generation, loading weights into a GPU
// model, steady-state allocation and a program linked against libnsc.a.
// GPU tests skip when none is visible.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_impl.h"
#include "tests/expect.h"
#include "tests/harness.h"

// A CUDA result against the CPU's: the row's tolerance, at least this for
// floats, since CUDA's libdevice exp/log/erf differ from glibc's by an ulp
// or two and reductions sum in another order (in double).
#define TOL_CUDA_FLOOR ((nsct_tol){ 1e-5, 1e-4, "cuda vs cpu: libdevice ulps, summation order" })
// GPT-2 on CUDA vs the CPU (the brief's bound for the whole forward).
#define TOL_GPT2 ((nsct_tol){ 1e-3, 1e-3, "cuda vs cpu: a whole f32 forward" })

// --- strided-index helpers (cuda/cuda_impl.h, __host__ __device__) ---

// The offset of row-major element i of t, walked the slow way.
static int64_t slow_offset(const nsc_tensor *t, const int64_t *stride, int64_t i) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * stride[d];
        i /= t->shape[d];
    }
    return off;
}

// Operands (out, in...) as the glue describes them, from CPU tensors.
static void describe(nsci_cuda_ew *e, nsc_tensor *out, int n_in, nsc_tensor **in) {
    memset(e, 0, sizeof *e);
    e->ndim = out->ndim;
    e->n_operands = n_in + 1;
    memcpy(e->shape, out->shape, sizeof out->shape);
    e->numel = nsc_tensor_numel(out);
    memcpy(e->stride[0], out->stride, sizeof out->stride);
    for (int k = 0; k < n_in; k++) {
        nsci_broadcast_strides(in[k], out->ndim, out->shape, e->stride[k + 1]);
    }
}

static void check_walk(nsc_tensor *out, int n_in, nsc_tensor **in, bool expect_flat) {
    nsci_cuda_ew e;
    describe(&e, out, n_in, in);
    int64_t strides[NSCI_CUDA_MAX_OPERANDS][NSC_MAX_DIMS];
    memcpy(strides, e.stride, sizeof strides);
    nsci_cuda_ew_coalesce(&e);
    cr_expect_eq(nsci_cuda_ew_flat(&e), expect_flat, "flat after coalescing");
    for (int64_t i = 0; i < e.numel; i++) {
        for (int k = 0; k < e.n_operands; k++) {
            int64_t want = slow_offset(out, strides[k], i);
            cr_assert_eq(nsci_cuda_ew_offset(&e, k, i), want, "operand %d, element %lld", k,
                         (long long)i);
            cr_assert_eq(nsci_cuda_unravel32(e.ndim, e.shape, e.stride[k], (uint32_t)i), want);
        }
    }
}

Test(cuda_index, coalescing_keeps_every_offset) {
    nsc_tensor *a = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 4));
    nsc_tensor *b = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 4));
    nsc_tensor *row = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(4));
    nsc_tensor *wide = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3, 8));
    nsc_tensor *stepped = nsc_slice(wide, 2, 0, NSC_END, 2);
    nsc_tensor *t = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4, 3));
    nsc_tensor *transposed = nsc_transpose(t, 1, 2);
    nsc_tensor *one = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1, 3, 1));
    nsc_tensor *expanded = nsc_expand(one, NSC_SHAPE(2, 3, 4));
    check_walk(a, 1, &b, true);                   // contiguous: one flat run
    check_walk(a, 1, &row, false);                // broadcast row (stride 0)
    check_walk(a, 1, &stepped, false);            // slice with step 2
    check_walk(a, 1, &transposed, false);         // transposed view
    check_walk(a, 1, &expanded, false);           // expand of size-1 dims
    nsc_tensor *three[3] = { b, transposed, row }; // several operands at once
    check_walk(a, 3, three, false);
    nsc_tensor *temps[] = { a, b, row, wide, stepped, t, transposed, one, expanded };
    for (int i = 0; i < NSCI_ARRAY_LEN(temps); i++) {
        nsc_free(temps[i]);
    }
}

Test(cuda_index, unravel_handles_rank0_and_large_positions) {
    int64_t shape[2] = { 3000000000LL, 7 }, stride[2] = { 7, 1 };
    cr_expect_eq(nsci_cuda_unravel(0, shape, stride, 0), 0);
    cr_expect_eq(nsci_cuda_unravel(2, shape, stride, 20999999999LL), 20999999999LL);
    int64_t tshape[2] = { 5, 6 }, tstride[2] = { 1, 5 }; // transposed [6, 5] storage
    cr_expect_eq(nsci_cuda_unravel(2, tshape, tstride, 13), 2 * 1 + 1 * 5);
    nsci_cuda_ew big = { .ndim = 1, .n_operands = 1, .numel = (int64_t)1 << 31 };
    cr_expect_not(nsci_cuda_ew_small(&big), "2^31 elements need 64-bit index math");
}

// --- without a GPU ---

#ifdef NSC_HAVE_CUDA
// Every op with a CPU kernel has a CUDA kernel (pure views run none).
Test(cuda_registry, every_op_has_a_cuda_kernel) {
    nsci_kernel_fn table[NSC_OP_COUNT] = { 0 };
    nsci_cuda_fill_kernels(table);
    int missing = 0;
    for (int op = 0; op < NSC_OP_COUNT; op++) {
        if (nsci_op_defs[op]->cpu && !table[op]) {
            cr_log_error("op %s has no CUDA kernel", nsci_op_defs[op]->name);
            missing++;
        }
    }
    cr_expect_eq(missing, 0, "%d ops without a CUDA kernel", missing);
}
#else
Test(cuda_registry, a_cpu_build_says_it_was_built_without_cuda) {
    cr_expect_eq(nsc_cuda_init(), NSC_ERR_UNSUPPORTED);
    cr_expect(strstr(nsc_last_error(), "built without CUDA"), "%s", nsc_last_error());
    cr_expect_not(nsc_cuda_available());
    cr_expect_eq(nsc_cuda_device_count(), 0);
    cr_expect_eq(nsc_cuda_stats_get().transfers, 0);
    nsc_clear_error();
}
#endif

// --- on a GPU ---

static void need_gpu(void) {
    if (nsc_cuda_init() != NSC_OK) {
        char why[1100];
        snprintf(why, sizeof why, "no GPU: %s", nsc_last_error());
        nsc_clear_error();
        cr_skip_test("%s", why);
    }
}

static nsct_tol tol_for(const nsct_case *c, nsc_tensor *out) {
    nsct_tol t = c->tol;
    if (nsc_tensor_dtype(out) == NSC_F32 && t.atol < TOL_CUDA_FLOOR.atol) {
        t = TOL_CUDA_FLOOR;
    }
    return t;
}

static void free_n(nsc_tensor **t, int n) {
    for (int i = 0; i < n; i++) {
        nsc_free(t[i]);
        t[i] = NULL;
    }
}

// Runs c on both devices; false with a reason. transfers: the host<->device
// copies the op itself made (inputs and result reads excluded).
static bool case_on_cuda(const nsct_case *c, char *why, size_t n, int64_t *transfers) {
    nsc_tensor *x[NSCT_MAX_INPUTS] = { 0 }, *g[NSCT_MAX_INPUTS] = { 0 };
    nsc_tensor *out[NSCT_MAX_OUTPUTS] = { 0 }, *gout[NSCT_MAX_OUTPUTS] = { 0 };
    bool ok = true;
    for (int i = 0; i < c->n_in && ok; i++) {
        x[i] = nsct_make_input(c, i, c->in[i].dtype, NSC_CPU);
        g[i] = nsct_make_input(c, i, c->in[i].dtype, NSC_CUDA);
        ok = x[i] && g[i];
    }
    int n_cpu = ok ? c->run(x, out) : -1;
    int64_t before = nsc_cuda_stats_get().transfers;
    int n_gpu = ok ? c->run(g, gout) : -1;
    *transfers = nsc_cuda_stats_get().transfers - before;
    ok = n_cpu > 0 && n_gpu == n_cpu;
    if (!ok) {
        snprintf(why, n, "cpu gave %d outputs, cuda %d: %s", n_cpu, n_gpu, nsc_last_error());
    }
    for (int k = 0; ok && k < n_gpu; k++) {
        nsc_tensor *host = nsc_to(gout[k], NSC_CPU);
        ok = nsct_close(host, out[k], tol_for(c, out[k]), why, n);
        nsc_free(host);
    }
    free_n(x, c->n_in);
    free_n(g, c->n_in);
    free_n(out, NSCT_MAX_OUTPUTS);
    free_n(gout, NSCT_MAX_OUTPUTS);
    return ok;
}

Test(cuda_cases, every_row_matches_the_cpu_without_transfers, .init = need_gpu) {
    int failures = 0;
    for (int i = 0; i < nsct_n_cases; i++) {
        const nsct_case *c = &nsct_all_cases[i];
        char why[1200];
        int64_t transfers = 0;
        // nonzero and one_hot(-1) read values to learn their shape, as torch
        // syncs; to_device is the explicit copy.
        bool reads_values =
            c->op == NSC_OP_nonzero || c->op == NSC_OP_one_hot || c->op == NSC_OP_to_device;
        if (!case_on_cuda(c, why, sizeof why, &transfers)) {
            cr_log_error("case %s: %s", c->name, why);
            failures++;
        } else if (transfers != 0 && !reads_values) {
            cr_log_error("case %s: %lld host<->device copies inside the op", c->name,
                         (long long)transfers);
            failures++;
        }
        nsc_clear_error();
    }
    cr_expect_eq(failures, 0, "%d of %d cases differ on CUDA", failures, nsct_n_cases);
}

// Gradients of sum(op(x) * w) for every float case with a backward rule,
// CUDA against the CPU (the CPU's are checked against finite differences in
// test_gradcheck.c).
static bool grads_on_cuda(const nsct_case *c, char *why, size_t n) {
    nsc_tensor *leaf[2][NSCT_MAX_INPUTS] = { { 0 } }, *view[2][NSCT_MAX_INPUTS] = { { 0 } };
    nsc_tensor *grads[2][NSCT_MAX_INPUTS] = { { 0 } };
    bool ok = true;
    for (int dev = 0; dev < 2 && ok; dev++) {
        nsc_tensor *out[NSCT_MAX_OUTPUTS] = { 0 };
        for (int i = 0; i < c->n_in && ok; i++) {
            nsc_tensor *l = nsct_make_leaf(c, i, c->in[i].dtype);
            leaf[dev][i] = dev ? nsc_to(l, NSC_CUDA) : nsc_retain(l);
            nsc_free(l);
            if (c->in[i].dtype == NSC_F32 || c->in[i].dtype == NSC_F64) {
                nsc_requires_grad_(leaf[dev][i], true);
            }
            view[dev][i] = nsct_layout_view(c, i, leaf[dev][i]);
            ok = view[dev][i] != NULL;
        }
        int n_out = ok ? c->run(view[dev], out) : -1;
        nsc_tensor *s = n_out > 0 && nsc_tensor_requires_grad(out[0]) ? nsc_sum_all(out[0]) : NULL;
        ok = ok && (!s || nsc_backward(s, NULL, false) == NSC_OK);
        for (int i = 0; ok && i < c->n_in; i++) {
            nsc_tensor *gi = nsc_tensor_get_grad(leaf[dev][i]);
            grads[dev][i] = gi ? nsc_to(gi, NSC_CPU) : NULL;
        }
        nsc_free(s);
        free_n(out, NSCT_MAX_OUTPUTS);
    }
    for (int i = 0; ok && i < c->n_in; i++) {
        if (!grads[0][i] != !grads[1][i]) {
            snprintf(why, n, "input %d: gradient on one device only", i);
            ok = false;
        } else if (grads[0][i]) {
            ok = nsct_close(grads[1][i], grads[0][i], TOL_CUDA_FLOOR, why, n);
        }
    }
    for (int dev = 0; dev < 2; dev++) {
        free_n(leaf[dev], c->n_in);
        free_n(view[dev], c->n_in);
        free_n(grads[dev], c->n_in);
    }
    return ok;
}

Test(cuda_cases, gradients_match_the_cpu, .init = need_gpu) {
    int failures = 0;
    for (int i = 0; i < nsct_n_cases; i++) {
        const nsct_case *c = &nsct_all_cases[i];
        char why[1200] = "";
        if (!nsci_op_defs[c->op]->backward || nsci_op_defs[c->op]->flags & NSCI_OP_RANDOM) {
            continue;
        }
        if (!grads_on_cuda(c, why, sizeof why)) {
            cr_log_error("case %s: %s (%s)", c->name, why, nsc_last_error());
            failures++;
        }
        nsc_clear_error();
    }
    cr_expect_eq(failures, 0, "%d cases' gradients differ on CUDA", failures);
}

// Float sums and means over many elements into few outputs take the split
// path (cuda/op_reduce.cu): everything at once, and 3 outputs of 40000
// elements each read at stride 3 (directly and through a transposed view).
Test(cuda_reduce, sums_over_many_elements_match_the_cpu, .init = need_gpu) {
    nsc_generator *gen = nsc_generator_new(3);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(4096, 1031));
    nsc_tensor *y = nsc_randn(gen, NSC_F32, NSC_SHAPE(40000, 3));
    nsc_tensor *xg = nsc_to(x, NSC_CUDA), *yg = nsc_to(y, NSC_CUDA);
    nsc_tensor *yt = nsc_transpose(y, 0, 1), *ygt = nsc_transpose(yg, 0, 1);
    int dim0 = 0, dim1 = 1;
    nsc_tensor *pairs[][2] = {
        { nsc_sum_all(x), nsc_sum_all(xg) },
        { nsc_mean(x, 0, NULL, false), nsc_mean(xg, 0, NULL, false) },
        { nsc_sum(y, 1, &dim0, false), nsc_sum(yg, 1, &dim0, false) },
        { nsc_mean(y, 1, &dim0, true), nsc_mean(yg, 1, &dim0, true) },
        { nsc_sum(yt, 1, &dim1, false), nsc_sum(ygt, 1, &dim1, false) },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        cr_assert(pairs[i][0] && pairs[i][1], "%s", nsc_last_error());
        cr_expect_eq(nsc_tensor_device(pairs[i][1]), NSC_CUDA);
        nsct_expect_close(pairs[i][1], pairs[i][0], TOL_CUDA_FLOOR, "a split sum");
        nsc_free(pairs[i][0]);
        nsc_free(pairs[i][1]);
    }
    nsc_tensor *temps[] = { x, y, xg, yg, yt, ygt };
    for (int i = 0; i < 6; i++) {
        nsc_free(temps[i]);
    }
    nsc_generator_free(gen);
}

// Sums and means down columns (outputs adjacent, reduced dims strided) take
// the coalesced kernel: a bias gradient's shape over three chunks, two
// reduced dims in f64, sum_to_size, 33 outputs (a second, mostly idle warp
// of columns), an f32 mean with two kept dims whose last (50) splits warps
// across rows, sum_to_size of an expanded (stride 0) input; a stepped output
// dim and 5 reduced positions keep the warp kernel.
Test(cuda_reduce, sums_down_columns_match_the_cpu, .init = need_gpu) {
    nsc_generator *gen = nsc_generator_new(5);
    nsc_tensor *a = nsc_randn(gen, NSC_F32, NSC_SHAPE(5000, 300));
    nsc_tensor *b = nsc_randn(gen, NSC_F64, NSC_SHAPE(40, 70, 100));
    nsc_tensor *c = nsc_randn(gen, NSC_F32, NSC_SHAPE(100, 33));
    nsc_tensor *ag = nsc_to(a, NSC_CUDA), *bg = nsc_to(b, NSC_CUDA), *cg = nsc_to(c, NSC_CUDA);
    nsc_tensor *as = nsc_slice(a, 1, 0, 300, 2), *ags = nsc_slice(ag, 1, 0, 300, 2);
    nsc_tensor *d = nsc_randn(gen, NSC_F32, NSC_SHAPE(4, 1000, 50)), *dg = nsc_to(d, NSC_CUDA);
    nsc_tensor *row = nsc_randn(gen, NSC_F32, NSC_SHAPE(1, 64)), *rowg = nsc_to(row, NSC_CUDA);
    nsc_tensor *e = nsc_expand(row, NSC_SHAPE(500, 64)), *eg = nsc_expand(rowg, NSC_SHAPE(500, 64));
    nsc_tensor *few = nsc_slice(a, 0, 0, 5, 1), *fewg = nsc_slice(ag, 0, 0, 5, 1);
    int dim0 = 0, dim1 = 1, dims01[2] = { 0, 1 };
    nsc_tensor *pairs[][2] = {
        { nsc_sum(a, 1, &dim0, false), nsc_sum(ag, 1, &dim0, false) },
        { nsc_mean(b, 2, dims01, true), nsc_mean(bg, 2, dims01, true) },
        { nsc_sum_to_size(a, NSC_SHAPE(1, 300)), nsc_sum_to_size(ag, NSC_SHAPE(1, 300)) },
        { nsc_sum(c, 1, &dim0, false), nsc_sum(cg, 1, &dim0, false) },
        { nsc_sum(as, 1, &dim0, false), nsc_sum(ags, 1, &dim0, false) },
        { nsc_mean(d, 1, &dim1, false), nsc_mean(dg, 1, &dim1, false) },
        { nsc_sum_to_size(e, NSC_SHAPE(64)), nsc_sum_to_size(eg, NSC_SHAPE(64)) },
        { nsc_sum(few, 1, &dim0, false), nsc_sum(fewg, 1, &dim0, false) },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        cr_assert(pairs[i][0] && pairs[i][1], "%s", nsc_last_error());
        cr_expect_eq(nsc_tensor_device(pairs[i][1]), NSC_CUDA);
        nsct_tol tol = nsc_tensor_dtype(pairs[i][0]) == NSC_F64 ? TOL_F64 : TOL_CUDA_FLOOR;
        nsct_expect_close(pairs[i][1], pairs[i][0], tol, "a column sum");
        nsc_free(pairs[i][0]);
        nsc_free(pairs[i][1]);
    }
    nsc_tensor *temps[] = { a, b, c, ag, bg, cg, as, ags, d, dg, row, rowg, e, eg, few, fewg };
    for (size_t i = 0; i < sizeof temps / sizeof temps[0]; i++) {
        nsc_free(temps[i]);
    }
    nsc_generator_free(gen);
}

// Every other kind over many elements into few outputs takes the split path
// too: max/min with positions (a NaN and a tie planted), argmax, all/any,
// logsumexp (one row all -inf but one element), var/std, and an i64 sum.
Test(cuda_reduce, every_kind_over_many_elements_matches_the_cpu, .init = need_gpu) {
    nsc_generator *gen = nsc_generator_new(4);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(3, 40000));
    float *p = nsc_tensor_data(x);
    p[0 * 40000 + 39000] = NAN;                       // row 0: NaN wins max and min
    p[1 * 40000 + 123] = p[1 * 40000 + 35000] = 9.0f; // row 1: a tie, the first wins
    for (int j = 0; j < 40000; j++) {
        p[2 * 40000 + j] = j == 20000 ? 1.5f : -INFINITY; // row 2: logsumexp 1.5
    }
    nsc_tensor *bits = nsc_gt_scalar(x, 2.5); // bool: rows with and without a true
    nsc_tensor *scaled = nsc_mul_scalar(x, 100.0);
    nsc_tensor *ints = nsc_to_dtype(scaled, NSC_I64);
    nsc_tensor *xg = nsc_to(x, NSC_CUDA), *bg = nsc_to(bits, NSC_CUDA),
               *ig = nsc_to(ints, NSC_CUDA);
    int dim1 = 1;
    nsc_tensor *vals[2] = { 0 }, *idx[2] = { 0 }, *mvals[2] = { 0 }, *midx[2] = { 0 };
    cr_assert_eq(nsc_max_dim(x, 1, false, &vals[0], &idx[0]), NSC_OK);
    cr_assert_eq(nsc_max_dim(xg, 1, false, &vals[1], &idx[1]), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_min_dim(x, 1, false, &mvals[0], &midx[0]), NSC_OK);
    cr_assert_eq(nsc_min_dim(xg, 1, false, &mvals[1], &midx[1]), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *finite = nsc_slice(x, 0, 1, 2, 1), *finite_g = nsc_slice(xg, 0, 1, 2, 1);
    nsc_tensor *pairs[][2] = {
        { vals[0], vals[1] },
        { idx[0], idx[1] },
        { mvals[0], mvals[1] },
        { midx[0], midx[1] },
        { nsc_argmax_all(finite), nsc_argmax_all(finite_g) },
        { nsc_all(bits, 1, &dim1, false), nsc_all(bg, 1, &dim1, false) },
        { nsc_any(bits, 1, &dim1, false), nsc_any(bg, 1, &dim1, false) },
        { nsc_logsumexp(x, 1, &dim1, false), nsc_logsumexp(xg, 1, &dim1, false) },
        { nsc_var(finite, 0, NULL, true, false), nsc_var(finite_g, 0, NULL, true, false) },
        { nsc_std(finite, 1, &dim1, false, true), nsc_std(finite_g, 1, &dim1, false, true) },
        { nsc_sum(ints, 1, &dim1, false), nsc_sum(ig, 1, &dim1, false) },
        { nsc_max(ints), nsc_max(ig) },
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        cr_assert(pairs[i][0] && pairs[i][1], "pair %zu: %s", i, nsc_last_error());
        cr_expect_eq(nsc_tensor_device(pairs[i][1]), NSC_CUDA);
        char what[32];
        snprintf(what, sizeof what, "split reduction %zu", i);
        nsct_expect_close(pairs[i][1], pairs[i][0], TOL_CUDA_FLOOR, what);
        nsc_free(pairs[i][0]);
        nsc_free(pairs[i][1]);
    }
    nsc_tensor *temps[] = { x, bits, scaled, ints, xg, bg, ig, finite, finite_g };
    for (int i = 0; i < 9; i++) {
        nsc_free(temps[i]);
    }
    nsc_generator_free(gen);
}

// Products cuBLAS cannot take run tiled (16 x 16, k in tiles of 16): i64
// over several k tiles and ragged m, n, batched with a broadcast operand,
// and f32 operands with no unit-stride dim (every other column).
Test(cuda_matmul, the_tiled_kernel_matches_the_cpu, .init = need_gpu) {
    nsc_generator *gen = nsc_generator_new(5);
    nsc_tensor *fa = nsc_randn(gen, NSC_F32, NSC_SHAPE(3, 37, 41));
    nsc_tensor *fb = nsc_randn(gen, NSC_F32, NSC_SHAPE(41, 58));
    nsc_tensor *sa = nsc_mul_scalar(fa, 50.0), *sb = nsc_mul_scalar(fb, 50.0);
    nsc_tensor *ia = nsc_to_dtype(sa, NSC_I64), *ib = nsc_to_dtype(sb, NSC_I64);
    nsc_tensor *ib_cols = nsc_slice(ib, 1, 0, NSC_END, 2); // [41, 29], stride (58, 2)
    nsc_tensor *fb_cols = nsc_slice(fb, 1, 0, NSC_END, 2);
    nsc_tensor *fa_rows = nsc_slice(fa, 2, 1, NSC_END, 2); // [3, 37, 20], stride 2
    nsc_tensor *fb_rows = nsc_slice(fb_cols, 0, 0, 20, 1); // [20, 29]
    nsc_tensor *cpu[] = { ia, ib_cols, fa_rows, fb_rows };
    nsc_tensor *gpu[4];
    for (int i = 0; i < 4; i++) {
        nsc_tensor *base = i == 0 ? ia : i == 1 ? ib : i == 2 ? fa : fb;
        nsc_tensor *moved = nsc_to(base, NSC_CUDA);
        gpu[i] = i == 0   ? nsc_retain(moved)
                 : i == 1 ? nsc_slice(moved, 1, 0, NSC_END, 2)
                 : i == 2 ? nsc_slice(moved, 2, 1, NSC_END, 2)
                          : NULL;
        if (i == 3) {
            nsc_tensor *cols = nsc_slice(moved, 1, 0, NSC_END, 2);
            gpu[i] = nsc_slice(cols, 0, 0, 20, 1);
            nsc_free(cols);
        }
        nsc_free(moved);
    }
    nsc_tensor *pairs[][2] = {
        { nsc_matmul(cpu[0], cpu[1]), nsc_matmul(gpu[0], gpu[1]) },
        { nsc_matmul(cpu[2], cpu[3]), nsc_matmul(gpu[2], gpu[3]) },
    };
    nsct_tol tols[] = { TOL_EXACT, TOL_CUDA_FLOOR };
    for (int i = 0; i < 2; i++) {
        cr_assert(pairs[i][0] && pairs[i][1], "%s", nsc_last_error());
        nsct_expect_close(pairs[i][1], pairs[i][0], tols[i], i ? "f32, strided" : "i64");
        nsc_free(pairs[i][0]);
        nsc_free(pairs[i][1]);
    }
    nsc_tensor *temps[] = { fa, fb, sa, sb, ia, ib, ib_cols, fb_cols, fa_rows, fb_rows };
    for (int i = 0; i < 10; i++) {
        nsc_free(temps[i]);
    }
    for (int i = 0; i < 4; i++) {
        nsc_free(gpu[i]);
    }
    nsc_generator_free(gen);
}

// --- GPT-2 on CUDA ---

// --- edges the case table does not reach ---
// Attention whose scores hold NaN (its warps split on an early return only
// some lanes took, and the launch failed) and the i64 square of pow_scalar
// (a signed overflow, undefined, where the CPU wraps): the emulator reports
// a split warp, its ASan build the overflow.

static nsc_tensor *on_gpu(nsc_tensor *t) {
    nsc_tensor *g = nsc_to(t, NSC_CUDA);
    cr_assert(g, "%s", nsc_last_error());
    return g;
}

// Every element NaN (a NaN anywhere in a row's scores spreads through its
// softmax, as torch's does).
static void expect_all_nan(nsc_tensor *t, const char *what) {
    cr_assert(t, "%s: %s", what, nsc_last_error());
    nsc_tensor *cpu = nsc_to(t, NSC_CPU);
    int64_t n = nsc_tensor_numel(cpu);
    for (int64_t i = 0; i < n; i++) {
        cr_expect(isnan(nsct_flat(cpu, i)), "%s: element %lld is %g", what, (long long)i,
                  nsct_flat(cpu, i));
    }
    nsc_free(cpu);
}

Test(cuda_edges, attention_with_a_nan_query_gives_nan_as_the_cpu, .init = need_gpu) {
    nsc_generator *gen = nsc_generator_new(1);
    // Causal with 4 cached keys (S - T not a multiple of 8), and with a mask.
    nsc_tensor *q = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1, 1, 40, 8), NAN);
    nsc_tensor *k = nsc_randn(gen, NSC_F32, NSC_SHAPE(1, 1, 44, 8));
    nsc_tensor *v = nsc_randn(gen, NSC_F32, NSC_SHAPE(1, 1, 44, 8));
    nsc_tensor *qg = on_gpu(q), *kg = on_gpu(k), *vg = on_gpu(v);
    nsc_tensor *cpu = nsc_attention(q, k, v, NULL, 0.35, true);
    nsc_tensor *gpu = nsc_attention(qg, kg, vg, NULL, 0.35, true);
    expect_all_nan(cpu, "cpu");
    expect_all_nan(gpu, "cuda");
    nsc_tensor *mask = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1, 44));
    int64_t *keep = nsc_tensor_data(mask);
    keep[0] = keep[35] = 1;
    nsc_tensor *mg = on_gpu(mask);
    nsc_tensor *masked = nsc_attention(qg, kg, vg, mg, 0.35, true);
    expect_all_nan(masked, "cuda, masked");
    nsc_tensor *all[] = { q, k, v, qg, kg, vg, cpu, gpu, mask, mg, masked };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        nsc_free(all[i]);
    }
    nsc_generator_free(gen);
}

// torch: tensor([-2**63, 3037000500]) ** 2 wraps to [0, -9223372036709301616].
Test(cuda_edges, the_i64_square_wraps_as_the_cpu, .init = need_gpu) {
    const int64_t v[2] = { INT64_MIN, 3037000500LL };
    nsc_tensor *x = nsc_from_data(NSC_I64, NSC_SHAPE(2), v);
    nsc_tensor *xg = on_gpu(x);
    nsc_tensor *sq = nsc_pow_scalar(xg, 2.0);
    cr_assert(sq, "%s", nsc_last_error());
    int64_t got[2] = { 1, 1 };
    cr_assert_eq(nsc_tensor_copy_to(sq, NSC_I64, got, sizeof got), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(got[0], 0);
    cr_expect_eq(got[1], -9223372036709301616LL);
    nsc_free(x);
    nsc_free(xg);
    nsc_free(sq);
}

static nsc_module *g_cpu, *g_gpu;
static nsc_tensor *g_ids, *g_ids_gpu;

static void gpt2_setup(void) {
    need_gpu();
    g_cpu = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    g_gpu = nsc_gpt2_load(nsct_fixture_path("gpt2_tiny"));
    cr_assert(g_cpu && g_gpu, "%s", nsc_last_error());
    cr_assert_eq(nsc_module_to(g_gpu, NSC_CUDA), NSC_OK, "%s", nsc_last_error());
    int64_t ids[24];
    for (int i = 0; i < 24; i++) {
        ids[i] = (i * 37 + 5) % 100; // the fixture's vocabulary has 100 tokens
    }
    g_ids = nsc_from_data(NSC_I64, NSC_SHAPE(2, 12), ids);
    g_ids_gpu = nsc_to(g_ids, NSC_CUDA);
}

static void gpt2_teardown(void) {
    nsc_module_free(g_cpu);
    nsc_module_free(g_gpu);
    nsc_free(g_ids);
    nsc_free(g_ids_gpu);
}

static nsc_tensor *forward(nsc_module *m, nsc_tensor *ids) {
    nsc_tensor *in[3] = { ids, NULL, NULL };
    return nsc_module_call(m, 3, in);
}

Test(cuda_gpt2, forward_matches_the_cpu_and_allocates_nothing_new, .init = gpt2_setup,
     .fini = gpt2_teardown) {
    nsc_tensor *want = forward(g_cpu, g_ids);
    nsc_tensor *got = forward(g_gpu, g_ids_gpu);
    cr_assert(want && got, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_device(got), NSC_CUDA);
    nsct_expect_close(got, want, TOL_GPT2, "logits");
    nsc_free(got);
    nsc_cuda_stats before = nsc_cuda_stats_get();
    got = forward(g_gpu, g_ids_gpu); // steady state: every block comes from the cache
    nsc_cuda_stats after = nsc_cuda_stats_get();
    cr_expect_eq(after.device_mallocs, before.device_mallocs, "cudaMalloc in a steady forward");
    cr_expect_eq(after.transfers, before.transfers, "host<->device copies inside the forward");
    nsc_free(got);
    nsc_free(want);
}

static nsc_tensor *lm_loss(nsc_module *m, nsc_tensor *ids) {
    nsc_tensor *logits = forward(m, ids);
    int64_t v = nsc_tensor_size(logits, 2);
    nsc_tensor *flat = nsc_reshape(logits, NSC_SHAPE(-1, v));
    nsc_tensor *target = nsc_reshape(ids, NSC_SHAPE(-1));
    nsc_tensor *loss = nsc_cross_entropy(flat, target, NSC_REDUCTION_MEAN, -100);
    nsc_free(logits);
    nsc_free(flat);
    nsc_free(target);
    return loss;
}

Test(cuda_gpt2, backward_gives_the_cpu_gradients, .init = gpt2_setup, .fini = gpt2_teardown) {
    nsc_module_requires_grad_(g_cpu, true);
    nsc_module_requires_grad_(g_gpu, true);
    nsc_tensor *a = lm_loss(g_cpu, g_ids), *b = lm_loss(g_gpu, g_ids_gpu);
    cr_assert(a && b, "%s", nsc_last_error());
    cr_assert_eq(nsc_backward(a, NULL, false), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_backward(b, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsct_expect_close(b, a, TOL_GPT2, "loss");
    for (int64_t i = 0; i < nsc_module_n_params(g_cpu); i++) {
        const char *path;
        nsc_tensor *pc = nsc_module_param_at(g_cpu, i, &path);
        nsc_tensor *pg = nsc_module_find_tensor(g_gpu, path);
        nsc_tensor *gc = nsc_tensor_get_grad(pc), *gg = nsc_tensor_get_grad(pg);
        cr_assert(gc && gg, "%s has no gradient", path);
        nsct_expect_close(gg, gc, TOL_GPT2, path);
    }
    nsc_free(a);
    nsc_free(b);
}

Test(cuda_gpt2, module_to_moves_every_tensor_and_keeps_ties, .init = gpt2_setup,
     .fini = gpt2_teardown) {
    for (int64_t i = 0; i < nsc_module_n_params(g_gpu); i++) {
        const char *path;
        nsc_tensor *t = nsc_module_param_at(g_gpu, i, &path);
        cr_expect_eq(nsc_tensor_device(t), NSC_CUDA, "%s", path);
        cr_expect(nsc_tensor_is_leaf(t), "%s", path);
    }
    cr_expect_eq(nsc_module_find_tensor(g_gpu, "lm_head.weight"),
                 nsc_module_find_tensor(g_gpu, "transformer.wte.weight"), "tied on the GPU");
    cr_assert_eq(nsc_module_to(g_gpu, NSC_CPU), NSC_OK, "%s", nsc_last_error());
    nsct_expect_close(nsc_module_find_tensor(g_gpu, "transformer.h.0.attn.c_attn.weight"),
                      nsc_module_find_tensor(g_cpu, "transformer.h.0.attn.c_attn.weight"),
                      TOL_EXACT, "a weight back on the CPU");
}

// Loading weights into a model already on the GPU keeps every parameter
// there (the loader read CPU tensors and swapped them in, leaving a model
// half on the host), keeps the tie and the values: the forward matches.
Test(cuda_gpt2, load_weights_into_a_gpu_model_keeps_it_on_the_gpu, .init = gpt2_setup,
     .fini = gpt2_teardown) {
    nsc_module_requires_grad_(g_gpu, true);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", nsct_fixture_path("gpt2_tiny"));
    cr_assert_eq(nsc_gpt2_load_weights(g_gpu, path), NSC_OK, "%s", nsc_last_error());
    for (int64_t i = 0; i < nsc_module_n_params(g_gpu); i++) {
        const char *name;
        nsc_tensor *t = nsc_module_param_at(g_gpu, i, &name);
        cr_expect_eq(nsc_tensor_device(t), NSC_CUDA, "%s", name);
        cr_expect(nsc_tensor_requires_grad(t) && nsc_tensor_is_leaf(t), "%s", name);
    }
    cr_expect_eq(nsc_module_find_tensor(g_gpu, "lm_head.weight"),
                 nsc_module_find_tensor(g_gpu, "transformer.wte.weight"), "tied on the GPU");
    nsc_tensor *want = forward(g_cpu, g_ids);
    nsc_tensor *got = forward(g_gpu, g_ids_gpu);
    cr_assert(want && got, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_device(got), NSC_CUDA);
    nsct_expect_close(got, want, TOL_GPT2, "logits after loading on the GPU");
    nsc_free(got);
    nsc_free(want);
}

// Three AdamW steps with clipping on both devices: the clip reads one scalar
// back from the GPU for all gradients; the CUDA parameters take the fused kernel (bit-identical to the CPU loop for equal inputs; here the
// gradients already differ by summation order) and stay on the GPU. eps is
// 1e-3, not 1e-8, so that an element whose gradient is near zero (where
// m / sqrt(v) is a noisy sign) moves by at most lr * |dg| / eps; the steps
// still move most weights by ~lr each, 3x the tolerance.
Test(cuda_gpt2, adamw_steps_with_clipping_match_the_cpu, .init = gpt2_setup,
     .fini = gpt2_teardown) {
    nsc_module *models[2] = { g_cpu, g_gpu };
    nsc_tensor *ids[2] = { g_ids, g_ids_gpu };
    nsc_optim *opts[2];
    double norms[2];
    for (int d = 0; d < 2; d++) {
        nsc_module_requires_grad_(models[d], true);
        opts[d] = nsc_optim_adamw_new_module(
            models[d],
            &(nsc_adamw_config){
                .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-3, .weight_decay = 0.1 });
        cr_assert(opts[d], "%s", nsc_last_error());
    }
    for (int step = 0; step < 3; step++) {
        for (int d = 0; d < 2; d++) {
            nsc_tensor *loss = lm_loss(models[d], ids[d]);
            cr_assert(loss, "%s", nsc_last_error());
            cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
            nsc_cuda_stats before = nsc_cuda_stats_get();
            cr_assert_eq(nsc_optim_clip_grad_norm(opts[d], 0.5, &norms[d]), NSC_OK, "%s",
                         nsc_last_error());
            // One read for every gradient's norm together (8 bytes), not one per gradient.
            int64_t reads = nsc_cuda_stats_get().transfers - before.transfers;
            int64_t bytes = nsc_cuda_stats_get().transfer_bytes - before.transfer_bytes;
            cr_expect(reads == d && bytes == 8 * d, "device %d: %lld copies, %lld bytes", d,
                      (long long)reads, (long long)bytes);
            cr_assert_eq(nsc_optim_step(opts[d]), NSC_OK, "%s", nsc_last_error());
            cr_assert_eq(nsc_optim_zero_grad(opts[d], true), NSC_OK);
            nsc_free(loss);
        }
        cr_expect(fabs(norms[1] - norms[0]) <= 1e-3 * norms[0], "step %d: norm %g vs %g", step,
                  norms[1], norms[0]);
    }
    for (int64_t i = 0; i < nsc_optim_n_params(opts[0]); i++) {
        nsc_tensor *want = nsc_optim_param_at(opts[0], i), *got = nsc_optim_param_at(opts[1], i);
        cr_expect_eq(nsc_tensor_device(got), NSC_CUDA);
        cr_expect_eq(nsc_tensor_device(nsc_optim_get_state(opts[1], i, "exp_avg")), NSC_CUDA);
        nsct_expect_close(got, want, TOL_GPT2, "a parameter after 3 steps");
    }
    nsc_optim_free(opts[0]);
    nsc_optim_free(opts[1]);
}

// A trace on the CUDA model: read and edit a hook point; values stay on the GPU.
static nsc_tensor *traced(nsc_module *m, nsc_tensor *ids, nsc_tensor **saved) {
    nsc_trace *tr = nsc_trace_new(m);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    nsc_tensor *h0 = nsc_save(nsc_invoke_output(inv, "transformer.h.0", 0));
    nsc_tensor *mlp = nsc_invoke_output(inv, "transformer.h.1.mlp", 0);
    nsc_tensor *half = nsc_mul_scalar(mlp, 0.5);
    nsc_invoke_set_output(inv, "transformer.h.1.mlp", 0, half);
    nsc_tensor *out = nsc_save(nsc_invoke_output(inv, "", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    *saved = nsc_trace_get(tr, h0); // new references
    nsc_tensor *logits = nsc_trace_get(tr, out);
    nsc_trace_free(tr);
    return logits;
}

Test(cuda_gpt2, a_trace_with_interventions_matches_the_cpu, .init = gpt2_setup,
     .fini = gpt2_teardown) {
    nsc_tensor *h_cpu, *h_gpu;
    nsc_tensor *want = traced(g_cpu, g_ids, &h_cpu);
    int64_t before = nsc_cuda_stats_get().transfers;
    nsc_tensor *got = traced(g_gpu, g_ids_gpu, &h_gpu);
    cr_expect_eq(nsc_cuda_stats_get().transfers, before, "the trace copied to the host");
    cr_expect_eq(nsc_tensor_device(h_gpu), NSC_CUDA, "a saved hook value stays on the GPU");
    nsct_expect_close(h_gpu, h_cpu, TOL_GPT2, "saved transformer.h.0");
    nsct_expect_close(got, want, TOL_GPT2, "logits with h.1.mlp halved");
    nsc_tensor *temps[] = { h_cpu, h_gpu, want, got };
    for (int i = 0; i < 4; i++) {
        nsc_free(temps[i]);
    }
}

Test(cuda_gpt2, cached_generation_gives_the_cpu_tokens, .init = gpt2_setup,
     .fini = gpt2_teardown) {
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = 8;
    nsc_tensor *want = NULL, *got = NULL;
    cr_assert_eq(nsc_generate(g_cpu, g_ids, NULL, &o, &want), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_generate(g_gpu, g_ids_gpu, NULL, &o, &got), NSC_OK, "%s", nsc_last_error());
    nsct_expect_close(got, want, TOL_EXACT, "generated tokens");
    nsc_free(want);
    nsc_free(got);
}

// --- a program linked against libnsc.a, public API only ---

static const char *const LINK_PROGRAM =
    "#include <stdio.h>\n#include \"nsc.h\"\n#include \"nsc/cuda.h\"\n"
    "int main(void) {\n"
    "    if (nsc_cuda_init() != NSC_OK) { printf(\"skip: %s\\n\", nsc_last_error()); return 0; }\n"
    "    nsc_tensor *a = nsc_ones(NSC_F32, NSC_CUDA, NSC_SHAPE(4, 4));\n"
    "    nsc_tensor *b = nsc_matmul(a, a);\n"
    "    nsc_tensor *s = nsc_sum_all(b);\n"
    "    double v = nsc_tensor_item(s);\n"
    "    printf(\"sum %g\\n\", v);\n"
    "    nsc_free(a);\n"
    "    nsc_free(b);\n"
    "    nsc_free(s);\n"
    "    return v == 64.0 ? 0 : 1;\n"
    "}\n";

Test(cuda_link, a_program_linked_with_libnsc_runs_a_cuda_op) {
    const char *build = getenv("NSC_BUILD");
    if (!build) {
        cr_skip_test("NSC_BUILD is not set (run through make test)");
    }
    char dir[] = "/tmp/nsc_cuda_link_XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[600], cmd[2400];
    snprintf(path, sizeof path, "%s/link.c", dir);
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs(LINK_PROGRAM, f);
    fclose(f);
    // make passes the build's own link line (sanitizers, BLAS, CUDA libraries).
    const char *libs = getenv("NSC_LINK_FLAGS");
    if (!libs) {
#ifdef NSC_HAVE_CUDA
        libs = "-lopenblas -lm -pthread -L/usr/local/cuda/lib64 -lcublas -lcudart -lstdc++";
#else
        libs = "-lopenblas -lm -pthread";
#endif
    }
    snprintf(cmd, sizeof cmd,
             "cc -std=c11 -Iinclude %s -o %s/link %s/libnsc.a %s && %s/link > %s/out.txt", path,
             dir, build, libs, dir, dir);
    cr_expect_eq(system(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}
