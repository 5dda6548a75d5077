// The fused optimizer ops (tensor/op_optim.c, cuda/op_optim.cu): each gives
// the bits of the tensor-op sequence torch.optim's single-tensor path runs
// (written out here with nsc ops) for every SGD and AdamW variant, f32 and
// f64, contiguous, transposed, stepped and long operands; on a GPU they give
// the CPU's bits; bad operands are refused naming what is wrong and change
// nothing; every written tensor's version advances. The values against
// torch.optim itself: the case rows (tests/cases/optim.def) and test_optim.c.
// Clipping's device pieces (nn/optim_clip_device.c) are checked at the end.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/optim_impl.h"
#include "tensor/op_params.h"
#include "tests/expect.h"
#include "tests/graph_models.h"
#include "tests/harness.h"
#include "tests/optim_util.h"

enum {
    N_STEPS = 3,
    MAX_OPERANDS = 5
};

// Operand layouts: the tensors are views of a contiguous base.
typedef enum layout {
    CONTIGUOUS, // [5, 7]
    TRANSPOSED, // [6, 4] transposed to [4, 6]
    STEPPED,    // every other column of [3, 10]
    LONG,       // [70003]: several thread-pool tasks, vector lanes and a ragged tail
    N_LAYOUTS
} layout;

static const char *const LAYOUT_NAMES[] = { "contiguous", "transposed", "stepped", "long" };

static nsc_tensor *base_of(layout l, nsc_generator *gen, nsc_dtype dtype) {
    switch (l) {
        case CONTIGUOUS:
            return nsc_randn(gen, dtype, NSC_SHAPE(5, 7));
        case TRANSPOSED:
            return nsc_randn(gen, dtype, NSC_SHAPE(6, 4));
        case STEPPED:
            return nsc_randn(gen, dtype, NSC_SHAPE(3, 10));
        default:
            return nsc_randn(gen, dtype, NSC_SHAPE(70003));
    }
}

// The layout's view of base moved to device (the view is taken there, so
// the device kernel sees the strides).
static nsc_tensor *view_on(nsc_tensor *base, layout l, nsc_device device) {
    nsc_tensor *moved = nsc_to(base, device);
    nsc_tensor *v = l == TRANSPOSED ? nsc_transpose(moved, 0, 1)
                    : l == STEPPED  ? nsc_slice(moved, 1, 0, 10, 2)
                                    : nsc_retain(moved);
    nsc_free(moved);
    cr_assert(v, "%s", nsc_last_error());
    return v;
}

// One update's operands on one device: param, then the state in the op's
// order (exp_avg_sq and max_exp_avg_sq non-negative).
typedef struct operands {
    nsc_tensor *t[MAX_OPERANDS]; // [1] is the gradient, replaced each step
    int n;
} operands;

static void make_operands(const nsct_optim_variant *v, layout l, uint64_t seed, nsc_device device,
                          operands *o) {
    nsc_generator *gen = nsc_generator_new(seed);
    o->n = nsct_optim_roles(v);
    for (int i = 0; i < o->n; i++) {
        nsc_tensor *base = base_of(l, gen, v->dtype);
        if (i >= 3) { // second moments
            nsc_tensor *sq = nsc_mul(base, base);
            nsc_free(base);
            base = sq;
        }
        o->t[i] = i == 1 ? NULL : view_on(base, l, device);
        nsc_free(base);
    }
    nsc_generator_free(gen);
}

static void set_grad(const nsct_optim_variant *v, layout l, int step, nsc_device device,
                     operands *o) {
    nsc_generator *gen = nsc_generator_new(1000 + (uint64_t)step);
    nsc_tensor *base = base_of(l, gen, v->dtype);
    nsc_free(o->t[1]);
    o->t[1] = view_on(base, l, device);
    nsc_free(base);
    nsc_generator_free(gen);
}

static void free_operands(operands *o) {
    for (int i = 0; i < o->n; i++) {
        nsc_free(o->t[i]);
        o->t[i] = NULL;
    }
}

static nsc_status fused_step(const nsct_optim_variant *v, operands *o, int64_t step) {
    nsc_tensor **t = o->t;
    if (v->adamw) {
        return nsc_fused_adamw_(t[0], t[1], t[2], t[3], o->n == 5 ? t[4] : NULL, &v->adamw_config,
                                step);
    }
    return nsc_fused_sgd_(t[0], t[1], o->n == 3 ? t[2] : NULL, &v->sgd, step == 1);
}

// --- the op sequence torch.optim's single-tensor path runs (torch 1.13) ---
// Each scalar is rounded to the dtype by nsc_*_scalar, as torch rounds a
// Python float; results go into the operands with copy_ at the end.

static nsc_tensor *keep(nsc_tensor **temps, int *n, nsc_tensor *t) {
    cr_assert(t, "%s", nsc_last_error());
    temps[(*n)++] = t;
    return t;
}

static void sgd_sequence(const nsc_sgd_config *c, bool first, operands *o) {
    nsc_tensor *tmp[16], *p = o->t[0], *g = o->t[1];
    int n = 0;
    if (c->maximize) {
        g = keep(tmp, &n, nsc_neg(g));
    }
    nsc_tensor *d = g;
    if (c->weight_decay != 0) {
        d = keep(tmp, &n, nsc_add(g, keep(tmp, &n, nsc_mul_scalar(p, c->weight_decay))));
    }
    if (c->momentum != 0) {
        nsc_tensor *buf = o->t[2];
        nsc_tensor *new_buf =
            first ? d
                  : keep(tmp, &n,
                         nsc_add(keep(tmp, &n, nsc_mul_scalar(buf, c->momentum)),
                                 keep(tmp, &n, nsc_mul_scalar(d, 1.0 - c->dampening))));
        cr_assert_eq(nsc_copy_(buf, new_buf), NSC_OK);
        d = c->nesterov ? keep(tmp, &n, nsc_add(d, keep(tmp, &n, nsc_mul_scalar(buf, c->momentum))))
                        : buf;
    }
    nsc_tensor *new_p = keep(tmp, &n, nsc_add(p, keep(tmp, &n, nsc_mul_scalar(d, -c->lr))));
    cr_assert_eq(nsc_copy_(p, new_p), NSC_OK);
    for (int i = 0; i < n; i++) {
        nsc_free(tmp[i]);
    }
}

// maximize as torch writes it: the gradient negated first (the fused loops
// fold the sign into one scalar instead).
static void adamw_sequence(const nsc_adamw_config *c, int64_t step, operands *o) {
    fused_adamw_params params = { *c, step };
    params.config.maximize = false;
    const nsci_adamw_scalars s = nsci_adamw_scalars_of(&params);
    nsc_tensor *tmp[24], *p = o->t[0], *g = o->t[1], *m = o->t[2], *v = o->t[3];
    int n = 0;
    if (c->maximize) {
        g = keep(tmp, &n, nsc_neg(g));
    }
    nsc_tensor *decayed = keep(tmp, &n, nsc_mul_scalar(p, s.decay));
    nsc_tensor *new_m = keep(tmp, &n,
                             nsc_add(keep(tmp, &n, nsc_mul_scalar(m, s.beta1)),
                                     keep(tmp, &n, nsc_mul_scalar(g, s.one_minus_beta1))));
    nsc_tensor *g2 = keep(tmp, &n, nsc_mul(keep(tmp, &n, nsc_mul_scalar(g, s.one_minus_beta2)), g));
    nsc_tensor *new_v = keep(tmp, &n, nsc_add(keep(tmp, &n, nsc_mul_scalar(v, s.beta2)), g2));
    nsc_tensor *vhat = c->amsgrad ? keep(tmp, &n, nsc_maximum(o->t[4], new_v)) : new_v;
    nsc_tensor *denom =
        keep(tmp, &n,
             nsc_add_scalar(
                 keep(tmp, &n, nsc_div_scalar(keep(tmp, &n, nsc_sqrt(vhat)), s.bc2_sqrt)), s.eps));
    nsc_tensor *update =
        keep(tmp, &n, nsc_div(keep(tmp, &n, nsc_mul_scalar(new_m, s.neg_step_size)), denom));
    nsc_tensor *new_p = keep(tmp, &n, nsc_add(decayed, update));
    cr_assert_eq(nsc_copy_(p, new_p), NSC_OK);
    cr_assert_eq(nsc_copy_(m, new_m), NSC_OK);
    cr_assert_eq(nsc_copy_(v, new_v), NSC_OK);
    if (c->amsgrad) {
        cr_assert_eq(nsc_copy_(o->t[4], vhat), NSC_OK);
    }
    for (int i = 0; i < n; i++) {
        nsc_free(tmp[i]);
    }
}

static void expect_same_operands(const operands *got, const operands *want, const char *what) {
    for (int i = 0; i < got->n; i++) {
        if (i == 1) {
            continue;
        }
        char where[160];
        snprintf(where, sizeof where, "%s operand %d", what, i);
        nsct_expect_close(got->t[i], want->t[i], TOL_EXACT, where);
    }
}

// One update of o at step `step` by one of the paths compared below.
typedef void (*update_fn)(const nsct_optim_variant *v, operands *o, int64_t step);

static void fused_update(const nsct_optim_variant *v, operands *o, int64_t step) {
    cr_assert_eq(fused_step(v, o, step), NSC_OK, "%s", nsc_last_error());
}

static void sequence_update(const nsct_optim_variant *v, operands *o, int64_t step) {
    if (v->adamw) {
        adamw_sequence(&v->adamw_config, step, o);
    } else {
        sgd_sequence(&v->sgd, step == 1, o);
    }
}

// The fused op on the GPU: one kernel, no copy to or from the host.
static void gpu_update(const nsct_optim_variant *v, operands *o, int64_t step) {
    int64_t transfers = nsc_cuda_stats_get().transfers;
    int64_t kernels = nsci_kernel_count();
    fused_update(v, o, step);
    cr_expect_eq(nsci_kernel_count() - kernels, 1, "one kernel per update");
    cr_expect_eq(nsc_cuda_stats_get().transfers, transfers, "a step copied");
}

// Every variant and layout, N_STEPS steps: operands made alike on
// got_device (updated by got) and want_device (by want) hold the same bits
// after every step.
static void expect_same_updates(const char *label, nsc_device got_device, update_fn got,
                                nsc_device want_device, update_fn want) {
    nsc_no_grad_begin();
    for (size_t vi = 0; vi < NSCT_OPTIM_N_VARIANTS; vi++) {
        const nsct_optim_variant *v = &nsct_optim_variants[vi];
        for (int l = 0; l < N_LAYOUTS; l++) {
            operands a, b;
            make_operands(v, (layout)l, 7 + vi, got_device, &a);
            make_operands(v, (layout)l, 7 + vi, want_device, &b);
            for (int step = 1; step <= N_STEPS; step++) {
                set_grad(v, (layout)l, step, got_device, &a);
                set_grad(v, (layout)l, step, want_device, &b);
                want(v, &b, step);
                got(v, &a, step);
                char what[128];
                snprintf(what, sizeof what, "%s%s %s step %d", label, v->name, LAYOUT_NAMES[l],
                         step);
                expect_same_operands(&a, &b, what);
            }
            free_operands(&a);
            free_operands(&b);
        }
    }
    nsc_no_grad_end();
}

Test(optim_ops, the_fused_ops_give_the_bits_of_the_op_sequence) {
    expect_same_updates("", NSC_CPU, fused_update, NSC_CPU, sequence_update);
}

// The GPU kernel rounds each product and sum on its own (no FMA
// contraction) and divides and takes square roots correctly rounded, as the
// CPU loops do: the same bits.
Test(optim_ops, on_a_gpu_the_fused_ops_give_the_cpu_bits) {
    if (nsc_cuda_init() != NSC_OK) {
        char why[1100];
        snprintf(why, sizeof why, "no GPU: %s", nsc_last_error());
        nsc_clear_error();
        cr_skip_test("%s", why);
    }
    expect_same_updates("cuda ", NSC_CUDA, gpu_update, NSC_CPU, fused_update);
}

// An optimizer step is one kernel for each batch of parameters that step
// alike (torch's fused AdamW takes a whole group; its single-tensor path
// runs 17 kernels and 14 temporaries a parameter) and allocates nothing
// once the state exists. Parameter 1 skips step 2 (no gradient), so from
// step 3 on its step count differs and it is a batch of its own.
Test(optim_ops, a_step_runs_one_kernel_per_batch_and_allocates_nothing) {
    nsc_generator *gen = nsc_generator_new(3);
    nsc_tensor *params[3];
    for (int i = 0; i < 3; i++) {
        params[i] = nsc_randn(gen, NSC_F32, NSC_SHAPE(4, 3 + i));
        cr_assert_eq(nsc_requires_grad_(params[i], true), NSC_OK);
    }
    nsc_adamw_config amsgrad = NSCT_AMSGRAD;
    nsc_optim *opt = nsc_optim_adamw_new(3, params, &amsgrad);
    cr_assert(opt, "%s", nsc_last_error());
    const int64_t want_kernels[4] = { 0, 1, 1, 2 };
    for (int step = 0; step < 4; step++) {
        for (int i = 0; i < 3; i++) {
            nsc_tensor *g =
                i == 1 && step == 2 ? NULL : nsc_randn(gen, NSC_F32, NSC_SHAPE(4, 3 + i));
            cr_assert_eq(nsc_tensor_set_grad(params[i], g), NSC_OK);
            nsc_free(g);
        }
        int64_t kernels = nsci_kernel_count(), allocs = nsc_mem_stats_get().n_allocs;
        cr_assert_eq(nsc_optim_step(opt), NSC_OK, "%s", nsc_last_error());
        if (step > 0) { // step 0 also makes the state (zeros)
            cr_expect_eq(nsci_kernel_count() - kernels, want_kernels[step], "step %d", step);
            cr_expect_eq(nsc_mem_stats_get().n_allocs, allocs, "step %d allocated", step);
        }
    }
    cr_expect_eq(nsc_optim_get_step(opt, 0), 4);
    cr_expect_eq(nsc_optim_get_step(opt, 1), 3);
    nsc_optim_free(opt);
    for (int i = 0; i < 3; i++) {
        nsc_free(params[i]);
    }
    nsc_generator_free(gen);
}

// --- refusals ---

typedef struct refusal {
    const char *what;
    nsc_status status;
    const char *message; // a substring of the error
} refusal;

static nsc_tensor *f32(int64_t rows, int64_t cols, double value) {
    nsc_tensor *t = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(rows, cols), value);
    cr_assert(t, "%s", nsc_last_error());
    return t;
}

static void expect_refused(nsc_status got, const refusal *r, nsc_tensor *const *unchanged,
                           const double *values, int n) {
    cr_expect_eq(got, r->status, "%s: status %d (%s)", r->what, got, nsc_last_error());
    cr_expect(strstr(nsc_last_error(), r->message), "%s: error \"%s\" lacks \"%s\"", r->what,
              nsc_last_error(), r->message);
    for (int i = 0; i < n; i++) {
        nsc_tensor *want = nsc_full_like(unchanged[i], values[i]);
        nsct_expect_close(unchanged[i], want, TOL_EXACT, r->what);
        nsc_free(want);
    }
    nsc_clear_error();
}

Test(optim_ops, bad_operands_are_refused_and_change_nothing) {
    nsc_no_grad_begin();
    nsc_tensor *p = f32(2, 3, 1), *g = f32(2, 3, 0.5), *m = f32(2, 3, 0.25), *v = f32(2, 3, 4);
    nsc_tensor *vmax = f32(2, 3, 9), *wide = f32(3, 3, 0), *row = f32(1, 3, 0);
    nsc_tensor *as_f64 = nsc_to_dtype(m, NSC_F64), *ints = nsc_to_dtype(p, NSC_I64);
    nsc_tensor *expanded = nsc_expand(row, NSC_SHAPE(2, 3));
    nsc_tensor *m_view = nsc_reshape(m, NSC_SHAPE(2, 3));
    nsc_tensor *all[5] = { p, g, m, v, vmax };
    const double values[5] = { 1, 0.5, 0.25, 4, 9 };
    nsc_adamw_config adamw = NSCT_ADAMW, amsgrad = NSCT_AMSGRAD, bad_beta = NSCT_ADAMW;
    bad_beta.beta2 = 1.0;
    nsc_sgd_config momentum = NSCT_MOMENTUM, plain = { .lr = 0.1 };

    const refusal r[] = {
        { "wrong shape", NSC_ERR_SHAPE, "exp_avg has shape [3,3]: expected param's shape [2,3]" },
        { "wrong dtype", NSC_ERR_DTYPE, "exp_avg_sq is f64: expected param's dtype f32" },
        { "integer param", NSC_ERR_DTYPE, "param is i64: expected f32 or f64" },
        { "missing buffer", NSC_ERR_ARG, "momentum needs a buffer" },
        { "buffer without momentum", NSC_ERR_ARG, "expected param, grad (2 tensors)" },
        { "missing max_exp_avg_sq", NSC_ERR_ARG, "amsgrad needs it" },
        { "max_exp_avg_sq without amsgrad", NSC_ERR_ARG, "amsgrad false and 5 tensors" },
        { "step 0", NSC_ERR_ARG, "step 0: expected the step count this update makes" },
        { "beta2 1", NSC_ERR_ARG, "betas (0.9, 1): expected each in [0, 1)" },
        { "shared state", NSC_ERR_ARG, "exp_avg and exp_avg_sq share memory" },
        { "expanded state", NSC_ERR_ARG, "dim 0 of exp_avg repeats one memory location" },
        { "NULL config", NSC_ERR_ARG, "config is NULL" },
        { "grad overlapping a state", NSC_ERR_ARG,
          "grad and exp_avg share memory: exp_avg is written in place" },
        { "grad sharing param", NSC_ERR_ARG, "param and grad share memory: param is written" },
        { "state requiring grad", NSC_ERR_ARG,
          "exp_avg_sq requires grad: optimizer state is never differentiated" },
    };
    expect_refused(nsc_fused_adamw_(p, g, wide, v, NULL, &adamw, 1), &r[0], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, m, as_f64, NULL, &adamw, 1), &r[1], all, values, 5);
    expect_refused(nsc_fused_sgd_(ints, g, NULL, &plain, true), &r[2], all, values, 5);
    expect_refused(nsc_fused_sgd_(p, g, NULL, &momentum, true), &r[3], all, values, 5);
    expect_refused(nsc_fused_sgd_(p, g, m, &plain, true), &r[4], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, m, v, NULL, &amsgrad, 1), &r[5], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, m, v, vmax, &adamw, 1), &r[6], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, m, v, NULL, &adamw, 0), &r[7], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, m, v, NULL, &bad_beta, 1), &r[8], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, m, m_view, NULL, &adamw, 1), &r[9], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, expanded, v, NULL, &adamw, 1), &r[10], all, values, 5);
    expect_refused(nsc_fused_adamw_(p, g, m, v, NULL, NULL, 1), &r[11], all, values, 5);
    nsc_tensor *long_m = f32(1, 8, 0.25), *grad_in_m = nsc_slice(long_m, 1, 2, 8, 1);
    nsc_tensor *m_head = nsc_slice(long_m, 1, 0, 6, 1);
    nsc_tensor *g6 = nsc_reshape(grad_in_m, NSC_SHAPE(2, 3)),
               *m6 = nsc_reshape(m_head, NSC_SHAPE(2, 3));
    expect_refused(nsc_fused_adamw_(p, g6, m6, v, NULL, &adamw, 1), &r[12], all, values, 5);
    expect_refused(nsc_fused_sgd_(p, p, NULL, &plain, true), &r[13], all, values, 5);
    nsc_tensor *v_grad = f32(2, 3, 4);
    cr_assert_eq(nsc_requires_grad_(v_grad, true), NSC_OK);
    expect_refused(nsc_fused_adamw_(p, g, m, v_grad, NULL, &adamw, 1), &r[14], all, values, 5);
    nsc_tensor *more[] = { long_m, grad_in_m, m_head, g6, m6, v_grad };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        nsc_free(more[i]);
    }
    nsc_no_grad_end();

    // A leaf that requires grad is written only under no_grad, as in torch.
    cr_assert_eq(nsc_requires_grad_(p, true), NSC_OK);
    const refusal leaf = { "a leaf outside no_grad", NSC_ERR_STATE, "a leaf that requires grad" };
    expect_refused(nsc_fused_adamw_(p, g, m, v, NULL, &adamw, 1), &leaf, all, values, 5);

    nsc_tensor *frees[] = { p, g, m, v, vmax, wide, row, as_f64, ints, expanded, m_view };
    for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) {
        nsc_free(frees[i]);
    }
}

// A graph tracks writes into an op's first input only, so an update whose
// state would be written behind it is not recorded: a proxy operand is
// refused when the trace is built, naming the input, and nothing changes.
Test(optim_ops, an_update_of_a_proxy_is_refused_while_the_trace_is_built) {
    nsc_module *model = nsct_chain_model(1, 4);
    nsc_tensor *x = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4));
    nsc_tensor *g = f32(2, 4, 0.5), *m = f32(2, 4, 0), *v = f32(2, 4, 0);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
    cr_assert(h, "%s", nsc_last_error());
    nsc_adamw_config adamw = NSCT_ADAMW;
    const refusal proxy_param = { "a proxy param", NSC_ERR_UNSUPPORTED,
                                  "input 0 is a proxy, and this op cannot be recorded in an "
                                  "intervention graph: a graph tracks writes into an op's first "
                                  "input only" };
    nsc_tensor *state[2] = { m, v };
    const double zeros[2] = { 0, 0 };
    expect_refused(nsc_fused_adamw_(h, g, m, v, NULL, &adamw, 1), &proxy_param, state, zeros, 2);
    const refusal proxy_state = { "a proxy state", NSC_ERR_UNSUPPORTED, "input 2 is a proxy" };
    expect_refused(nsc_fused_adamw_(g, v, h, m, NULL, &adamw, 1), &proxy_state, state, zeros, 2);
    nsc_trace_free(tr);
    nsc_tensor *frees[] = { x, g, m, v };
    for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) {
        nsc_free(frees[i]);
    }
    nsc_module_free(model);
}

static int64_t version_of(const nsc_tensor *t) {
    return (int64_t)atomic_load(&t->storage->version);
}

// Every written tensor's version advances, so autograd refuses a backward
// through a value saved before the update; the gradient's does not.
Test(optim_ops, every_written_tensor_advances_its_version) {
    nsc_tensor *t[5];
    for (int i = 0; i < 5; i++) {
        t[i] = f32(2, 2, i == 1 ? 0.5 : 1);
    }
    int64_t before[5];
    for (int i = 0; i < 5; i++) {
        before[i] = version_of(t[i]);
    }
    nsc_adamw_config amsgrad = NSCT_AMSGRAD;
    cr_assert_eq(nsc_fused_adamw_(t[0], t[1], t[2], t[3], t[4], &amsgrad, 1), NSC_OK, "%s",
                 nsc_last_error());
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(version_of(t[i]), before[i] + (i != 1), "operand %d", i);
        nsc_free(t[i]);
    }
}

// Clipping's op pieces give the CPU path's norm (up to summation order: the
// CPU sums fixed blocks, the ops per-gradient norms) and scale to the same bits.
Test(optim_ops, clipping_pieces_give_the_cpu_norm_and_scale) {
    nsc_generator *gen = nsc_generator_new(8);
    nsc_tensor *params[3], *grads[3], *copies[3];
    const int64_t rows[3] = { 3000, 41, 1 };
    for (int i = 0; i < 3; i++) {
        params[i] = nsc_zeros(i == 2 ? NSC_F64 : NSC_F32, NSC_CPU, NSC_SHAPE(rows[i], 17));
        grads[i] = nsc_randn(gen, nsc_tensor_dtype(params[i]), NSC_SHAPE(rows[i], 17));
        nsc_requires_grad_(params[i], true);
        nsc_tensor_set_grad(params[i], grads[i]);
        copies[i] = nsc_clone(grads[i]);
    }
    double sum = -1, none = -1;
    cr_assert_eq(nsci_grads_sumsq_ops(3, grads, &sum), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsci_grads_sumsq_ops(0, grads, &none), NSC_OK);
    cr_expect_eq(none, 0.0);
    double norm = 0;
    cr_assert_eq(nsc_clip_grad_norm_(3, params, 1.0, &norm), NSC_OK);
    cr_expect(fabs(sqrt(sum) - norm) <= 1e-12 * norm, "ops %.17g, cpu %.17g", sqrt(sum), norm);
    cr_assert_eq(nsci_grads_scale_ops(3, copies, 1.0 / (norm + 1e-6)), NSC_OK);
    for (int i = 0; i < 3; i++) {
        nsct_expect_close(copies[i], nsc_tensor_get_grad(params[i]), TOL_EXACT, "scaled");
        nsc_free(copies[i]);
        nsc_free(grads[i]);
        nsc_free(params[i]);
    }
    nsc_generator_free(gen);
}

// A gradient that repeats an element (an expanded view) would be scaled once
// per position in place: refused before anything changes, as torch refuses
// the in-place write.
Test(optim_ops, clipping_refuses_an_expanded_gradient_and_changes_nothing) {
    nsc_tensor *params[2], *grads[2];
    for (int i = 0; i < 2; i++) {
        params[i] = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(4, 3));
        nsc_requires_grad_(params[i], true);
    }
    grads[0] = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(4, 3), 10.0);
    nsc_tensor *row = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1, 3), 10.0);
    grads[1] = nsc_expand(row, NSC_SHAPE(4, 3));
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(nsc_tensor_set_grad(params[i], grads[i]), NSC_OK, "%s", nsc_last_error());
    }
    double norm = -1;
    cr_expect_eq(nsc_clip_grad_norm_(2, params, 1.0, &norm), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(),
                     "clip_grad_norm: parameter 1: dim 0 of its gradient repeats one memory "
                     "location (stride 0)"),
              "%s", nsc_last_error());
    cr_expect_eq(norm, -1.0);
    cr_expect_eq(nsct_sum(grads[0]), 120.0, "the other gradient is unchanged");
    cr_expect_eq(nsct_sum(row), 30.0);
    for (int i = 0; i < 2; i++) {
        nsc_free(grads[i]);
        nsc_free(params[i]);
    }
    nsc_free(row);
}
