// Bad input (issue 12): a catalogue of wrong shapes, dtypes, devices, ranks
// and sizes for every op family, sizes whose products overflow int64, and
// NaN/Inf inputs computed as PyTorch computes them. Each refusal is checked
// for its status, a message naming the problem, unchanged inputs and no
// leaked block. The op families' own suites cover more cases of each kind;
// this file fills the gaps and keeps one of each in one place.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tests/harness.h"
#include "tests/reliability_util.h"
#include "tests/st_util.h"

// Checks a refused call: its status, a message substring and the live blocks.
static void check_refused(bool refused, const char *call, nsc_status want, const char *text,
                          int64_t before) {
    cr_expect(refused, "%s: should be refused", call);
    cr_expect_eq(nsc_last_status(), want, "%s: %s: %s", call, nsc_status_name(nsc_last_status()),
                 nsc_last_error());
    cr_expect(strstr(nsc_last_error(), text), "%s:\n  message \"%s\"\n  lacks \"%s\"", call,
              nsc_last_error(), text);
    cr_expect_eq(nsct_rel_live_blocks(), before, "%s: leaked", call);
}

// expr returns a tensor: NULL with status st and a message containing text.
#define REFUSED(expr, st, text)                                                                    \
    do {                                                                                           \
        int64_t before_ = nsct_rel_live_blocks();                                                  \
        nsc_clear_error();                                                                         \
        nsc_tensor *r_ = (expr);                                                                   \
        check_refused(r_ == NULL, #expr, st, text, before_);                                       \
        nsc_free(r_);                                                                              \
    } while (0)

// expr returns a status.
#define REFUSED_STATUS(expr, st, text)                                                             \
    do {                                                                                           \
        int64_t before_ = nsct_rel_live_blocks();                                                  \
        nsc_clear_error();                                                                         \
        nsc_status s_ = (expr);                                                                    \
        check_refused(s_ == st, #expr, st, text, before_);                                         \
    } while (0)

static nsc_tensor *f32(int ndim, const int64_t *shape, double start) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n *= shape[i];
    }
    nsc_tensor *a = nsc_arange(start, start + (double)n, 1, NSC_F32);
    nsc_tensor *x = nsc_reshape(a, ndim, shape);
    nsc_free(a);
    return x;
}

// --- creation ---

Test(reliability_inputs, creation) {
    int64_t nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    REFUSED(nsc_empty(NSC_F32, NSC_CPU, NSC_SHAPE(2, -1)), NSC_ERR_SHAPE,
            "size -1 at dim 1 is negative");
    REFUSED(nsc_zeros(NSC_F32, NSC_CPU, 9, nine), NSC_ERR_SHAPE, "rank 9: expected 0..8 dims");
    REFUSED(nsc_ones(NSC_F32, NSC_CPU, -1, NULL), NSC_ERR_SHAPE, "rank -1");
    REFUSED(nsc_full(NSC_F32, NSC_CPU, 2, NULL, 1.0), NSC_ERR_ARG, "shape is NULL");
    REFUSED(nsc_empty((nsc_dtype)17, NSC_CPU, NSC_SHAPE(2)), NSC_ERR_DTYPE, "unknown dtype 17");
    REFUSED(nsc_empty(NSC_F32, (nsc_device)9, NSC_SHAPE(2)), NSC_ERR_DEVICE, "unknown device 9");
    REFUSED(nsc_from_data(NSC_F32, NSC_SHAPE(2), NULL), NSC_ERR_ARG, "data is NULL");
    REFUSED(nsc_arange(0, 10, 0, NSC_F32), NSC_ERR_ARG, "nonzero step");
    REFUSED(nsc_arange(0, NAN, 1, NSC_F32), NSC_ERR_ARG, "expected finite values");
    REFUSED(nsc_arange(0, INFINITY, 1, NSC_F64), NSC_ERR_ARG, "expected finite values");
    REFUSED(nsc_arange(0, 1e30, 1e-30, NSC_F32), NSC_ERR_SHAPE, "overflow int64");
    // i64 with a fractional start, end or step: torch 2.x gives [0,1,2,3] for
    // arange(0, 5, 1.5), torch 1.13 [0,1,2,3,4]; nsc gave [0,1,3,4].
    REFUSED(nsc_arange(0, 5, 1.5, NSC_I64), NSC_ERR_ARG,
            "arange: start 0, end 5, step 1.5: expected integral values for an i64 result");
    REFUSED(nsc_arange(0.5, 5, 1, NSC_I64), NSC_ERR_ARG, "expected integral values");
    REFUSED(nsc_arange(0, 4.5, 1, NSC_I64), NSC_ERR_ARG, "expected integral values");
    REFUSED(nsc_arange(1e30, 1e30 + 1e15, 1e15, NSC_I64), NSC_ERR_ARG,
            "arange: value 1e+30 does not fit int64");
    nsc_tensor *r = nsc_arange(5, -1, -2, NSC_I64);
    int64_t got[3] = { 0 };
    cr_expect(r && nsc_tensor_copy_to(r, NSC_I64, got, sizeof got) == NSC_OK, "%s",
              nsc_last_error());
    cr_expect(got[0] == 5 && got[1] == 3 && got[2] == 1, "arange(5, -1, -2) is [5, 3, 1]");
    nsc_free(r);
    REFUSED(nsc_linspace(0, 1, -1, NSC_F32), NSC_ERR_ARG, "steps -1");
    REFUSED(nsc_eye(-1, 2, NSC_F32), NSC_ERR_SHAPE, "negative");
    REFUSED(nsc_randint(NULL, 5, 5, NSC_SHAPE(2)), NSC_ERR_ARG, "expected low < high");
#ifndef NSC_HAVE_CUDA
    REFUSED(nsc_zeros(NSC_F32, NSC_CUDA, NSC_SHAPE(2)), NSC_ERR_DEVICE, "cuda");
#endif
}

// Sizes whose product overflows int64, or whose byte count overflows size_t,
// are refused before anything is allocated; a merely enormous one is an
// out-of-memory error, not a crash.
Test(reliability_inputs, sizes_that_overflow) {
    int64_t big = (int64_t)1 << 40, huge = (int64_t)1 << 62;
    REFUSED(nsc_empty(NSC_F32, NSC_CPU, NSC_SHAPE(big, big)), NSC_ERR_SHAPE,
            "element count overflows int64");
    REFUSED(nsc_empty(NSC_F32, NSC_META, NSC_SHAPE(big, big)), NSC_ERR_SHAPE,
            "element count overflows int64");
    REFUSED(nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(huge)), NSC_ERR_SHAPE, "overflow the byte count");
    REFUSED(nsc_empty(NSC_F32, NSC_CPU, NSC_SHAPE((int64_t)1 << 42)), NSC_ERR_OOM,
            "out of memory: allocating 17592186044416 bytes failed");
    nsc_tensor *x = f32(NSC_SHAPE(2, 3), 0);
    nsc_tensor *one = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1, 1));
    REFUSED(nsc_reshape(x, NSC_SHAPE(huge, 4)), NSC_ERR_SHAPE, "overflows int64");
    REFUSED(nsc_view(x, NSC_SHAPE(big, big, 0, -1)), NSC_ERR_SHAPE, "[2,3]");
    REFUSED(nsc_expand(one, NSC_SHAPE(big, big, 4)), NSC_ERR_SHAPE,
            "element count overflows int64");
    REFUSED(nsc_broadcast_to(one, NSC_SHAPE(huge, 4)), NSC_ERR_SHAPE,
            "element count overflows int64");
    // A legal view with 2^62 elements: every op that would allocate it is
    // refused (it once allocated 0 bytes and wrote past them).
    nsc_tensor *wide = nsc_expand(one, NSC_SHAPE(1, huge));
    cr_assert(wide, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_numel(wide), huge);
    REFUSED(nsc_contiguous(wide), NSC_ERR_SHAPE, "byte count overflows size_t");
    REFUSED(nsc_add_scalar(wide, 1.0), NSC_ERR_SHAPE, "byte count overflows size_t");
    REFUSED(nsc_clone(wide), NSC_ERR_SHAPE, "[1,4611686018427387904]");
    // Broadcasting two such views: the result's element count overflows.
    nsc_tensor *col = nsc_expand(one, NSC_SHAPE(big, 1)), *row = nsc_expand(one, NSC_SHAPE(1, big));
    REFUSED(nsc_add(col, row), NSC_ERR_SHAPE, "element count overflows int64");
    REFUSED(nsc_mul(col, row), NSC_ERR_SHAPE, "[1099511627776,1099511627776]");
    REFUSED(nsc_as_strided(x, NSC_SHAPE(2), (int64_t[]){ huge }, 0), NSC_ERR_ARG,
            "reaches element 4611686018427387904 of a storage of 6 elements");
    nsc_tensor *all[] = { x, one, wide, col, row };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
}

// --- views ---

Test(reliability_inputs, views) {
    nsc_tensor *x = f32(NSC_SHAPE(2, 3), 0);
    nsc_tensor *t = nsc_transpose(x, 0, 1);
    nsc_tensor *empty = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0));
    REFUSED(nsc_reshape(x, NSC_SHAPE(4, 2)), NSC_ERR_SHAPE, "has 8 elements: expected 6");
    REFUSED(nsc_reshape(x, NSC_SHAPE(-1, -1)), NSC_ERR_SHAPE, "bad size -1");
    REFUSED(nsc_reshape(empty, NSC_SHAPE(-1, 0)), NSC_ERR_SHAPE, "0 elements do not fit");
    REFUSED(nsc_view(t, NSC_SHAPE(6)), NSC_ERR_SHAPE, "strides do not allow a view: use reshape");
    REFUSED(nsc_expand(x, NSC_SHAPE(3)), NSC_ERR_SHAPE, "target rank 1 is below");
    REFUSED(nsc_expand(x, NSC_SHAPE(2, 5)), NSC_ERR_SHAPE, "size 3 at dim 1 cannot expand to 5");
    REFUSED(nsc_permute(x, NSC_DIMS(0, 0)), NSC_ERR_ARG, "not a permutation");
    REFUSED(nsc_permute(x, NSC_DIMS(0)), NSC_ERR_ARG, "permute");
    REFUSED(nsc_transpose(x, 0, 5), NSC_ERR_ARG, "out of range for rank 2");
    REFUSED(nsc_slice(x, 1, 0, 2, 0), NSC_ERR_ARG, "step 0");
    REFUSED(nsc_slice(x, 3, 0, 2, 1), NSC_ERR_ARG, "slice");
    REFUSED(nsc_select(x, 0, 2), NSC_ERR_ARG, "index 2 is out of range for dim 0 of size 2");
    REFUSED(nsc_select(x, 0, -3), NSC_ERR_ARG, "out of range");
    REFUSED(nsc_narrow(x, 1, 2, 5), NSC_ERR_ARG, "start 2, length 5 are out of range");
    REFUSED(nsc_squeeze(x, 3), NSC_ERR_ARG, "dim 3 is out of range");
    REFUSED(nsc_unsqueeze(x, 4), NSC_ERR_ARG, "dim 4 is out of range");
    REFUSED(nsc_flatten(x, 1, 0), NSC_ERR_ARG, "bad dims for rank 2");
    REFUSED(nsc_as_strided(x, NSC_SHAPE(10), (int64_t[]){ 1 }, 0), NSC_ERR_ARG,
            "reaches element 9 of a storage of 6 elements");
    REFUSED(nsc_as_strided(x, NSC_SHAPE(2), (int64_t[]){ -1 }, 0), NSC_ERR_ARG,
            "expected non-negative values");
    REFUSED(nsc_to_dtype(x, (nsc_dtype)9), NSC_ERR_DTYPE, "unknown dtype 9");
#ifndef NSC_HAVE_CUDA
    REFUSED(nsc_to(x, NSC_CUDA), NSC_ERR_DEVICE, "device cuda is not available");
#endif
    // Splits write nothing into out[] when refused.
    nsc_tensor *out[2] = { NULL, NULL };
    int n_out = -7;
    REFUSED_STATUS(nsc_split(x, 1, 1, 2, out, &n_out), NSC_ERR_ARG,
                   "3 pieces do not fit in 2 outputs");
    REFUSED_STATUS(nsc_split(x, 0, 1, 2, out, &n_out), NSC_ERR_ARG, "split_size 0");
    REFUSED_STATUS(nsc_chunk(x, 0, 1, 2, out, &n_out), NSC_ERR_ARG, "chunks 0");
    cr_expect(!out[0] && !out[1] && n_out == -7, "nothing written");
    nsc_free(x);
    nsc_free(t);
    nsc_free(empty);
}

// Huge narrow lengths and slice steps: start + length and the slice length
// were computed with an overflow (a narrow past its storage was accepted).
Test(reliability_inputs, views_with_huge_lengths_and_steps) {
    nsc_tensor *x = f32(NSC_SHAPE(2, 3), 0), *v4 = f32(NSC_SHAPE(4), 1);
    // torch: "start (1) + length (9223372036854775807) exceeds dimension size (4)."
    REFUSED(nsc_narrow(v4, 0, 1, INT64_MAX), NSC_ERR_ARG,
            "start (1) + length (9223372036854775807) exceeds dimension size (4)");
    REFUSED(nsc_narrow(v4, 0, -1, INT64_MAX - 1), NSC_ERR_ARG,
            "start (3) + length (9223372036854775806) exceeds dimension size (4)");
    // The stride 3 x step overflows int64 (torch refuses both steps too).
    REFUSED(nsc_slice(x, 0, 0, NSC_END, INT64_MAX), NSC_ERR_ARG,
            "step 9223372036854775807: stride 3 x step overflows int64");
    REFUSED(nsc_slice(x, 0, 0, NSC_END, (int64_t)1 << 62), NSC_ERR_ARG, "overflows int64");
    // x[:, 1::step] is one column under Python's rule; torch 2.x gives
    // [[1], [4]] with stride 2^62 for step 2^62 (it overflows at INT64_MAX).
    int64_t steps[2] = { (int64_t)1 << 62, INT64_MAX };
    for (int i = 0; i < 2; i++) {
        nsc_tensor *col = nsc_slice(x, 1, 1, NSC_END, steps[i]);
        cr_assert(col, "step %lld: %s", (long long)steps[i], nsc_last_error());
        cr_expect(nsc_tensor_size(col, 0) == 2 && nsc_tensor_size(col, 1) == 1 &&
                      nsc_tensor_stride(col, 1) == steps[i],
                  "step %lld: [%lld, %lld]", (long long)steps[i],
                  (long long)nsc_tensor_size(col, 0), (long long)nsc_tensor_size(col, 1));
        cr_expect(nsct_flat(col, 0) == 1 && nsct_flat(col, 1) == 4, "step %lld: values",
                  (long long)steps[i]);
        nsc_free(col);
    }
    nsc_free(x);
    nsc_free(v4);
}

// --- in-place writes leave their destination unchanged when refused ---

static void expect_unchanged(nsc_tensor *dst, nsc_tensor *copy, const char *what) {
    cr_expect(nsct_st_equal(dst, copy), "%s: the destination changed", what);
}

Test(reliability_inputs, in_place_writes) {
    nsc_tensor *x = f32(NSC_SHAPE(2, 3), 1), *x_copy = nsc_clone(x);
    nsc_tensor *v4 = f32(NSC_SHAPE(4), 0);
    nsc_tensor *ids = nsc_arange(0, 6, 1, NSC_I64);
    nsc_tensor *ids23 = nsc_reshape(ids, NSC_SHAPE(2, 3)), *ids_copy = nsc_clone(ids23);
    nsc_tensor *mask = nsc_gt_scalar(x, 3.0), *mask_copy = nsc_clone(mask);
    nsc_tensor *row = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1, 3));
    nsc_tensor *rep = nsc_expand(row, NSC_SHAPE(2, 3)), *row_copy = nsc_clone(row);
    REFUSED_STATUS(nsc_copy_(x, v4), NSC_ERR_SHAPE, "sizes 3 and 4 at dim -1 cannot broadcast");
    REFUSED_STATUS(nsc_add_(x, v4), NSC_ERR_SHAPE, "cannot broadcast");
    expect_unchanged(x, x_copy, "copy_/add_ of a wrong shape");
    REFUSED_STATUS(nsc_copy_(rep, x), NSC_ERR_ARG, "repeats one memory location (stride 0)");
    expect_unchanged(row, row_copy, "copy_ into an expanded tensor");
    REFUSED_STATUS(nsc_add_(ids23, x), NSC_ERR_DTYPE,
                   "result type f32 cannot be written into a i64 destination");
    expect_unchanged(ids23, ids_copy, "add_ of f32 into i64");
    REFUSED_STATUS(nsc_mul_(mask, x), NSC_ERR_DTYPE, "bool destination");
    expect_unchanged(mask, mask_copy, "mul_ of f32 into bool");
    nsc_tensor *all[] = {
        x, x_copy, v4, ids, ids23, ids_copy, mask, mask_copy, row, rep, row_copy
    };
    for (int i = 0; i < 11; i++) {
        nsc_free(all[i]);
    }
}

// --- pointwise, reductions, linear algebra, indexing, losses, attention ---

Test(reliability_inputs, pointwise_and_reductions) {
    nsc_tensor *x = f32(NSC_SHAPE(2, 3), 0), *v4 = f32(NSC_SHAPE(4), 0);
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *empty = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0, 3));
    REFUSED(nsc_add(x, v4), NSC_ERR_SHAPE, "add: [2,3], [4]: sizes 3 and 4 at dim -1");
    REFUSED(nsc_where(ids, x, x), NSC_ERR_DTYPE, "where");
    REFUSED(nsc_gelu(x, (nsc_gelu_approx)7), NSC_ERR_ARG, "approximate 7");
    REFUSED(nsc_sum(x, NSC_DIMS(2), false), NSC_ERR_ARG, "dim 2 is out of range for rank 2");
    REFUSED(nsc_sum(x, NSC_DIMS(0, -2), false), NSC_ERR_ARG, "appears more than once");
    REFUSED(nsc_mean(ids, NSC_DIMS(0), false), NSC_ERR_DTYPE, "input dtype i64");
    REFUSED(nsc_softmax(x, 2), NSC_ERR_ARG, "dim 2 is out of range");
    REFUSED(nsc_log_softmax(ids, 1), NSC_ERR_DTYPE, "expected f32 or f64");
    REFUSED(nsc_layer_norm(x, 1, v4, NULL, 1e-5), NSC_ERR_SHAPE, "weight has shape [4]");
    REFUSED(nsc_layer_norm(x, 3, NULL, NULL, 1e-5), NSC_ERR_SHAPE, "3 normalized dims");
    REFUSED(nsc_max(empty), NSC_ERR_SHAPE, "an empty input has no max");
    REFUSED(nsc_argmax(empty, 0, false), NSC_ERR_SHAPE, "dim 0 has size 0");
    REFUSED(nsc_var(x, NSC_DIMS(5), true, false), NSC_ERR_ARG, "dim 5 is out of range");
    nsc_tensor *values = NULL, *indices = NULL;
    REFUSED_STATUS(nsc_max_dim(x, 4, false, &values, &indices), NSC_ERR_ARG, "out of range");
    cr_expect(!values && !indices, "nothing written");
    nsc_tensor *all[] = { x, v4, ids, empty };
    for (int i = 0; i < 4; i++) {
        nsc_free(all[i]);
    }
}

Test(reliability_inputs, matmul_index_join_loss_attention) {
    nsc_tensor *x = f32(NSC_SHAPE(2, 3), 0), *v4 = f32(NSC_SHAPE(4), 0);
    nsc_tensor *d = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(3, 2));
    nsc_tensor *s = nsc_scalar(NSC_F32, 1.0);
    REFUSED(nsc_matmul(x, d), NSC_ERR_DTYPE, "dtypes f32 (input 0) and f64 (input 1) differ");
    REFUSED(nsc_matmul(x, x), NSC_ERR_SHAPE, "matmul");
    REFUSED(nsc_matmul(s, x), NSC_ERR_SHAPE, "matmul");
    REFUSED(nsc_embedding(x, x), NSC_ERR_DTYPE, "ids dtype f32: expected i64");
    REFUSED(nsc_cat(0, NULL, 0), NSC_ERR_ARG, "expected at least one tensor");
    REFUSED(nsc_cat(2, ((nsc_tensor *[]){ x, v4 }), 0), NSC_ERR_SHAPE, "expected equal ranks");
    REFUSED(nsc_stack(2, ((nsc_tensor *[]){ x, v4 }), 0), NSC_ERR_SHAPE, "expected equal shapes");
    nsc_tensor *five = nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(2), 5);
    REFUSED(nsc_one_hot(five, 3), NSC_ERR_ARG, "id 5 at position [0] is out of range [0, 3)");
    nsc_tensor *t3 = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(3));
    REFUSED(nsc_cross_entropy(x, t3, NSC_REDUCTION_MEAN, -100), NSC_ERR_SHAPE,
            "expected scores [N, C] with target [N]");
    REFUSED(nsc_dropout(x, 1.5, true, NULL), NSC_ERR_ARG, "p 1.5");
    nsc_tensor *q = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1, 2, 3, 4));
    nsc_tensor *k5 = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1, 2, 3, 5));
    nsc_tensor *k64 = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(1, 2, 3, 4));
    nsc_tensor *q5 = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(1, 2, 5, 4));
    nsc_tensor *mask = nsc_ones(NSC_I64, NSC_CPU, NSC_SHAPE(2, 3));
    REFUSED(nsc_attention(q, k5, q, NULL, 1.0, true), NSC_ERR_SHAPE, "with one B, H, S and D");
    REFUSED(nsc_attention(q, k64, q, NULL, 1.0, true), NSC_ERR_DTYPE, "dtypes f32, f64, f32");
    REFUSED(nsc_attention(q5, q, q, NULL, 1.0, true), NSC_ERR_SHAPE,
            "causal attention of 5 queries over 3 keys");
    REFUSED(nsc_attention(q, q, q, mask, 1.0, true), NSC_ERR_SHAPE, "mask: expected [B, S]");
    REFUSED(nsc_attention(x, x, x, NULL, 1.0, false), NSC_ERR_SHAPE, "expected q [B,H,T,D]");
    nsc_tensor *all[] = { x, v4, d, s, five, t3, q, k5, k64, q5, mask };
    for (int i = 0; i < 11; i++) {
        nsc_free(all[i]);
    }
}

// Reading data: devices, sizes and buffers.
Test(reliability_inputs, reading_values) {
    nsc_tensor *x = f32(NSC_SHAPE(2, 3), 0);
    nsc_tensor *m = nsc_zeros(NSC_F32, NSC_META, NSC_SHAPE(2));
    REFUSED(nsc_tensor_data(m), NSC_ERR_DEVICE, "tensor is on meta: expected cpu");
    nsc_clear_error();
    cr_expect(isnan(nsc_tensor_item(x)));
    cr_expect(strstr(nsc_last_error(), "expected exactly one element, got 6"), "%s",
              nsc_last_error());
    float small[2];
    REFUSED_STATUS(nsc_tensor_copy_to(x, NSC_F32, small, sizeof small), NSC_ERR_ARG,
                   "6 elements of f32 need 24 bytes, got 8");
    REFUSED_STATUS(nsc_backward(x, NULL, false), NSC_ERR_STATE, "does not require grad");
    nsc_tensor *i64 = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2));
    REFUSED_STATUS(nsc_requires_grad_(i64, true), NSC_ERR_DTYPE, "");
    // A dim outside -ndim..ndim-1 gives -1 and says why (torch: IndexError).
    nsc_tensor *s = nsc_scalar(NSC_F32, 1);
    const char *why[3] = { "tensor_size: dim 5 is out of range for rank 1: expected -1..0",
                           "tensor_stride: dim -3 is out of range for rank 2: expected -2..1",
                           "tensor_size: dim 0 of a 0-dim tensor: it has no dims" };
    for (int i = 0; i < 3; i++) {
        nsc_clear_error();
        int64_t v = i == 0   ? nsc_tensor_size(i64, 5)
                    : i == 1 ? nsc_tensor_stride(x, -3)
                             : nsc_tensor_size(s, 0);
        cr_expect_eq(v, -1);
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG, "%s", why[i]);
        cr_expect(strstr(nsc_last_error(), why[i]), "%s", nsc_last_error());
    }
    nsc_clear_error();
    cr_expect_eq(nsc_tensor_size(x, -1), 3);
    cr_expect_eq(nsc_tensor_stride(x, 0), 3);
    cr_expect_eq(nsc_last_status(), NSC_OK, "a good dim records nothing");
    nsc_free(x);
    nsc_free(m);
    nsc_free(i64);
    nsc_free(s);
}

// --- NaN and Inf: the values PyTorch 1.13 gives (torch.softmax, torch.log, ...) ---

static const double INF = INFINITY;

// Checks t's values: NaN where want is NaN, the exact infinities, and
// finite values within 1e-6 relative.
static void expect_values(nsc_tensor *t, int n, const double *want, const char *what) {
    cr_assert(t, "%s: %s", what, nsc_last_error());
    cr_assert_eq(nsc_tensor_numel(t), n, "%s: %lld values", what, (long long)nsc_tensor_numel(t));
    double got[16];
    cr_assert_eq(nsc_tensor_copy_to(t, NSC_F64, got, sizeof got), NSC_OK);
    for (int i = 0; i < n; i++) {
        bool ok = isnan(want[i])   ? isnan(got[i])
                  : isinf(want[i]) ? got[i] == want[i]
                                   : fabs(got[i] - want[i]) <= 1e-6 * (1 + fabs(want[i]));
        cr_expect(ok, "%s[%d]: got %g, PyTorch gives %g", what, i, got[i], want[i]);
    }
    nsc_free(t);
}

static nsc_tensor *vec(int n, const float *v) {
    return nsc_from_data(NSC_F32, 1, (int64_t[]){ n }, v);
}

Test(reliability_inputs, nan_and_inf_as_pytorch) {
    float inf = INFINITY, nan = NAN;
    nsc_tensor *r = nsc_from_data(NSC_F32, NSC_SHAPE(2, 3), (float[]){ 1, inf, 2, 1, 2, 3 });
    expect_values(nsc_softmax(r, -1), 6,
                  (double[]){ NAN, NAN, NAN, 0.0900306, 0.2447285, 0.6652410 },
                  "softmax of a row holding inf");
    expect_values(nsc_softmax(r, 0), 6, (double[]){ 0.5, NAN, 0.2689414, 0.5, NAN, 0.7310586 },
                  "softmax over a column holding inf");
    nsc_tensor *ni = nsc_from_data(NSC_F32, NSC_SHAPE(2, 2), (float[]){ -inf, -inf, 0, -inf });
    expect_values(nsc_softmax(ni, -1), 4, (double[]){ NAN, NAN, 1, 0 }, "softmax of -inf rows");
    expect_values(nsc_log_softmax(ni, -1), 4, (double[]){ NAN, NAN, 0, -INF }, "log_softmax");
    nsc_tensor *l = vec(3, (float[]){ -1, 0, inf });
    expect_values(nsc_log(l), 3, (double[]){ NAN, -INF, INF }, "log");
    expect_values(nsc_sqrt(l), 3, (double[]){ NAN, 0, INF }, "sqrt");
    expect_values(nsc_rsqrt(l), 3, (double[]){ NAN, INF, 0 }, "rsqrt");
    nsc_tensor *mx = vec(3, (float[]){ 1, nan, 3 });
    expect_values(nsc_max(mx), 1, (double[]){ NAN }, "max with NaN");
    expect_values(nsc_min(mx), 1, (double[]){ NAN }, "min with NaN");
    expect_values(nsc_argmax_all(mx), 1, (double[]){ 1 }, "argmax: NaN is the largest");
    expect_values(nsc_argmin_all(mx), 1, (double[]){ 1 }, "argmin: NaN is the smallest");
    nsc_tensor *a = vec(2, (float[]){ nan, 1 }), *b = vec(2, (float[]){ 1, nan });
    expect_values(nsc_maximum(a, b), 2, (double[]){ NAN, NAN }, "maximum propagates NaN");
    expect_values(nsc_minimum(a, b), 2, (double[]){ NAN, NAN }, "minimum propagates NaN");
    expect_values(nsc_eq(a, a), 2, (double[]){ 0, 1 }, "NaN == NaN is false");
    expect_values(nsc_ne(a, a), 2, (double[]){ 1, 0 }, "NaN != NaN is true");
    nsc_tensor *s = vec(2, (float[]){ inf, -inf });
    expect_values(nsc_sum_all(s), 1, (double[]){ NAN }, "inf + -inf");
    expect_values(nsc_logsumexp(s, 0, NULL, false), 1, (double[]){ INF }, "logsumexp(inf, -inf)");
    nsc_tensor *ninf = vec(2, (float[]){ -inf, -inf });
    expect_values(nsc_logsumexp(ninf, 0, NULL, false), 1, (double[]){ -INF }, "logsumexp(-inf)");
    nsc_tensor *none = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0));
    expect_values(nsc_mean(none, 0, NULL, false), 1, (double[]){ NAN }, "mean of nothing");
    nsc_tensor *one = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    expect_values(nsc_var(one, 0, NULL, true, false), 1, (double[]){ NAN }, "unbiased var of 1");
    nsc_tensor *ln = nsc_from_data(NSC_F32, NSC_SHAPE(1, 3), (float[]){ 1, inf, 2 });
    expect_values(nsc_layer_norm(ln, 1, NULL, NULL, 1e-5), 3, (double[]){ NAN, NAN, NAN },
                  "layer_norm of a row holding inf");
    nsc_tensor *x3 = vec(3, (float[]){ nan, -inf, inf });
    expect_values(nsc_relu(x3), 3, (double[]){ NAN, 0, INF }, "relu");
    expect_values(nsc_tanh(x3), 3, (double[]){ NAN, -1, 1 }, "tanh");
    expect_values(nsc_sigmoid(x3), 3, (double[]){ NAN, 0, 1 }, "sigmoid");
    expect_values(nsc_exp(x3), 3, (double[]){ NAN, 0, INF }, "exp");
    expect_values(nsc_gelu(x3, NSC_GELU_ERF), 3, (double[]){ NAN, NAN, INF }, "gelu(-inf)");
    expect_values(nsc_gelu(x3, NSC_GELU_TANH), 3, (double[]){ NAN, NAN, INF }, "gelu_new");
    nsc_tensor *c = vec(2, (float[]){ nan, 5 });
    expect_values(nsc_clamp(c, 0, 1), 2, (double[]){ NAN, 1 }, "clamp keeps NaN");
    nsc_tensor *d = vec(3, (float[]){ 1, 0, -1 });
    expect_values(nsc_div_scalar(d, 0.0), 3, (double[]){ INF, NAN, -INF }, "division by zero");
    nsc_tensor *base = vec(2, (float[]){ 0, -8 }), *ex = vec(2, (float[]){ -1, 1.0f / 3 });
    expect_values(nsc_pow(base, ex), 2, (double[]){ INF, NAN }, "pow");
    nsc_tensor *logits = nsc_from_data(NSC_F32, NSC_SHAPE(1, 2), (float[]){ inf, 0 });
    nsc_tensor *target = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(1));
    expect_values(nsc_cross_entropy(logits, target, NSC_REDUCTION_MEAN, -100), 1, (double[]){ NAN },
                  "cross_entropy of an inf logit");
    nsc_tensor *all[] = { r,   ni, l,  mx, a, b,    s,  ninf,   none,
                          one, ln, x3, c,  d, base, ex, logits, target };
    for (int i = 0; i < NSCI_ARRAY_LEN(all); i++) {
        nsc_free(all[i]);
    }
}

// The i64 value of a one-element tensor t (freed), or a marker when t is NULL.
static int64_t i64_of(nsc_tensor *t) {
    int64_t v = 42;
    cr_expect(t, "%s", nsc_last_error());
    cr_expect(!t || nsc_tensor_dtype(t) == NSC_I64, "an i64 result");
    cr_expect(!t || nsc_tensor_copy_to(t, NSC_I64, &v, sizeof v) == NSC_OK);
    nsc_free(t);
    return v;
}

// A scalar argument converted into an integer tensor must fit int64, as torch
// checks it ("value cannot be converted to type int64_t without overflow"),
// where NaN and values past 2^63 became INT64_MIN. Bool and floats take any.
Test(reliability_inputs, scalars_that_do_not_fit_int64) {
    const char *range = "does not fit int64: expected a number in [-2^63, 2^63)";
    double two63 = 9223372036854775808.0;
    REFUSED(nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(1), NAN), NSC_ERR_ARG, "full: value nan does");
    REFUSED(nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(1), 1e30), NSC_ERR_ARG, range);
    REFUSED(nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(1), two63), NSC_ERR_ARG, range);
    REFUSED(nsc_full(NSC_I64, NSC_META, NSC_SHAPE(1), NAN), NSC_ERR_ARG, range);
    REFUSED(nsc_scalar(NSC_I64, -1e30), NSC_ERR_ARG, "scalar: value -1e+30 does not fit int64");
    cr_expect_eq(i64_of(nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(1), 9.2e18)), 9200000000000000000);
    cr_expect_eq(i64_of(nsc_scalar(NSC_I64, -two63)), INT64_MIN, "-2^63 fits");
    cr_expect_eq(i64_of(nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(1), -2.9)), -2, "truncated");
    nsc_tensor *x = nsc_arange(0, 3, 1, NSC_I64), *x_copy = nsc_clone(x);
    nsc_tensor *none = nsc_zeros(NSC_BOOL, NSC_CPU, NSC_SHAPE(3));
    REFUSED(nsc_full_like(x, INFINITY), NSC_ERR_ARG, "full_like: value inf does not fit");
    REFUSED_STATUS(nsc_fill_(x, NAN), NSC_ERR_ARG, "fill_: [3]: value nan does not fit int64");
    REFUSED(nsc_masked_fill(x, none, 1e30), NSC_ERR_ARG, "masked_fill: [3], [3]: value 1e+30");
    // clamp's integral bounds past int64 saturate (so (double)INT64_MAX, which
    // is 2^63, means "no upper bound" for an i64 tensor).
    nsc_tensor *five = nsc_full(NSC_I64, NSC_CPU, NSC_SHAPE(1), 5);
    cr_expect_eq(i64_of(nsc_clamp(five, 1e30, INFINITY)), INT64_MAX, "min 1e30 saturates");
    cr_expect_eq(i64_of(nsc_clamp(five, -INFINITY, -two63 * 2)), INT64_MIN, "max saturates");
    cr_expect_eq(i64_of(nsc_clamp(five, 0, two63)), 5, "max (double)INT64_MAX binds nothing");
    nsc_free(five);
    REFUSED(nsc_linspace(0, 1e30, 3, NSC_I64), NSC_ERR_ARG, "linspace: value 1e+30");
    REFUSED(nsc_linspace(NAN, 0, 3, NSC_I64), NSC_ERR_ARG, "linspace: value nan");
    expect_unchanged(x, x_copy, "refused fill_");
    nsc_tensor *one = nsc_ones(NSC_I64, NSC_CPU, NSC_SHAPE(1));
    cr_expect_eq(i64_of(nsc_add_scalar(one, 9.2e18)), 9200000000000000001,
                 "9.2e18 fits, as torch's i + 9200000000000000000");
    expect_values(nsc_clamp(x, 0.5, INFINITY), 3, (double[]){ 0.5, 1, 2 }, "clamp by 0.5: f32");
    expect_values(nsc_full(NSC_BOOL, NSC_CPU, NSC_SHAPE(1), NAN), 1, (double[]){ 1 }, "bool NaN");
    expect_values(nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1), NAN), 1, (double[]){ NAN }, "f32 NaN");
    nsc_tensor *all[] = { x, x_copy, none, one };
    for (int i = 0; i < NSCI_ARRAY_LEN(all); i++) {
        nsc_free(all[i]);
    }
}
