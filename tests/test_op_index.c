// Indexing, selections and joins beyond the case table: every error class
// (status, message with the op, shapes, value and position, inputs
// unchanged, no leak), topk's order for ties and NaN, sizes that spread over
// the thread pool against plain references, data-dependent shapes on META,
// out-of-memory sweeps, and gradients through the autograd engine.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tests/expect.h"
#include "tests/harness.h"

// --- helpers ---

// 0, 1, 2, ... as dtype.
static nsc_tensor *iota(nsc_dtype dtype, int ndim, const int64_t *shape) {
    nsc_tensor *r = nsc_arange(0, (double)nsci_numel(ndim, shape), 1, NSC_F64);
    nsc_tensor *v = nsc_reshape(r, ndim, shape);
    nsc_tensor *t = nsc_to_dtype(v, dtype);
    nsc_free(r);
    nsc_free(v);
    cr_assert(t);
    return t;
}

// Random integers in [0, high) of shape.
static nsc_tensor *ids(uint64_t seed, int64_t high, int ndim, const int64_t *shape) {
    nsc_generator *gen = nsc_generator_new(seed);
    nsc_tensor *t = nsc_randint(gen, 0, high, ndim, shape);
    nsc_generator_free(gen);
    cr_assert(t);
    return t;
}

static nsc_tensor *randn(uint64_t seed, nsc_dtype dtype, int ndim, const int64_t *shape) {
    nsc_generator *gen = nsc_generator_new(seed);
    nsc_tensor *t = nsc_randn(gen, dtype, ndim, shape);
    nsc_generator_free(gen);
    cr_assert(t);
    return t;
}

static void free_all(nsc_tensor **t, int n) {
    for (int i = 0; i < n; i++) {
        nsc_free(t[i]);
    }
}

// --- errors ---

Test(index_errors, out_of_range_ids_name_value_and_position) {
    nsc_tensor *w = iota(NSC_F32, NSC_SHAPE(5, 3));
    nsc_tensor *bad = nsct_from_values(NSC_I64, NSC_SHAPE(2, 2), (double[]){ 1, 4, 7, 0 });
    nsc_tensor *neg = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 0, -1, 2 });
    nsc_tensor *gi_col = nsct_from_values(NSC_I64, NSC_SHAPE(2), (double[]){ 2, 3 });
    nsc_tensor *src = iota(NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *two = nsct_from_values(NSC_I64, NSC_SHAPE(2), (double[]){ 4, 5 });
    nsc_tensor *gi = nsct_from_values(NSC_I64, NSC_SHAPE(2, 2), (double[]){ 0, 2, 3, 1 });
    nsc_tensor *ssrc = iota(NSC_F32, NSC_SHAPE(2, 2));
    double *w_before = nsct_values_of(w);
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_embedding(w, bad), NSC_ERR_ARG,
                      "embedding: [5,3], [2,2]: id 7 at position [1,0] is out of range [0, 5)");
    nsct_expect_error(nsc_embedding(w, neg), NSC_ERR_ARG, "id -1 at position [1] is out of range");
    nsct_expect_error(nsc_index_select(w, 0, neg), NSC_ERR_ARG,
                      "index_select: [5,3], [3]: index -1 at position [1] is out of range [0, 5)");
    nsct_expect_error(nsc_index_select(w, 1, gi_col), NSC_ERR_ARG,
                      "index 3 at position [1] is out of range [0, 3)");
    nsct_expect_error(
        nsc_index_add(w, 0, two, src), NSC_ERR_ARG,
        "index_add: [5,3], [2], [2,3]: index 5 at position [1] is out of range [0, 5)");
    nsct_expect_error(nsc_gather(w, 1, gi), NSC_ERR_ARG,
                      "gather: [5,3], [2,2]: index 3 at position [1,0] is out of range [0, 3)");
    nsct_expect_error(nsc_scatter_add(w, 1, gi, ssrc), NSC_ERR_ARG,
                      "scatter_add: [5,3], [2,2], [2,2]: index 3 at position [1,0]");
    nsct_expect_error(nsc_one_hot(bad, 5), NSC_ERR_ARG,
                      "one_hot: [2,2]: id 7 at position [1,0] is out of range [0, 5)");
    nsct_expect_error(nsc_one_hot(neg, 5), NSC_ERR_ARG, "id -1 at position [1]");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsct_expect_values(w, w_before);
    free(w_before);
    // A module call adds its context after the half-open range, which it
    // once took for an earlier context: "[0, 5, module Embedding)".
    nsc_module *emb = nsc_embedding_new(5, 3, NULL);
    nsct_expect_error(nsc_module_call(emb, 1, &bad), NSC_ERR_ARG,
                      "is out of range [0, 5) (module Embedding");
    nsc_module_free(emb);
    nsc_tensor *all[] = { w, bad, neg, gi_col, src, two, gi, ssrc };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index_errors, dtypes_ranks_and_shapes) {
    nsc_tensor *x = iota(NSC_F32, NSC_SHAPE(4, 3));
    nsc_tensor *fidx = nsct_from_values(NSC_F32, NSC_SHAPE(2), (double[]){ 0, 1 });
    nsc_tensor *idx = nsct_from_values(NSC_I64, NSC_SHAPE(2), (double[]){ 0, 1 });
    nsc_tensor *idx2 = nsct_from_values(NSC_I64, NSC_SHAPE(2, 1), (double[]){ 0, 1 });
    nsc_tensor *v = iota(NSC_F32, NSC_SHAPE(3));
    nsc_tensor *xd = iota(NSC_F64, NSC_SHAPE(2, 3));
    nsc_tensor *i51 = iota(NSC_I64, NSC_SHAPE(5, 1));
    nsc_tensor *s11 = iota(NSC_F32, NSC_SHAPE(1, 1));
    nsc_tensor *s33 = iota(NSC_F32, NSC_SHAPE(3, 3));
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_embedding(x, fidx), NSC_ERR_DTYPE,
                      "embedding: [4,3], [2]: ids dtype f32: "
                      "expected i64");
    nsct_expect_error(nsc_embedding(v, idx), NSC_ERR_SHAPE, "weight has rank 1: expected [V, C]");
    nsct_expect_error(nsc_index_select(x, 0, fidx), NSC_ERR_DTYPE, "index dtype f32: expected i64");
    nsct_expect_error(nsc_index_select(x, 2, idx), NSC_ERR_ARG, "dim 2 is out of range for rank 2");
    nsct_expect_error(nsc_index_select(x, 0, idx2), NSC_ERR_SHAPE, "index must be 1-D");
    nsct_expect_error(nsc_gather(x, 0, idx), NSC_ERR_SHAPE,
                      "gather: [4,3], [2]: index has rank 1 and x rank 2");
    nsct_expect_error(nsc_gather(x, 1, i51), NSC_ERR_SHAPE,
                      "index size 5 at dim 0 exceeds x's size 4");
    nsct_expect_error(nsc_scatter_add(x, 0, idx2, xd), NSC_ERR_DTYPE, "x is f32 and src f64");
    nsct_expect_error(nsc_scatter_add(x, 0, idx2, s11), NSC_ERR_SHAPE,
                      "index size 2 at dim 0 exceeds src's size 1");
    nsct_expect_error(nsc_index_add(x, 0, idx, xd), NSC_ERR_DTYPE, "x is f32 and src f64");
    nsct_expect_error(
        nsc_index_add(x, 0, idx, s33), NSC_ERR_SHAPE,
        "index_add: [4,3], [2], [3,3]: expected a 1-D index and src of x's shape with "
        "numel(index) = 2 at dim 0");
    nsct_expect_error(nsc_one_hot(fidx, 3), NSC_ERR_DTYPE, "one_hot: [2]: ids dtype f32");
    nsct_expect_error(nsc_one_hot(idx, -2), NSC_ERR_ARG, "num_classes -2: expected >= 0");
    nsct_expect_error(nsc_tril(v, 0), NSC_ERR_SHAPE, "tril: [3]: rank 1: expected at least 2 dims");
    nsct_expect_error(nsc_triu(v, 0), NSC_ERR_SHAPE, "triu: [3]: rank 1");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_tensor *all[] = { x, fidx, idx, idx2, v, xd, i51, s11, s33 };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index_errors, topk_arguments) {
    nsc_tensor *x = iota(NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *b = nsc_zeros(NSC_BOOL, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *v = NULL, *i = NULL;
    int64_t blocks = nsct_live_blocks();
    cr_expect_eq(nsc_topk(x, 4, 1, true, &v, &i), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "topk: [2,3]: k 4 is out of range [0, 3] for dim 1"));
    cr_expect_eq(nsc_topk(x, -1, 0, true, &v, &i), NSC_ERR_ARG);
    cr_expect_eq(nsc_topk(x, 1, 2, true, &v, &i), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "dim 2 is out of range for rank 2"));
    cr_expect_eq(nsc_topk(b, 1, 0, true, &v, &i), NSC_ERR_DTYPE);
    cr_expect(strstr(nsc_last_error(), "topk: [3]: dtype bool"));
    cr_expect_eq(nsc_topk(x, 1, 0, true, NULL, &i), NSC_ERR_ARG);
    cr_expect(v == NULL && i == NULL, "nothing is written on failure");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_clear_error();
    nsc_free(x);
    nsc_free(b);
}

Test(index_errors, joins) {
    nsc_tensor *a = iota(NSC_F32, NSC_SHAPE(2, 3));
    nsc_tensor *b = iota(NSC_F32, NSC_SHAPE(3, 2));
    nsc_tensor *c = iota(NSC_F32, NSC_SHAPE(2, 3, 1));
    nsc_tensor *s = nsc_scalar(NSC_F32, 1);
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_cat(2, (nsc_tensor *[]){ a, b }, 0), NSC_ERR_SHAPE,
                      "cat: [2,3], [3,2]: input 1 has size 2 at dim 1 and input 0 size 3: expected "
                      "equal sizes except at dim 0");
    nsct_expect_error(nsc_cat(2, (nsc_tensor *[]){ a, c }, 0), NSC_ERR_SHAPE,
                      "input 1 has rank 3 and input 0 rank 2");
    nsct_expect_error(nsc_cat(2, (nsc_tensor *[]){ a, s }, 0), NSC_ERR_SHAPE,
                      "input 1 is 0-dim: it cannot be concatenated");
    nsct_expect_error(nsc_cat(2, (nsc_tensor *[]){ a, a }, 2), NSC_ERR_ARG,
                      "dim 2 is out of range for rank 2");
    nsct_expect_error(nsc_cat(0, NULL, 0), NSC_ERR_ARG, "cat: expected at least one tensor");
    nsct_expect_error(nsc_cat(2, NULL, 0), NSC_ERR_ARG, "cat: the tensor list is NULL");
    nsct_expect_error(
        nsc_stack(2, (nsc_tensor *[]){ a, b }, 0), NSC_ERR_SHAPE,
        "stack: [2,3], [3,2]: input 1 is [3,2] and input 0 [2,3]: expected equal shapes");
    nsct_expect_error(nsc_stack(2, (nsc_tensor *[]){ a, a }, 3), NSC_ERR_ARG,
                      "dim 3 is out of range for a result of rank 3");
    nsct_expect_error(nsc_stack(0, NULL, 0), NSC_ERR_ARG, "stack: expected at least one tensor");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_tensor *all[] = { a, b, c, s };
    free_all(all, NSCI_ARRAY_LEN(all));
}

// A META tensor whose value will live on CUDA disagrees with a CPU tensor.
Test(index_errors, devices_and_null_inputs) {
    nsc_tensor *w = iota(NSC_F32, NSC_SHAPE(4, 3));
    nsc_tensor *i = nsc_empty(NSC_I64, NSC_META, NSC_SHAPE(2));
    i->target_device = NSC_CUDA;
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_embedding(w, i), NSC_ERR_DEVICE,
                      "embedding: [4,3], [2]: input 0 is on cpu and input 1 on cuda");
    nsct_expect_error(nsc_cat(2, (nsc_tensor *[]){ w, i }, 0), NSC_ERR_DEVICE, "cat: [4,3], [2]");
    // A NULL input keeps the first error.
    nsci_fail(NSC_ERR_SHAPE, "first failure");
    cr_expect_null(nsc_gather(NULL, 0, w));
    cr_expect_null(nsc_cat(2, (nsc_tensor *[]){ w, NULL }, 0));
    cr_expect_str_eq(nsc_last_error(), "first failure");
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_free(w);
    nsc_free(i);
}

// --- data-dependent shapes ---

Test(index, nonzero_and_inferred_one_hot_refuse_meta) {
    nsc_tensor *m = nsc_empty(NSC_F32, NSC_META, NSC_SHAPE(3, 4));
    nsc_tensor *mi = nsc_empty(NSC_I64, NSC_META, NSC_SHAPE(3));
    nsct_expect_error(nsc_nonzero(m), NSC_ERR_UNSUPPORTED, "nonzero: [3,4]: data-dependent shape");
    nsct_expect_error(nsc_one_hot(mi, -1), NSC_ERR_UNSUPPORTED,
                      "num_classes -1 needs the ids' values (data-dependent shape on META)");
    nsc_tensor *given = nsc_one_hot(mi, 6); // an explicit count needs no values
    cr_assert(given && nsc_tensor_device(given) == NSC_META && nsc_tensor_size(given, 1) == 6);
    nsc_tensor *ids3 = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 2, 0, 4 });
    nsc_tensor *inferred = nsc_one_hot(ids3, -1);
    cr_assert(inferred && nsc_tensor_size(inferred, 1) == 5, "max + 1 = 5 classes");
    nsct_expect_values(inferred, (double[]){ 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1 });
    nsc_tensor *none = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(0));
    nsct_expect_error(nsc_one_hot(none, -1), NSC_ERR_UNSUPPORTED, "there are none");
    nsc_tensor *all[] = { m, mi, given, ids3, inferred, none };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index, nonzero_counts_nan_and_orders_rows) {
    nsc_tensor *x = nsct_from_values(NSC_F64, NSC_SHAPE(2, 3), (double[]){ 0, NAN, 0, -0.0, 1, 2 });
    nsc_tensor *nz = nsc_nonzero(x);
    cr_assert(nz && nsc_tensor_size(nz, 0) == 3 && nsc_tensor_size(nz, 1) == 2);
    nsct_expect_values(nz, (double[]){ 0, 1, 1, 1, 1, 2 });
    nsc_free(nz);
    nsc_free(x);
}

// --- topk: order of ties and NaN ---

Test(index, topk_ties_take_the_lower_index_first_and_nan_is_largest) {
    nsc_tensor *x = nsct_from_values(NSC_F32, NSC_SHAPE(7), (double[]){ 1, 3, 3, 2, 3, NAN, 3 });
    nsc_tensor *v, *i;
    cr_assert_eq(nsc_topk(x, 4, 0, true, &v, &i), NSC_OK);
    nsct_expect_values(v, (double[]){ NAN, 3, 3, 3 });
    nsct_expect_values(i, (double[]){ 5, 1, 2, 4 });
    nsc_free(v);
    nsc_free(i);
    cr_assert_eq(nsc_topk(x, 7, 0, false, &v, &i), NSC_OK);
    nsct_expect_values(v, (double[]){ 1, 2, 3, 3, 3, 3, NAN });
    nsct_expect_values(i, (double[]){ 0, 3, 1, 2, 4, 6, 5 });
    nsc_free(v);
    nsc_free(i);
    nsc_free(x);
}

// The heap selection agrees with a reference sort on rows full of ties, for a
// small and a large k, across threads.
typedef struct keyed {
    double v;
    int64_t i;
} keyed;

static int by_value_desc(const void *pa, const void *pb) {
    const keyed *a = pa, *b = pb;
    return a->v != b->v ? (a->v < b->v ? 1 : -1) : (a->i > b->i) - (a->i < b->i);
}

Test(index, topk_large_rows_match_a_reference_sort) {
    const int64_t rows = 64, n = 3000;
    nsc_tensor *x = ids(11, 50, NSC_SHAPE(rows, n)); // many ties
    nsc_tensor *xf = nsc_to_dtype(x, NSC_F32);
    double *vals = nsct_values_of(x);
    keyed *line = malloc((size_t)n * sizeof *line);
    int64_t ks[] = { 7, 200 };
    for (int t = 0; t < 2; t++) {
        nsc_tensor *v, *i;
        cr_assert_eq(nsc_topk(xf, ks[t], 1, true, &v, &i), NSC_OK);
        double *gv = nsct_values_of(v), *gi = nsct_values_of(i);
        int bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            for (int64_t j = 0; j < n; j++) {
                line[j] = (keyed){ vals[r * n + j], j };
            }
            qsort(line, (size_t)n, sizeof *line, by_value_desc);
            for (int64_t j = 0; j < ks[t]; j++) {
                bad += gv[r * ks[t] + j] != line[j].v || gi[r * ks[t] + j] != (double)line[j].i;
            }
        }
        cr_expect_eq(bad, 0, "k %lld: %d entries differ from the reference", (long long)ks[t], bad);
        free(gv);
        free(gi);
        nsc_free(v);
        nsc_free(i);
    }
    free(line);
    free(vals);
    nsc_free(x);
    nsc_free(xf);
}

// --- large sizes against plain references ---

Test(index, embedding_and_index_add_spread_over_threads) {
    const int64_t V = 700, C = 96, N = 6000;
    nsc_tensor *w = randn(1, NSC_F32, NSC_SHAPE(V, C));
    nsc_tensor *t = ids(2, V, NSC_SHAPE(N / 60, 60));
    nsc_tensor *e = nsc_embedding(w, t);
    cr_assert(e && nsc_tensor_size(e, 2) == C);
    double *wv = nsct_values_of(w), *tv = nsct_values_of(t), *ev = nsct_values_of(e);
    int bad = 0;
    for (int64_t k = 0; k < N; k++) {
        bad += memcmp(&ev[k * C], &wv[(int64_t)tv[k] * C], (size_t)C * sizeof(double)) != 0;
    }
    cr_expect_eq(bad, 0, "%d rows differ", bad);
    // index_add of the rows back (what embedding's backward does) vs a serial sum.
    nsc_tensor *flat_ids = nsc_reshape(t, NSC_SHAPE(-1));
    nsc_tensor *rows = nsc_reshape(e, NSC_SHAPE(-1, C));
    nsc_tensor *zeros = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(V, C));
    nsc_tensor *acc = nsc_index_add(zeros, 0, flat_ids, rows);
    cr_assert(acc, "%s", nsc_last_error());
    double *want = calloc((size_t)(V * C), sizeof *want), *got = nsct_values_of(acc);
    for (int64_t k = 0; k < N; k++) {
        for (int64_t c = 0; c < C; c++) {
            want[(int64_t)tv[k] * C + c] += ev[k * C + c];
        }
    }
    bad = 0;
    for (int64_t k = 0; k < V * C; k++) {
        bad += fabs(got[k] - want[k]) > 1e-4 * (1 + fabs(want[k]));
    }
    cr_expect_eq(bad, 0, "%d sums differ", bad);
    free(want);
    free(got);
    free(wv);
    free(tv);
    free(ev);
    nsc_tensor *all[] = { w, t, e, flat_ids, rows, zeros, acc };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index, gather_and_scatter_add_are_adjoint_at_scale) {
    // <scatter_add(0, idx, s), y> == <s, gather(y, idx)> for any s and y.
    const int64_t R = 400, C = 300;
    nsc_tensor *idx = ids(3, R, NSC_SHAPE(500, C));
    nsc_tensor *s = randn(4, NSC_F64, NSC_SHAPE(500, C));
    nsc_tensor *y = randn(5, NSC_F64, NSC_SHAPE(R, C));
    nsc_tensor *zeros = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(R, C));
    nsc_tensor *sc = nsc_scatter_add(zeros, 0, idx, s);
    nsc_tensor *ga = nsc_gather(y, 0, idx);
    cr_assert(sc && ga, "%s", nsc_last_error());
    double *a = nsct_values_of(sc), *b = nsct_values_of(y), *p = nsct_values_of(s),
           *q = nsct_values_of(ga);
    double left = 0, right = 0;
    for (int64_t k = 0; k < R * C; k++) {
        left += a[k] * b[k];
    }
    for (int64_t k = 0; k < 500 * C; k++) {
        right += p[k] * q[k];
    }
    cr_expect(fabs(left - right) <= 1e-9 * (1 + fabs(left)), "%.17g vs %.17g", left, right);
    double *zv = nsct_values_of(zeros);
    cr_expect(zv[0] == 0 && zv[R * C - 1] == 0, "scatter_add is out-of-place");
    free(zv);
    free(a);
    free(b);
    free(p);
    free(q);
    nsc_tensor *all[] = { idx, s, y, zeros, sc, ga };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index, tril_triu_split_a_matrix_and_clamp_far_diagonals) {
    nsc_tensor *x = randn(6, NSC_F32, NSC_SHAPE(3, 70, 90));
    for (int64_t d = -100; d <= 100; d += 37) {
        nsc_tensor *lo = nsc_tril(x, d), *hi = nsc_triu(x, d + 1);
        nsc_tensor *sum = nsc_add(lo, hi);
        cr_assert(sum && nsc_allclose(sum, x, 0, 0, false), "diagonal %lld: %s", (long long)d,
                  nsc_last_error());
        nsc_free(lo);
        nsc_free(hi);
        nsc_free(sum);
    }
    nsc_tensor *all_kept = nsc_tril(x, INT64_MAX), *none_kept = nsc_tril(x, INT64_MIN);
    cr_assert(all_kept && none_kept);
    cr_expect(nsc_allclose(all_kept, x, 0, 0, false));
    double *z = nsct_values_of(none_kept);
    cr_expect(z[0] == 0 && z[3 * 70 * 90 - 1] == 0);
    free(z);
    nsc_free(all_kept);
    nsc_free(none_kept);
    nsc_free(x);
}

Test(index, cat_and_stack_of_mixed_layouts_and_dtypes) {
    nsc_tensor *a = iota(NSC_BOOL, NSC_SHAPE(2, 2));
    nsc_tensor *b0 = iota(NSC_I64, NSC_SHAPE(3, 2));
    nsc_tensor *b = nsc_transpose(b0, 0, 1); // [2, 3], non-contiguous
    nsc_tensor *empty = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0));
    nsc_tensor *ab = nsc_cat(2, (nsc_tensor *[]){ a, b }, 1);
    cr_assert(ab && nsc_tensor_dtype(ab) == NSC_I64 && nsc_tensor_size(ab, 1) == 5);
    nsct_expect_values(ab, (double[]){ 0, 1, 0, 2, 4, 1, 1, 1, 3, 5 });
    nsc_tensor *abe = nsc_cat(3, (nsc_tensor *[]){ empty, b, empty }, -1);
    cr_assert(abe && nsc_tensor_dtype(abe) == NSC_F32, "the skipped [0] still promotes");
    nsct_expect_values(abe, (double[]){ 0, 2, 4, 1, 3, 5 });
    nsc_tensor *st = nsc_stack(2, (nsc_tensor *[]){ b, b }, 2);
    cr_assert(st && nsc_tensor_size(st, 2) == 2);
    nsct_expect_values(st, (double[]){ 0, 0, 2, 2, 4, 4, 1, 1, 3, 3, 5, 5 });
    nsc_tensor *all[] = { a, b0, b, empty, ab, abe, st };
    free_all(all, NSCI_ARRAY_LEN(all));
}

// --- out of memory ---

typedef nsc_tensor *(*index_call)(nsc_tensor *x, nsc_tensor *i);

static nsc_tensor *call_embedding(nsc_tensor *x, nsc_tensor *i) {
    return nsc_embedding(x, i);
}
static nsc_tensor *call_index_add(nsc_tensor *x, nsc_tensor *i) {
    nsc_tensor *rows = nsc_index_select(x, 0, i);
    nsc_tensor *r = rows ? nsc_index_add(x, 0, i, rows) : NULL;
    nsc_free(rows);
    return r;
}
static nsc_tensor *call_gather_scatter(nsc_tensor *x, nsc_tensor *i) {
    nsc_tensor *column = nsc_unsqueeze(i, 1);
    nsc_tensor *idx = nsc_expand(column, NSC_SHAPE(40, 64));
    nsc_tensor *g = nsc_gather(x, 0, idx);
    nsc_tensor *r = nsc_scatter_add(x, 0, idx, g);
    nsc_tensor *temps[] = { column, idx, g };
    free_all(temps, NSCI_ARRAY_LEN(temps));
    return r;
}
static nsc_tensor *call_topk(nsc_tensor *x, nsc_tensor *i) {
    (void)i;
    nsc_tensor *v = NULL, *k = NULL;
    nsc_topk(x, 40, 0, true, &v, &k);
    nsc_free(k);
    return v;
}
static nsc_tensor *call_cat(nsc_tensor *x, nsc_tensor *i) {
    (void)i;
    nsc_tensor *part = nsc_slice(x, 0, 0, 10, 1);
    nsc_tensor *wide = nsc_to_dtype(part, NSC_F64);
    nsc_tensor *r = nsc_cat(3, (nsc_tensor *[]){ x, wide, part }, 0);
    nsc_free(part);
    nsc_free(wide);
    return r;
}
static nsc_tensor *call_nonzero(nsc_tensor *x, nsc_tensor *i) {
    (void)x;
    return nsc_nonzero(i);
}

Test(index, out_of_memory_sweep) {
    index_call calls[] = { call_embedding, call_index_add, call_gather_scatter,
                           call_topk,      call_cat,       call_nonzero };
    nsc_tensor *big = randn(7, NSC_F32, NSC_SHAPE(64, 50));
    nsc_tensor *x = nsc_transpose(big, 0, 1); // [50, 64], non-contiguous: kernels copy
    nsc_tensor *i = ids(8, 50, NSC_SHAPE(40));
    for (int k = 0; k < NSCI_ARRAY_LEN(calls); k++) {
        bool done = false;
        for (int64_t n = 1; n < 100 && !done; n++) {
            int64_t blocks = nsct_live_blocks();
            nsc_mem_fail_after(n);
            nsc_tensor *r = calls[k](x, i);
            nsc_mem_fail_after(0);
            done = r != NULL;
            if (!done) {
                cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "call %d, n %lld: %s", k, (long long)n,
                             nsc_last_error());
                cr_expect_eq(nsct_live_blocks(), blocks, "call %d leaked at n %lld", k,
                             (long long)n);
            }
            nsc_free(r);
            nsc_clear_error();
        }
        cr_expect(done, "call %d never succeeded", k);
    }
    nsc_free(x);
    nsc_free(big);
    nsc_free(i);
}

// --- gradients through the autograd engine ---

// loss = sum(y * weights) with weights 1, 2, 3, ... so that each position's
// gradient is recognisable.
static nsc_tensor *weighted_sum(nsc_tensor *y) {
    nsc_tensor *w = iota(nsc_tensor_dtype(y), nsc_tensor_ndim(y), nsc_tensor_shape(y));
    nsc_tensor *w1 = nsc_add_scalar(w, 1);
    nsc_tensor *p = nsc_mul(y, w1);
    nsc_tensor *loss = nsc_sum_all(p);
    nsc_free(w);
    nsc_free(w1);
    nsc_free(p);
    cr_assert(loss, "%s", nsc_last_error());
    return loss;
}

Test(index_grad, embedding_rows_accumulate_for_repeated_ids) {
    nsc_tensor *w = iota(NSC_F64, NSC_SHAPE(4, 2));
    cr_assert_eq(nsc_requires_grad_(w, true), NSC_OK);
    nsc_tensor *t = nsct_from_values(NSC_I64, NSC_SHAPE(3), (double[]){ 2, 0, 2 });
    nsc_tensor *y = nsc_embedding(w, t);
    nsc_tensor *loss = weighted_sum(y);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    // Row 2 collects positions 0 and 2 (weights 1, 2 and 5, 6); row 0 position 1.
    nsct_expect_values(nsc_tensor_get_grad(w), (double[]){ 3, 4, 0, 0, 6, 8, 0, 0 });
    nsc_tensor *all[] = { w, t, y, loss };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index_grad, topk_gradient_lands_on_the_selected_positions) {
    nsc_tensor *x =
        nsct_from_values(NSC_F64, NSC_SHAPE(2, 4), (double[]){ 1, 9, 3, 7, 8, 2, 6, 4 });
    cr_assert_eq(nsc_requires_grad_(x, true), NSC_OK);
    nsc_tensor *v, *i;
    cr_assert_eq(nsc_topk(x, 2, 1, true, &v, &i), NSC_OK);
    nsc_tensor *loss = weighted_sum(v);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsct_expect_values(nsc_tensor_get_grad(x), (double[]){ 0, 1, 0, 2, 3, 0, 4, 0 });
    nsc_tensor *all[] = { x, v, i, loss };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index_grad, cat_gives_each_input_its_slice_in_its_own_dtype) {
    nsc_tensor *a = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 1));
    nsc_tensor *b = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(2, 2));
    nsc_tensor *skipped = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0));
    nsc_tensor *ins[] = { a, skipped, b };
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(nsc_requires_grad_(ins[k], true), NSC_OK);
    }
    nsc_tensor *y = nsc_cat(3, ins, 1);
    nsc_tensor *loss = weighted_sum(y);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *ga = nsc_tensor_get_grad(a), *gb = nsc_tensor_get_grad(b);
    cr_assert(ga && gb);
    cr_expect_eq(nsc_tensor_dtype(ga), NSC_F32);
    nsct_expect_values(ga, (double[]){ 1, 4 });
    nsct_expect_values(gb, (double[]){ 2, 3, 5, 6 });
    nsc_tensor *gs = nsc_tensor_get_grad(skipped);
    cr_expect(!gs || nsc_tensor_numel(gs) == 0);
    nsc_tensor *all[] = { a, b, skipped, y, loss };
    free_all(all, NSCI_ARRAY_LEN(all));
}

Test(index_grad, stack_and_gather_on_meta_give_meta_gradients) {
    nsc_tensor *x = nsc_empty(NSC_F64, NSC_META, NSC_SHAPE(3, 4));
    cr_assert_eq(nsc_requires_grad_(x, true), NSC_OK);
    nsc_tensor *i = nsc_empty(NSC_I64, NSC_META, NSC_SHAPE(3, 2));
    nsc_tensor *g = nsc_gather(x, 1, i);
    nsc_tensor *s = nsc_stack(2, (nsc_tensor *[]){ g, g }, 0);
    nsc_tensor *loss = nsc_sum_all(s);
    cr_assert(loss, "%s", nsc_last_error());
    int64_t data_bytes = nsc_mem_stats_get().data_bytes;
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *gx = nsc_tensor_get_grad(x);
    cr_assert(gx && nsc_tensor_device(gx) == NSC_META && nsc_tensor_size(gx, 1) == 4);
    cr_expect_eq(nsc_mem_stats_get().data_bytes, data_bytes, "META backward allocated data");
    nsc_tensor *all[] = { x, i, g, s, loss };
    free_all(all, NSCI_ARRAY_LEN(all));
}
