// Gradients through in-place writes, hooks and backward's arguments, each
// against torch's answer (torch 2.15, written next to each expectation):
// slice assignment, a write that reads its own destination, a written
// destination that needs no gradient, hook errors and replacements, the
// root gradient's dtype, many inputs, a second backward, META tensors.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/harness.h"

static nsc_tensor *vec(const double *v, int64_t n, bool grad) {
    nsc_tensor *t = nsc_from_data(NSC_F64, NSC_SHAPE(n), v);
    cr_assert(t && (!grad || nsc_requires_grad_(t, true) == NSC_OK), "%s", nsc_last_error());
    return t;
}

static void expect_values(nsc_tensor *t, const double *want, int64_t n, const char *what) {
    cr_assert(t, "%s: no tensor (%s)", what, nsc_last_error());
    cr_assert_eq(nsc_tensor_numel(t), n, "%s", what);
    double got[16];
    cr_assert_eq(nsc_tensor_copy_to(t, NSC_F64, got, (size_t)n * sizeof *got), NSC_OK);
    for (int64_t i = 0; i < n; i++) {
        cr_expect_float_eq(got[i], want[i], 1e-12, "%s[%lld]: %g, want %g", what, (long long)i,
                           got[i], want[i]);
    }
}

static void backward_sum(nsc_tensor *t) {
    nsc_tensor *s = nsc_sum_all(t);
    cr_assert_eq(nsc_backward(s, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_free(s);
}

// y = 3x; y[1:3] = x2 (a contiguous slice: the copy's gradient region was
// an alias of memory the backward zeroes).
Test(autograd_writes, slice_assignment_passes_the_sources_gradient) {
    nsc_tensor *x = vec((double[]){ 1, 2, 3 }, 3, true);
    nsc_tensor *x2 = vec((double[]){ 1, 2 }, 2, true);
    nsc_tensor *y = nsc_mul_scalar(x, 3.0);
    nsc_tensor *slice = nsc_slice(y, 0, 1, 3, 1);
    cr_assert_eq(nsc_copy_(slice, x2), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *sq = nsc_mul(y, y); // y = [3, 1, 2]
    backward_sum(sq);
    expect_values(nsc_tensor_get_grad(x), (double[]){ 18, 0, 0 }, 3, "x.grad"); // torch: 18 0 0
    expect_values(nsc_tensor_get_grad(x2), (double[]){ 2, 4 }, 2, "x2.grad");   // torch: 2 4
    nsc_tensor *all[] = { x, x2, y, slice, sq };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
}

// The write changes an input its backward reads: y.mul_(y), and a.mul_(b)
// with a and b overlapping views of y. torch refuses both with a version
// error; nsc keeps the value each read before the write, so the gradient
// is the one torch gives for the same computation on a clone.
Test(autograd_writes, a_write_reading_its_own_destination_differentiates_the_old_values) {
    nsc_tensor *x = vec((double[]){ 1, 2, 3 }, 3, true);
    nsc_tensor *y = nsc_mul_scalar(x, 1.0);
    cr_assert_eq(nsc_mul_(y, y), NSC_OK, "%s", nsc_last_error());
    backward_sum(y);
    expect_values(nsc_tensor_get_grad(x), (double[]){ 2, 4, 6 }, 3, "x.grad of sum(x*x)");
    nsc_free(y);
    nsc_free(x);

    x = vec((double[]){ 1, 2, 3 }, 3, true);
    y = nsc_mul_scalar(x, 1.0);
    nsc_tensor *a = nsc_slice(y, 0, 0, 2, 1), *b = nsc_slice(y, 0, 1, 3, 1);
    cr_assert_eq(nsc_mul_(a, b), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *w = vec((double[]){ 1, 10, 100 }, 3, false);
    nsc_tensor *weighted = nsc_mul(y, w);
    backward_sum(weighted);
    // torch, with b.clone(): 2 31 120
    expect_values(nsc_tensor_get_grad(x), (double[]){ 2, 31, 120 }, 3, "x.grad (views)");
    nsc_tensor *all[] = { x, y, a, b, w, weighted };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
}

Test(autograd_writes, a_destination_without_grad_keeps_its_old_value_for_the_source) {
    nsc_tensor *a = vec((double[]){ 1, 2, 3 }, 3, false);
    nsc_tensor *x = vec((double[]){ 4, 5, 6 }, 3, true);
    cr_assert_eq(nsc_mul_(a, x), NSC_OK, "%s", nsc_last_error());
    backward_sum(a);
    expect_values(nsc_tensor_get_grad(x), (double[]){ 1, 2, 3 }, 3, "x.grad"); // torch: 1 2 3
    nsc_tensor *b = vec((double[]){ 1, 2, 3 }, 3, false);
    nsc_tensor *x2 = vec((double[]){ 4, 5 }, 2, true);
    nsc_tensor *tail = nsc_slice(b, 0, 1, 3, 1);
    cr_assert_eq(nsc_mul_(tail, x2), NSC_OK, "%s", nsc_last_error());
    backward_sum(b);
    expect_values(nsc_tensor_get_grad(x2), (double[]){ 2, 3 }, 2, "x2.grad"); // torch: 2 3
    nsc_tensor *all[] = { a, x, b, x2, tail };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
}

static nsc_status failing_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    (void)grad, (void)replacement, (void)ctx;
    return NSC_ERR_STATE; // no message recorded: backward must name the hook
}

static nsc_status resizing_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    (void)grad;
    *replacement = *(int *)ctx ? nsc_ones(NSC_F64, NSC_CPU, NSC_SHAPE(5))
                               : nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    return NSC_OK;
}

Test(autograd_writes, hook_errors_and_replacements_of_another_kind_stop_the_backward) {
    nsc_tensor *x = vec((double[]){ 1, 2, 3 }, 3, true);
    cr_assert(nsc_tensor_register_hook(x, failing_hook, NULL, NULL) > 0);
    nsc_tensor *y = nsc_mul_scalar(x, 2.0);
    nsc_tensor *s = nsc_sum_all(y);
    cr_expect_eq(nsc_backward(s, NULL, false), NSC_ERR_STATE, "the hook's status");
    cr_expect(strstr(nsc_last_error(), "gradient hook 1 returned NSC_ERR_STATE"), "%s",
              nsc_last_error());
    cr_expect_null(nsc_tensor_get_grad(x), "no gradient delivered");
    nsc_free(s);
    nsc_free(y);
    nsc_free(x);
    for (int wrong_shape = 0; wrong_shape < 2; wrong_shape++) {
        x = vec((double[]){ 1, 2, 3 }, 3, true);
        cr_assert(nsc_tensor_register_hook(x, resizing_hook, &wrong_shape, NULL) > 0);
        y = nsc_mul_scalar(x, 2.0);
        s = nsc_sum_all(y);
        cr_expect_eq(nsc_backward(s, NULL, false), NSC_ERR_SHAPE);
        cr_expect(strstr(nsc_last_error(), wrong_shape ? "returned a gradient [5] f64 on cpu for "
                                                         "one [3] f64 on cpu"
                                                       : "returned a gradient [3] f32 on cpu"),
                  "%s", nsc_last_error());
        cr_expect_null(nsc_tensor_get_grad(x));
        nsc_free(s);
        nsc_free(y);
        nsc_free(x);
    }
}

Test(autograd_writes, the_root_gradient_takes_the_losss_dtype_and_set_grad_checks_it) {
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    cr_assert_eq(nsc_requires_grad_(x, true), NSC_OK);
    nsc_tensor *y = nsc_mul_scalar(x, 2.0);
    nsc_tensor *g = nsc_full(NSC_F64, NSC_CPU, NSC_SHAPE(3), 0.5);
    cr_assert_eq(nsc_backward(y, g, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *grad = nsc_tensor_get_grad(x);
    cr_expect_eq(nsc_tensor_dtype(grad), NSC_F32, "cast as torch's engine casts");
    expect_values(grad, (double[]){ 1, 1, 1 }, 3, "x.grad");
    cr_expect_eq(nsc_tensor_set_grad(x, g), NSC_ERR_DTYPE,
                 "torch: assigned grad has data of a "
                 "different type");
    cr_expect_eq(nsc_tensor_dtype(nsc_tensor_get_grad(x)), NSC_F32, "unchanged");
    nsc_tensor *ids = nsc_zeros(NSC_I64, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *y2 = nsc_mul_scalar(x, 2.0);
    cr_expect_eq(nsc_backward(y2, ids, false), NSC_ERR_DTYPE, "an integer gradient");
    nsc_tensor *all[] = { x, y, g, ids, y2 };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
}

// An empty 1-D input of cat (skipped, as torch's legacy rule) gets an empty
// gradient, not none. torch: a=torch.ones(2,3,requires_grad=True);
// e=torch.empty(0,requires_grad=True); torch.cat([a,e],1).sum().backward()
// -> e.grad tensor([]); torch.cat([e2,e3]) of two empties -> both tensor([]).
Test(autograd_writes, an_empty_input_of_cat_gets_an_empty_gradient) {
    nsc_tensor *a = nsc_ones(NSC_F64, NSC_CPU, NSC_SHAPE(2, 3));
    nsc_tensor *e = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(0));
    nsc_tensor *e2 = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(0));
    cr_assert(nsc_requires_grad_(a, true) == NSC_OK && nsc_requires_grad_(e, true) == NSC_OK &&
              nsc_requires_grad_(e2, true) == NSC_OK);
    nsc_tensor *ae = nsc_cat(2, (nsc_tensor *[]){ a, e }, 1);
    backward_sum(ae);
    expect_values(nsc_tensor_get_grad(a), (double[]){ 1, 1, 1, 1, 1, 1 }, 6, "a.grad");
    nsc_tensor *ge = nsc_tensor_get_grad(e);
    cr_assert(ge, "e.grad is empty, not none");
    cr_expect_eq(nsc_tensor_ndim(ge), 1);
    cr_expect_eq(nsc_tensor_size(ge, 0), 0);
    cr_expect_eq(nsc_tensor_dtype(ge), NSC_F64);
    nsc_tensor *ee = nsc_cat(2, (nsc_tensor *[]){ e, e2 }, 0);
    backward_sum(ee);
    cr_assert(nsc_tensor_get_grad(e2), "every input empty: e2.grad is empty, not none");
    cr_expect_eq(nsc_tensor_numel(nsc_tensor_get_grad(e2)), 0);
    nsc_tensor *all[] = { a, e, e2, ae, ee };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
}

// torch: x.grad = x -> "can't assign Variable as its own grad". nsc kept x
// as its own .grad, a cycle that leaked x.
Test(autograd_writes, a_tensor_cannot_be_its_own_grad) {
    int64_t before = nsct_live_blocks();
    nsc_tensor *x = vec((double[]){ 1, 2 }, 2, true);
    cr_expect_eq(nsc_tensor_set_grad(x, x), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "set_grad: the gradient is the tensor itself: can't assign"),
              "%s", nsc_last_error());
    cr_expect_null(nsc_tensor_get_grad(x), "nothing was set");
    nsc_free(x);
    cr_expect_eq(nsct_live_blocks(), before, "x was freed");
}

Test(autograd_writes, cat_of_twenty_inputs_and_a_second_backward_through_a_view) {
    nsc_tensor *xs[20];
    for (int i = 0; i < 20; i++) {
        xs[i] = vec((double[]){ i, -i }, 2, true);
    }
    nsc_tensor *cat = nsc_cat(20, xs, 0);
    nsc_tensor *sq = nsc_mul(cat, cat);
    backward_sum(sq);
    for (int i = 0; i < 20; i++) {
        expect_values(nsc_tensor_get_grad(xs[i]), (double[]){ 2.0 * i, -2.0 * i }, 2, "xs.grad");
        nsc_free(xs[i]);
    }
    nsc_free(cat);
    nsc_free(sq);
    // wt made once, used by two backwards (a training loop's hoisted view):
    // the transpose saved nothing, so the second one runs through it.
    nsc_tensor *w = nsc_ones(NSC_F64, NSC_CPU, NSC_SHAPE(3, 2));
    cr_assert_eq(nsc_requires_grad_(w, true), NSC_OK);
    nsc_tensor *wt = nsc_transpose(w, 0, 1);
    nsc_tensor *x = nsc_ones(NSC_F64, NSC_CPU, NSC_SHAPE(4, 3));
    nsc_tensor *loss = NULL;
    for (int pass = 0; pass < 2; pass++) {
        nsc_tensor *back = nsc_transpose(wt, 0, 1);
        nsc_tensor *out = nsc_matmul(x, back);
        nsc_free(loss);
        loss = nsc_sum_all(out);
        cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "pass %d: %s", pass,
                     nsc_last_error());
        nsc_free(back);
        nsc_free(out);
    }
    expect_values(nsc_tensor_get_grad(w), (double[]){ 8, 8, 8, 8, 8, 8 }, 6, "w.grad"); // torch
    // The matmul saved its inputs: running it again is refused, as in torch.
    cr_expect_eq(nsc_backward(loss, NULL, false), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "backward of matmul: its saved tensors were freed"), "%s",
              nsc_last_error());
    nsc_free(loss);
    nsc_free(x);
    nsc_free(wt);
    nsc_free(w);
}

// META tensors have shapes only: writing one into a tensor with values, or
// sending its gradient into one, is refused (torch: "Cannot copy out of
// meta tensor"), and a later real backward still reaches .grad.
Test(autograd_writes, meta_values_never_reach_tensors_with_data) {
    nsc_tensor *cpu = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *meta = nsc_ones(NSC_F32, NSC_META, NSC_SHAPE(3));
    cr_expect_eq(nsc_copy_(cpu, meta), NSC_ERR_DEVICE);
    cr_expect(strstr(nsc_last_error(), "writes into a cpu tensor from a META one"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_add_(cpu, meta), NSC_ERR_DEVICE);
    cr_expect_float_eq(nsct_sum(cpu), 0.0, 0, "unchanged");
    cr_assert_eq(nsc_requires_grad_(cpu, true), NSC_OK);
    nsc_tensor *shapes_only = nsc_mul(cpu, meta);
    nsc_tensor *s = nsc_sum_all(shapes_only);
    cr_expect_eq(nsc_backward(s, NULL, false), NSC_ERR_DEVICE);
    cr_expect(strstr(nsc_last_error(), "the loss was computed from META tensors"), "%s",
              nsc_last_error());
    cr_expect_null(nsc_tensor_get_grad(cpu));
    nsc_tensor *real = nsc_mul_scalar(cpu, 2.0);
    backward_sum(real);
    cr_expect_eq(nsc_tensor_device(nsc_tensor_get_grad(cpu)), NSC_CPU);
    nsc_tensor *all[] = { cpu, meta, shapes_only, s, real };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
}

Test(autograd_writes, creation_and_view_edges_as_torch) {
    nsc_tensor *one = nsc_linspace(0, 1, 1, NSC_F64);
    expect_values(one, (double[]){ 0 }, 1, "linspace(0, 1, 1)"); // torch: [0.]
    nsc_free(one);
    nsc_tensor *five = nsc_linspace(0, 1, 5, NSC_F64);
    expect_values(five, (double[]){ 0, 0.25, 0.5, 0.75, 1 }, 5, "linspace(0, 1, 5)");
    nsc_free(five);
    nsc_tensor *empty = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(0, 2));
    nsc_tensor *pieces[4] = { 0 };
    int n = 0;
    cr_assert_eq(nsc_chunk(empty, 3, 0, 4, pieces, &n), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(n, 3, "torch.chunk(torch.empty(0, 2), 3) gives 3 pieces");
    for (int i = 0; i < n; i++) {
        cr_expect_eq(nsc_tensor_size(pieces[i], 0), 0);
        nsc_free(pieces[i]);
    }
    cr_expect_eq(nsc_chunk(empty, 5, 0, 4, pieces, &n), NSC_ERR_ARG, "5 pieces, 4 outputs");
    nsc_free(empty);
    nsc_tensor *x = vec((double[]){ 1, 2, 3, 4 }, 4, true);
    cr_expect_null(nsc_as_strided(x, 1, (int64_t[]){ 2 }, (int64_t[]){ 2 }, 0));
    cr_expect(strstr(nsc_last_error(), "as_strided has no backward rule"), "%s", nsc_last_error());
    nsc_no_grad_begin();
    nsc_tensor *v = nsc_as_strided(x, 1, (int64_t[]){ 2 }, (int64_t[]){ 2 }, 0);
    nsc_no_grad_end();
    expect_values(v, (double[]){ 1, 3 }, 2, "as_strided under no_grad");
    nsc_free(v);
    nsc_free(x);
    cr_expect_null(nsc_eye(-1, 3, NSC_F32));
    cr_expect(strstr(nsc_last_error(), "eye(-1, 3)"), "%s", nsc_last_error());
}

// torch's views follow their base: a view taken before an in-place write
// made its base require grad requires grad too, and passes its gradient.
Test(autograd_writes, a_view_taken_before_its_base_required_grad_follows_it) {
    nsc_tensor *base = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *v = nsc_slice(base, 0, 0, 2, 1);
    nsc_tensor *w = vec((double[]){ 1, 1, 1 }, 3, true);
    cr_assert_eq(nsc_add_(base, w), NSC_OK, "%s", nsc_last_error());
    cr_expect(nsc_tensor_requires_grad(v), "torch: v.requires_grad is True");
    cr_expect_not(nsc_tensor_is_leaf(v));
    nsc_tensor *scaled = nsc_mul_scalar(v, 10.0);
    nsc_tensor *a = nsc_sum_all(scaled), *b = nsc_sum_all(w);
    nsc_tensor *loss = nsc_add(a, b);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    expect_values(nsc_tensor_get_grad(w), (double[]){ 11, 11, 1 }, 3, "w.grad"); // torch
    // A detached tensor never follows: it is not a view for autograd.
    nsc_tensor *d = nsc_detach(base);
    cr_expect_not(nsc_tensor_requires_grad(d));
    nsc_tensor *all[] = { base, v, w, scaled, a, b, loss, d };
    for (int i = 0; i < 8; i++) {
        nsc_free(all[i]);
    }
}

static nsc_status record_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    (void)replacement;
    nsc_tensor **seen = ctx;
    nsc_free(*seen);
    *seen = nsc_clone(grad);
    return NSC_OK;
}

// retain_grad and register_hook accept such a view, as nsc_tensor_requires_grad
// says it requires grad (they refused it). torch, reading v.grad_fn first:
// base=torch.zeros(3,dtype=torch.float64); v=base[0:2]; w=torch.ones(3,
// dtype=torch.float64,requires_grad=True); base.add_(w); v.grad_fn; v.retain_grad();
// v.register_hook(print); ((v*10).sum()+w.sum()).backward() -> hook and v.grad [10, 10]
Test(autograd_writes, retain_grad_and_hooks_accept_a_view_taken_before_its_base_required_grad) {
    nsc_tensor *base = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(3));
    nsc_tensor *v = nsc_slice(base, 0, 0, 2, 1);
    nsc_tensor *w = vec((double[]){ 1, 1, 1 }, 3, true);
    cr_assert_eq(nsc_add_(base, w), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_retain_grad(v), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *seen = NULL;
    cr_assert_gt(nsc_tensor_register_hook(v, record_hook, &seen, NULL), 0, "%s", nsc_last_error());
    nsc_tensor *scaled = nsc_mul_scalar(v, 10.0);
    nsc_tensor *a = nsc_sum_all(scaled), *b = nsc_sum_all(w);
    nsc_tensor *loss = nsc_add(a, b);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    expect_values(seen, (double[]){ 10, 10 }, 2, "the hook");
    expect_values(nsc_tensor_get_grad(v), (double[]){ 10, 10 }, 2, "v.grad");
    expect_values(nsc_tensor_get_grad(w), (double[]){ 11, 11, 1 }, 3, "w.grad");
    // A tensor that does not require grad is still refused, naming the call.
    nsc_tensor *plain = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(2));
    cr_expect_eq(nsc_retain_grad(plain), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "retain_grad: the tensor does not require grad"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_tensor_register_hook(plain, record_hook, &seen, NULL), -1);
    cr_expect(strstr(nsc_last_error(), "register_hook: the tensor does not require grad"), "%s",
              nsc_last_error());
    nsc_tensor *all[] = { base, v, w, scaled, a, b, loss, seen, plain };
    for (int i = 0; i < 9; i++) {
        nsc_free(all[i]);
    }
}

static nsc_status log_hook(nsc_tensor *grad, nsc_tensor **replacement, void *ctx) {
    (void)replacement;
    nsc_tensor **log = ctx; // log[0] the first gradient seen, log[1] a second
    cr_assert_null(log[1], "the hook ran more than twice");
    log[log[0] ? 1 : 0] = nsc_clone(grad);
    return NSC_OK;
}

// An in-place write gives its destination a new history: retain_grad and a
// .grad already there carry over to it (both were lost), hooks stay with the
// old value. torch 2.15: x=torch.tensor([1.,2],dtype=torch.float64,
// requires_grad=True); y=x*2; y.retain_grad(); y.register_hook(before); y.mul_(3);
// y.register_hook(after); (y*5).sum().backward() -> after [5, 5], before [15, 15],
// y.grad [5, 5], x.grad [30, 30].
Test(autograd_writes, retain_grad_and_grad_carry_over_an_in_place_write_hooks_do_not) {
    nsc_tensor *x = vec((double[]){ 1, 2 }, 2, true);
    nsc_tensor *y = nsc_mul_scalar(x, 2.0);
    nsc_tensor *before[2] = { 0 }, *after[2] = { 0 };
    cr_assert_eq(nsc_retain_grad(y), NSC_OK);
    cr_assert_gt(nsc_tensor_register_hook(y, log_hook, before, NULL), 0);
    nsc_tensor *three = nsc_scalar(NSC_F64, 3.0);
    cr_assert_eq(nsc_mul_(y, three), NSC_OK, "%s", nsc_last_error());
    cr_assert_gt(nsc_tensor_register_hook(y, log_hook, after, NULL), 0);
    nsc_tensor *y5 = nsc_mul_scalar(y, 5.0);
    backward_sum(y5);
    expect_values(after[0], (double[]){ 5, 5 }, 2, "the hook registered after");
    expect_values(before[0], (double[]){ 15, 15 }, 2, "the hook registered before");
    cr_expect(!after[1] && !before[1], "each hook ran once");
    expect_values(nsc_tensor_get_grad(y), (double[]){ 5, 5 }, 2, "y.grad");
    expect_values(nsc_tensor_get_grad(x), (double[]){ 30, 30 }, 2, "x.grad");
    // A write into a view: y=x*2; y.retain_grad(); y[0:1].fill_(0);
    // (y*5).sum().backward() -> y.grad [5, 5, 5], x.grad [0, 10, 10].
    nsc_tensor *x3 = vec((double[]){ 1, 2, 3 }, 3, true);
    nsc_tensor *y3 = nsc_mul_scalar(x3, 2.0);
    cr_assert_eq(nsc_retain_grad(y3), NSC_OK);
    nsc_tensor *head = nsc_slice(y3, 0, 0, 1, 1);
    cr_assert_eq(nsc_fill_(head, 0.0), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *y35 = nsc_mul_scalar(y3, 5.0);
    backward_sum(y35);
    expect_values(nsc_tensor_get_grad(y3), (double[]){ 5, 5, 5 }, 3, "y3.grad");
    expect_values(nsc_tensor_get_grad(x3), (double[]){ 0, 10, 10 }, 3, "x3.grad");
    // A .grad held before the write: b=a*2; b.retain_grad();
    // b.sum().backward(retain_graph=True); b.add_(1) -> b.grad [1, 1, 1];
    // (b*3).sum().backward() -> b.grad [4, 4, 4], a.grad [8, 8, 8].
    nsc_tensor *a = vec((double[]){ 1, 2, 3 }, 3, true);
    nsc_tensor *b = nsc_mul_scalar(a, 2.0);
    cr_assert_eq(nsc_retain_grad(b), NSC_OK);
    nsc_tensor *sb = nsc_sum_all(b);
    cr_assert_eq(nsc_backward(sb, NULL, true), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *one = nsc_scalar(NSC_F64, 1.0);
    cr_assert_eq(nsc_add_(b, one), NSC_OK, "%s", nsc_last_error());
    expect_values(nsc_tensor_get_grad(b), (double[]){ 1, 1, 1 }, 3, "b.grad after add_");
    nsc_tensor *b3 = nsc_mul_scalar(b, 3.0);
    backward_sum(b3);
    expect_values(nsc_tensor_get_grad(b), (double[]){ 4, 4, 4 }, 3, "b.grad");
    expect_values(nsc_tensor_get_grad(a), (double[]){ 8, 8, 8 }, 3, "a.grad");
    nsc_tensor *all[] = {
        x, y, y5, before[0], after[0], three, x3, y3, y35, head, a, b, sb, one, b3
    };
    for (int i = 0; i < 15; i++) {
        nsc_free(all[i]);
    }
}

// Edge points where torch defines the gradient: pow at a = 0, b = 0 (0, not
// 0 * 0^-1 = NaN); maximum and relu at NaN (the gradient passes).
Test(autograd_writes, gradients_at_edge_points_as_torch) {
    nsc_tensor *a = vec((double[]){ 0, 2 }, 2, true);
    nsc_tensor *b = vec((double[]){ 0, 0 }, 2, false);
    nsc_tensor *p = nsc_pow(a, b);
    backward_sum(p);
    expect_values(nsc_tensor_get_grad(a), (double[]){ 0, 0 }, 2, "d pow / da"); // torch: 0 0
    double nan = __builtin_nan("");
    nsc_tensor *x = vec((double[]){ 1, nan, 2 }, 3, true);
    nsc_tensor *y = vec((double[]){ 1, 1, nan }, 3, true);
    nsc_tensor *m = nsc_maximum(x, y);
    backward_sum(m);
    expect_values(nsc_tensor_get_grad(x), (double[]){ 0.5, 1, 1 }, 3, "x.grad"); // torch
    expect_values(nsc_tensor_get_grad(y), (double[]){ 0.5, 1, 1 }, 3, "y.grad"); // torch
    nsc_tensor *r_in = vec((double[]){ nan, 1, -1 }, 3, true);
    nsc_tensor *r = nsc_relu(r_in);
    backward_sum(r);
    expect_values(nsc_tensor_get_grad(r_in), (double[]){ 1, 1, 0 }, 3, "relu grad"); // torch
    nsc_tensor *all[] = { a, b, p, x, y, m, r_in, r };
    for (int i = 0; i < 8; i++) {
        nsc_free(all[i]);
    }
}

// A view whose elements share memory cannot take its gradient by a copy
// into the base's layout (one element's share would win): refused, for an
// as_strided view as for an expanded one, where an as_strided view that
// overlaps without a stride of 0 used to get a wrong gradient.
Test(autograd_writes, an_overlapping_view_of_a_written_base_is_refused) {
    nsc_tensor *base = nsc_zeros(NSC_F64, NSC_CPU, NSC_SHAPE(4));
    nsc_tensor *v = nsc_as_strided(base, 2, (int64_t[]){ 2, 2 }, (int64_t[]){ 1, 1 }, 0);
    nsc_tensor *w = vec((double[]){ 1, 2, 3, 4 }, 4, true);
    cr_assert(v, "%s", nsc_last_error());
    cr_assert_eq(nsc_add_(base, w), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *s = nsc_sum_all(v);
    cr_expect_eq(nsc_backward(s, NULL, false), NSC_ERR_UNSUPPORTED);
    cr_expect(strstr(nsc_last_error(), "an as_strided view whose elements overlap"), "%s",
              nsc_last_error());
    nsc_tensor *all[] = { base, v, w, s };
    for (int i = 0; i < 4; i++) {
        nsc_free(all[i]);
    }
}

// An expanded view of a base written in place later: each base element's
// gradient is the sum over its copies (torch: x.grad = 8 8 8).
Test(autograd_writes, an_expanded_view_of_a_written_base_sums_its_gradient) {
    nsc_tensor *x = nsc_ones(NSC_F64, NSC_CPU, NSC_SHAPE(1, 3));
    cr_assert_eq(nsc_requires_grad_(x, true), NSC_OK);
    nsc_tensor *b = nsc_mul_scalar(x, 1.0);
    nsc_tensor *e = nsc_expand(b, NSC_SHAPE(4, 3));
    nsc_tensor *two = nsc_scalar(NSC_F64, 2.0);
    cr_assert_eq(nsc_mul_(b, two), NSC_OK, "%s", nsc_last_error());
    backward_sum(e);
    expect_values(nsc_tensor_get_grad(x), (double[]){ 8, 8, 8 }, 3, "x.grad"); // torch
    nsc_tensor *all[] = { x, b, e, two };
    for (int i = 0; i < 4; i++) {
        nsc_free(all[i]);
    }
}
