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
