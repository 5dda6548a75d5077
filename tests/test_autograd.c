// Autograd semantics: leaves and .grad, retain_grad, detach, grad mode,
// backward's rules (summing, broadcast reduction, retain_graph, errors),
// in-place writes through views, version counters, hooks, and memory.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/harness.h"

static nsc_tensor *leaf(nsc_dtype dtype, int ndim, const int64_t *shape, double fill) {
    nsc_tensor *t = nsc_full(dtype, NSC_CPU, ndim, shape, fill);
    cr_assert(t && nsc_requires_grad_(t, true) == NSC_OK);
    return t;
}

static double at(nsc_tensor *t, int64_t i) {
    double *v = malloc((size_t)nsc_tensor_numel(t) * sizeof *v);
    nsc_tensor_copy_to(t, NSC_F64, v, (size_t)nsc_tensor_numel(t) * sizeof *v);
    double r = v[i];
    free(v);
    return r;
}

static void expect_all(nsc_tensor *t, double want) {
    cr_assert(t, "no tensor");
    for (int64_t i = 0; i < nsc_tensor_numel(t); i++) {
        cr_expect_float_eq(at(t, i), want, 1e-6, "element %lld", (long long)i);
    }
}

Test(autograd, leaf_gradients_accumulate_across_backwards) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(2, 3), 1.0);
    for (int pass = 1; pass <= 2; pass++) {
        nsc_tensor *y = nsc_mul_scalar(x, 3.0);
        nsc_tensor *s = nsc_sum_all(y);
        cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
        expect_all(nsc_tensor_get_grad(x), 3.0 * pass);
        nsc_free(s);
        nsc_free(y);
    }
    cr_expect(nsc_tensor_is_leaf(x));
    cr_expect_eq(nsc_tensor_set_grad(x, NULL), NSC_OK);
    cr_expect_null(nsc_tensor_get_grad(x));
    nsc_free(x);
    cr_expect_eq(nsct_live_blocks(), before);
}

// As torch: a later backward adds into the .grad tensor already there (the
// same tensor, updated in place), and .grad never shares memory with a
// gradient someone else holds (here a hook that keeps every gradient it sees).
static nsc_status keep_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    nsc_tensor **kept = ctx;
    (void)replacement;
    nsc_free(*kept);
    *kept = nsc_retain(grad);
    return NSC_OK;
}

Test(autograd, grad_is_added_in_place_and_never_aliases_a_held_gradient) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(4), 1.0);
    nsc_tensor *kept = NULL;
    cr_assert_gt(nsc_tensor_register_hook(x, keep_hook, &kept, NULL), 0);
    nsc_tensor *first = NULL;
    for (int pass = 1; pass <= 3; pass++) {
        nsc_tensor *y = nsc_mul_scalar(x, 2.0);
        nsc_tensor *s = nsc_sum_all(y);
        cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
        nsc_tensor *g = nsc_tensor_get_grad(x);
        first = pass == 1 ? g : first;
        cr_expect_eq(g, first, "pass %d: .grad replaced instead of added into", pass);
        expect_all(g, 2.0 * pass);
        expect_all(kept, 2.0); // the hook's gradient, untouched by the accumulation
        nsc_free(s);
        nsc_free(y);
    }
    // A gradient only the engine holds becomes .grad without a copy; writing
    // into .grad must still leave every other tensor alone.
    nsc_tensor *z = leaf(NSC_F32, NSC_SHAPE(4), 1.0);
    nsc_tensor *zz = nsc_mul(z, z);
    nsc_tensor *s = nsc_sum_all(zz);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_fill_(nsc_tensor_get_grad(z), 7.0), NSC_OK);
    expect_all(z, 1.0);
    expect_all(zz, 1.0);
    // A .grad set to an expanded tensor cannot take an in-place add: the sum
    // replaces it, and the tensor it expanded is left alone.
    nsc_tensor *w = leaf(NSC_F32, NSC_SHAPE(2, 3), 1.0);
    nsc_tensor *row = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1, 3), 5.0);
    nsc_tensor *wide = nsc_expand(row, NSC_SHAPE(2, 3));
    cr_assert_eq(nsc_tensor_set_grad(w, wide), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *ws = nsc_sum_all(w);
    cr_assert_eq(nsc_backward(ws, NULL, false), NSC_OK, "%s", nsc_last_error());
    expect_all(nsc_tensor_get_grad(w), 6.0);
    expect_all(row, 5.0);
    nsc_tensor *all[] = { ws, wide, row, w, s, zz, z, kept, x };
    for (int i = 0; i < 9; i++) {
        nsc_free(all[i]);
    }
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(autograd, gradients_that_meet_are_summed_and_broadcasts_reduced) {
    nsc_tensor *x = leaf(NSC_F64, NSC_SHAPE(2, 3), 2.0);
    nsc_tensor *b = leaf(NSC_F64, NSC_SHAPE(3), 1.0);
    nsc_tensor *xx = nsc_mul(x, x);       // x used twice: d/dx = 2x
    nsc_tensor *y = nsc_add(xx, b);       // b broadcast over rows
    nsc_tensor *z = nsc_add(y, x);        // x again: + 1
    nsc_tensor *s = nsc_sum_all(z);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    expect_all(nsc_tensor_get_grad(x), 5.0);
    nsc_tensor *gb = nsc_tensor_get_grad(b);
    cr_assert_eq(nsc_tensor_ndim(gb), 1);
    expect_all(gb, 2.0); // summed over the 2 broadcast rows
    nsc_tensor *all[] = { s, z, y, xx, b, x };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
}

Test(autograd, retain_grad_keeps_a_non_leaf_gradient) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(4), 1.0);
    nsc_tensor *h = nsc_mul_scalar(x, 2.0);
    cr_assert_eq(nsc_retain_grad(h), NSC_OK);
    nsc_tensor *y = nsc_mul_scalar(h, 5.0);
    nsc_tensor *s = nsc_sum_all(y);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK);
    expect_all(nsc_tensor_get_grad(h), 5.0);
    expect_all(nsc_tensor_get_grad(x), 10.0);
    cr_expect_null(nsc_tensor_get_grad(y), "a non-leaf without retain_grad keeps nothing");
    cr_expect_not(nsc_tensor_is_leaf(h));
    nsc_free(s);
    nsc_free(y);
    nsc_free(h);
    nsc_free(x);
}

Test(autograd, detach_and_no_grad_record_nothing) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(3), 1.0);
    nsc_tensor *d = nsc_detach(x);
    cr_expect_not(nsc_tensor_requires_grad(d));
    cr_expect(nsc_tensor_shares_storage(d, x));
    nsc_no_grad_begin();
    nsc_no_grad_begin();
    nsc_tensor *a = nsc_mul_scalar(x, 2.0);
    nsc_no_grad_end();
    nsc_tensor *b = nsc_mul_scalar(x, 2.0); // still inside the outer scope
    nsc_no_grad_end();
    nsc_tensor *c = nsc_mul_scalar(x, 2.0);
    cr_expect_not(nsc_tensor_requires_grad(a));
    cr_expect_not(nsc_tensor_requires_grad(b));
    cr_expect(nsc_tensor_requires_grad(c));
    cr_expect(nsc_set_grad_enabled(false));
    nsc_tensor *e = nsc_exp(x);
    cr_expect_not(nsc_tensor_requires_grad(e));
    cr_expect_not(nsc_set_grad_enabled(true));
    // Writing into a detached alias of a leaf is allowed (it is not a view for autograd).
    cr_expect_eq(nsc_fill_(d, 3.0), NSC_OK);
    nsc_tensor *all[] = { e, c, b, a, d, x };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
}

// Grad mode is one flag: set_grad_enabled(true) inside no_grad records and
// returns the real previous value (false), and no_grad_end restores what its
// begin saved. torch: with torch.no_grad(): prev = torch.is_grad_enabled();
// torch.set_grad_enabled(True); (x*2).requires_grad -> prev False, True.
Test(autograd, set_grad_enabled_works_inside_no_grad) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(2), 1.0);
    nsc_no_grad_begin();
    cr_expect_not(nsc_set_grad_enabled(true), "the previous value is off");
    cr_expect(nsc_grad_enabled());
    nsc_tensor *y = nsc_mul_scalar(x, 2.0);
    cr_expect(nsc_tensor_requires_grad(y), "recorded inside no_grad once enabled");
    nsc_no_grad_begin();
    cr_expect_not(nsc_grad_enabled());
    nsc_no_grad_end();
    cr_expect(nsc_grad_enabled(), "the inner scope restores on");
    nsc_no_grad_end();
    cr_expect(nsc_grad_enabled());
    // Off before the scope stays off after it, whatever was set inside.
    cr_expect(nsc_set_grad_enabled(false));
    nsc_no_grad_begin();
    nsc_set_grad_enabled(true);
    nsc_no_grad_end();
    cr_expect_not(nsc_grad_enabled());
    nsc_set_grad_enabled(true);
    nsc_no_grad_end(); // unmatched: changes nothing
    cr_expect(nsc_grad_enabled());
    nsc_free(y);
    nsc_free(x);
}

Test(autograd, backward_refuses_bad_roots) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(2, 2), 1.0);
    nsc_tensor *y = nsc_mul_scalar(x, 2.0);
    cr_expect_eq(nsc_backward(y, NULL, false), NSC_ERR_SHAPE);
    cr_expect(strstr(nsc_last_error(), "[2,2]"), "%s", nsc_last_error());
    nsc_tensor *wrong = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    cr_expect_eq(nsc_backward(y, wrong, false), NSC_ERR_SHAPE);
    nsc_tensor *plain = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    cr_expect_eq(nsc_backward(plain, NULL, false), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "does not require grad"));
    nsc_tensor *i64 = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(2));
    cr_expect_eq(nsc_requires_grad_(i64, true), NSC_ERR_DTYPE);
    cr_expect_eq(nsc_requires_grad_(y, true), NSC_ERR_STATE, "a non-leaf cannot be marked");
    nsc_tensor *g = nsc_ones_like(y);
    cr_expect_eq(nsc_backward(y, g, false), NSC_OK, "an explicit gradient works");
    expect_all(nsc_tensor_get_grad(x), 2.0);
    nsc_tensor *all[] = { g, i64, plain, wrong, y, x };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
}

Test(autograd, retain_graph_allows_a_second_backward) {
    nsc_tensor *x = leaf(NSC_F64, NSC_SHAPE(3), 2.0);
    nsc_tensor *y = nsc_exp(x);
    nsc_tensor *s = nsc_sum_all(y);
    cr_assert_eq(nsc_backward(s, NULL, true), NSC_OK);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    expect_all(nsc_tensor_get_grad(x), 2.0 * 7.38905609893065);
    cr_expect_eq(nsc_backward(s, NULL, false), NSC_ERR_STATE, "the saved tensors are gone");
    cr_expect(strstr(nsc_last_error(), "retain_graph"), "%s", nsc_last_error());
    nsc_free(s);
    nsc_free(y);
    nsc_free(x);
}

// h = x * 2; h[:, 0] = 0; h.sum().backward() gives x.grad 2 with column 0 zero.
Test(autograd, writing_into_a_view_of_a_non_leaf) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(2, 3), 1.0);
    nsc_tensor *h = nsc_mul_scalar(x, 2.0);
    nsc_tensor *col = nsc_select(h, 1, 0);
    cr_assert_eq(nsc_zero_(col), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *s = nsc_sum_all(h);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *g = nsc_tensor_get_grad(x);
    double want[] = { 0, 2, 2, 0, 2, 2 };
    for (int i = 0; i < 6; i++) {
        cr_expect_float_eq(at(g, i), want[i], 1e-6, "element %d", i);
    }
    nsc_free(s);
    nsc_free(col);
    nsc_free(h);
    nsc_free(x);
}

// Copying a value that requires grad into a view of a tensor that does not
// makes the base require grad (copy-slices), and the source gets the slice.
Test(autograd, copying_into_a_view_routes_the_source_gradient) {
    nsc_tensor *src = leaf(NSC_F32, NSC_SHAPE(2), 1.0);
    nsc_tensor *h = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *col = nsc_select(h, 1, 2);
    cr_assert_eq(nsc_copy_(col, src), NSC_OK, "%s", nsc_last_error());
    cr_expect(nsc_tensor_requires_grad(h));
    nsc_tensor *w = nsc_arange(0, 6, 1, NSC_F32);
    nsc_tensor *w2 = nsc_reshape(w, NSC_SHAPE(2, 3));
    nsc_tensor *p = nsc_mul(h, w2);
    nsc_tensor *s = nsc_sum_all(p);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *g = nsc_tensor_get_grad(src);
    cr_expect_float_eq(at(g, 0), 2.0, 1e-6);
    cr_expect_float_eq(at(g, 1), 5.0, 1e-6);
    nsc_tensor *all[] = { s, p, w2, w, col, h, src };
    for (int i = 0; i < 7; i++) {
        nsc_free(all[i]);
    }
}

// y = tanh(x); y[:, 0] = 0; y.sum().backward() fails: tanh saved y.
Test(autograd, writing_into_a_saved_output_is_detected) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(2, 3), 0.5);
    nsc_tensor *y = nsc_tanh(x);
    nsc_tensor *col = nsc_select(y, 1, 0);
    cr_assert_eq(nsc_zero_(col), NSC_OK);
    nsc_tensor *s = nsc_sum_all(y);
    cr_expect_eq(nsc_backward(s, NULL, false), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "tanh"), "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "in-place"), "%s", nsc_last_error());
    cr_expect_null(nsc_tensor_get_grad(x), "a failed backward writes no gradient");
    nsc_free(s);
    nsc_free(col);
    nsc_free(y);
    nsc_free(x);
}

Test(autograd, in_place_on_a_leaf_that_requires_grad_is_refused) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(3), 1.0);
    nsc_tensor *v = nsc_slice(x, 0, 0, 2, 1);
    nsc_tensor *copy = nsc_clone(x);
    cr_expect_eq(nsc_zero_(x), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "zero_: [3]: a leaf that requires grad is written in place"),
              "%s", nsc_last_error());
    cr_expect_eq(nsc_fill_(v, 2.0), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "fill_: [2]: a view of a leaf that requires grad"), "%s",
              nsc_last_error());
    cr_expect(nsc_allclose(x, copy, 0, 0, false), "nothing was written");
    nsc_no_grad_begin();
    cr_expect_eq(nsc_zero_(x), NSC_OK, "allowed under no_grad");
    nsc_no_grad_end();
    nsc_free(copy);
    nsc_free(v);
    nsc_free(x);
}

// A view made a leaf (v = x[0:4]; v.requires_grad_()) is refused as a leaf,
// and a view of it as a view of a leaf, though its base (the storage root)
// is x, which needs no grad; nsc wrote w and let the tape lose it. torch:
// x=torch.tensor([1.,2,3,4]); v=x[0:4]; v.requires_grad_(); v[0:2].mul_(2) -> "a view
// of a leaf Variable that requires grad is being used in an in-place operation."
// (v*v).sum().backward() -> v.grad [2, 4, 6, 8], x.grad None.
Test(autograd, in_place_into_a_view_of_a_leaf_view_is_refused) {
    nsc_tensor *x = nsc_from_data(NSC_F64, NSC_SHAPE(4), (double[]){ 1, 2, 3, 4 });
    nsc_tensor *v = nsc_slice(x, 0, 0, 4, 1);
    cr_assert_eq(nsc_requires_grad_(v, true), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *copy = nsc_clone(x);
    cr_expect_eq(nsc_fill_(v, 9.0), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "fill_: [4]: a leaf that requires grad is written"), "%s",
              nsc_last_error());
    nsc_tensor *w = nsc_slice(v, 0, 0, 2, 1);
    nsc_tensor *two = nsc_scalar(NSC_F64, 2.0);
    cr_expect_eq(nsc_mul_(w, two), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "mul_: [2], []: a view of a leaf that requires grad"), "%s",
              nsc_last_error());
    cr_expect(nsc_allclose(x, copy, 0, 0, false), "nothing was written");
    nsc_tensor *sq = nsc_mul(v, v);
    nsc_tensor *loss = nsc_sum_all(sq);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    for (int64_t i = 0; i < 4; i++) {
        cr_expect_float_eq(at(nsc_tensor_get_grad(v), i), 2.0 * (double)(i + 1), 1e-12);
    }
    cr_expect_null(nsc_tensor_get_grad(x));
    nsc_tensor *all[] = { loss, sq, two, w, copy, v, x };
    for (int i = 0; i < 7; i++) {
        nsc_free(all[i]);
    }
}

// mul_ needs its destination's old value: it is kept before the write.
Test(autograd, in_place_mul_uses_the_value_before_the_write) {
    nsc_tensor *x = leaf(NSC_F64, NSC_SHAPE(3), 3.0);
    nsc_tensor *w = leaf(NSC_F64, NSC_SHAPE(3), 2.0);
    nsc_tensor *h = nsc_add_scalar(x, 0.0);
    cr_assert_eq(nsc_mul_(h, w), NSC_OK);
    nsc_tensor *s = nsc_sum_all(h);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    expect_all(nsc_tensor_get_grad(x), 2.0);
    expect_all(nsc_tensor_get_grad(w), 3.0);
    nsc_tensor *all[] = { s, h, w, x };
    for (int i = 0; i < 4; i++) {
        nsc_free(all[i]);
    }
}

// A view taken before its base was written regenerates its history.
Test(autograd, a_stale_view_follows_its_base_history) {
    nsc_tensor *x = leaf(NSC_F64, NSC_SHAPE(2, 2), 1.0);
    nsc_tensor *h = nsc_mul_scalar(x, 3.0);
    nsc_tensor *row = nsc_select(h, 0, 0);
    nsc_tensor *other = nsc_select(h, 0, 1);
    cr_assert_eq(nsc_zero_(other), NSC_OK);
    nsc_tensor *s = nsc_sum_all(row);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *g = nsc_tensor_get_grad(x);
    double want[] = { 3, 3, 0, 0 };
    for (int i = 0; i < 4; i++) {
        cr_expect_float_eq(at(g, i), want[i], 1e-9, "element %d", i);
    }
    nsc_tensor *all[] = { s, other, row, h, x };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
}

// --- hooks ---

typedef struct hook_log {
    int calls[4];
    int order[8];
    int n_order;
    double scale;
    int64_t self_handle;
    nsc_tensor *owner;
} hook_log;

static nsc_status read_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    hook_log *log = ctx;
    (void)grad;
    (void)replacement;
    log->calls[0]++;
    log->order[log->n_order++] = 0;
    return NSC_OK;
}

static nsc_status scale_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    hook_log *log = ctx;
    log->calls[1]++;
    log->order[log->n_order++] = 1;
    *replacement = nsc_mul_scalar(grad, log->scale);
    return *replacement ? NSC_OK : nsc_last_status();
}

static nsc_status zero_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    hook_log *log = ctx;
    log->calls[2]++;
    *replacement = nsc_zeros_like(grad);
    return NSC_OK;
}

static nsc_status remove_self_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    hook_log *log = ctx;
    (void)grad;
    (void)replacement;
    log->calls[3]++;
    return nsc_tensor_remove_hook(log->owner, log->self_handle);
}

Test(autograd, hooks_read_scale_and_zero_gradients_mid_network) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(3), 1.0);
    nsc_tensor *y = leaf(NSC_F32, NSC_SHAPE(3), 1.0);
    nsc_tensor *h = nsc_mul_scalar(x, 2.0);  // x's branch: scaled by the hook
    nsc_tensor *k = nsc_mul_scalar(y, 2.0);  // y's branch: zeroed by the hook
    hook_log log = { .scale = 10.0 };
    cr_assert_gt(nsc_tensor_register_hook(h, read_hook, &log, NULL), 0);
    cr_assert_gt(nsc_tensor_register_hook(h, scale_hook, &log, NULL), 0);
    cr_assert_gt(nsc_tensor_register_hook(k, zero_hook, &log, NULL), 0);
    nsc_tensor *hk = nsc_add(h, k);
    nsc_tensor *s = nsc_sum_all(hk);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(log.calls[0], 1);
    cr_expect_eq(log.calls[1], 1);
    cr_expect_eq(log.order[0], 0, "hooks run in registration order");
    cr_expect_eq(log.order[1], 1);
    expect_all(nsc_tensor_get_grad(x), 20.0); // 1 * 10 (hook) * 2 (mul)
    expect_all(nsc_tensor_get_grad(y), 0.0);
    nsc_tensor *all[] = { s, hk, k, h, y, x };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
}

typedef struct square_log {
    int calls;
    nsc_tensor *seen; // the last gradient the hook saw
} square_log;

static nsc_status square_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    square_log *log = ctx;
    log->calls++;
    nsc_free(log->seen);
    log->seen = nsc_clone(grad);
    *replacement = nsc_mul(grad, grad);
    return *replacement ? NSC_OK : nsc_last_status();
}

// A leaf reached by several edges runs its hooks once, on their sum, then
// accumulates (torch's AccumulateGrad); nsc ran them per edge on each part
// (x.grad 13, not 25). torch: x=torch.ones(2,dtype=torch.float64,requires_grad=True);
// x.register_hook(lambda g: g*g); ((x*2).sum()+(x*3).sum()).backward() -> hook sees [5, 5]
// once, x.grad [25, 25]; a second backward adds 25 -> [50, 50].
// x3=torch.tensor([1.,2],dtype=torch.float64,requires_grad=True); same hook;
// (x3*x3).sum().backward() -> hook sees [2, 4], x3.grad [4, 16].
Test(autograd, a_leaf_hook_runs_once_on_the_sum_of_its_edges) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *x = leaf(NSC_F64, NSC_SHAPE(2), 1.0);
    square_log log = { 0 };
    cr_assert_gt(nsc_tensor_register_hook(x, square_hook, &log, NULL), 0);
    for (int pass = 1; pass <= 2; pass++) {
        nsc_tensor *a = nsc_mul_scalar(x, 2.0), *b = nsc_mul_scalar(x, 3.0);
        nsc_tensor *sa = nsc_sum_all(a), *sb = nsc_sum_all(b);
        nsc_tensor *loss = nsc_add(sa, sb);
        cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
        cr_expect_eq(log.calls, pass, "once per backward");
        expect_all(log.seen, 5.0);
        expect_all(nsc_tensor_get_grad(x), 25.0 * pass);
        nsc_tensor *all[] = { loss, sb, sa, b, a };
        for (int i = 0; i < 5; i++) {
            nsc_free(all[i]);
        }
    }
    nsc_tensor *x3 = nsc_from_data(NSC_F64, NSC_SHAPE(2), (double[]){ 1, 2 });
    cr_assert_eq(nsc_requires_grad_(x3, true), NSC_OK);
    square_log log3 = { 0 };
    cr_assert_gt(nsc_tensor_register_hook(x3, square_hook, &log3, NULL), 0);
    nsc_tensor *sq = nsc_mul(x3, x3); // one node, both edges into x3
    nsc_tensor *loss = nsc_sum_all(sq);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(log3.calls, 1);
    cr_expect_float_eq(at(log3.seen, 0), 2.0, 1e-12);
    cr_expect_float_eq(at(log3.seen, 1), 4.0, 1e-12);
    cr_expect_float_eq(at(nsc_tensor_get_grad(x3), 0), 4.0, 1e-12);
    cr_expect_float_eq(at(nsc_tensor_get_grad(x3), 1), 16.0, 1e-12);
    nsc_tensor *all[] = { loss, sq, x3, log3.seen, x, log.seen };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(autograd, hooks_can_be_removed_also_from_inside) {
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(2), 1.0);
    hook_log log = { .scale = 3.0, .owner = x };
    int64_t scale = nsc_tensor_register_hook(x, scale_hook, &log, NULL);
    log.self_handle = nsc_tensor_register_hook(x, remove_self_hook, &log, NULL);
    cr_assert_eq(nsc_tensor_remove_hook(x, scale), NSC_OK);
    cr_expect_eq(nsc_tensor_remove_hook(x, scale), NSC_ERR_ARG, "already removed");
    for (int pass = 0; pass < 2; pass++) {
        nsc_tensor *s = nsc_sum_all(x);
        cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
        nsc_free(s);
    }
    cr_expect_eq(log.calls[1], 0, "the removed hook never ran");
    cr_expect_eq(log.calls[3], 1, "the self-removing hook ran once");
    expect_all(nsc_tensor_get_grad(x), 2.0);
    nsc_free(x);
}

// After backward without retain_graph only what the caller holds remains:
// the leaf and its new .grad (a tensor: header, storage record, data).
Test(autograd, memory_returns_after_backward) {
    int64_t start = nsct_live_blocks();
    nsc_tensor *x = leaf(NSC_F32, NSC_SHAPE(64, 64), 0.5);
    int64_t with_x = nsct_live_blocks();
    nsc_tensor *a = nsc_tanh(x);
    nsc_tensor *b = nsc_mul(a, a);
    nsc_tensor *c = nsc_exp(b);
    nsc_tensor *loss = nsc_sum_all(c);
    nsc_free(a);
    nsc_free(b);
    nsc_free(c);
    cr_expect_gt(nsct_live_blocks(), with_x + 12, "the tape holds saved tensors");
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK);
    nsc_free(loss);
    cr_expect_eq(nsct_live_blocks(), with_x + 3);
    nsc_free(x);
    cr_expect_eq(nsct_live_blocks(), start);
}

// Ops of more than 32 inputs (a cat or stack of 70 leaves): recording read
// bit i of the 32-bit save masks with 1u << i, undefined from input 32 on
// (UBSan stops the asan build there). Every input's gradient arrives:
// d/dx_i sum(cat(xs)^2) = 2 x_i, as torch gives.
Test(autograd, cat_and_stack_of_70_leaves_differentiate_every_input) {
    enum {
        N = 70
    };
    nsc_tensor *xs[N];
    for (int i = 0; i < N; i++) {
        xs[i] = leaf(NSC_F32, NSC_SHAPE(1, 2), i);
    }
    for (int op = 0; op < 2; op++) {
        nsc_tensor *joined = op == 0 ? nsc_cat(N, xs, 0) : nsc_stack(N, xs, 1);
        nsc_tensor *sq = nsc_mul(joined, joined);
        nsc_tensor *loss = nsc_sum_all(sq);
        cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
        for (int i = 0; i < N; i++) {
            expect_all(nsc_tensor_get_grad(xs[i]), 2.0 * i);
            nsc_tensor_set_grad(xs[i], NULL);
        }
        nsc_free(joined);
        nsc_free(sq);
        nsc_free(loss);
    }
    for (int i = 0; i < N; i++) {
        nsc_free(xs[i]);
    }
}
