// Forward ops at the edges of their dtypes, beyond the case table: int64
// values past 2^53 (copy_to, allclose, arange, scalar compares), infinities
// in allclose, cosine similarity at the rounding edge, split of a size-0 dim.
// Expected values are torch 2's (noted per test).
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"

static nsc_tensor *i64_values(int ndim, const int64_t *shape, const int64_t *values) {
    nsc_tensor *t = nsc_from_data(NSC_I64, ndim, shape, values);
    cr_assert(t, "%s", nsc_last_error());
    return t;
}

static nsc_tensor *f32_values(int64_t n, const float *values) {
    nsc_tensor *t = nsc_from_data(NSC_F32, 1, &n, values);
    cr_assert(t, "%s", nsc_last_error());
    return t;
}

// --- copy_to ---

// torch: x.t().contiguous() keeps every int64; float() of 2^54 + 2^30 + 1
// rounds once, to 2^54 + 2^31 (through a double it would round twice, to 2^54).
Test(op_edges, copy_to_keeps_int64_exact_in_any_layout) {
    const int64_t big = INT64_MAX, odd = (INT64_C(1) << 53) + 1;
    nsc_tensor *a = i64_values(NSC_SHAPE(2, 2), (int64_t[]){ big, odd, 1, 2 });
    nsc_tensor *t = nsc_transpose(a, 0, 1);
    int64_t got[4] = { 0 };
    cr_assert_eq(nsc_tensor_copy_to(t, NSC_I64, got, sizeof got), NSC_OK, "%s", nsc_last_error());
    const int64_t want[4] = { big, 1, odd, 2 };
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(got[i], want[i], "element %d: %lld, expected %lld", i, (long long)got[i],
                     (long long)want[i]);
    }
    double as_f64[4];
    cr_assert_eq(nsc_tensor_copy_to(t, NSC_F64, as_f64, sizeof as_f64), NSC_OK);
    cr_expect_eq(as_f64[2], 9007199254740992.0, "2^53 + 1 as f64: %.17g", as_f64[2]);

    const int64_t twice = (INT64_C(1) << 54) + (INT64_C(1) << 30) + 1;
    nsc_tensor *c = i64_values(NSC_SHAPE(2), (int64_t[]){ twice, 0 });
    nsc_tensor *s = nsc_slice(c, 0, 0, 2, 2); // stepped: not the memcpy path
    float f = 0;
    cr_assert_eq(nsc_tensor_copy_to(s, NSC_F32, &f, sizeof f), NSC_OK);
    cr_expect_eq(f, 18014400656965632.0f, "2^54 + 2^30 + 1 as f32: %.17g", (double)f);
    nsc_free(s);
    nsc_free(c);
    nsc_free(t);
    nsc_free(a);
}

// --- allclose ---

// torch.allclose: an infinity is close only to an equal infinity, whatever
// the tolerances; NaN only to NaN with equal_nan.
Test(op_edges, allclose_infinities_and_nans_as_torch) {
    nsc_tensor *one = f32_values(1, (float[]){ 1 });
    nsc_tensor *inf = f32_values(1, (float[]){ INFINITY });
    nsc_tensor *ninf = f32_values(1, (float[]){ -INFINITY });
    nsc_tensor *nan = f32_values(1, (float[]){ NAN });
    cr_expect(!nsc_allclose(one, inf, 1e-5, 1e-8, false), "1 vs inf");
    cr_expect(strstr(nsc_last_error(), "allclose: element 0 differs: 1 vs inf"), "%s",
              nsc_last_error());
    nsc_clear_error();
    cr_expect(!nsc_allclose(inf, one, 1e-5, 1e-8, false), "inf vs 1");
    cr_expect(!nsc_allclose(ninf, inf, 1e-5, 1e-8, false), "-inf vs inf");
    cr_expect(!nsc_allclose(inf, nan, 1e-5, 1e-8, true), "inf vs nan");
    nsc_clear_error();
    cr_expect(nsc_allclose(inf, inf, 1e-5, 1e-8, false), "inf vs inf: %s", nsc_last_error());
    cr_expect(nsc_allclose(ninf, ninf, 0, 0, false), "-inf vs -inf");
    cr_expect(nsc_allclose(nan, nan, 0, 0, true), "nan vs nan, equal_nan");
    cr_expect(!nsc_allclose(nan, nan, 0, 0, false), "nan vs nan");
    nsc_clear_error();
    nsc_free(one);
    nsc_free(inf);
    nsc_free(ninf);
    nsc_free(nan);
}

// torch.allclose(tensor([2**53 + 1]), tensor([2**53]), rtol=0, atol=0) is
// False (atol=1: True): integers compare exactly, not as doubles.
Test(op_edges, allclose_compares_int64_exactly) {
    nsc_tensor *a = i64_values(NSC_SHAPE(1), (int64_t[]){ (INT64_C(1) << 53) + 1 });
    nsc_tensor *b = i64_values(NSC_SHAPE(1), (int64_t[]){ INT64_C(1) << 53 });
    cr_expect(!nsc_allclose(a, b, 0, 0, false), "2^53 + 1 vs 2^53 exactly");
    cr_expect(strstr(nsc_last_error(), "9007199254740993 vs 9007199254740992 (|diff| 1 >"), "%s",
              nsc_last_error());
    nsc_clear_error();
    cr_expect(nsc_allclose(a, b, 0, 1, false), "within atol 1: %s", nsc_last_error());
    nsc_free(a);
    nsc_free(b);
}

// --- int64 scalars ---

// torch.eq(tensor([9210000000000000001]), 9210000000000000000) is False: a
// scalar that fits int64 compares in int64, not rounded to a double.
Test(op_edges, compare_scalar_in_int64_up_to_two_to_the_63) {
    nsc_tensor *x = i64_values(NSC_SHAPE(1), (int64_t[]){ INT64_C(9210000000000000001) });
    cr_expect_eq(nsct_item_free(nsc_eq_scalar(x, 9.21e18)), 0.0);
    cr_expect_eq(nsct_item_free(nsc_gt_scalar(x, 9.21e18)), 1.0);
    nsc_free(x);
}

// 2^63 does not fit int64 and is refused, as every integral scalar outside
// [-2^63, 2^63) (torch 2 wraps: tensor([1]) + 2**63 is -9223372036854775807);
// -2^63 fits (torch: tensor([1]) + -2**63 is -9223372036854775807).
Test(op_edges, int64_scalar_from_two_to_the_63_is_refused) {
    nsc_tensor *x = i64_values(NSC_SHAPE(1), (int64_t[]){ 1 });
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_add_scalar(x, 0x1p63), NSC_ERR_ARG, "does not fit int64");
    cr_expect_eq(nsct_live_blocks(), blocks, "no leak");
    cr_expect_eq(nsct_item_free(nsc_add_scalar(x, -0x1p63)), -0x1p63 + 1);
    nsc_free(x);
}

// --- arange ---

// torch.arange(2**53, 2**53 + 4, dtype=torch.int64) and its mirror counting
// down: every value exact, where start + i * step in double repeats values.
Test(op_edges, arange_int64_counts_exactly_past_two_to_the_53) {
    const int64_t base = INT64_C(1) << 53;
    nsc_tensor *up = nsc_arange(0x1p53, 0x1p53 + 4, 1, NSC_I64);
    nsc_tensor *down = nsc_arange(-0x1p53, -0x1p53 - 4, -1, NSC_I64);
    cr_assert(up && down, "%s", nsc_last_error());
    int64_t u[4], d[4];
    cr_assert_eq(nsc_tensor_copy_to(up, NSC_I64, u, sizeof u), NSC_OK);
    cr_assert_eq(nsc_tensor_copy_to(down, NSC_I64, d, sizeof d), NSC_OK);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(u[i], base + i, "up %d: %lld", i, (long long)u[i]);
        cr_expect_eq(d[i], -base - i, "down %d: %lld", i, (long long)d[i]);
    }
    nsc_free(up);
    nsc_free(down);
}

// --- cosine similarity ---

// A vector with itself sums to 1.00000012 in f32 (torch 2 too: 1.0000001192);
// the value is clamped to 1 and the gradient left as computed, which is
// torch's to rounding: [-8.9e-08, -3.0e-08, -3.0e-08, 6.0e-08].
Test(op_edges, cosine_similarity_stays_in_minus_one_one) {
    const float v[4] = { 1.02465796f, 0.492034644f, 0.376926571f, -0.958064437f };
    nsc_tensor *x = f32_values(4, v), *y = f32_values(4, v);
    cr_assert_eq(nsc_requires_grad_(x, true), NSC_OK);
    nsc_tensor *c = nsc_cosine_similarity(x, y, 0, 1e-8);
    cr_assert(c, "%s", nsc_last_error());
    double value = nsc_tensor_item(c);
    cr_expect(value <= 1.0 && value >= 1.0 - 1.2e-7, "cos(x, x) = %.9g", value);
    cr_assert_eq(nsc_backward(c, NULL, false), NSC_OK, "%s", nsc_last_error());
    double *g = nsct_values_of(nsc_tensor_get_grad(x));
    const double torch_grad[4] = { -8.940696716308594e-08, -2.9802322387695312e-08,
                                   -2.9802322387695312e-08, 5.960464477539063e-08 };
    for (int i = 0; i < 4; i++) {
        // f32 rounding of a gradient that is 0 in exact arithmetic
        cr_expect(fabs(g[i] - torch_grad[i]) < 5e-7, "grad %d: %g, torch %g", i, g[i],
                  torch_grad[i]);
    }
    free(g);
    nsc_free(c);
    nsc_free(x);
    nsc_free(y);
}

// --- split ---

// torch.split(torch.empty(0), 0) gives one empty piece; split_size 0 on a
// non-empty dim stays refused (tests/test_reliability_inputs.c).
Test(op_edges, split_of_a_size_zero_dim_gives_one_empty_piece) {
    nsc_tensor *x = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0));
    nsc_tensor *out[2] = { NULL, NULL };
    int n_out = -1;
    cr_assert_eq(nsc_split(x, 0, 0, 2, out, &n_out), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(n_out, 1);
    cr_expect(out[0] && nsc_tensor_numel(out[0]) == 0 && nsc_tensor_ndim(out[0]) == 1);
    cr_expect_null(out[1]);
    nsc_free(out[0]);
    nsc_free(x);
}
