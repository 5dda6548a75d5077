#include "tests/expect.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

nsc_tensor *nsct_from_values(nsc_dtype dtype, int ndim, const int64_t *shape,
                             const double *values) {
    nsc_tensor *d = nsc_from_data(NSC_F64, ndim, shape, values);
    nsc_tensor *t = nsc_to_dtype(d, dtype);
    nsc_free(d);
    cr_assert(t, "nsct_from_values: %s", nsc_last_error());
    return t;
}

double *nsct_values_of(nsc_tensor *t) {
    int64_t n = nsc_tensor_numel(t);
    double *v = calloc((size_t)(n ? n : 1), sizeof *v);
    cr_assert(v && nsc_tensor_copy_to(t, NSC_F64, v, (size_t)n * sizeof *v) == NSC_OK, "%s",
              nsc_last_error());
    return v;
}

double nsct_item_free(nsc_tensor *t) {
    cr_assert(t, "%s", nsc_last_error());
    double v = nsc_tensor_item(t);
    nsc_free(t);
    return v;
}

void nsct_expect_error(nsc_tensor *got, nsc_status status, const char *want) {
    cr_expect_null(got, "expected a failure with \"%s\"", want);
    nsc_free(got);
    cr_expect_eq(nsc_last_status(), status, "\"%s\": status %s", want,
                 nsc_status_name(nsc_last_status()));
    cr_expect(strstr(nsc_last_error(), want), "message \"%s\" lacks \"%s\"", nsc_last_error(),
              want);
    nsc_clear_error();
}

void nsct_expect_values(nsc_tensor *t, const double *values) {
    double *now = nsct_values_of(t);
    int64_t n = nsc_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        cr_expect(now[i] == values[i] || (isnan(now[i]) && isnan(values[i])),
                  "value %lld: %g, expected %g", (long long)i, now[i], values[i]);
    }
    free(now);
}

void nsct_expect_close(nsc_tensor *got, nsc_tensor *want, nsct_tol tol, const char *what) {
    nsc_tensor *host = got && nsc_tensor_device(got) != NSC_CPU ? nsc_to(got, NSC_CPU) : NULL;
    char why[1200];
    cr_expect(nsct_close(host ? host : got, want, tol, why, sizeof why), "%s: %s", what, why);
    nsc_free(host);
}
