// norm (torch.linalg.vector_norm) beyond the case table: the refusals
// (status, message, no leak), ord 0's count, NaN and infinity rules, zero
// vectors, ties and NaN in the backward (torch 1.13's values, noted per
// line), tiny norms, one-element norms, a widened dtype's gradient, long
// runs split in chunks, and META shapes. The value tests run on the CPU and,
// where a GPU (or the CUDA emulator) is present, on CUDA too.
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "nsc/cuda.h"
#include "tests/expect.h"
#include "tests/harness.h"

// The devices the value tests run on; returns their count.
static int devices(nsc_device out[2]) {
    int n = 0;
    out[n++] = NSC_CPU;
    if (nsc_cuda_available() && nsc_cuda_init() == NSC_OK) {
        out[n++] = NSC_CUDA;
    }
    return n;
}

// values (row-major, as dtype) on device d.
static nsc_tensor *on(nsc_device d, nsc_dtype dtype, int ndim, const int64_t *shape,
                      const double *values) {
    nsc_tensor *cpu = nsct_from_values(dtype, ndim, shape, values);
    if (d == NSC_CPU) {
        return cpu;
    }
    nsc_tensor *t = nsc_to(cpu, d);
    cr_assert(t, "%s", nsc_last_error());
    nsc_free(cpu);
    return t;
}

// The norm of x over every dim, then its gradient (x requires grad).
static double norm_and_grad(nsc_tensor *x, double ord, nsc_tensor **grad) {
    nsc_requires_grad_(x, true);
    nsc_tensor *n = nsc_norm(x, ord, 0, NULL, false);
    cr_assert(n, "%s", nsc_last_error());
    double v = nsc_tensor_item(n);
    cr_assert(nsc_backward(n, NULL, false) == NSC_OK, "%s", nsc_last_error());
    *grad = nsc_tensor_get_grad(x);
    nsc_free(n);
    return v;
}

Test(norm, refusals_name_the_problem_and_change_nothing) {
    nsc_tensor *x = nsct_from_values(NSC_F32, NSC_SHAPE(2, 3), (double[]){ 1, 2, 3, 4, 5, 6 });
    nsc_tensor *xd = nsc_to_dtype(x, NSC_F64);
    nsc_tensor *xi = nsc_to_dtype(x, NSC_I64);
    nsc_tensor *empty = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 0, 3));
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_norm(xi, 2, 0, NULL, false), NSC_ERR_DTYPE,
                      "norm: [2,3]: input dtype i64: expected f32 or f64");
    nsct_expect_error(nsc_vector_norm(xd, 2, 0, NULL, false, NSC_F32), NSC_ERR_DTYPE,
                      "norm: [2,3]: dtype f32: expected f32 or f64, no narrower than the input's "
                      "f64");
    nsct_expect_error(nsc_vector_norm(x, 2, 0, NULL, false, NSC_BOOL), NSC_ERR_DTYPE,
                      "norm: [2,3]: dtype bool");
    nsct_expect_error(nsc_norm(x, NAN, 0, NULL, false), NSC_ERR_ARG,
                      "norm: [2,3]: ord nan: expected a number, inf or -inf");
    nsct_expect_error(nsc_norm(x, 2, NSC_DIMS(2), false), NSC_ERR_ARG,
                      "norm: [2,3]: dim 2 is out of range for rank 2");
    nsct_expect_error(nsc_norm(x, 2, NSC_DIMS(0, -2), false), NSC_ERR_ARG,
                      "norm: [2,3]: dim -2 appears more than once");
    // torch: "cannot compute the inf norm on the dimension 1 because this
    // dimension is empty and the operation does not have an identity".
    nsct_expect_error(nsc_norm(empty, HUGE_VAL, NSC_DIMS(1), false), NSC_ERR_SHAPE,
                      "norm: [2,0,3]: ord inf over a size-0 dim: this norm has no value");
    nsct_expect_error(nsc_norm(empty, -1, 0, NULL, false), NSC_ERR_SHAPE,
                      "norm: [2,0,3]: ord -1 over a size-0 dim");
    nsct_expect_error(nsc_norm(NULL, 2, 0, NULL, false), NSC_ERR_ARG, "norm: input 0 is NULL");
    cr_expect_eq(nsct_live_blocks(), blocks);
    // Reducing a non-empty dim of an empty tensor is fine (torch too).
    nsc_tensor *ok = nsc_norm(empty, HUGE_VAL, NSC_DIMS(2), false);
    cr_assert(ok, "%s", nsc_last_error());
    cr_expect(ok->ndim == 2 && ok->shape[0] == 2 && ok->shape[1] == 0);
    nsc_tensor *zeros = nsc_norm(empty, 2, NSC_DIMS(1), false); // ord >= 0: 0 over nothing
    nsct_expect_values(zeros, (double[]){ 0, 0, 0, 0, 0, 0 });
    nsc_tensor *all[] = { x, xd, xi, empty, ok, zeros };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
}

Test(norm, ord_0_counts_nonzeros_and_nan_propagates) {
    nsc_device dev[2];
    for (int d = 0; d < devices(dev); d++) {
        nsc_tensor *x = on(dev[d], NSC_F32, NSC_SHAPE(5), (double[]){ 0, 1.5, 0, -2, NAN });
        cr_expect_eq(nsct_item_free(nsc_norm(x, 0, 0, NULL, false)), 3.0); // NaN counts (torch)
        cr_expect(isnan(nsct_item_free(nsc_norm(x, 2, 0, NULL, false))));
        cr_expect(isnan(nsct_item_free(nsc_norm(x, 1, 0, NULL, false))));
        cr_expect(isnan(nsct_item_free(nsc_norm(x, HUGE_VAL, 0, NULL, false))));
        cr_expect(isnan(nsct_item_free(nsc_norm(x, -HUGE_VAL, 0, NULL, false))));
        nsc_tensor *first = on(dev[d], NSC_F64, NSC_SHAPE(2), (double[]){ NAN, 1 });
        cr_expect(isnan(nsct_item_free(nsc_norm(first, HUGE_VAL, 0, NULL, false))));
        // torch: vector_norm([inf, 1], -1) = 1; vector_norm([1, -3, 3, 0], -1) = 0.
        nsc_tensor *inf = on(dev[d], NSC_F64, NSC_SHAPE(2), (double[]){ INFINITY, 1 });
        cr_expect_eq(nsct_item_free(nsc_norm(inf, -1, 0, NULL, false)), 1.0);
        nsc_tensor *v = on(dev[d], NSC_F64, NSC_SHAPE(4), (double[]){ 1, -3, 3, 0 });
        cr_expect_eq(nsct_item_free(nsc_norm(v, -1, 0, NULL, false)), 0.0);
        cr_expect_eq(nsct_item_free(nsc_norm(v, -HUGE_VAL, 0, NULL, false)), 0.0);
        cr_expect_eq(nsct_item_free(nsc_norm(v, HUGE_VAL, 0, NULL, false)), 3.0);
        nsc_free(x);
        nsc_free(first);
        nsc_free(inf);
        nsc_free(v);
    }
}

// Over one element the norm is |x| itself, with no overflow through x^2 or
// rounding through (|x|^p)^(1/p) (torch 2: vector_norm([[1e200], [3.]], p,
// 1) is [1e200, 3] for p 2 and 0.3; 1.13 gave inf for p 2).
Test(norm, one_element_is_its_absolute_value) {
    nsc_device dev[2];
    const double ords[] = { 2, 0.3, 3, 1, -1, HUGE_VAL };
    for (int d = 0; d < devices(dev); d++) {
        nsc_tensor *x = on(dev[d], NSC_F64, NSC_SHAPE(3, 1), (double[]){ 1e200, -3, 0 });
        for (size_t i = 0; i < sizeof ords / sizeof ords[0]; i++) {
            nsc_tensor *n = nsc_norm(x, ords[i], NSC_DIMS(1), false);
            cr_assert(n, "%s", nsc_last_error());
            nsct_expect_values(n, (double[]){ 1e200, 3, 0 });
            nsc_free(n);
        }
        nsc_tensor *n0 = nsc_norm(x, 0, NSC_DIMS(1), true);
        nsct_expect_values(n0, (double[]){ 1, 1, 0 });
        nsc_free(n0);
        nsc_free(x);
    }
}

Test(norm, backward_of_ties_zeros_and_nan_is_torchs) {
    static const struct {
        double x[4], ord, norm, grad[4];
    } rows[] = {
        // torch.linalg.vector_norm(torch.tensor(x), ord).backward(), torch 1.13
        { { 1, -3, 3, 0 }, INFINITY, 3, { 0, -0.5, 0.5, 0 } }, // the tie shares the gradient
        { { 1, -3, 3, 0 }, -INFINITY, 0, { 0, 0, 0, 0 } },
        { { 1, -3, 3, 0 }, 1, 7, { 1, -1, 1, 0 } },
        { { 1, -3, 3, 0 }, -1, 0, { 0, 0, 0, 0 } },
        { { 1, -3, 3, 0 }, 0, 3, { 0, 0, 0, 0 } },
        // sgn(NaN) is 0; the NaN is the +-inf norm's "max"
        { { NAN, 1, 2, -2 }, 1, NAN, { 0, 1, 1, -1 } },
        { { NAN, 1, 2, -2 }, INFINITY, NAN, { 0, 0, 0, 0 } },
        { { NAN, 1, 2, -2 }, -INFINITY, NAN, { 0, 0, 0, 0 } },
        { { NAN, 1, 2, -2 }, 2, NAN, { NAN, NAN, NAN, NAN } },
        { { NAN, 1, 2, -2 }, 3, NAN, { NAN, NAN, NAN, NAN } },
        // p < 1 with a zero element: its gradient is 0 (torch masks x == 0)
        { { 1, 0, 0, 0 }, 0.5, 1, { 1, 0, 0, 0 } },
    };
    nsc_device dev[2];
    for (int d = 0; d < devices(dev); d++) {
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            nsc_tensor *x = on(dev[d], NSC_F64, NSC_SHAPE(4), rows[r].x);
            nsc_tensor *grad;
            double n = norm_and_grad(x, rows[r].ord, &grad);
            cr_expect(n == rows[r].norm || (isnan(n) && isnan(rows[r].norm)), "row %zu: %g", r, n);
            cr_assert(grad, "row %zu: no gradient", r);
            nsct_expect_values(grad, rows[r].grad);
            nsc_free(x);
        }
        // A zero vector has gradient 0 for every ord (torch masks n == 0 and x == 0).
        const double ords[] = { 2, 1, 3, 0.5, INFINITY, -1, 0 };
        for (size_t i = 0; i < sizeof ords / sizeof ords[0]; i++) {
            nsc_tensor *z = on(dev[d], NSC_F64, NSC_SHAPE(2), (double[]){ 0, 0 });
            nsc_tensor *grad;
            cr_expect_eq(norm_and_grad(z, ords[i], &grad), 0.0, "ord %g", ords[i]);
            cr_assert(grad, "ord %g: no gradient", ords[i]);
            nsct_expect_values(grad, (double[]){ 0, 0 });
            nsc_free(z);
        }
    }
}

// A norm below 1 / FLT_MAX: x / n is formed before the gradient multiplies
// it, so g / n cannot overflow (torch with dtype=torch.float64 gives [1, 0]).
Test(norm, a_tiny_f32_norm_has_a_finite_gradient) {
    nsc_device dev[2];
    for (int d = 0; d < devices(dev); d++) {
        nsc_tensor *x = on(dev[d], NSC_F32, NSC_SHAPE(2), (double[]){ 1e-39, 0 });
        nsc_tensor *grad;
        cr_expect_eq(norm_and_grad(x, 2, &grad), (double)1e-39f);
        nsct_expect_values(grad, (double[]){ 1, 0 });
        nsc_free(x);
    }
}

Test(norm, a_widened_dtype_gives_an_f32_gradient) {
    nsc_tensor *x = nsct_from_values(NSC_F32, NSC_SHAPE(2, 2), (double[]){ 3, 4, 0, 0 });
    nsc_requires_grad_(x, true);
    nsc_tensor *n = nsc_vector_norm(x, 2, NSC_DIMS(1), false, NSC_F64);
    cr_assert(n, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_dtype(n), NSC_F64);
    nsct_expect_values(n, (double[]){ 5, 0 });
    nsc_tensor *s = nsc_sum_all(n);
    cr_assert(nsc_backward(s, NULL, false) == NSC_OK, "%s", nsc_last_error());
    nsc_tensor *grad = nsc_tensor_get_grad(x);
    cr_expect_eq(nsc_tensor_dtype(grad), NSC_F32);
    nsct_expect_values(grad, (double[]){ (double)0.6f, (double)0.8f, 0, 0 });
    nsc_free(s);
    nsc_free(n);
    nsc_free(x);
}

Test(norm, long_runs_split_in_chunks_match_double) {
    const int64_t n = 200003; // several chunks of one output
    double *v = malloc((size_t)n * sizeof *v);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        v[i] = (i % 7 == 0) ? 0.0 : 0.5 + (double)(i % 13) / 8.0;
    }
    v[150001] = -9.5; // a tie of the largest |x|, far from the first chunk
    v[150002] = 9.5;
    double sumsq = 0;
    for (int64_t i = 0; i < n; i++) {
        sumsq += v[i] * v[i];
        zeros += v[i] == 0.0;
    }
    nsc_device dev[2];
    for (int d = 0; d < devices(dev); d++) {
        nsc_tensor *x = on(dev[d], NSC_F64, NSC_SHAPE(n), v);
        cr_expect_float_eq(nsct_item_free(nsc_norm(x, 2, 0, NULL, false)), sqrt(sumsq),
                           1e-14 * sqrt(sumsq));
        cr_expect_eq(nsct_item_free(nsc_norm(x, HUGE_VAL, 0, NULL, false)), 9.5);
        cr_expect_eq(nsct_item_free(nsc_norm(x, -HUGE_VAL, 0, NULL, false)), 0.0);
        cr_expect_eq(nsct_item_free(nsc_norm(x, 0, 0, NULL, false)), (double)(n - zeros));
        nsc_free(x);
    }
    v[190000] = NAN; // in the last chunk: every ord but 0 is NaN
    for (int d = 0; d < devices(dev); d++) {
        nsc_tensor *x = on(dev[d], NSC_F64, NSC_SHAPE(n), v);
        const double ords[] = { 2, 1, 3, HUGE_VAL, -HUGE_VAL };
        for (size_t i = 0; i < sizeof ords / sizeof ords[0]; i++) {
            cr_expect(isnan(nsct_item_free(nsc_norm(x, ords[i], 0, NULL, false))), "ord %g",
                      ords[i]);
        }
        cr_expect_eq(nsct_item_free(nsc_norm(x, 0, 0, NULL, false)), (double)(n - zeros));
        nsc_free(x);
    }
    free(v);
}

Test(norm, meta_inputs_get_shapes_and_dtypes) {
    nsc_tensor *x = nsc_zeros(NSC_F32, NSC_META, NSC_SHAPE(2, 3, 4));
    nsc_tensor *n = nsc_vector_norm(x, 3, NSC_DIMS(0, 2), true, NSC_F64);
    cr_assert(n, "%s", nsc_last_error());
    cr_expect(n->ndim == 3 && n->shape[0] == 1 && n->shape[1] == 3 && n->shape[2] == 1);
    cr_expect_eq(nsc_tensor_dtype(n), NSC_F64);
    cr_expect_eq(nsc_tensor_device(n), NSC_META);
    nsc_free(n);
    nsc_free(x);
}

// Values within 1e-12 (relative) of want.
static void expect_near(nsc_tensor *t, const double *want, const char *what) {
    double *v = nsct_values_of(t);
    for (int64_t i = 0; i < nsc_tensor_numel(t); i++) {
        cr_expect(fabs(v[i] - want[i]) <= 1e-12 * fmax(1.0, fabs(want[i])),
                  "%s %lld: %.17g vs %.17g", what, (long long)i, v[i], want[i]);
    }
    free(v);
}

// F.cosine_similarity and F.normalize against torch 2.15 (float64; printed
// by the script in the comment of each value), including a zero vector and
// one shorter than eps, whose gradients follow torch 2's clamp.
Test(norm, cosine_similarity_and_normalize_are_torchs) {
    nsc_device dev[2];
    for (int d = 0; d < devices(dev); d++) {
        const double ys[] = { 1, 0, 0, 2, 0, 1 };
        const double xs[2][6] = { { 0, 0, 0, 1, 2, 2 }, { 1e-9, 0, 0, 1, 2, 2 } };
        // c = F.cosine_similarity(x, y, dim=1); c.sum().backward()
        const double want_c[2][2] = { { 0.0, 0.5962847939999438 }, { 0.1, 0.5962847939999438 } };
        const double want_gx[2][6] = {
            { 1e8, 0, 0, 0.23188853099997822, -0.1325077319999875, 0.016563466499998486 },
            { 9e7, 0, 0, 0.23188853099997822, -0.1325077319999875, 0.016563466499998486 }
        };
        const double want_gy[6] = {
            0, 0, 0, -0.08944271909999155, 0.2981423969999719, 0.17888543819998315
        };
        for (int k = 0; k < 2; k++) {
            nsc_tensor *x = on(dev[d], NSC_F64, NSC_SHAPE(2, 3), xs[k]);
            nsc_tensor *y = on(dev[d], NSC_F64, NSC_SHAPE(2, 3), ys);
            nsc_requires_grad_(x, true);
            nsc_requires_grad_(y, true);
            nsc_tensor *c = nsc_cosine_similarity(x, y, 1, 1e-8);
            cr_assert(c, "%s", nsc_last_error());
            expect_near(c, want_c[k], "cosine");
            nsc_tensor *s = nsc_sum_all(c);
            cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
            expect_near(nsc_tensor_get_grad(x), want_gx[k], "grad x1");
            expect_near(nsc_tensor_get_grad(y), want_gy, "grad x2");
            nsc_free(s);
            nsc_free(c);
            nsc_free(x);
            nsc_free(y);
        }
        // Broadcast first: x1 [1,3] against x2 [2,3], along dim 1 and dim 0.
        nsc_tensor *a = on(dev[d], NSC_F64, NSC_SHAPE(1, 3), (double[]){ 1, 2, 3 });
        nsc_tensor *b = on(dev[d], NSC_F64, NSC_SHAPE(2, 3), (double[]){ 3, 2, 1, -1, 0, 1 });
        nsc_tensor *b1 = nsc_cosine_similarity(a, b, 1, 1e-8);
        nsc_tensor *b0 = nsc_cosine_similarity(a, b, 0, 1e-8);
        cr_assert(b1 && b0, "%s", nsc_last_error());
        expect_near(b1, (double[]){ 0.7142857142857143, 0.37796447300922725 }, "dim 1");
        expect_near(b0, (double[]){ 0.44721359549995787, 0.7071067811865475, 1.0 }, "dim 0");
        // n = F.normalize(z, dim=1); n.sum().backward(); and p=1
        nsc_tensor *z = on(dev[d], NSC_F64, NSC_SHAPE(2, 2), (double[]){ 3, 4, 0, 0 });
        nsc_requires_grad_(z, true);
        nsc_tensor *n = nsc_normalize(z, 2, 1, 1e-12);
        cr_assert(n, "%s", nsc_last_error());
        expect_near(n, (double[]){ 0.6, 0.8, 0, 0 }, "normalize");
        nsc_tensor *s = nsc_sum_all(n);
        cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
        expect_near(nsc_tensor_get_grad(z), (double[]){ 0.032, -0.024, 1e12, 1e12 }, "grad");
        nsc_tensor *row = on(dev[d], NSC_F64, NSC_SHAPE(1, 2), (double[]){ 3, -4 });
        nsc_tensor *n1 = nsc_normalize(row, 1, -1, 1e-12);
        expect_near(n1, (double[]){ 0.42857142857142855, -0.5714285714285714 }, "p 1");
        nsc_tensor *all[] = { a, b, b1, b0, z, n, s, row, n1 };
        for (int i = 0; i < 9; i++) {
            nsc_free(all[i]);
        }
    }
    nsc_tensor *p = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *q = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(4, 3));
    int64_t blocks = nsct_live_blocks();
    nsct_expect_error(nsc_cosine_similarity(p, q, 1, 1e-8), NSC_ERR_SHAPE,
                      "cosine_similarity: [2,3] and [4,3] do not broadcast");
    nsct_expect_error(nsc_cosine_similarity(p, p, 2, 1e-8), NSC_ERR_ARG,
                      "cosine_similarity: [2,3] and [2,3]: dim 2 is out of range for rank 2");
    nsct_expect_error(nsc_cosine_similarity(p, NULL, 1, 1e-8), NSC_ERR_ARG, "x2 NULL");
    nsct_expect_error(nsc_normalize(p, 2, 1, -1), NSC_ERR_ARG, "normalize: eps -1");
    nsct_expect_error(nsc_normalize(p, 2, 3, 1e-12), NSC_ERR_ARG, "norm: [2,3]: dim 3 is out");
    cr_expect_eq(nsct_live_blocks(), blocks);
    nsc_free(p);
    nsc_free(q);
}
