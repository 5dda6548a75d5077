// CUDA kernels at the edges the case table does not reach, against the CPU:
// attention whose scores hold NaN (its warps split on an early return that
// only some lanes took, and the launch failed), and the i64 square of
// pow_scalar (a signed overflow, undefined, where the CPU wraps). They skip
// without a GPU; `make CUDA=emu` runs them on the emulator, which reports a
// split warp, and its ASan build reports the overflow.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>

#include "tests/harness.h"

static void need_gpu(void) {
    if (nsc_cuda_init() != NSC_OK) {
        char why[1100];
        snprintf(why, sizeof why, "no GPU: %s", nsc_last_error());
        nsc_clear_error();
        cr_skip_test("%s", why);
    }
}

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
