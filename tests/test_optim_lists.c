// The list forms of the fused optimizer ops (nsc_fused_sgd_list_,
// nsc_fused_adamw_list_: torch._fused_sgd_ and _fused_adamw_ over lists)
// and the optimizer step that batches parameters into them. Lists give the
// bits of one call per parameter, on the CPU and on a GPU (where contiguous
// parameters share launches, 64 to a launch, and strided ones take a launch
// each); bad lists are refused naming the operand and change nothing;
// parameters that are views of one buffer still step as separate ones.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/optim_impl.h"
#include "tensor/op_params.h"
#include "tests/expect.h"
#include "tests/harness.h"
#include "tests/optim_util.h"

enum {
    LIST_LAUNCH_PARAMS = 64, // cuda/op_optim.h's NSCI_CUDA_LIST_MAX
    N_PARAMS = 80,           // more than one CUDA list launch (64)
    N_STEPS = 3,
};

// Parameter j's layout: a long vector every 17th (several list blocks of
// 4096), a transposed view every 11th (the strided kernel), one empty, the
// rest small matrices of varied sizes.
static bool transposed(int j) {
    return j % 11 == 7;
}

static nsc_tensor *operand(nsc_generator *gen, nsc_dtype dtype, int j, int role,
                           nsc_device device) {
    nsc_tensor *base = j == 5          ? nsc_randn(gen, dtype, NSC_SHAPE(0, 3))
                       : j % 17 == 3   ? nsc_randn(gen, dtype, NSC_SHAPE(9001))
                       : transposed(j) ? nsc_randn(gen, dtype, NSC_SHAPE(3, j % 5 + 2))
                                       : nsc_randn(gen, dtype, NSC_SHAPE(j % 7 + 1, j % 13 + 2));
    cr_assert(base, "%s", nsc_last_error());
    if (role >= 3) { // second moments are non-negative
        nsc_tensor *sq = nsc_mul(base, base);
        nsc_free(base);
        base = sq;
    }
    nsc_tensor *moved = nsc_to(base, device);
    nsc_tensor *t = transposed(j) ? nsc_transpose(moved, 0, 1) : nsc_retain(moved);
    nsc_free(moved);
    nsc_free(base);
    cr_assert(t, "%s", nsc_last_error());
    return t;
}

// Role r of parameter j is t[r * N_PARAMS + j], the op's input order.
typedef struct lists {
    nsc_tensor *t[NSCI_OPTIM_ROLES * N_PARAMS];
    int roles;
} lists;

static void make_lists(const nsct_optim_variant *v, nsc_device device, lists *l) {
    nsc_generator *gen = nsc_generator_new(41);
    l->roles = nsct_optim_roles(v);
    for (int r = 0; r < l->roles; r++) {
        for (int j = 0; j < N_PARAMS; j++) {
            l->t[r * N_PARAMS + j] = r == 1 ? NULL : operand(gen, v->dtype, j, r, device);
        }
    }
    nsc_generator_free(gen);
}

static void set_grads(const nsct_optim_variant *v, int step, nsc_device device, lists *l) {
    nsc_generator *gen = nsc_generator_new(1000 + (uint64_t)step);
    for (int j = 0; j < N_PARAMS; j++) {
        nsc_free(l->t[N_PARAMS + j]);
        l->t[N_PARAMS + j] = operand(gen, v->dtype, j, 1, device);
    }
    nsc_generator_free(gen);
}

static void free_lists(lists *l) {
    for (int k = 0; k < l->roles * N_PARAMS; k++) {
        nsc_free(l->t[k]);
        l->t[k] = NULL;
    }
}

static nsc_tensor *const *list(const lists *l, int role) {
    return role < l->roles ? &l->t[role * N_PARAMS] : NULL;
}

static nsc_status list_step(const nsct_optim_variant *v, lists *l, int64_t step) {
    if (v->adamw) {
        return nsc_fused_adamw_list_(N_PARAMS, list(l, 0), list(l, 1), list(l, 2), list(l, 3),
                                     list(l, 4), &v->adamw_config, step);
    }
    return nsc_fused_sgd_list_(N_PARAMS, list(l, 0), list(l, 1), list(l, 2), &v->sgd, step == 1);
}

static void separate_steps(const nsct_optim_variant *v, lists *l, int64_t step) {
    for (int j = 0; j < N_PARAMS; j++) {
        nsc_tensor *t[NSCI_OPTIM_ROLES] = { 0 };
        for (int r = 0; r < l->roles; r++) {
            t[r] = l->t[r * N_PARAMS + j];
        }
        nsc_status s = v->adamw
                           ? nsc_fused_adamw_(t[0], t[1], t[2], t[3], t[4], &v->adamw_config, step)
                           : nsc_fused_sgd_(t[0], t[1], t[2], &v->sgd, step == 1);
        cr_assert_eq(s, NSC_OK, "%s parameter %d: %s", v->name, j, nsc_last_error());
    }
}

// Every variant, N_STEPS steps: lists on device (one call each step) hold
// the bits of the same tensors on the CPU updated one call per parameter.
static void expect_lists_match_separate_calls(nsc_device device) {
    nsc_no_grad_begin();
    for (size_t vi = 0; vi < NSCT_OPTIM_N_VARIANTS; vi++) {
        const nsct_optim_variant *v = &nsct_optim_variants[vi];
        lists got, want;
        make_lists(v, device, &got);
        make_lists(v, NSC_CPU, &want);
        for (int step = 1; step <= N_STEPS; step++) {
            set_grads(v, step, device, &got);
            set_grads(v, step, NSC_CPU, &want);
            separate_steps(v, &want, step);
            nsc_cuda_stats before = nsc_cuda_stats_get();
            int64_t kernels = nsci_kernel_count();
            cr_assert_eq(list_step(v, &got, step), NSC_OK, "%s: %s", v->name, nsc_last_error());
            cr_expect_eq(nsci_kernel_count() - kernels, 1, "%s: one op call", v->name);
            if (device == NSC_CUDA) {
                // The contiguous non-empty parameters in launches of 64 (72: 2),
                // each transposed one (7) a launch of its own.
                int n_transposed = 0;
                for (int j = 0; j < N_PARAMS; j++) {
                    n_transposed += transposed(j);
                }
                int contiguous = N_PARAMS - n_transposed - 1;
                int64_t launches =
                    (contiguous + LIST_LAUNCH_PARAMS - 1) / LIST_LAUNCH_PARAMS + n_transposed;
                nsc_cuda_stats after = nsc_cuda_stats_get();
                cr_expect_eq(after.kernel_launches - before.kernel_launches, launches,
                             "%s: launches %lld", v->name,
                             (long long)(after.kernel_launches - before.kernel_launches));
                cr_expect_eq(after.transfers, before.transfers, "%s: a step copied", v->name);
            }
            for (int k = 0; k < got.roles * N_PARAMS; k++) {
                if (k / N_PARAMS == 1) {
                    continue;
                }
                char what[128];
                snprintf(what, sizeof what, "%s step %d role %d parameter %d", v->name, step,
                         k / N_PARAMS, k % N_PARAMS);
                nsct_expect_close(got.t[k], want.t[k], TOL_EXACT, what);
            }
        }
        free_lists(&got);
        free_lists(&want);
    }
    nsc_no_grad_end();
}

Test(optim_lists, a_list_gives_the_bits_of_one_call_per_parameter) {
    expect_lists_match_separate_calls(NSC_CPU);
}

Test(optim_lists, on_a_gpu_a_list_gives_the_cpu_bits_in_few_launches) {
    if (nsc_cuda_init() != NSC_OK) {
        char why[1100];
        snprintf(why, sizeof why, "no GPU: %s", nsc_last_error());
        nsc_clear_error();
        cr_skip_test("%s", why);
    }
    expect_lists_match_separate_calls(NSC_CUDA);
}

// --- refusals ---

static nsc_tensor *filled(int64_t rows, nsc_dtype dtype, double value) {
    nsc_tensor *t = nsc_full(dtype, NSC_CPU, NSC_SHAPE(rows, 3), value);
    cr_assert(t, "%s", nsc_last_error());
    return t;
}

static void expect_refused(nsc_status got, nsc_status status, const char *message,
                           nsc_tensor *const *unchanged, int n) {
    cr_expect_eq(got, status, "\"%s\": status %d (%s)", message, got, nsc_last_error());
    cr_expect(strstr(nsc_last_error(), message), "error \"%s\" lacks \"%s\"", nsc_last_error(),
              message);
    for (int i = 0; i < n; i++) {
        nsc_tensor *want = nsc_full_like(unchanged[i], (double)(i + 1));
        nsct_expect_close(unchanged[i], want, TOL_EXACT, message);
        nsc_free(want);
    }
    nsc_clear_error();
}

Test(optim_lists, bad_lists_are_refused_naming_the_operand_and_change_nothing) {
    nsc_no_grad_begin();
    // Two parameters' operands, each tensor filled with its index + 1.
    nsc_tensor *t[8];
    for (int i = 0; i < 8; i++) {
        t[i] = filled(2, NSC_F32, i + 1);
    }
    nsc_tensor *params[2] = { t[0], t[1] }, *grads[2] = { t[2], t[3] };
    nsc_tensor *m[2] = { t[4], t[5] }, *v[2] = { t[6], t[7] };
    nsc_adamw_config adamw = NSCT_ADAMW;
    nsc_sgd_config plain = { .lr = 0.1 }, momentum = NSCT_MOMENTUM;

    nsc_tensor *wide = filled(3, NSC_F32, 0), *as_f64 = filled(2, NSC_F64, 0);
    nsc_tensor *bad_m[2] = { t[4], wide }, *bad_v[2] = { t[6], as_f64 };
    expect_refused(nsc_fused_adamw_list_(2, params, grads, bad_m, v, NULL, &adamw, 1),
                   NSC_ERR_SHAPE, "exp_avgs[1] has shape [3,3]: expected params[1]'s shape [2,3]",
                   t, 8);
    expect_refused(nsc_fused_adamw_list_(2, params, grads, m, bad_v, NULL, &adamw, 1),
                   NSC_ERR_DTYPE, "exp_avg_sqs[1] is f64: expected params[0]'s dtype f32", t, 8);
    nsc_tensor *mixed[2] = { t[0], as_f64 };
    expect_refused(nsc_fused_sgd_list_(2, mixed, grads, NULL, &plain, true), NSC_ERR_DTYPE,
                   "params[1] is f64: expected params[0]'s dtype f32", t, 8);
    nsc_tensor *twice[2] = { t[0], t[0] };
    expect_refused(nsc_fused_sgd_list_(2, twice, grads, NULL, &plain, true), NSC_ERR_ARG,
                   "params[0] and params[1] share memory: params[0] is written in place", t, 8);
    nsc_tensor *grad_is_state[2] = { t[2], t[4] };
    expect_refused(nsc_fused_adamw_list_(2, params, grad_is_state, m, v, NULL, &adamw, 1),
                   NSC_ERR_ARG, "grads[1] and exp_avgs[0] share memory: exp_avgs[0] is written", t,
                   8);
    expect_refused(nsc_fused_adamw_list_(2, params, grads, NULL, v, NULL, &adamw, 1), NSC_ERR_ARG,
                   "fused_adamw_: exp_avgs is NULL: the configuration keeps this state", t, 8);
    nsc_tensor *holed[2] = { t[2], NULL };
    expect_refused(nsc_fused_adamw_list_(2, params, holed, m, v, NULL, &adamw, 1), NSC_ERR_ARG,
                   "fused_adamw_: grads[1] is NULL", t, 8);
    expect_refused(nsc_fused_adamw_list_(2, params, grads, m, v, v, &adamw, 1), NSC_ERR_ARG,
                   "max_exp_avg_sqs given, and the configuration keeps no max_exp_avg_sq", t, 8);
    expect_refused(nsc_fused_sgd_list_(2, params, grads, m, &plain, true), NSC_ERR_ARG,
                   "momentum_buffers given, and the configuration keeps no momentum_buffer", t, 8);
    expect_refused(nsc_fused_sgd_list_(2, params, grads, NULL, &momentum, true), NSC_ERR_ARG,
                   "momentum_buffers is NULL", t, 8);
    expect_refused(nsc_fused_sgd_list_(-1, params, grads, NULL, &plain, true), NSC_ERR_ARG,
                   "-1 parameters: expected 0 to", t, 8);
    expect_refused(nsc_fused_adamw_list_(2, params, grads, m, v, NULL, &adamw, 0), NSC_ERR_ARG,
                   "step 0: expected the step count this update makes", t, 8);
    expect_refused(nsc_fused_adamw_list_(2, params, grads, m, v, NULL, NULL, 1), NSC_ERR_ARG,
                   "config is NULL", t, 8);

    nsc_no_grad_end();
    // With grad mode on, autograd guards the write into params[0] only: a
    // later parameter that requires grad is refused by the op itself.
    nsc_tensor *leaf = filled(2, NSC_F32, 2);
    cr_assert_eq(nsc_requires_grad_(leaf, true), NSC_OK);
    nsc_tensor *then_leaf[2] = { t[0], leaf }, *with_leaf[8];
    memcpy(with_leaf, t, sizeof t);
    with_leaf[1] = leaf;
    expect_refused(nsc_fused_sgd_list_(2, then_leaf, grads, NULL, &plain, true), NSC_ERR_STATE,
                   "params[1] requires grad and is written in place with grad mode on", with_leaf,
                   8);
    nsc_free(leaf);
    nsc_no_grad_begin();

    // Nothing to update is not an error, whatever error came before.
    nsci_fail(NSC_ERR_ARG, "an earlier error");
    int64_t kernels = nsci_kernel_count();
    cr_expect_eq(nsc_fused_adamw_list_(0, NULL, NULL, NULL, NULL, NULL, &adamw, 1), NSC_OK);
    cr_expect_eq(nsci_kernel_count(), kernels, "an empty list ran a kernel");
    nsc_clear_error();
    nsc_free(wide);
    nsc_free(as_f64);
    for (int i = 0; i < 8; i++) {
        nsc_free(t[i]);
    }
    nsc_no_grad_end();
}

// In a long list the error names the operand; the shapes the message
// starts with stop after 8 of the 320 inputs.
Test(optim_lists, a_long_list_names_the_bad_operand) {
    nsc_no_grad_begin();
    const nsct_optim_variant *v = &nsct_optim_variants[4]; // adamw
    lists l;
    make_lists(v, NSC_CPU, &l);
    set_grads(v, 1, NSC_CPU, &l);
    nsc_tensor **last = &l.t[2 * N_PARAMS + N_PARAMS - 1];
    nsc_free(*last);
    *last = filled(4, NSC_F32, 0);
    cr_expect_eq(list_step(v, &l, 1), NSC_ERR_SHAPE);
    cr_expect(strstr(nsc_last_error(), ", ... (320 inputs): exp_avgs[79] has shape [4,3]: expected "
                                       "params[79]'s shape"),
              "%s", nsc_last_error());
    nsc_clear_error();
    free_lists(&l);
    nsc_no_grad_end();
}

// Gradients are only read: two parameters may share one, and the result is
// that of two separate calls. Every written operand's version advances.
Test(optim_lists, parameters_may_share_a_gradient_and_every_written_version_advances) {
    nsc_no_grad_begin();
    nsc_tensor *p[2] = { filled(2, NSC_F32, 1), filled(2, NSC_F32, 2) };
    nsc_tensor *q[2] = { filled(2, NSC_F32, 1), filled(2, NSC_F32, 2) };
    nsc_tensor *buf[2] = { filled(2, NSC_F32, 0.5), filled(2, NSC_F32, 0.25) };
    nsc_tensor *qbuf[2] = { filled(2, NSC_F32, 0.5), filled(2, NSC_F32, 0.25) };
    nsc_tensor *g = filled(2, NSC_F32, 3);
    nsc_tensor *grads[2] = { g, g };
    nsc_sgd_config momentum = NSCT_MOMENTUM;
    momentum.nesterov = false;
    int64_t before[5] = { atomic_load(&p[0]->storage->version),
                          atomic_load(&p[1]->storage->version),
                          atomic_load(&buf[0]->storage->version),
                          atomic_load(&buf[1]->storage->version),
                          atomic_load(&g->storage->version) };
    cr_assert_eq(nsc_fused_sgd_list_(2, p, grads, buf, &momentum, false), NSC_OK, "%s",
                 nsc_last_error());
    nsc_tensor *written[4] = { p[0], p[1], buf[0], buf[1] };
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(atomic_load(&written[i]->storage->version), before[i] + 1, "operand %d", i);
    }
    cr_expect_eq(atomic_load(&g->storage->version), before[4], "the gradient was written");
    for (int j = 0; j < 2; j++) {
        cr_assert_eq(nsc_fused_sgd_(q[j], g, qbuf[j], &momentum, false), NSC_OK);
        nsct_expect_close(p[j], q[j], TOL_EXACT, "parameter");
        nsct_expect_close(buf[j], qbuf[j], TOL_EXACT, "momentum buffer");
    }
    nsc_tensor *frees[] = { p[0], p[1], q[0], q[1], buf[0], buf[1], qbuf[0], qbuf[1], g };
    for (size_t i = 0; i < sizeof frees / sizeof frees[0]; i++) {
        nsc_free(frees[i]);
    }
    nsc_no_grad_end();
}

// --- the optimizer's batches ---

// Rows 0 and 2 of one [3, 6] buffer as parameters, with a third tensor
// between them in the list: the list op would refuse the two views (one
// storage), so the step moves the second view to a call of its own and
// updates the others in one list (2 calls), and every parameter ends as a
// separate tensor stepped alike would.
Test(optim_lists, parameters_that_are_views_of_one_buffer_step_as_separate_ones) {
    enum {
        N = 3
    };
    nsc_generator *gen = nsc_generator_new(9);
    nsc_tensor *buffer = nsc_randn(gen, NSC_F32, NSC_SHAPE(3, 6));
    nsc_tensor *views[N] = { nsc_select(buffer, 0, 0), nsc_randn(gen, NSC_F32, NSC_SHAPE(6)),
                             nsc_select(buffer, 0, 2) };
    nsc_tensor *apart[N];
    for (int j = 0; j < N; j++) {
        apart[j] = nsc_clone(views[j]);
        cr_assert_eq(nsc_requires_grad_(views[j], true), NSC_OK, "%s", nsc_last_error());
        cr_assert_eq(nsc_requires_grad_(apart[j], true), NSC_OK);
    }
    nsc_adamw_config config = NSCT_AMSGRAD;
    nsc_optim *shared = nsc_optim_adamw_new(N, views, &config);
    nsc_optim *separate = nsc_optim_adamw_new(N, apart, &config);
    cr_assert(shared && separate, "%s", nsc_last_error());
    for (int step = 0; step < N_STEPS; step++) {
        for (int j = 0; j < N; j++) {
            nsc_tensor *g = nsc_randn(gen, NSC_F32, NSC_SHAPE(6));
            cr_assert_eq(nsc_tensor_set_grad(views[j], g), NSC_OK, "%s", nsc_last_error());
            cr_assert_eq(nsc_tensor_set_grad(apart[j], g), NSC_OK);
            nsc_free(g);
        }
        int64_t kernels = nsci_kernel_count();
        cr_assert_eq(nsc_optim_step(shared), NSC_OK, "%s", nsc_last_error());
        if (step > 0) { // step 0 also makes the state
            cr_expect_eq(nsci_kernel_count() - kernels, 2, "a list of two and the moved view");
        }
        kernels = nsci_kernel_count();
        cr_assert_eq(nsc_optim_step(separate), NSC_OK);
        if (step > 0) {
            cr_expect_eq(nsci_kernel_count() - kernels, 1, "one call for the batch");
        }
        for (int j = 0; j < N; j++) {
            nsct_expect_close(views[j], apart[j], TOL_EXACT, "a parameter");
            cr_expect_eq(nsc_optim_get_step(shared, j), step + 1, "parameter %d's step", j);
        }
    }
    nsc_optim_free(shared);
    nsc_optim_free(separate);
    for (int j = 0; j < N; j++) {
        nsc_free(views[j]);
        nsc_free(apart[j]);
    }
    nsc_free(buffer);
    nsc_generator_free(gen);
}

// A group of 300 parameters (1200 AdamW operands) steps in batches that one
// call checks on the stack (256 parameters, then 44), so a step still
// allocates nothing once the state exists, and gives separate calls' bits.
Test(optim_lists, a_large_group_steps_in_batches_that_allocate_nothing) {
    enum {
        MANY = 300
    };
    nsc_generator *gen = nsc_generator_new(12);
    nsc_tensor *params[MANY], *copies[MANY], *m[MANY], *v[MANY];
    for (int j = 0; j < MANY; j++) {
        params[j] = nsc_randn(gen, NSC_F32, NSC_SHAPE(2));
        copies[j] = nsc_clone(params[j]);
        m[j] = nsc_zeros_like(params[j]);
        v[j] = nsc_zeros_like(params[j]);
        cr_assert_eq(nsc_requires_grad_(params[j], true), NSC_OK);
    }
    nsc_adamw_config config = NSCT_ADAMW;
    nsc_optim *opt = nsc_optim_adamw_new(MANY, params, &config);
    cr_assert(opt, "%s", nsc_last_error());
    for (int step = 1; step <= 2; step++) {
        for (int j = 0; j < MANY; j++) {
            nsc_tensor *g = nsc_randn(gen, NSC_F32, NSC_SHAPE(2));
            cr_assert_eq(nsc_tensor_set_grad(params[j], g), NSC_OK);
            nsc_no_grad_begin();
            cr_assert_eq(nsc_fused_adamw_(copies[j], g, m[j], v[j], NULL, &config, step), NSC_OK);
            nsc_no_grad_end();
            nsc_free(g);
        }
        int64_t kernels = nsci_kernel_count(), allocs = nsc_mem_stats_get().n_allocs;
        cr_assert_eq(nsc_optim_step(opt), NSC_OK, "%s", nsc_last_error());
        if (step == 2) {
            cr_expect_eq(nsci_kernel_count() - kernels, 2, "batches of 256 and 44");
            cr_expect_eq(nsc_mem_stats_get().n_allocs, allocs, "the step allocated");
        }
    }
    for (int j = 0; j < MANY; j++) {
        nsct_expect_close(params[j], copies[j], TOL_EXACT, "a parameter of a large group");
    }
    nsc_optim_free(opt);
    for (int j = 0; j < MANY; j++) {
        nsc_free(params[j]);
        nsc_free(copies[j]);
        nsc_free(m[j]);
        nsc_free(v[j]);
    }
    nsc_generator_free(gen);
}

// --- clipping's list ops ---

static void clip_launches(int *list_launches, int *strided) {
    int n_transposed = 0;
    for (int j = 0; j < N_PARAMS; j++) {
        n_transposed += transposed(j);
    }
    int contiguous = N_PARAMS - n_transposed - 1;
    *list_launches = (contiguous + LIST_LAUNCH_PARAMS - 1) / LIST_LAUNCH_PARAMS;
    *strided = n_transposed;
}

// The gradients of 80 parameters (f32 and f64, long, transposed, empty) on
// a GPU: the sum of squares matches the CPU's up to summation order in
// double, in 2 list launches, 7 strided ones and the fold; scaling gives the
// CPU's bits in 2 + 7 launches; nothing is copied to the host.
Test(optim_lists, on_a_gpu_clipping_sums_and_scales_all_gradients_in_few_launches) {
    if (nsc_cuda_init() != NSC_OK) {
        char why[1100];
        snprintf(why, sizeof why, "no GPU: %s", nsc_last_error());
        nsc_clear_error();
        cr_skip_test("%s", why);
    }
    nsc_tensor *cpu[N_PARAMS], *gpu[N_PARAMS];
    nsc_generator *gen_cpu = nsc_generator_new(77), *gen_gpu = nsc_generator_new(77);
    for (int j = 0; j < N_PARAMS; j++) { // f32 and f64 in turn
        cpu[j] = operand(gen_cpu, j % 2 ? NSC_F64 : NSC_F32, j, 1, NSC_CPU);
        gpu[j] = operand(gen_gpu, j % 2 ? NSC_F64 : NSC_F32, j, 1, NSC_CUDA);
    }
    nsc_generator_free(gen_cpu);
    nsc_generator_free(gen_gpu);
    int list_launches, strided;
    clip_launches(&list_launches, &strided);
    nsc_cuda_stats before = nsc_cuda_stats_get();
    nsc_tensor *sum_gpu = nsci_clip_sumsq(N_PARAMS, gpu);
    nsc_cuda_stats after = nsc_cuda_stats_get();
    cr_assert(sum_gpu, "%s", nsc_last_error());
    cr_expect_eq(after.kernel_launches - before.kernel_launches, list_launches + strided + 1);
    cr_expect_eq(after.transfers, before.transfers, "the sum was copied");
    nsc_tensor *sum_cpu = nsci_clip_sumsq(N_PARAMS, cpu);
    double got = nsc_tensor_item(sum_gpu), want = nsc_tensor_item(sum_cpu);
    cr_expect(fabs(got - want) <= 1e-13 * want, "gpu %.17g, cpu %.17g", got, want);
    before = nsc_cuda_stats_get();
    cr_assert_eq(nsci_clip_scale_(N_PARAMS, gpu, 0.37), NSC_OK, "%s", nsc_last_error());
    after = nsc_cuda_stats_get();
    cr_expect_eq(after.kernel_launches - before.kernel_launches, list_launches + strided);
    cr_assert_eq(nsci_clip_scale_(N_PARAMS, cpu, 0.37), NSC_OK);
    for (int j = 0; j < N_PARAMS; j++) {
        char what[64];
        snprintf(what, sizeof what, "scaled gradient %d", j);
        nsct_expect_close(gpu[j], cpu[j], TOL_EXACT, what);
        nsc_free(cpu[j]);
        nsc_free(gpu[j]);
    }
    nsc_free(sum_gpu);
    nsc_free(sum_cpu);
}

// Two parameters given one gradient tensor: the list scale would refuse the
// shared memory, so the device clip scales it once per parameter, as the
// CPU loop does (twice in all), and the two devices agree.
Test(optim_lists, clipping_takes_a_gradient_shared_by_two_parameters) {
    bool gpu = nsc_cuda_init() == NSC_OK;
    nsc_clear_error();
    nsc_tensor *scaled[2] = { 0 };
    for (int d = 0; d < (gpu ? 2 : 1); d++) {
        nsc_device device = d ? NSC_CUDA : NSC_CPU;
        nsc_tensor *params[2], *g = nsc_full(NSC_F32, device, NSC_SHAPE(4, 3), 10.0);
        for (int j = 0; j < 2; j++) {
            params[j] = nsc_zeros(NSC_F32, device, NSC_SHAPE(4, 3));
            cr_assert_eq(nsc_requires_grad_(params[j], true), NSC_OK);
            cr_assert_eq(nsc_tensor_set_grad(params[j], g), NSC_OK, "%s", nsc_last_error());
        }
        double norm = -1;
        cr_assert_eq(nsc_clip_grad_norm_(2, params, 1.0, &norm), NSC_OK, "%s: %s",
                     nsc_device_name(device), nsc_last_error());
        cr_expect(fabs(norm - sqrt(2400.0)) < 1e-9, "norm %.17g", norm);
        scaled[d] = nsc_to(g, NSC_CPU);
        float coef = (float)(1.0 / (sqrt(2400.0) + 1e-6));
        nsc_tensor *want =
            nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(4, 3), (double)(10.0f * coef * coef));
        nsct_expect_close(scaled[d], want, TOL_F32, nsc_device_name(device));
        nsc_free(want);
        for (int j = 0; j < 2; j++) {
            nsc_free(params[j]);
        }
        nsc_free(g);
    }
    if (gpu) {
        nsct_expect_close(scaled[1], scaled[0], TOL_EXACT, "cuda against the cpu");
    }
    nsc_free(scaled[0]);
    nsc_free(scaled[1]);
}
