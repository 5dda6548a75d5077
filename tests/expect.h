// Expectations shared by the op, layer and model suites: tensors from double
// values, values read back as doubles, and the checks every suite repeats
// (an op failing with a named status and message, values unchanged, close to
// a reference within a named tolerance).
#ifndef NSC_TESTS_EXPECT_H
#define NSC_TESTS_EXPECT_H

#include "tests/harness.h"

// A tensor of dtype holding values (row-major); asserts it was made.
nsc_tensor *nsct_from_values(nsc_dtype dtype, int ndim, const int64_t *shape, const double *values);
// All values of t as doubles, row-major (caller free()s).
double *nsct_values_of(nsc_tensor *t);
// The value of a one-element result, which is freed.
double nsct_item_free(nsc_tensor *t);
// got is NULL, the last status is status and the message holds want; clears the error.
void nsct_expect_error(nsc_tensor *got, nsc_status status, const char *want);
// t holds exactly values (NaN matches NaN).
void nsct_expect_values(nsc_tensor *t, const double *values);
// got is within tol of want (got may live on any device; it is read on the CPU).
void nsct_expect_close(nsc_tensor *got, nsc_tensor *want, nsct_tol tol, const char *what);

#endif
