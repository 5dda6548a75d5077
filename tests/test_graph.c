// The intervention graph (issue 6): reading, editing and replacing hook
// points, ordering, save/get, invokes and batch dims, validation errors.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"

static const int64_t WIDTH = 4;

// The chain's block outputs computed eagerly, with an optional edit.
static nsc_tensor *eager_block(nsc_module *model, nsc_tensor *x, int upto) {
    nsc_tensor *h = nsc_retain(x);
    for (int i = 0; i <= upto; i++) {
        char path[16];
        snprintf(path, sizeof path, "h.%d", i);
        nsc_tensor *next = nsc_module_forward(nsc_module_find(model, path), 1, &h);
        nsc_free(h);
        h = next;
    }
    return h;
}

static nsc_tensor *input(int64_t rows, double start) {
    nsc_tensor *a = nsc_arange(start, start + (double)(rows * WIDTH), 1, NSC_F32);
    nsc_tensor *s = nsc_mul_scalar(a, 0.1);
    nsc_tensor *x = nsc_reshape(s, NSC_SHAPE(rows, WIDTH));
    nsc_free(a);
    nsc_free(s);
    return x;
}

Test(graph, read_save_and_get_match_eager_values) {
    int64_t start = nsct_live_blocks();
    nsc_module *model = nsct_chain_model(3, WIDTH);
    nsc_tensor *x = input(2, 0);
    nsc_tensor *want1 = eager_block(model, x, 1);
    nsc_tensor *want_out = nsc_module_forward(model, 1, &x);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h1 = nsc_save(nsc_invoke_output(inv, "h.1", 0));
    nsc_tensor *in2 = nsc_save(nsc_invoke_input(inv, "h.2", 0, 0));
    nsc_tensor *out = nsc_save(nsc_invoke_output(inv, "", 0));
    nsc_tensor *unsaved = nsc_invoke_output(inv, "h.0", 0);
    cr_assert(h1 && in2 && out && unsaved, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_device(h1), NSC_META);
    cr_expect_eq(nsc_tensor_size(h1, 0), 2);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v1 = nsc_trace_get(tr, h1), *vin = nsc_trace_get(tr, in2);
    nsc_tensor *vout = nsc_trace_get(tr, out);
    cr_expect(nsc_allclose(v1, want1, 0, 0, false), "%s", nsc_last_error());
    cr_expect(nsc_allclose(vin, want1, 0, 0, false), "the input of h.2 is h.1's output");
    cr_expect(nsc_allclose(vout, want_out, 0, 0, false));
    cr_expect_null(nsc_trace_get(tr, unsaved));
    cr_expect(strstr(nsc_last_error(), "was not saved") && strstr(nsc_last_error(), "h.0 output"),
              "%s", nsc_last_error());
    nsc_free(x); // proxies are the trace's; freeing one is harmless
    nsc_free(h1);
    nsc_trace_free(tr);
    double got_sum = nsct_sum(v1), want_sum = nsct_sum(want1);
    cr_expect_float_eq(got_sum, want_sum, 1e-6, "saved values outlive the trace");
    nsc_tensor *all[] = { v1, vin, vout, want1, want_out };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
    nsc_module_free(model);
    cr_expect_eq(nsct_live_blocks(), start, "everything is released");
}

Test(graph, in_place_edits_reach_the_model_and_only_the_invoke_rows) {
    nsc_module *model = nsct_chain_model(3, WIDTH);
    nsc_tensor *x0 = input(2, 0), *x1 = input(3, 5);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *a = nsc_trace_invoke(tr, 1, &x0), *b = nsc_trace_invoke(tr, 1, &x1);
    nsc_tensor *h0a = nsc_invoke_output(a, "h.0", 0);
    nsc_tensor *before = nsc_save(nsc_mul_scalar(h0a, 1.0)); // a read made before the write
    cr_assert_eq(nsc_zero_(nsc_select(h0a, 1, 2)), NSC_OK, "%s", nsc_last_error()); // a proxy
    nsc_tensor *after = nsc_save(nsc_mul_scalar(h0a, 1.0)); // ... and one made after it
    nsc_tensor *h1a = nsc_save(nsc_invoke_output(a, "h.1", 0));
    nsc_tensor *h1b = nsc_save(nsc_invoke_output(b, "h.1", 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *vb = nsc_trace_get(tr, before), *va = nsc_trace_get(tr, after);
    double old_value = nsct_flat(vb, 2), new_value = nsct_flat(va, 2);
    cr_expect_neq(old_value, 0.0);
    cr_expect_eq(new_value, 0.0);
    // Eager: h.1(h.0(x) with column 2 zeroed) for invoke a; untouched for b.
    nsc_tensor *h0 = eager_block(model, x0, 0);
    nsc_tensor *col = nsc_select(h0, 1, 2);
    nsc_zero_(col);
    nsc_tensor *want_a = nsc_module_forward(nsc_module_find(model, "h.1"), 1, &h0);
    nsc_tensor *want_b = eager_block(model, x1, 1);
    nsc_tensor *ga = nsc_trace_get(tr, h1a), *gb = nsc_trace_get(tr, h1b);
    cr_expect(nsc_allclose(ga, want_a, 1e-6, 1e-6, false), "%s", nsc_last_error());
    cr_expect(nsc_allclose(gb, want_b, 1e-6, 1e-6, false), "%s", nsc_last_error());
    nsc_tensor *all[] = { vb, va, h0, col, want_a, want_b, ga, gb, x0, x1 };
    for (int i = 0; i < 10; i++) {
        nsc_free(all[i]);
    }
    nsc_trace_free(tr);
    nsc_module_free(model);
}

Test(graph, replacements_belong_to_their_point) {
    nsc_module *model = nsct_chain_model(3, WIDTH);
    nsc_tensor *x = input(2, 0);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *orig = nsc_save(nsc_mul_scalar(nsc_invoke_output(inv, "h.0", 0), 1.0));
    nsc_tensor *ones = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(WIDTH));
    cr_assert_eq(nsc_invoke_set_output(inv, "h.0", 0, ones), NSC_OK, "%s", nsc_last_error());
    // A second point replaced too: nnsight 0.3 kept one swap per graph.
    nsc_tensor *twice = nsc_mul_scalar(nsc_invoke_output(inv, "h.1", 0), 2.0);
    cr_assert_eq(nsc_invoke_set_output(inv, "h.1", 0, twice), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *seen = nsc_save(nsc_invoke_input(inv, "h.2", 0, 0));
    nsc_tensor *later = nsc_save(nsc_invoke_output(inv, "h.0", 0)); // read after the swap
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *ones_row = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2, WIDTH));
    nsc_tensor *h1 = nsc_module_forward(nsc_module_find(model, "h.1"), 1, &ones_row);
    nsc_tensor *want = nsc_mul_scalar(h1, 2.0);
    nsc_tensor *got = nsc_trace_get(tr, seen), *vo = nsc_trace_get(tr, orig);
    nsc_tensor *vl = nsc_trace_get(tr, later);
    cr_expect(nsc_allclose(got, want, 1e-6, 1e-6, false), "%s", nsc_last_error());
    double orig_sum = nsct_sum(vo);
    cr_expect_neq(orig_sum, 8.0, "the earlier read saw the original");
    cr_expect(nsc_allclose(vl, ones_row, 0, 0, false),
              "a read made after the replacement sees it (NNSIGHT.md §1)");
    nsc_tensor *all[] = { ones, ones_row, h1, want, got, vo, vl, x };
    for (int i = 0; i < 8; i++) {
        nsc_free(all[i]);
    }
    nsc_trace_free(tr);
    nsc_module_free(model);
}

// One forward for all invokes; each sees its rows; values flow across.
Test(graph, invokes_share_one_pass_and_patch_across) {
    nsc_module *model = nsct_chain_model(2, WIDTH);
    nsc_tensor *clean = input(1, 0), *corrupt = input(1, 40);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *cl = nsc_trace_invoke(tr, 1, &clean), *co = nsc_trace_invoke(tr, 1, &corrupt);
    cr_expect_eq(nsc_invoke_batch_size(co), 1);
    nsc_tensor *src = nsc_invoke_output(cl, "h.0", 0);
    cr_assert_eq(nsc_copy_(nsc_invoke_output(co, "h.0", 0), src), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *out_cl = nsc_save(nsc_invoke_output(cl, "", 0));
    nsc_tensor *out_co = nsc_save(nsc_invoke_output(co, "", 0));
    int64_t dispatches = nsc_module_hook_dispatches(model); // the shape scan hooked it too
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_module_hook_dispatches(model) - dispatches, 1, "one call of the root module");
    nsc_tensor *a = nsc_trace_get(tr, out_cl), *b = nsc_trace_get(tr, out_co);
    cr_expect(nsc_allclose(a, b, 0, 0, false), "the patched run equals the clean one");
    nsc_free(a);
    nsc_free(b);
    nsc_free(clean);
    nsc_free(corrupt);
    nsc_trace_free(tr);
    nsc_module_free(model);
}

// A module whose batch is on dim 1; a parameter-like input without a batch
// dim passes whole even when its dim 0 equals the total batch.
Test(graph, declared_batch_dims_decide_the_slices) {
    nsc_module *model = nsct_batch1_model(3);
    nsc_tensor *x0 = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(5, 2, 3));
    nsc_tensor *x1 = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(5, 1, 3), 7.0);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *a = nsc_trace_invoke(tr, 1, &x0), *b = nsc_trace_invoke(tr, 1, &x1);
    nsc_tensor *pa = nsc_invoke_output(a, "inner", 0), *pb = nsc_invoke_output(b, "inner", 0);
    cr_assert(pa && pb, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_size(pa, 1), 2);
    cr_expect_eq(nsc_tensor_size(pb, 1), 1);
    nsc_tensor *sa = nsc_save(pa), *sb = nsc_save(pb);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *va = nsc_trace_get(tr, sa), *vb = nsc_trace_get(tr, sb);
    double sum_b = nsct_sum(vb), sum_a = nsct_sum(va);
    cr_expect_float_eq(sum_b, 5 * (14 + 15 + 16.0), 1e-4);
    cr_expect_float_eq(sum_a, 10 * (2 + 3 + 4.0), 1e-4);
    nsc_tensor *all[] = { va, vb, x0, x1 };
    for (int i = 0; i < 4; i++) {
        nsc_free(all[i]);
    }
    nsc_trace_free(tr);
    nsc_module_free(model);
}

// --- validation ---

typedef struct failing_build {
    nsc_module *model;
    nsc_tensor *x;
    nsc_trace *tr;
    nsc_invoke *inv;
    int64_t kernels;
} failing_build;

static void build_start(failing_build *f) {
    f->model = nsct_chain_model(3, WIDTH);
    f->x = input(2, 0);
    f->tr = nsc_trace_new(f->model);
    f->inv = nsc_trace_invoke(f->tr, 1, &f->x);
    f->kernels = nsci_kernel_count();
}

static void build_end(failing_build *f, nsc_status want, const char *const *phrases) {
    cr_expect_eq(nsc_last_status(), want, "%s", nsc_last_error());
    for (int i = 0; phrases[i]; i++) {
        cr_expect(strstr(nsc_last_error(), phrases[i]), "missing \"%s\" in: %s", phrases[i],
                  nsc_last_error());
    }
    cr_expect_eq(nsci_kernel_count(), f->kernels, "no kernel ran while building");
    cr_expect_neq(nsc_trace_run(f->tr), NSC_OK, "the trace refuses to run");
    cr_expect(strstr(nsc_last_error(), "has errors"), "%s", nsc_last_error());
    nsc_trace_free(f->tr);
    nsc_free(f->x);
    nsc_module_free(f->model);
}

Test(graph, a_shape_mismatch_names_line_op_shapes_and_path) {
    failing_build f;
    build_start(&f);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
    int line = __LINE__ + 1;
    nsc_tensor *bad = nsc_matmul(h, h);
    cr_expect_null(bad);
    char at[64];
    snprintf(at, sizeof at, "test_graph.c:%d", line);
    const char *phrases[] = { at, "matmul", "[2,4]", "h.0 output", NULL };
    build_end(&f, NSC_ERR_SHAPE, phrases);
}

Test(graph, an_unknown_path_is_refused) {
    failing_build f;
    build_start(&f);
    cr_expect_null(nsc_invoke_output(f.inv, "h.7", 0));
    const char *phrases[] = { "test_graph.c:", "h has no child \"7\"", NULL };
    build_end(&f, NSC_ERR_ARG, phrases);
}

Test(graph, an_unreachable_call_index_is_refused) {
    failing_build f;
    build_start(&f);
    cr_expect_null(nsc_invoke_output(f.inv, "h.1", 3));
    const char *phrases[] = { "h.1 output", "call index 3 is unreachable", "1 time", NULL };
    build_end(&f, NSC_ERR_ARG, phrases);
}

Test(graph, a_dtype_mismatch_and_a_bad_index_are_refused) {
    failing_build f;
    build_start(&f);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
    cr_expect_null(nsc_select(h, 1, 9));
    const char *phrases[] = { "select", "index 9 is out of range", "h.0 output", NULL };
    build_end(&f, NSC_ERR_ARG, phrases);
    build_start(&f);
    nsc_tensor *h2 = nsc_invoke_output(f.inv, "h.0", 0);
    cr_expect_null(nsc_embedding(h2, h2));
    const char *dtype_phrases[] = { "embedding", NULL };
    build_end(&f, NSC_ERR_DTYPE, dtype_phrases);
}

Test(graph, a_write_needing_a_later_point_is_refused) {
    failing_build f;
    build_start(&f);
    nsc_tensor *late = nsc_invoke_output(f.inv, "h.2", 0);
    cr_expect_neq(nsc_invoke_set_output(f.inv, "h.0", 0, late), NSC_OK);
    const char *phrases[] = { "h.0 output needs h.2 output", "has passed", NULL };
    build_end(&f, NSC_ERR_STATE, phrases);
    build_start(&f);
    nsc_tensor *later = nsc_invoke_output(f.inv, "h.1", 0);
    cr_expect_neq(nsc_copy_(nsc_invoke_output(f.inv, "h.0", 0), later), NSC_OK);
    const char *inplace_phrases[] = { "in-place write into h.0 output", "h.1 output", NULL };
    build_end(&f, NSC_ERR_STATE, inplace_phrases);
}

Test(graph, a_proxy_of_another_trace_is_refused) {
    failing_build f;
    build_start(&f);
    nsc_trace *other = nsc_trace_new(f.model);
    nsc_invoke *inv2 = nsc_trace_invoke(other, 1, &f.x);
    nsc_tensor *mine = nsc_invoke_output(f.inv, "h.0", 0);
    nsc_tensor *theirs = nsc_invoke_output(inv2, "h.0", 0);
    cr_expect_null(nsc_add(mine, theirs));
    const char *phrases[] = { "another trace", NULL };
    nsc_trace_free(other);
    build_end(&f, NSC_ERR_STATE, phrases);
}

Test(graph, a_proxy_of_a_finished_trace_is_refused) {
    nsc_module *model = nsct_chain_model(2, WIDTH);
    nsc_tensor *x = input(2, 0);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK);
    cr_expect_null(nsc_mul_scalar(h, 2.0));
    cr_expect(strstr(nsc_last_error(), "already ran"), "%s", nsc_last_error());
    cr_expect_eq(nsc_trace_run(tr), NSC_ERR_STATE, "a trace runs once");
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}

// Constants are copied when used: a later change is not seen.
Test(graph, constants_are_copied) {
    nsc_module *model = nsct_chain_model(1, WIDTH);
    nsc_tensor *x = input(1, 0);
    nsc_tensor *c = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(WIDTH));
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h = nsc_invoke_output(inv, "h.0", 0);
    nsc_tensor *s = nsc_save(nsc_sub(nsc_add(h, c), h));
    nsc_fill_(c, 100.0);
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v = nsc_trace_get(tr, s);
    double total = nsct_sum(v);
    cr_expect_float_eq(total, (double)WIDTH, 1e-5);
    nsc_free(v);
    nsc_free(c);
    nsc_free(x);
    nsc_trace_free(tr);
    nsc_module_free(model);
}

// --- functions and sub-modules as nodes ---

static nsc_tensor *double_it(int n, nsc_tensor *const *args, void *ctx) {
    (void)n;
    (void)ctx;
    return nsc_mul_scalar(args[0], 2.0);
}

Test(graph, registered_functions_and_applied_modules_are_nodes) {
    cr_assert_eq(nsc_function_register("test.double", double_it, NULL), NSC_OK);
    nsc_module *model = nsct_chain_model(2, WIDTH);
    nsc_tensor *x = input(2, 0);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *h0 = nsc_invoke_output(inv, "h.0", 0);
    nsc_tensor *d = nsc_save(nsc_trace_call(tr, "test.double", 1, &h0));
    nsc_tensor *via_head = nsc_save(nsc_trace_apply(tr, "head", h0));
    cr_assert(d && via_head, "%s", nsc_last_error());
    cr_expect_eq(nsc_tensor_size(via_head, 1), 3, "the META forward gave the shape");
    cr_expect_null(nsc_trace_call(tr, "test.missing", 1, &h0));
    cr_expect(strstr(nsc_last_error(), "no function registered"), "%s", nsc_last_error());
    nsc_trace_free(tr);
    tr = nsc_trace_new(model);
    inv = nsc_trace_invoke(tr, 1, &x);
    h0 = nsc_invoke_output(inv, "h.0", 0);
    d = nsc_save(nsc_trace_call(tr, "test.double", 1, &h0));
    via_head = nsc_save(nsc_trace_apply(tr, "head", h0));
    nsc_tensor *h = nsc_save(h0);
    int64_t head_dispatches = nsc_module_hook_dispatches(nsc_module_find(model, "head"));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *vh = nsc_trace_get(tr, h), *vd = nsc_trace_get(tr, d);
    nsc_tensor *vhead = nsc_trace_get(tr, via_head);
    nsc_tensor *want_d = nsc_mul_scalar(vh, 2.0);
    nsc_tensor *want_head = nsc_module_forward(nsc_module_find(model, "head"), 1, &vh);
    cr_expect(nsc_allclose(vd, want_d, 0, 0, false));
    cr_expect(nsc_allclose(vhead, want_head, 0, 0, false));
    cr_expect_eq(nsc_module_hook_dispatches(nsc_module_find(model, "head")), head_dispatches,
                 "apply does not fire hooks");
    nsc_tensor *all[] = { vh, vd, vhead, want_d, want_head, x };
    for (int i = 0; i < 6; i++) {
        nsc_free(all[i]);
    }
    nsc_trace_free(tr);
    nsc_module_free(model);
}
