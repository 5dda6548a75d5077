// Test harness shared by every suite: the op case table, deterministic
// inputs, fixtures, comparisons with named tolerances, and leak checks.
#ifndef NSC_TESTS_HARNESS_H
#define NSC_TESTS_HARNESS_H

#include <locale.h>
#include <stdbool.h>
#include <stdint.h>

#include "nsc.h"
#include "graph/graph_impl.h"
#include "tensor/tensor_impl.h"

// --- tolerances: |a - b| <= atol + rtol * |b| ---

typedef struct nsct_tol {
    double atol, rtol;
    const char *why;
} nsct_tol;

// Integer, bool, copies and views: bit-exact.
#define TOL_EXACT ((nsct_tol){ 0, 0, "exact: no rounding involved" })
// One f32 rounding per element (add, mul, ...): PyTorch may fuse or order differently.
#define TOL_F32 ((nsct_tol){ 1e-6, 1e-5, "f32 elementwise: a few ulp" })
// libm transcendental functions differ by a few ulp between glibc and PyTorch's SLEEF/vectorized paths.
#define TOL_F32_TRANSC ((nsct_tol){ 1e-5, 1e-4, "f32 transcendental: libm vs vectorized" })
// Sums over many elements: summation order differs.
#define TOL_F32_REDUCE ((nsct_tol){ 1e-5, 1e-4, "f32 reduction: summation order" })
// Matrix products: blocked summation orders in BLAS.
#define TOL_F32_MATMUL ((nsct_tol){ 1e-4, 1e-4, "f32 matmul: BLAS blocking order" })
#define TOL_F64 ((nsct_tol){ 1e-12, 1e-10, "f64: summation order" })

// --- the case table ---

typedef enum nsct_layout {
    NSCT_CONTIG,     // contiguous
    NSCT_TRANSPOSED, // stored with the last two dims swapped, viewed through transpose
    NSCT_STEPPED,    // stored with the last dim doubled, viewed through slice(::2)
    NSCT_EXPANDED,   // dim 0 stored with size 1, viewed through expand (stride 0)
} nsct_layout;

typedef struct nsct_input {
    nsc_dtype dtype;
    nsct_layout layout;
    double lo, hi; // value range: floats uniform in [lo, hi); i64 in [lo, hi); bool ignores it
    int ndim;
    int64_t shape[NSC_MAX_DIMS];
} nsct_input;

enum { NSCT_MAX_INPUTS = 6, NSCT_MAX_OUTPUTS = 4 };

// Runs the C side of a case: fills out[] with new references and returns the
// number of outputs, or -1 on failure.
typedef int (*nsct_run_fn)(nsc_tensor **x, nsc_tensor **out);

typedef struct nsct_case {
    const char *name;
    nsc_op op;      // the op this row covers (registry)
    nsct_tol tol;
    const char *torch; // Python expression over x0, x1, ... (torch, F available)
    nsct_run_fn run;
    int n_in;
    nsct_input in[NSCT_MAX_INPUTS];
} nsct_case;

// Every case of every family (tests/cases.c).
extern const nsct_case nsct_all_cases[];
extern const int nsct_n_cases;

// Layout flags a case exercises (bit per nsci_case_flag).
uint32_t nsct_case_flags(const nsct_case *c);

// Builds input i of case c on device (CPU or META), with its layout. Values
// are a pure function of (case name, input index, element index): the
// fixture script computes the same ones.
nsc_tensor *nsct_make_input(const nsct_case *c, int i, nsc_dtype dtype, nsc_device device);

// The same input in two steps: the tensor owning its storage (a leaf for
// gradient checks) and the layout view over it.
nsc_tensor *nsct_make_leaf(const nsct_case *c, int i, nsc_dtype dtype);
nsc_tensor *nsct_layout_view(const nsct_case *c, int i, nsc_tensor *leaf);

// --- fixtures ---

// A fixture file of named tensors (tests/fixtures/*.bin, format in
// tests/fixtures/make_fixtures.py). Loaded once per process.
typedef struct nsct_fixtures nsct_fixtures;
nsct_fixtures *nsct_fixtures_load(const char *path);
// A CPU tensor (new reference) or NULL when absent.
nsc_tensor *nsct_fixture_get(nsct_fixtures *f, const char *name);
void nsct_fixtures_free(nsct_fixtures *f);
// Path of a file under tests/fixtures/ (static buffer).
const char *nsct_fixture_path(const char *file);

// --- assertions ---

// Checks shape, dtype and values of got against want with tol; on mismatch
// writes a description into why and returns false.
bool nsct_close(nsc_tensor *got, nsc_tensor *want, nsct_tol tol, char *why, size_t why_bytes);

// Sum of t's elements / its i-th element in row-major order, as doubles
// (no temporaries left behind).
double nsct_sum(nsc_tensor *t);
double nsct_flat(nsc_tensor *t, int64_t i);

// What nsc_tensor_print writes for t (caller frees).
char *nsct_printed(nsc_tensor *t);

// Live allocator blocks now (for leak checks around a test body).
int64_t nsct_live_blocks(void);

// --- locales ---

// A locale whose decimal point is ',' (de_DE.UTF-8, built with localedef
// into a temporary directory when the system has none), for uselocale(); or
// (locale_t)0 when it cannot be had (the caller skips). Caller freelocale()s.
locale_t nsct_comma_locale(void);

#endif
