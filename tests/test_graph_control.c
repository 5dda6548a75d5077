// Graph II (issue 7): modules called on proxies, early stop, scan, cache,
// log, persistent edits, skip, DOT export.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"

static nsc_tensor *input(int64_t rows) {
    nsc_tensor *a = nsc_arange(0, (double)(rows * 4), 1, NSC_F32);
    nsc_tensor *s = nsc_mul_scalar(a, 0.1);
    nsc_tensor *x = nsc_reshape(s, NSC_SHAPE(rows, 4));
    nsc_free(a);
    nsc_free(s);
    return x;
}

typedef struct fixture {
    nsc_module *model;
    nsc_tensor *x;
    nsc_trace *tr;
    nsc_invoke *inv;
} fixture;

static void start(fixture *f, int blocks) {
    f->model = nsct_chain_model(blocks, 4);
    f->x = input(2);
    f->tr = nsc_trace_new(f->model);
    f->inv = nsc_trace_invoke(f->tr, 1, &f->x);
}

static void finish(fixture *f) {
    nsc_trace_free(f->tr);
    nsc_free(f->x);
    nsc_module_free(f->model);
}

Test(graph_control, calling_a_module_on_a_proxy_is_one_node) {
    fixture f;
    start(&f, 2);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
    int64_t before = nsc_trace_n_nodes(f.tr);
    nsc_tensor *y = nsc_module_call(nsc_module_find(f.model, "head"), 1, &h);
    cr_assert(y && nsc_tensor_is_proxy(y), "%s", nsc_last_error());
    cr_expect_eq(nsc_trace_n_nodes(f.tr), before + 1, "one ApplyModule node, not its ops");
    cr_expect_eq(nsc_tensor_size(y, 1), 3);
    nsc_save(y);
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *v = nsc_trace_get(f.tr, y);
    cr_expect_eq(nsc_tensor_size(v, 1), 3);
    nsc_free(v);
    finish(&f);
}

Test(graph_control, early_stop_ends_the_pass_and_keeps_earlier_saves) {
    fixture f;
    start(&f, 3);
    nsc_tensor *h0 = nsc_save(nsc_invoke_output(f.inv, "h.0", 0));
    nsc_tensor *h2 = nsc_save(nsc_invoke_output(f.inv, "h.2", 0));
    cr_assert_eq(nsc_trace_stop(f.tr, "h.0", 0), NSC_OK, "%s", nsc_last_error());
    int64_t h1_dispatches = nsc_module_hook_dispatches(nsc_module_find(f.model, "h.1"));
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "a stop is not an error: %s", nsc_last_error());
    cr_expect_eq(nsc_module_hook_dispatches(nsc_module_find(f.model, "h.1")), h1_dispatches);
    nsc_tensor *v0 = nsc_trace_get(f.tr, h0);
    cr_expect_not_null(v0, "the value saved before the stop is kept");
    cr_expect_null(nsc_trace_get(f.tr, h2));
    cr_expect(strstr(nsc_last_error(), "never computed"), "%s", nsc_last_error());
    nsc_free(v0);
    finish(&f);
}

Test(graph_control, no_kernel_runs_after_a_stop) {
    fixture f;
    start(&f, 3);
    nsc_trace_stop(f.tr, "h.0", 0);
    nsc_tensor *x = f.x;
    nsc_tensor *h0 = nsc_module_forward(nsc_module_find(f.model, "h.0"), 1, &x);
    nsc_free(h0);
    int64_t k0 = nsci_kernel_count();
    h0 = nsc_module_forward(nsc_module_find(f.model, "h.0"), 1, &x); // one block's kernels
    int64_t block_kernels = nsci_kernel_count() - k0;
    nsc_free(h0);
    k0 = nsci_kernel_count();
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsci_kernel_count() - k0, block_kernels, "only block 0 ran");
    finish(&f);
}

Test(graph_control, scan_knows_every_shape_without_running) {
    fixture f;
    start(&f, 2);
    cr_assert_eq(nsc_trace_check(f.tr), NSC_OK);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.1", 0);
    nsc_tensor *logits = nsc_trace_apply(f.tr, "head", h);
    cr_expect_eq(nsc_tensor_ndim(logits), 2);
    cr_expect_eq(nsc_tensor_size(logits, 0), 2);
    cr_expect_eq(nsc_tensor_size(logits, 1), 3);
    cr_expect_eq(nsc_trace_check(f.tr), NSC_OK);
    cr_expect_null(nsc_matmul(logits, logits));
    cr_expect_eq(nsc_trace_check(f.tr), NSC_ERR_SHAPE, "the first build error stays");
    finish(&f);
}

Test(graph_control, cache_saves_matching_modules) {
    fixture f;
    start(&f, 3);
    cr_expect_eq(nsc_trace_cache(f.tr, f.inv, "h.*", true), 3);
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *out1 = nsc_trace_cache_get(f.tr, f.inv, "h.1", NSC_HOOK_OUTPUT);
    nsc_tensor *in2 = nsc_trace_cache_get(f.tr, f.inv, "h.2", NSC_HOOK_INPUT);
    cr_assert(out1 && in2, "%s", nsc_last_error());
    cr_expect(nsc_allclose(out1, in2, 0, 0, false));
    cr_expect_null(nsc_trace_cache_get(f.tr, f.inv, "head", NSC_HOOK_OUTPUT));
    cr_expect(strstr(nsc_last_error(), "head output was not cached"), "%s", nsc_last_error());
    nsc_free(out1);
    nsc_free(in2);
    finish(&f);
}

Test(graph_control, log_prints_when_computed) {
    fixture f;
    start(&f, 1);
    FILE *log = tmpfile();
    nsc_trace_set_log(f.tr, log);
    cr_assert_eq(nsc_trace_log(f.tr, "block zero", nsc_invoke_output(f.inv, "h.0", 0)), NSC_OK);
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    rewind(log);
    char text[512] = "";
    size_t n = fread(text, 1, sizeof text - 1, log);
    text[n] = '\0';
    cr_expect(strstr(text, "block zero: tensor(shape=[2,4]"), "%s", text);
    fclose(log);
    finish(&f);
}

static nsc_status zero_block_one(nsc_trace *tr, nsc_invoke *inv, void *ctx) {
    (void)tr;
    (*(int *)ctx)++;
    return nsc_zero_(nsc_invoke_output(inv, "h.1", 0));
}

Test(graph_control, persistent_edits_apply_to_every_later_invoke) {
    nsc_module *model = nsct_chain_model(2, 4);
    int calls = 0;
    cr_assert_eq(nsc_model_edit(model, zero_block_one, &calls, NULL), NSC_OK);
    for (int round = 0; round < 2; round++) {
        nsc_tensor *x = input(2), *y = input(1);
        nsc_trace *tr = nsc_trace_new(model);
        nsc_invoke *a = nsc_trace_invoke(tr, 1, &x), *b = nsc_trace_invoke(tr, 1, &y);
        nsc_tensor *sa = nsc_save(nsc_invoke_input(a, "head", 0, 0));
        nsc_tensor *sb = nsc_save(nsc_invoke_input(b, "head", 0, 0));
        cr_assert_eq(nsc_trace_run(tr), NSC_OK, "%s", nsc_last_error());
        nsc_tensor *va = nsc_trace_get(tr, sa), *vb = nsc_trace_get(tr, sb);
        double total = nsct_sum(va) + nsct_sum(vb);
        cr_expect_float_eq(total, 0.0, 1e-12, "the edit zeroed every invoke");
        nsc_free(va);
        nsc_free(vb);
        nsc_trace_free(tr);
        nsc_free(x);
        nsc_free(y);
    }
    cr_expect_eq(calls, 4, "once per invoke per trace");
    nsc_model_edit_clear(model);
    nsc_tensor *x = input(2);
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &x);
    nsc_tensor *s = nsc_save(nsc_invoke_input(inv, "head", 0, 0));
    cr_assert_eq(nsc_trace_run(tr), NSC_OK);
    nsc_tensor *v = nsc_trace_get(tr, s);
    double total = nsct_sum(v);
    cr_expect_neq(total, 0.0, "cleared edits no longer apply");
    nsc_free(v);
    nsc_trace_free(tr);
    nsc_free(x);
    nsc_module_free(model);
}

Test(graph_control, skip_replaces_a_module_without_running_it) {
    fixture f;
    start(&f, 3);
    nsc_tensor *value = nsc_full(NSC_F32, NSC_CPU, NSC_SHAPE(2, 4), 0.25);
    cr_assert_eq(nsc_invoke_skip(f.inv, "h.1", 0, value), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *out1 = nsc_save(nsc_invoke_output(f.inv, "h.1", 0));
    nsc_tensor *in2 = nsc_save(nsc_invoke_input(f.inv, "h.2", 0, 0));
    nsc_tensor *x = f.x;
    nsc_tensor *probe = nsc_module_forward(nsc_module_find(f.model, "h.0"), 1, &x);
    nsc_free(probe);
    int64_t k0 = nsci_kernel_count();
    probe = nsc_module_forward(nsc_module_find(f.model, "h.0"), 1, &x);
    int64_t block_kernels = nsci_kernel_count() - k0;
    nsc_free(probe);
    nsc_tensor *full = nsc_module_forward(f.model, 1, &x);
    nsc_free(full);
    k0 = nsci_kernel_count();
    full = nsc_module_forward(f.model, 1, &x);
    int64_t model_kernels = nsci_kernel_count() - k0;
    nsc_free(full);
    k0 = nsci_kernel_count();
    cr_assert_eq(nsc_trace_run(f.tr), NSC_OK, "%s", nsc_last_error());
    cr_expect_lt(nsci_kernel_count() - k0, model_kernels - block_kernels + 8,
                 "h.1's forward did not run");
    nsc_tensor *v1 = nsc_trace_get(f.tr, out1), *v2 = nsc_trace_get(f.tr, in2);
    cr_expect(nsc_allclose(v1, value, 0, 0, false));
    cr_expect(nsc_allclose(v2, value, 0, 0, false));
    nsc_free(v1);
    nsc_free(v2);
    nsc_free(value);
    finish(&f);
}

Test(graph_control, dot_export_renders) {
    fixture f;
    start(&f, 2);
    nsc_tensor *h = nsc_invoke_output(f.inv, "h.0", 0);
    nsc_save(nsc_trace_apply(f.tr, "head", h));
    nsc_invoke_set_output(f.inv, "h.1", 0, nsc_mul_scalar(nsc_invoke_output(f.inv, "h.1", 0), 2));
    char path[] = "/tmp/nsc_dot_XXXXXX";
    int fd = mkstemp(path);
    FILE *out = fdopen(fd, "w");
    cr_assert_eq(nsc_trace_dot(f.tr, out), NSC_OK);
    fclose(out);
    FILE *in = fopen(path, "r");
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, in);
    text[n] = '\0';
    fclose(in);
    cr_expect(strstr(text, "ApplyModule") && strstr(text, "color=\"blue\""), "%s", text);
    cr_expect(strstr(text, "Swap") && strstr(text, "Lock") && strstr(text, "h.0.output[0]"));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v dot >/dev/null && dot -Tsvg %s > %s.svg", path, path);
    if (system("command -v dot >/dev/null") == 0) {
        cr_expect_eq(system(cmd), 0, "dot renders the graph");
    }
    snprintf(cmd, sizeof cmd, "%s.svg", path);
    remove(cmd);
    remove(path);
    finish(&f);
}
