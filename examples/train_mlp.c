// train_mlp: trains a small MLP to tell apart the three arms of a 2-D
// spiral, from scratch, in a second or two.
//
// What it teaches, top to bottom:
//   1. making a dataset in C with nsc's seeded generator (no files);
//   2. a model as a tree of user modules: each layer is a module with a
//      forward callback and named parameters ("fc1.weight"), so hooks and
//      paths work on it as on any nsc model;
//   3. the training loop: forward, cross_entropy, zero_grad, backward,
//      AdamW step, with a linear-warmup + cosine learning-rate schedule;
//   4. evaluation under no_grad: argmax accuracy on held-out points.
// It mirrors the PyTorch loop line for line (see docs/TRAINING.md).
//
// Run:  make && build/release/examples/train_mlp [steps]
// Expected: the loss falls from ~1.1 to ~0.02; train and test accuracy
// >= 98% (tests/test_optim.c asserts >= 95% on a shortened run).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "examples/common.h"

const char example_name[] = "train_mlp";

enum {
    N_CLASSES = 3,
    TRAIN_PER_CLASS = 1000,
    TEST_PER_CLASS = 300,
    HIDDEN = 64,
    BATCH = 128,
    PRINT_EVERY = 100,
};

// --- 1. data: three spiral arms, radius r in [0, 1), angle 4 * (class + r) + noise ---

static double uniform(nsc_generator *gen) {
    return nsc_generator_next_u32(gen) / 4294967296.0;
}

static double normal(nsc_generator *gen) { // Box-Muller
    double u = 1.0 - uniform(gen), v = uniform(gen);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

// points: [n_classes * per_class, 2] f32; labels: [n_classes * per_class] i64.
static void make_spirals(uint64_t seed, int per_class, nsc_tensor **points, nsc_tensor **labels) {
    int64_t n = (int64_t)N_CLASSES * per_class;
    float *xy = malloc(sizeof(float) * 2 * (size_t)n);
    int64_t *y = malloc(sizeof(int64_t) * (size_t)n);
    CHECK(xy && y);
    nsc_generator *gen = nsc_generator_new(seed);
    for (int64_t i = 0; i < n; i++) {
        int64_t cls = i / per_class;
        double r = uniform(gen);
        double angle = 4.0 * ((double)cls + r) + 0.2 * normal(gen);
        xy[2 * i] = (float)(r * sin(angle));
        xy[2 * i + 1] = (float)(r * cos(angle));
        y[i] = cls;
    }
    *points = nsc_from_data(NSC_F32, NSC_SHAPE(n, 2), xy);
    *labels = nsc_from_data(NSC_I64, NSC_SHAPE(n), y);
    CHECK(*points && *labels);
    nsc_generator_free(gen);
    free(xy);
    free(y);
}

// --- 2. the model: fc1 -> relu -> fc2 -> relu -> fc3 ---

// A linear layer's forward: x @ weight^T + bias (x: [B, in]; weight: [out, in]).
static nsc_tensor *linear_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)n_in;
    (void)state;
    return nsc_linear(in[0], nsc_module_param(m, "weight"), nsc_module_param(m, "bias"));
}

// U(-1/sqrt(in), 1/sqrt(in)) for weight and bias, as torch.nn.Linear's default.
static nsc_tensor *init_uniform(nsc_generator *gen, int64_t fan_in, int ndim,
                                const int64_t *shape) {
    nsc_tensor *u = nsc_rand(gen, NSC_F32, ndim, shape);
    nsc_tensor *centered = nsc_sub_scalar(u, 0.5);
    nsc_tensor *w = nsc_mul_scalar(centered, 2.0 / sqrt((double)fan_in));
    nsc_free(u);
    nsc_free(centered);
    return w;
}

static nsc_module *linear_new(nsc_generator *gen, int64_t in, int64_t out) {
    nsc_module *m = nsc_module_new("Linear", linear_forward, NULL, NULL);
    nsc_tensor *weight = init_uniform(gen, in, NSC_SHAPE(out, in));
    nsc_tensor *bias = init_uniform(gen, in, NSC_SHAPE(out));
    CHECK(m && nsc_module_add_param(m, "weight", weight) == NSC_OK);
    CHECK(nsc_module_add_param(m, "bias", bias) == NSC_OK);
    nsc_free(weight); // the module holds its own references
    nsc_free(bias);
    return m;
}

// The root's forward calls its children through nsc_module_call (so their
// hooks run) and frees every intermediate it names.
static nsc_tensor *mlp_forward(nsc_module *m, int n_in, nsc_tensor *const *in, void *state) {
    (void)n_in;
    (void)state;
    nsc_tensor *h1 = nsc_module_call(nsc_module_child(m, "fc1"), 1, in);
    nsc_tensor *a1 = nsc_relu(h1);
    nsc_tensor *h2 = nsc_module_call(nsc_module_child(m, "fc2"), 1, &a1);
    nsc_tensor *a2 = nsc_relu(h2);
    nsc_tensor *logits = nsc_module_call(nsc_module_child(m, "fc3"), 1, &a2);
    nsc_free(h1);
    nsc_free(a1);
    nsc_free(h2);
    nsc_free(a2);
    return logits; // NULL (with the error) if any step failed
}

static nsc_module *mlp_new(uint64_t seed) {
    nsc_generator *gen = nsc_generator_new(seed);
    nsc_module *root = nsc_module_new("MLP", mlp_forward, NULL, NULL);
    const char *names[3] = { "fc1", "fc2", "fc3" };
    int64_t sizes[4] = { 2, HIDDEN, HIDDEN, N_CLASSES };
    for (int i = 0; i < 3; i++) {
        nsc_module *layer = linear_new(gen, sizes[i], sizes[i + 1]);
        CHECK(nsc_module_add_child(root, names[i], layer) == NSC_OK);
        nsc_module_free(layer); // the root holds it now
    }
    CHECK(nsc_module_requires_grad_(root, true) == NSC_OK);
    nsc_generator_free(gen);
    return root;
}

// --- 4. evaluation: the fraction of points whose largest logit is their class ---

static double accuracy(nsc_module *model, nsc_tensor *points, nsc_tensor *labels) {
    nsc_no_grad_begin(); // nothing to record: no backward will follow
    nsc_tensor *logits = nsc_module_call(model, 1, &points);
    nsc_tensor *pred = nsc_argmax(logits, 1, false);
    nsc_tensor *hit = nsc_eq(pred, labels);
    nsc_tensor *n_hit = nsc_sum_all(hit);
    CHECK(n_hit);
    double acc = nsc_tensor_item(n_hit) / (double)nsc_tensor_numel(labels);
    nsc_free(logits);
    nsc_free(pred);
    nsc_free(hit);
    nsc_free(n_hit);
    nsc_no_grad_end();
    return acc;
}

// --- 3. training ---

// One step on a random batch (rows drawn with replacement): forward, loss,
// zero_grad, backward, AdamW. Returns the batch's loss.
static double train_step(nsc_module *model, nsc_optim *opt, nsc_tensor *train_x,
                         nsc_tensor *train_y, nsc_generator *batches) {
    nsc_tensor *idx = nsc_randint(batches, 0, nsc_tensor_numel(train_y), NSC_SHAPE(BATCH));
    nsc_tensor *xb = nsc_index_select(train_x, 0, idx);
    nsc_tensor *yb = nsc_index_select(train_y, 0, idx);
    nsc_tensor *logits = nsc_module_call(model, 1, &xb);
    nsc_tensor *loss = nsc_cross_entropy(logits, yb, NSC_REDUCTION_MEAN, -100);
    CHECK(loss);
    CHECK(nsc_optim_zero_grad(opt, true) == NSC_OK); // set_to_none=True
    CHECK(nsc_backward(loss, NULL, false) == NSC_OK);
    CHECK(nsc_optim_step(opt) == NSC_OK);
    double value = nsc_tensor_item(loss);
    nsc_free(idx);
    nsc_free(xb);
    nsc_free(yb);
    nsc_free(logits);
    nsc_free(loss);
    return value;
}

int main(int argc, char **argv) {
    int64_t steps = argc > 1 ? atoll(argv[1]) : 1000;
    CHECK(steps > 0);
    nsc_tensor *train_x, *train_y, *test_x, *test_y;
    make_spirals(1, TRAIN_PER_CLASS, &train_x, &train_y);
    make_spirals(2, TEST_PER_CLASS, &test_x, &test_y); // held out: never trained on
    nsc_module *model = mlp_new(42);

    // torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-4)
    nsc_adamw_config config = nsc_adamw_defaults();
    config.lr = 1e-2;
    config.weight_decay = 1e-4;
    nsc_optim *opt = nsc_optim_adamw_new_module(model, &config);
    CHECK(opt);
    // 5% of the steps warm up linearly to 1e-2, then cosine decay to 1e-4.
    nsc_lr_schedule schedule = {
        .max_lr = 1e-2, .min_lr = 1e-4, .warmup_steps = steps / 20, .total_steps = steps
    };
    printf("train_mlp: %lld parameters, %lld training points, %lld steps of batch %d\n",
           (long long)nsc_module_param_count(model), (long long)nsc_tensor_numel(train_y),
           (long long)steps, BATCH);

    nsc_generator *batches = nsc_generator_new(3);
    for (int64_t step = 0; step < steps; step++) {
        CHECK(nsc_lr_schedule_apply(&schedule, step, opt) == NSC_OK);
        double loss = train_step(model, opt, train_x, train_y, batches);
        if (step % PRINT_EVERY == 0 || step == steps - 1) {
            printf("step %5lld  lr %.2e  loss %.4f\n", (long long)step, nsc_optim_get_lr(opt),
                   loss);
        }
    }

    double train_acc = accuracy(model, train_x, train_y);
    double test_acc = accuracy(model, test_x, test_y);
    printf("train accuracy %.2f%%  test accuracy %.2f%%\n", 100 * train_acc, 100 * test_acc);

    nsc_generator_free(batches);
    nsc_optim_free(opt);
    nsc_module_free(model);
    nsc_free(train_x);
    nsc_free(train_y);
    nsc_free(test_x);
    nsc_free(test_y);
    return test_acc >= 0.95 ? 0 : 2;
}
