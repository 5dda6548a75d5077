// The op profiler (nsc/profile.h): calls per op and device, views and ops
// outside the profile not counted, a kernel that runs other ops charged for
// them, backward ops listed, the table's order and print, start/stop
// misuse, and on CUDA (a GPU or the emulator) the event-timed rows.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "nsc/cuda.h"
#include "nsc/profile.h"
#include "tensor/profile.h"
#include "tests/harness.h"

// The row of op on device in the last profile, or a row with 0 calls.
static nsc_profile_row row_of(const char *op, nsc_device device) {
    nsc_profile_row rows[64];
    int n = nsc_profile_rows(rows, 64);
    for (int i = 0; i < n && i < 64; i++) {
        if (strcmp(rows[i].op, op) == 0 && rows[i].device == device) {
            return rows[i];
        }
    }
    return (nsc_profile_row){ op, device, 0, 0.0 };
}

Test(profile, counts_kernels_per_op_and_skips_views) {
    nsc_tensor *a = nsc_randn(NULL, NSC_F32, NSC_SHAPE(64, 64));
    nsc_tensor *before = nsc_add(a, a); // not counted: before the start
    cr_assert_eq(nsc_profile_start(), NSC_OK, "%s", nsc_last_error());
    for (int i = 0; i < 3; i++) {
        nsc_tensor *m = nsc_matmul(a, a);
        nsc_tensor *t = nsc_transpose(m, 0, 1); // a view: no kernel
        nsc_tensor *s = i < 2 ? nsc_add(t, a) : NULL;
        nsc_free(m);
        nsc_free(t);
        nsc_free(s);
    }
    cr_assert_eq(nsc_profile_stop(), NSC_OK, "%s", nsc_last_error());
    nsc_tensor *after = nsc_add(a, a); // not counted: after the stop
    cr_expect_eq(row_of("matmul", NSC_CPU).calls, 3);
    cr_expect_eq(row_of("add", NSC_CPU).calls, 2);
    cr_expect_eq(row_of("transpose", NSC_CPU).calls, 0);
    nsc_profile_row rows[8];
    int n = nsc_profile_rows(rows, 8);
    cr_expect_eq(n, 2);
    cr_expect(rows[0].total_ms >= rows[1].total_ms, "largest first");
    cr_expect(rows[0].total_ms > 0);
    cr_expect_eq(nsc_profile_rows(NULL, 0), 2);
    // A new profile starts from an empty table.
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    cr_expect_eq(nsc_profile_rows(NULL, 0), 0);
    nsc_free(before);
    nsc_free(after);
    nsc_free(a);
}

// A kernel that ran other ops would be charged for them: only a thread's
// outermost kernel is recorded (driven through the dispatcher's hooks).
Test(profile, only_the_outermost_kernel_is_recorded) {
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsci_profile_mark outer, inner, again;
    nsci_profile_begin(&outer, NSC_CPU);
    nsci_profile_begin(&inner, NSC_CPU);
    nsci_profile_end(&inner, NSC_OP_contiguous, NSC_CPU);
    nsci_profile_begin(&again, NSC_CPU);
    nsci_profile_end(&again, NSC_OP_add, NSC_CPU);
    nsci_profile_end(&outer, NSC_OP_var, NSC_CPU);
    nsci_profile_begin(&outer, NSC_CPU); // the depth unwound: a new outermost kernel
    nsci_profile_end(&outer, NSC_OP_sum, NSC_CPU);
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    cr_expect_eq(row_of("var", NSC_CPU).calls, 1);
    cr_expect_eq(row_of("sum", NSC_CPU).calls, 1);
    cr_expect_eq(nsc_profile_rows(NULL, 0), 2, "the inner kernels are not listed");
}

// A kernel that ends after the stop (another thread's) records nothing,
// in the stopped profile or in one started since.
Test(profile, a_kernel_ending_after_the_stop_is_not_counted) {
    nsci_profile_mark late, later;
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsci_profile_begin(&late, NSC_CPU);
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    nsci_profile_end(&late, NSC_OP_matmul, NSC_CPU);
    cr_expect_eq(nsc_profile_rows(NULL, 0), 0, "nothing in the stopped profile");
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsci_profile_begin(&later, NSC_CPU);
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsci_profile_end(&later, NSC_OP_add, NSC_CPU);
    nsc_tensor *a = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(2));
    nsc_tensor *b = nsc_mul(a, a); // the thread's depth unwound: this one is outermost
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    cr_expect_eq(row_of("add", NSC_CPU).calls, 0, "begun in an earlier profile");
    cr_expect_eq(row_of("mul", NSC_CPU).calls, 1);
    nsc_free(a);
    nsc_free(b);
}

Test(profile, backward_and_optimizer_ops_are_listed) {
    nsc_tensor *w = nsc_randn(NULL, NSC_F32, NSC_SHAPE(8, 8));
    nsc_requires_grad_(w, true);
    nsc_tensor *x = nsc_randn(NULL, NSC_F32, NSC_SHAPE(8, 8));
    nsc_optim *opt = nsc_optim_adamw_new(
        1, &w, &(nsc_adamw_config){ .lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 });
    cr_assert(opt, "%s", nsc_last_error());
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsc_tensor *y = nsc_matmul(x, w);
    nsc_tensor *loss = nsc_sum_all(y);
    cr_assert_eq(nsc_backward(loss, NULL, false), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_optim_step(opt), NSC_OK, "%s", nsc_last_error());
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    cr_expect_geq(row_of("matmul", NSC_CPU).calls, 2, "forward and the weight's gradient");
    cr_expect_eq(row_of("fused_adamw_", NSC_CPU).calls, 1);
    nsc_free(loss);
    nsc_free(y);
    nsc_optim_free(opt);
    nsc_free(x);
    nsc_free(w);
}

Test(profile, misuse_is_refused_and_changes_nothing) {
    cr_expect_eq(nsc_profile_stop(), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "profile_stop: no profile is running"), "%s",
              nsc_last_error());
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsc_tensor *a = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(4));
    nsc_tensor *b = nsc_add(a, a);
    cr_expect_eq(nsc_profile_start(), NSC_ERR_STATE);
    cr_expect(strstr(nsc_last_error(), "profile_start: a profile is already running"), "%s",
              nsc_last_error());
    nsc_tensor *c = nsc_add(a, a);
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    cr_expect_eq(nsc_profile_print(NULL), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "profile_print: out is NULL: expected an open FILE"), "%s",
              nsc_last_error());
    cr_expect_eq(row_of("add", NSC_CPU).calls, 2, "the refused start and print cleared nothing");
    nsc_free(a);
    nsc_free(b);
    nsc_free(c);
}

Test(profile, prints_a_table_with_shares_and_a_total) {
    nsc_tensor *a = nsc_randn(NULL, NSC_F32, NSC_SHAPE(32, 32));
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsc_tensor *m = nsc_matmul(a, a);
    cr_assert_eq(nsc_profile_stop(), NSC_OK);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    cr_expect_eq(nsc_profile_print(f), NSC_OK);
    fclose(f);
    cr_expect(strstr(text, "op                       device    calls     total_ms    mean_us"),
              "%s", text);
    cr_expect(strstr(text, "\nmatmul ") && strstr(text, " cpu "), "%s", text);
    cr_expect(strstr(text, "100.0%"), "%s", text);
    cr_expect(strstr(text, "\ntotal "), "%s", text);
    free(text);
    nsc_free(m);
    nsc_free(a);
}

// On CUDA the rows hold event times; profiling copies nothing to the host.
Test(profile, cuda_kernels_are_timed_by_events) {
    if (!nsc_cuda_available() || nsc_cuda_init() != NSC_OK) {
        cr_skip_test("no CUDA device: %s", nsc_last_error());
    }
    nsc_tensor *h = nsc_randn(NULL, NSC_F32, NSC_SHAPE(64, 64));
    nsc_tensor *a = nsc_to(h, NSC_CUDA);
    nsc_cuda_stats before = nsc_cuda_stats_get();
    cr_assert_eq(nsc_profile_start(), NSC_OK);
    nsc_tensor *m = nsc_matmul(a, a);
    nsc_tensor *s = nsc_softmax(m, -1);
    cr_assert_eq(nsc_profile_stop(), NSC_OK, "%s", nsc_last_error());
    cr_expect_eq(nsc_cuda_stats_get().transfers, before.transfers);
    nsc_profile_row mm = row_of("matmul", NSC_CUDA), sm = row_of("softmax", NSC_CUDA);
    cr_expect_eq(mm.calls, 1);
    cr_expect_eq(sm.calls, 1);
    cr_expect(mm.total_ms > 0 && sm.total_ms > 0, "event-timed: %g, %g ms", mm.total_ms,
              sm.total_ms);
    cr_expect_eq(row_of("matmul", NSC_CPU).calls, 0);
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    nsc_profile_print(f);
    fclose(f);
    cr_expect(!strstr(text, "not timed"), "every CUDA kernel got its events: %s", text);
    free(text);
    nsc_free(s);
    nsc_free(m);
    nsc_free(a);
    nsc_free(h);
}
