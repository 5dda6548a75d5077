// Gradient checks over the case table: every row of a differentiable op is
// run in f64 from leaf tensors that own the inputs' storage (so transposed,
// stepped and expanded layouts are differentiated through their views), and
// the analytic gradients of a weighted sum of the outputs are compared with
// central finite differences on every storage element.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "tests/harness.h"

// Central differences in f64 with step 1e-6 have truncation error ~1e-12
// relative and rounding error ~1e-10 / 1e-6 = 1e-10 absolute, far below these.
static const double FD_STEP = 1e-6, FD_ATOL = 1e-6, FD_RTOL = 1e-5;
// Rows with more storage elements than this are left to the value tests
// (each element costs two forward passes).
static const int64_t MAX_FD_ELEMENTS = 800;

typedef struct grad_case {
    const nsct_case *c;
    nsc_tensor *leaf[NSCT_MAX_INPUTS];
    bool float_in[NSCT_MAX_INPUTS];
    nsc_tensor *weight[NSCT_MAX_OUTPUTS]; // loss = sum_k sum(out_k * weight_k)
    bool f32_output; // a float output is f32: finite differences would drown in rounding
} grad_case;

static bool is_inplace(const nsct_case *c) {
    return (nsci_op_defs[c->op]->flags & NSCI_OP_INPLACE) != 0;
}

// Runs the case from the leaves; returns the loss (0-dim) or NULL.
static nsc_tensor *forward_loss(grad_case *g, bool make_weights) {
    nsc_tensor *x[NSCT_MAX_INPUTS] = { 0 }, *out[NSCT_MAX_OUTPUTS] = { 0 };
    nsc_tensor *loss = NULL;
    const nsct_case *c = g->c;
    for (int i = 0; i < c->n_in; i++) {
        x[i] = nsct_layout_view(c, i, g->leaf[i]);
        if (i == 0 && is_inplace(c) && x[0]) { // a written input must not be a view of a leaf
            nsc_tensor *copy = nsc_clone(x[0]);
            nsc_free(x[0]);
            x[0] = copy;
        }
    }
    int n_out = c->run(x, out);
    uint32_t nondiff = nsci_op_defs[c->op]->nondiff_outputs;
    for (int k = 0; k < n_out; k++) {
        if (!nsci_is_float(nsc_tensor_dtype(out[k])) || (nondiff & (1u << k))) {
            continue;
        }
        if (make_weights) {
            g->f32_output |= nsc_tensor_dtype(out[k]) == NSC_F32;
            nsc_generator *gen = nsc_generator_new(1000 + (uint64_t)k);
            g->weight[k] = nsc_randn(gen, NSC_F64, out[k]->ndim, out[k]->shape);
            nsc_generator_free(gen);
        }
        nsc_tensor *prod = nsc_mul(out[k], g->weight[k]);
        nsc_tensor *part = nsc_sum_all(prod);
        nsc_tensor *total = loss ? nsc_add(loss, part) : nsc_retain(part);
        nsc_free(prod);
        nsc_free(part);
        nsc_free(loss);
        loss = total;
    }
    for (int k = 0; k < NSCT_MAX_OUTPUTS; k++) {
        nsc_free(out[k]);
    }
    for (int i = 0; i < c->n_in; i++) {
        nsc_free(x[i]);
    }
    if (n_out > 0 && !loss) {
        loss = nsc_zeros(NSC_F64, NSC_CPU, 0, NULL); // no float output: nothing to check
    }
    return n_out > 0 ? loss : (nsc_free(loss), NULL);
}

static double loss_value(grad_case *g) {
    nsc_tensor *loss = forward_loss(g, false);
    double v = loss ? nsc_tensor_item(loss) : (double)NAN;
    nsc_free(loss);
    return v;
}

// Compares leaf i's gradient with finite differences; false with a reason.
static bool check_leaf(grad_case *g, int i, char *why, size_t why_bytes) {
    nsc_tensor *leaf = g->leaf[i];
    nsc_tensor *analytic = nsc_tensor_get_grad(leaf);
    double *data = nsc_tensor_data(leaf);
    int64_t n = nsc_tensor_numel(leaf);
    bool was = nsc_set_grad_enabled(false);
    bool ok = true;
    for (int64_t j = 0; j < n && ok; j++) {
        double v = data[j];
        data[j] = v + FD_STEP;
        double plus = loss_value(g);
        data[j] = v - FD_STEP;
        double minus = loss_value(g);
        data[j] = v;
        double fd = (plus - minus) / (2 * FD_STEP);
        double an = analytic ? ((double *)nsc_tensor_data(analytic))[j] : 0.0; // f64 leaves
        bool both_nan = isnan(fd) && isnan(an); // e.g. var of one element: n - 1 = 0
        if (!both_nan && !(fabs(fd - an) <= FD_ATOL + FD_RTOL * fabs(fd))) {
            snprintf(why, why_bytes, "input %d element %lld: analytic %.10g, numeric %.10g", i,
                     (long long)j, an, fd);
            ok = false;
        }
    }
    nsc_set_grad_enabled(was);
    return ok;
}

static bool differentiable(const nsct_case *c, int64_t *elements) {
    const nsci_op_def *d = nsci_op_defs[c->op];
    bool any_float = false;
    *elements = 0;
    for (int i = 0; i < c->n_in; i++) {
        if (nsci_is_float(c->in[i].dtype)) {
            any_float = true;
            *elements += nsci_numel(c->in[i].ndim, c->in[i].shape) * 2;
        }
    }
    return d->backward && any_float;
}

// Returns 1 checked and passed, 0 failed, -1 skipped.
static int gradcheck_case(const nsct_case *c, char *why, size_t why_bytes) {
    int64_t elements;
    if (!differentiable(c, &elements) || elements > MAX_FD_ELEMENTS) {
        return -1;
    }
    grad_case g = { .c = c };
    int result = 1;
    for (int i = 0; i < c->n_in && result == 1; i++) {
        g.float_in[i] = nsci_is_float(c->in[i].dtype);
        g.leaf[i] = nsct_make_leaf(c, i, g.float_in[i] ? NSC_F64 : c->in[i].dtype);
        if (!g.leaf[i] || (g.float_in[i] && nsc_requires_grad_(g.leaf[i], true) != NSC_OK)) {
            snprintf(why, why_bytes, "building input %d: %s", i, nsc_last_error());
            result = 0;
        }
    }
    nsc_tensor *loss = result == 1 ? forward_loss(&g, true) : NULL;
    if (result == 1 && !loss) {
        snprintf(why, why_bytes, "forward failed: %s", nsc_last_error());
        result = 0;
    }
    if (loss && (!nsc_tensor_requires_grad(loss) || g.f32_output ||
                 isnan(nsc_tensor_item(loss)))) {
        // No f64 output depends on a float input (integer or f32 results), or
        // the loss is NaN (a mean over no target): differences cannot check it.
        result = -1;
    } else if (loss && nsc_backward(loss, NULL, false) != NSC_OK) {
        snprintf(why, why_bytes, "backward failed: %s", nsc_last_error());
        result = 0;
    }
    for (int i = 0; i < c->n_in && result == 1; i++) {
        if (g.float_in[i] && !check_leaf(&g, i, why, why_bytes)) {
            result = 0;
        }
    }
    nsc_free(loss);
    for (int i = 0; i < c->n_in; i++) {
        nsc_free(g.leaf[i]);
    }
    for (int k = 0; k < NSCT_MAX_OUTPUTS; k++) {
        nsc_free(g.weight[k]);
    }
    return result;
}

Test(gradcheck, every_differentiable_row) {
    int failures = 0, checked = 0;
    for (int i = 0; i < nsct_n_cases; i++) {
        char why[600] = "";
        int64_t before = nsct_live_blocks();
        int r = gradcheck_case(&nsct_all_cases[i], why, sizeof why);
        if (r == 0) {
            cr_log_error("gradcheck %s: %s", nsct_all_cases[i].name, why);
            failures++;
        } else if (nsct_live_blocks() != before) {
            cr_log_error("gradcheck %s: %lld blocks leaked", nsct_all_cases[i].name,
                         (long long)(nsct_live_blocks() - before));
            failures++;
        }
        checked += r == 1;
        nsc_clear_error();
    }
    cr_log_info("gradcheck: %d rows checked", checked);
    cr_expect_eq(failures, 0, "%d rows failed the gradient check (see the log above)", failures);
    cr_expect_gt(checked, 100, "only %d rows were checked", checked);
}

// Every op with a backward rule has at least one row small enough to check.
Test(gradcheck, every_backward_rule_is_exercised) {
    for (int op = 0; op < NSC_OP_COUNT; op++) {
        if (!nsci_op_defs[op]->backward) {
            continue;
        }
        bool covered = false;
        for (int i = 0; i < nsct_n_cases && !covered; i++) {
            int64_t elements;
            covered = (int)nsct_all_cases[i].op == op &&
                      differentiable(&nsct_all_cases[i], &elements) &&
                      elements <= MAX_FD_ELEMENTS;
        }
        cr_expect(covered, "op %s has a backward rule but no row the gradient check can run",
                  nsci_op_defs[op]->name);
    }
}
