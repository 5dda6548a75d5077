// The module core: tree, paths, lookup, iteration order, parameters, hooks
// (read, replace, order, removal, stop), call counters, batch dims, slots,
// and a user module from a C forward callback that is hookable and trainable.
#include <criterion/criterion.h>
#include <string.h>

#include "tests/harness.h"

// A user module: y = x * w (w a parameter), the kind of probe a user attaches.
static nsc_tensor *scale_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    (void)n_in;
    return nsc_mul(in[0], nsc_module_param(m, "w"));
}

// A container calling its children in order.
static nsc_tensor *chain_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)state;
    (void)n_in;
    nsc_tensor *h = nsc_retain(in[0]);
    for (int64_t i = 1; h && i < nsc_module_n_modules(m); i++) {
        nsc_module *child = nsc_module_at(m, i);
        if (nsc_module_parent(child) != m) {
            continue;
        }
        nsc_tensor *next = nsc_module_call(child, 1, &h);
        nsc_free(h);
        h = next;
    }
    return h;
}

static nsc_module *scale_module(double w) {
    nsc_module *m = nsc_module_new("Scale", scale_forward, NULL, NULL);
    nsc_tensor *t = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1), w);
    cr_assert(m && nsc_module_add_param(m, "w", t) == NSC_OK);
    nsc_free(t);
    return m;
}

static nsc_module *tree(void) {
    nsc_module *root = nsc_module_new("Chain", chain_forward, NULL, NULL);
    nsc_module *inner = nsc_module_new("Chain", chain_forward, NULL, NULL);
    nsc_module *a = scale_module(2.0), *b = scale_module(3.0), *c = scale_module(5.0);
    cr_assert_eq(nsc_module_add_child(root, "a", a), NSC_OK);
    cr_assert_eq(nsc_module_add_child(inner, "b", b), NSC_OK);
    cr_assert_eq(nsc_module_add_child(inner, "c", c), NSC_OK);
    cr_assert_eq(nsc_module_add_child(root, "inner", inner), NSC_OK);
    nsc_module_free(a);
    nsc_module_free(b);
    nsc_module_free(c);
    nsc_module_free(inner);
    return root;
}

Test(module, paths_lookup_and_iteration_order) {
    int64_t before = nsct_live_blocks();
    nsc_module *root = tree();
    const char *want[] = { "", "a", "inner", "inner.b", "inner.c" };
    cr_assert_eq(nsc_module_n_modules(root), 5);
    for (int i = 0; i < 5; i++) {
        cr_expect_str_eq(nsc_module_path(nsc_module_at(root, i)), want[i]);
    }
    cr_expect_eq(nsc_module_find(root, "inner.c"), nsc_module_at(root, 4));
    cr_expect_null(nsc_module_find(root, "inner.d"));
    cr_expect(strstr(nsc_last_error(), "inner has no child \"d\""), "%s", nsc_last_error());
    cr_expect_eq(nsc_module_n_params(root), 3);
    const char *path;
    nsc_tensor *t = nsc_module_param_at(root, 2, &path);
    cr_expect_str_eq(path, "inner.c.w");
    cr_expect_eq(t, nsc_module_find_tensor(root, "inner.c.w"));
    cr_expect_eq(nsc_module_param_count(root), 3);
    nsc_module_free(root);
    cr_expect_eq(nsct_live_blocks(), before);
}

Test(module, a_duplicate_or_bad_name_is_refused_without_leaks) {
    nsc_module *root = tree();
    nsc_module *extra = scale_module(1);
    int64_t before = nsct_live_blocks();
    cr_expect_eq(nsc_module_add_child(root, "a", extra), NSC_ERR_ARG);
    cr_expect_eq(nsc_module_add_child(root, "x.y", extra), NSC_ERR_ARG);
    cr_expect_eq(nsc_module_add_param(root, "inner", nsc_module_param(extra, "w")), NSC_ERR_ARG);
    cr_expect_eq(nsct_live_blocks(), before);
    nsc_module_free(extra);
    nsc_module_free(root);
}

// A child that is the parent or an ancestor of it would make a cycle that
// paths, iteration and free recurse through forever; it is refused, changing
// nothing.
Test(module, a_cycle_is_refused_by_add_and_replace_child) {
    nsc_module *root = tree();
    nsc_module *inner = nsc_module_find(root, "inner");
    nsc_module *b = nsc_module_find(root, "inner.b");
    cr_assert_str_eq(nsc_module_path(b), "inner.b"); // paths are cached on first use
    cr_assert_str_eq(nsc_module_path(inner), "inner");
    int64_t before = nsct_live_blocks();
    cr_expect_eq(nsc_module_add_child(root, "self", root), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "the root (Chain) as child \"self\" of the root (Chain): "
                                       "it is the parent itself"),
              "%s", nsc_last_error());
    cr_expect_eq(nsc_module_add_child(b, "up", root), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "add_child: the root (Chain) as child \"up\" of inner.b: "
                                       "it is an ancestor of the parent"),
              "%s", nsc_last_error());
    cr_expect_eq(nsc_module_replace_child(root, "a", root), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "replace_child: the root (Chain) as child \"a\""), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_module_replace_child(inner, "c", root), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "of inner: it is an ancestor"), "%s", nsc_last_error());
    cr_expect_eq(nsct_live_blocks(), before);
    cr_expect_eq(nsc_module_n_modules(root), 5);
    cr_expect_null(nsc_module_parent(root));
    cr_expect_str_eq(nsc_module_path(nsc_module_at(root, 4)), "inner.c");
    cr_expect_eq(nsc_module_find(root, "a"), nsc_module_at(root, 1));
    nsc_module_free(root);
}

typedef struct record {
    int calls;
    int64_t call_index[8];
    double replace_with;
    nsc_status result;
} record;

static nsc_status output_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                              nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m;
    (void)n;
    record *r = ctx;
    cr_expect_eq(kind, NSC_HOOK_OUTPUT);
    r->call_index[r->calls++] = call_index;
    if (r->replace_with != 0) {
        replace[0] = nsc_full_like(values[0], r->replace_with);
    }
    return r->result;
}

static nsc_status input_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                             nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m;
    (void)call_index;
    (void)n;
    record *r = ctx;
    cr_expect_eq(kind, NSC_HOOK_INPUT);
    r->calls++;
    replace[0] = nsc_mul_scalar(values[0], 10.0);
    return NSC_OK;
}

static double run(nsc_module *root, double x) {
    nsc_tensor *in = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(1), x);
    nsc_tensor *out = nsc_module_call(root, 1, &in);
    double v = out ? nsc_tensor_item(out) : -1.0;
    nsc_free(in);
    nsc_free(out);
    return v;
}

Test(module, hooks_read_replace_and_count) {
    nsc_module *root = tree();
    nsc_module *b = nsc_module_find(root, "inner.b");
    double v = run(root, 1.0); // (Criterion's float macros evaluate their arguments twice)
    cr_expect_float_eq(v, 30.0, 1e-6);
    cr_expect_eq(nsc_module_hook_dispatches(b), 0, "no hook, no dispatch");
    record out_rec = { .replace_with = 7.0, .result = NSC_OK }, in_rec = { 0 };
    int64_t h_out = nsc_module_add_hook(b, NSC_HOOK_OUTPUT, output_hook, &out_rec, NULL);
    int64_t h_in = nsc_module_add_hook(b, NSC_HOOK_INPUT, input_hook, &in_rec, NULL);
    cr_assert(h_out > 0 && h_in > 0);
    v = run(root, 1.0);
    cr_expect_float_eq(v, 35.0, 1e-6, "b's output replaced by 7, then c * 5");
    v = run(root, 1.0);
    cr_expect_float_eq(v, 35.0, 1e-6);
    cr_expect_eq(out_rec.call_index[0], 1, "b's second call (no reset between runs): %lld",
                 (long long)out_rec.call_index[0]);
    nsc_module_reset_calls(root);
    cr_expect_eq(nsc_module_call_count(b), 0);
    cr_expect_eq(nsc_module_remove_hook(b, h_out), NSC_OK);
    v = run(root, 1.0);
    cr_expect_float_eq(v, 300.0, 1e-6, "the input hook still scales by 10");
    cr_expect_eq(nsc_module_hook_dispatches(b), 5);
    cr_expect_eq(nsc_module_remove_hook(b, h_out), NSC_ERR_ARG);
    nsc_module_free(root);
}

Test(module, a_hook_can_stop_the_forward) {
    nsc_module *root = tree();
    record stop = { .result = NSC_STOPPED };
    nsc_module_add_hook(nsc_module_find(root, "a"), NSC_HOOK_OUTPUT, output_hook, &stop, NULL);
    nsc_tensor *in = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    (void)nsc_module_path(nsc_module_find(root, "a")); // paths are cached on first use
    int64_t before = nsct_live_blocks();
    nsc_tensor *out = nsc_module_call(root, 1, &in);
    cr_expect_null(out);
    cr_expect_eq(nsc_last_status(), NSC_STOPPED);
    cr_expect_eq(nsc_module_call_count(nsc_module_find(root, "inner.b")), 0, "b never ran");
    cr_expect_eq(nsct_live_blocks(), before, "intermediates were freed");
    nsc_free(in);
    nsc_module_free(root);
}

// Adds output_hook (with the record in ctx) to m from inside a hook.
static nsc_status adding_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                              nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)kind, (void)call_index, (void)n, (void)values, (void)replace;
    record *r = ctx;
    if (r->calls++ == 0) {
        nsc_module_add_hook(m, NSC_HOOK_OUTPUT, output_hook, r + 1, NULL);
    }
    return NSC_OK;
}

// As torch, which runs a snapshot of the hooks: one added by a hook runs
// from the next call on.
Test(module, a_hook_added_by_a_hook_runs_from_the_next_call) {
    nsc_module *root = tree();
    nsc_module *b = nsc_module_find(root, "inner.b");
    record recs[2] = { { 0 }, { .result = NSC_OK } };
    cr_assert(nsc_module_add_hook(b, NSC_HOOK_OUTPUT, adding_hook, recs, NULL) > 0);
    (void)run(root, 1.0);
    cr_expect_eq(recs[1].calls, 0, "not in the call that added it");
    (void)run(root, 1.0);
    cr_expect_eq(recs[1].calls, 1, "from the next call on");
    nsc_module_free(root);
}

static int g_slot_frees;
static void slot_free(void *p) {
    (void)p;
    g_slot_frees++;
}

Test(module, batch_dims_and_slots) {
    nsc_module *m = scale_module(1);
    cr_expect_eq(nsc_module_batch_dim(m, NSC_HOOK_OUTPUT, 0), 0);
    cr_expect_eq(nsc_module_set_batch_dim(m, NSC_HOOK_INPUT, 1, -1), NSC_OK);
    cr_expect_eq(nsc_module_batch_dim(m, NSC_HOOK_INPUT, 1), -1);
    cr_expect_eq(nsc_module_set_batch_dim(m, NSC_HOOK_OUTPUT, 1, 0), NSC_ERR_ARG);
    static int token;
    nsc_module_set_slot(m, &token, slot_free);
    cr_expect_eq(nsc_module_get_slot(m), &token);
    nsc_module_free(m);
    cr_expect_eq(g_slot_frees, 1);
}

// An unknown hook kind or an out-of-range index is refused and changes
// nothing; set_batch_dim(kind 7, index 5, dim -1) returned NSC_OK and wrote
// the output's batch dim.
Test(module, bad_batch_dim_values_are_refused_and_change_nothing) {
    nsc_module *m = scale_module(1);
    struct {
        nsc_hook_kind kind;
        int index, dim;
        const char *text;
    } bad[] = {
        { (nsc_hook_kind)7, 5, -1, "module_set_batch_dim: kind 7: expected NSC_HOOK_INPUT or" },
        { (nsc_hook_kind)-1, 0, 1, "kind -1" },
        { NSC_HOOK_INPUT, 8, 1, "module_set_batch_dim: input 8: expected 0..7" },
        { NSC_HOOK_INPUT, -1, 1, "input -1" },
        { NSC_HOOK_OUTPUT, 1, 1, "module_set_batch_dim: output 1: expected 0" },
        { NSC_HOOK_INPUT, 0, 8, "module_set_batch_dim: dim 8: expected -1 (none) or 0..7" },
        { NSC_HOOK_OUTPUT, 0, -2, "dim -2" },
    };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        nsc_clear_error();
        cr_expect_eq(nsc_module_set_batch_dim(m, bad[i].kind, bad[i].index, bad[i].dim),
                     NSC_ERR_ARG, "case %d", i);
        cr_expect(strstr(nsc_last_error(), bad[i].text), "case %d: %s", i, nsc_last_error());
        cr_expect_eq(nsc_module_batch_dim(m, NSC_HOOK_OUTPUT, 0), 0, "case %d: output", i);
        for (int k = 0; k < 8; k++) {
            cr_expect_eq(nsc_module_batch_dim(m, NSC_HOOK_INPUT, k), 0, "case %d: input %d", i, k);
        }
    }
    nsc_clear_error();
    cr_expect_eq(nsc_module_batch_dim(m, (nsc_hook_kind)99, 0), -1);
    cr_expect(strstr(nsc_last_error(), "module_batch_dim: kind 99"), "%s", nsc_last_error());
    nsc_clear_error();
    cr_expect_eq(nsc_module_batch_dim(m, NSC_HOOK_INPUT, 8), -1);
    cr_expect(strstr(nsc_last_error(), "module_batch_dim: input 8: expected 0..7"), "%s",
              nsc_last_error());
    nsc_clear_error();
    nsc_module_free(m);
}

// An index past the end is an argument error naming the count (it was NULL
// with no error recorded).
Test(module, an_index_out_of_range_names_the_count) {
    nsc_module *root = tree(); // 5 modules, 3 parameters, no buffer
    int64_t before = nsct_live_blocks();
    nsc_clear_error();
    cr_expect_null(nsc_module_at(root, 99));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "module_at: index 99: expected 0..4 (5 modules)"), "%s",
              nsc_last_error());
    int64_t bad[3] = { -1, INT64_MIN, 3 };
    for (int i = 0; i < 3; i++) {
        nsc_clear_error();
        const char *path = "unchanged";
        cr_expect_null(nsc_module_param_at(root, bad[i], &path));
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG, "index %lld", (long long)bad[i]);
        char want[96];
        snprintf(want, sizeof want, "module_param_at: index %lld: expected 0..2 (3 parameters)",
                 (long long)bad[i]);
        cr_expect(strstr(nsc_last_error(), want), "%s", nsc_last_error());
        cr_expect_str_eq(path, "unchanged");
    }
    nsc_clear_error();
    cr_expect_null(nsc_module_buffer_at(root, 0, NULL));
    cr_expect(strstr(nsc_last_error(), "module_buffer_at: index 0"), "%s", nsc_last_error());
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), before);
    nsc_module_free(root);
}

Test(module, a_user_module_is_trainable) {
    nsc_module *root = tree();
    cr_assert_eq(nsc_module_requires_grad_(root, true), NSC_OK);
    nsc_tensor *in = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    nsc_tensor *out = nsc_module_call(root, 1, &in);
    cr_assert_eq(nsc_backward(out, NULL, false), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *g = nsc_tensor_get_grad(nsc_module_find_tensor(root, "inner.c.w"));
    cr_expect_float_eq(nsc_tensor_item(g), 6.0, 1e-6, "d(2*3*w)/dw");
    cr_assert_eq(nsc_module_zero_grad(root, false), NSC_OK); // torch's Module.zero_grad
    cr_expect_eq(nsc_tensor_get_grad(nsc_module_find_tensor(root, "inner.c.w")), g, "in place");
    cr_expect_float_eq(nsc_tensor_item(g), 0.0, 0, "zeroed");
    cr_assert_eq(nsc_module_zero_grad(root, true), NSC_OK);
    for (int64_t i = 0; i < nsc_module_n_params(root); i++) {
        cr_expect_null(nsc_tensor_get_grad(nsc_module_param_at(root, i, NULL)), "set to none");
    }
    cr_expect_eq(nsc_module_zero_grad(NULL, true), NSC_ERR_ARG);
    nsc_clear_error();
    nsc_free(out);
    nsc_free(in);
    nsc_module_free(root);
}

// model.to(device): tensors already there stay the same objects; a device
// that cannot be reached (META, CUDA without a GPU) is refused naming the
// first tensor, and the module is left exactly as it was.
Test(module, to_keeps_what_is_there_and_refuses_what_it_cannot_reach) {
    nsc_module *root = tree();
    nsc_tensor *shared = nsc_module_find_tensor(root, "a.w");
    cr_assert_eq(nsc_module_add_param(nsc_module_find(root, "inner.b"), "tied", shared), NSC_OK);
    cr_assert_eq(nsc_module_requires_grad_(root, true), NSC_OK);
    nsc_tensor *before[4];
    const char *path;
    for (int64_t i = 0; i < nsc_module_n_params(root); i++) {
        before[i] = nsc_module_param_at(root, i, &path);
    }
    for (int64_t i = 0; i < nsc_module_n_modules(root); i++) {
        nsc_module_path(nsc_module_at(root, i)); // cached on first use: not a leak
    }
    int64_t blocks = nsct_live_blocks();
    cr_expect_eq(nsc_module_to(root, NSC_CPU), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_module_to(root, NSC_META), NSC_ERR_DEVICE);
    cr_expect(strstr(nsc_last_error(), "module to meta: expected cpu or cuda"), "%s",
              nsc_last_error());
    if (!nsc_cuda_available()) {
        cr_expect_eq(nsc_module_to(nsc_module_find(root, "inner"), NSC_CUDA), NSC_ERR_DEVICE);
        cr_expect(strstr(nsc_last_error(), "module to cuda: inner.b.w [1] f32 on cpu: "), "%s",
                  nsc_last_error());
        cr_expect(strstr(nsc_last_error(), "device cuda is not available"), "%s", nsc_last_error());
    }
    cr_expect_eq(nsc_module_to(NULL, NSC_CPU), NSC_ERR_ARG);
    nsc_mem_fail_after(1); // the plan's first allocation
    cr_expect_eq(nsc_module_to(root, NSC_CPU), NSC_ERR_OOM);
    nsc_mem_fail_after(0);
    nsc_clear_error();
    cr_expect_eq(nsct_live_blocks(), blocks, "a refused move left blocks behind");
    cr_assert_eq(nsc_module_n_params(root), 4);
    for (int64_t i = 0; i < nsc_module_n_params(root); i++) {
        nsc_tensor *t = nsc_module_param_at(root, i, &path);
        cr_expect_eq(t, before[i], "%s was replaced", path);
        cr_expect(nsc_tensor_requires_grad(t), "%s", path);
    }
    cr_expect_eq(nsc_module_find_tensor(root, "inner.b.tied"), shared, "the tie holds");
    nsc_module_free(root);
}

// --- names, paths and messages (a reviewer's repros, each refused or wrong
// before: a crash on a NULL name, "set_tensor: .nope", "a." found as "a",
// paths kept by modules that left their tree, names longer than find takes)

Test(module, set_tensor_refuses_a_null_name_and_names_the_root) {
    nsc_module *m = scale_module(2.0);
    nsc_tensor *t = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    int64_t before = nsct_live_blocks();
    cr_expect_eq(nsc_module_set_tensor(m, NULL, t), NSC_ERR_ARG); // crashed in strcmp
    cr_expect(strstr(nsc_last_error(), "module set_tensor: the name is NULL"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_module_set_tensor(m, "nope", t), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(),
                     "module set_tensor: nope (on the root, Scale): no such parameter or buffer"),
              "%s", nsc_last_error());
    nsc_tensor *wide = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    cr_expect_eq(nsc_module_set_tensor(m, "w", wide), NSC_ERR_SHAPE);
    cr_expect(strstr(nsc_last_error(), "module set_tensor: w (on the root, Scale): [2] f32 given"),
              "%s", nsc_last_error());
    cr_expect_eq(nsc_module_add_param(m, "w", t), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "add_param: w (on the root, Scale) already exists"), "%s",
              nsc_last_error());
    nsc_free(wide);
    cr_expect_eq(nsct_live_blocks(), before);
    cr_expect_float_eq(nsc_tensor_item(nsc_module_param(m, "w")), 2.0, 0, "unchanged");
    nsc_clear_error();
    nsc_free(t);
    nsc_module_free(m);
}

// torch's get_submodule("inner.") raises; find took the trailing dot as the
// end of the path and gave inner.
Test(module, an_empty_last_segment_is_refused) {
    nsc_module *root = tree();
    const char *bad[] = { "inner.", "inner.b.", ".", "inner..b", ".inner" };
    for (int i = 0; i < NSCI_ARRAY_LEN(bad); i++) {
        nsc_clear_error();
        cr_expect_null(nsc_module_find(root, bad[i]), "%s", bad[i]);
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG, "%s", bad[i]);
        cr_expect(strstr(nsc_last_error(), "empty segment"), "%s: %s", bad[i], nsc_last_error());
    }
    nsc_clear_error();
    cr_expect_null(nsc_module_find_tensor(root, "inner.c..w")); // gave inner.c.w
    cr_expect(strstr(nsc_last_error(), "module path \"inner.c.\": empty segment"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_module_find(root, ""), root, "\"\" is the root, as torch");
    cr_expect_eq(nsc_module_find(root, "inner.b"), nsc_module_at(root, 3));
    nsc_clear_error();
    nsc_module_free(root);
}

// A module that leaves its tree (its parent freed, or replaced) is a root:
// its path and name were the old ones, its children's paths too.
Test(module, a_detached_module_forgets_its_path) {
    nsc_module *root = tree();
    nsc_module *inner = nsc_module_retain(nsc_module_find(root, "inner"));
    nsc_module *b = nsc_module_find(inner, "b");
    cr_assert_str_eq(nsc_module_path(b), "inner.b"); // cached
    nsc_module *a = nsc_module_retain(nsc_module_find(root, "a"));
    cr_assert_str_eq(nsc_module_path(a), "a");
    nsc_module *fresh = scale_module(1.0);
    cr_assert_eq(nsc_module_replace_child(root, "a", fresh), NSC_OK);
    cr_expect_null(nsc_module_parent(a));
    cr_expect_str_eq(nsc_module_path(a), "", "the replaced child is a root");
    cr_expect_str_eq(nsc_module_name(a), "");
    cr_expect_str_eq(nsc_module_path(fresh), "a");
    nsc_module_free(root);
    cr_expect_null(nsc_module_parent(inner));
    cr_expect_str_eq(nsc_module_path(inner), "", "its parent is gone");
    cr_expect_str_eq(nsc_module_name(inner), "");
    cr_expect_str_eq(nsc_module_path(b), "b");
    nsc_module *other = nsc_module_new("Other", chain_forward, NULL, NULL);
    cr_assert_eq(nsc_module_add_child(other, "moved", inner), NSC_OK);
    cr_expect_str_eq(nsc_module_path(b), "moved.b");
    cr_expect_float_eq(run(other, 1.0), 15.0, 1e-6, "b * c");
    nsc_module_free(fresh);
    nsc_module_free(a);
    nsc_module_free(inner);
    nsc_module_free(other);
}

static nsc_status stop_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                            nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)values, (void)replace, (void)ctx;
    return NSC_STOPPED;
}

static nsc_status silent_failing_hook(nsc_module *m, nsc_hook_kind kind, int64_t call_index, int n,
                                      nsc_tensor *const *values, nsc_tensor **replace, void *ctx) {
    (void)m, (void)kind, (void)call_index, (void)n, (void)values, (void)replace, (void)ctx;
    return NSC_ERR_ARG; // records nothing: the call says which hook
}

// A root has the path "": messages name its type ("forward stopped by a hook
// on " named nothing).
Test(module, messages_name_a_root_by_its_type) {
    nsc_module *m = scale_module(2.0);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    int64_t h = nsc_module_add_hook(m, NSC_HOOK_INPUT, stop_hook, NULL, NULL);
    nsc_clear_error();
    cr_expect_null(nsc_module_call(m, 1, &x));
    cr_expect_str_eq(nsc_last_error(), "forward stopped by a hook on Scale");
    nsc_module_remove_hook(m, h);
    nsc_module_add_hook(m, NSC_HOOK_OUTPUT, silent_failing_hook, NULL, NULL);
    nsc_clear_error();
    cr_expect_null(nsc_module_call(m, 1, &x));
    cr_expect_str_eq(nsc_last_error(), "output hook on Scale failed");
    nsc_module *bare = nsc_module_new("MyProbe", NULL, NULL, NULL);
    cr_expect_null(nsc_module_call(bare, 1, &x));
    cr_expect_str_eq(nsc_last_error(), "module MyProbe has no forward");
    cr_expect_eq(nsc_module_remove_hook(bare, 12345), NSC_ERR_ARG);
    cr_expect_str_eq(nsc_last_error(), "module remove_hook: no hook 12345 on MyProbe");
    nsc_clear_error();
    nsc_module_free(bare);
    nsc_free(x);
    nsc_module_free(m);
}

// A forward that fails must record why; one that returns NULL without
// recording anything passed for a success with no output (callers such as
// generation then read stale values).
static nsc_tensor *null_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)m, (void)n_in, (void)in, (void)state;
    return NULL;
}

Test(module, a_forward_returning_null_silently_is_an_error) {
    nsc_module *root = tree();
    nsc_module *quiet = nsc_module_new("Quiet", null_forward, NULL, NULL);
    cr_assert_eq(nsc_module_replace_child(nsc_module_find(root, "inner"), "b", quiet), NSC_OK);
    nsc_tensor *x = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(1));
    nsc_clear_error();
    cr_expect_null(nsc_module_call(root, 1, &x));
    cr_expect_eq(nsc_last_status(), NSC_ERR_STATE);
    cr_expect_str_eq(nsc_last_error(),
                     "module inner.b: its forward returned NULL without recording an error");
    nsc_clear_error();
    cr_expect_null(nsc_module_forward(quiet, 1, &x));
    cr_expect_eq(nsc_last_status(), NSC_ERR_STATE);
    nsc_module *alone = nsc_module_new("Quiet", null_forward, NULL, NULL);
    nsc_clear_error();
    cr_expect_null(nsc_module_forward(alone, 1, &x));
    cr_expect_str_eq(nsc_last_error(),
                     "module Quiet: its forward returned NULL without recording an error");
    nsc_clear_error();
    nsc_module_free(alone);
    nsc_module_free(quiet);
    nsc_free(x);
    nsc_module_free(root);
}

// Names are at most 255 bytes (find's segment limit: a longer one was added
// and then could not be found) and tensor paths at most 1023 (param_at cut
// them to 1023 bytes with no error).
Test(module, names_and_paths_past_their_limits_are_refused) {
    nsc_module *root = tree();
    nsc_module *extra = scale_module(1.0);
    char name[301];
    memset(name, 'a', 300);
    name[300] = '\0';
    int64_t before = nsct_live_blocks();
    cr_expect_eq(nsc_module_add_child(root, name, extra), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "(300 bytes) is too long: expected 1 to 255 bytes"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_module_replace_child(root, name, extra), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "module replace_child: name \"aaaa"), "%s",
              nsc_last_error());
    cr_expect_eq(nsc_module_add_param(root, name, nsc_module_param(extra, "w")), NSC_ERR_ARG);
    cr_expect_eq(nsct_live_blocks(), before);
    cr_expect_null(nsc_module_parent(extra));
    cr_expect_eq(nsc_module_n_modules(root), 5);
    name[255] = '\0'; // the longest name: added and found
    cr_assert_eq(nsc_module_add_child(root, name, extra), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_module_find(root, name), extra);
    // 4 levels of 255-byte names: the parameter's path is 4 * 256 + 1 bytes.
    nsc_module *at = extra;
    for (int i = 0; i < 3; i++) {
        nsc_module *next = scale_module(1.0);
        cr_assert_eq(nsc_module_add_child(at, name, next), NSC_OK);
        nsc_module_free(next);
        at = next;
    }
    int64_t n = nsc_module_n_params(root);
    const char *path = "unchanged";
    nsc_clear_error();
    cr_expect_null(nsc_module_param_at(root, n - 1, &path));
    cr_expect(strstr(nsc_last_error(), "longer than 1023 bytes, the limit of a tensor path"), "%s",
              nsc_last_error());
    cr_expect_str_eq(path, "unchanged");
    cr_expect_not_null(nsc_module_param_at(root, n - 1, NULL), "no path asked: nothing to cut");
    nsc_module_param_at(root, n - 2, &path); // the one above it fits: 3 * 256 + 1 bytes
    cr_expect_eq(strlen(path), 3 * 256 + 1);
    cr_expect_str_eq(path + strlen(path) - 2, ".w");
    char full[1100];
    snprintf(full, sizeof full, "%s.w", nsc_module_path(at));
    cr_expect_null(nsc_module_find_tensor(root, full));
    cr_expect(strstr(nsc_last_error(), "of 1025 bytes: expected at most 1023"), "%s",
              nsc_last_error());
    nsc_adamw_config adamw = nsc_adamw_defaults();
    cr_expect_null(nsc_optim_adamw_new_module(root, &adamw), "it names tensors by their paths");
    cr_expect(strstr(nsc_last_error(), "the limit of a tensor path"), "%s", nsc_last_error());
    nsc_clear_error();
    nsc_module_free(extra);
    nsc_module_free(root);
}
