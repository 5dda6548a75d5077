// bench_mlp: one training step of an MLP 784-1024-1024-10 (ReLU) at batch
// 256, as an MNIST-sized classifier would take it: forward, cross-entropy,
// backward, AdamW. Cases:
//   mlp.train_step  zero_grad + forward + loss + backward + AdamW step
//   mlp.fwd_bwd     forward + loss + backward
//   mlp.adamw       the AdamW step alone (1.86M parameters)
// at 2 and 1 threads (descending: the pool cannot grow once started). One
// line per case, the median of NSC_BENCH_RUNS (>= 5) runs after a warm-up:
//   name shape threads median_ms gflops ratio_to_raw
// (no in-process reference: ratio "-"; bench/compare_mlp.py runs PyTorch on
// the same workload and prints nsc/PyTorch ratios), and one JSON line per
// case appended to bench/results.jsonl (NSC_BENCH_OUT).
// Run: make bench, or build/bench/bench/bench_mlp [name-filter] [threads].
// Letters: B batch, and each layer's IN -> OUT features.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nsc.h"

enum {
    BATCH = 256,
    N_LAYERS = 3,
    N_CLASSES = 10
};
static const int64_t SIZES[N_LAYERS + 1] = { 784, 1024, 1024, N_CLASSES };
static const int THREADS[] = { 2, 1 };
static const char SHAPE[] = "784-1024-1024-10xB256";

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "bench_mlp: %s failed: %s\n", #cond, nsc_last_error());                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

typedef struct mlp {
    nsc_tensor *w[2 * N_LAYERS]; // weight [OUT, IN], bias [OUT] per layer
    nsc_tensor *x;               // [B, 784]
    nsc_tensor *y;               // [B] class ids
    nsc_optim *opt;
} mlp;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int n_runs(void) {
    const char *env = getenv("NSC_BENCH_RUNS");
    int n = env ? atoi(env) : 5;
    return n < 5 ? 5 : (n > 99 ? 99 : n);
}

// torch.nn.Linear's init: U(-1/sqrt(IN), 1/sqrt(IN)).
static nsc_tensor *uniform(nsc_generator *gen, int64_t fan_in, int ndim, const int64_t *shape) {
    nsc_tensor *u = nsc_rand(gen, NSC_F32, ndim, shape);
    nsc_tensor *c = nsc_sub_scalar(u, 0.5);
    nsc_tensor *w = nsc_mul_scalar(c, 2.0 / sqrt((double)fan_in));
    nsc_free(u);
    nsc_free(c);
    CHECK(w && nsc_requires_grad_(w, true) == NSC_OK);
    return w;
}

static void mlp_init(mlp *m) {
    nsc_generator *gen = nsc_generator_new(1);
    for (int l = 0; l < N_LAYERS; l++) {
        m->w[2 * l] = uniform(gen, SIZES[l], NSC_SHAPE(SIZES[l + 1], SIZES[l]));
        m->w[2 * l + 1] = uniform(gen, SIZES[l], NSC_SHAPE(SIZES[l + 1]));
    }
    m->x = nsc_randn(gen, NSC_F32, NSC_SHAPE(BATCH, SIZES[0]));
    m->y = nsc_randint(gen, 0, N_CLASSES, NSC_SHAPE(BATCH));
    nsc_adamw_config config = nsc_adamw_defaults(); // torch.optim.AdamW's defaults
    m->opt = nsc_optim_adamw_new(2 * N_LAYERS, m->w, &config);
    CHECK(m->x && m->y && m->opt);
    nsc_generator_free(gen);
}

static void mlp_free(mlp *m) {
    nsc_optim_free(m->opt);
    for (int i = 0; i < 2 * N_LAYERS; i++) {
        nsc_free(m->w[i]);
    }
    nsc_free(m->x);
    nsc_free(m->y);
}

// Forward, loss, backward: .grad of every parameter is set afterwards.
static void forward_backward(mlp *m) {
    nsc_tensor *h = nsc_retain(m->x);
    for (int l = 0; l < N_LAYERS; l++) {
        nsc_tensor *z = nsc_linear(h, m->w[2 * l], m->w[2 * l + 1]);
        nsc_free(h);
        h = l + 1 < N_LAYERS ? nsc_relu(z) : nsc_retain(z);
        nsc_free(z);
    }
    nsc_tensor *loss = nsc_cross_entropy(h, m->y, NSC_REDUCTION_MEAN, -100);
    CHECK(loss && nsc_backward(loss, NULL, false) == NSC_OK);
    nsc_free(loss);
    nsc_free(h);
}

typedef enum bench_case {
    TRAIN_STEP,
    FWD_BWD,
    ADAMW,
    N_CASES
} bench_case;
static const char *const CASE_NAMES[] = { "mlp.train_step", "mlp.fwd_bwd", "mlp.adamw" };

static double run_case(mlp *m, bench_case c) {
    if (c == ADAMW && !nsc_tensor_get_grad(m->w[0])) {
        forward_backward(m); // the step needs gradients; not timed
    }
    if (c == FWD_BWD) {
        CHECK(nsc_optim_zero_grad(m->opt, true) == NSC_OK); // not timed: fresh .grad each run
    }
    double start = now_ms();
    if (c == TRAIN_STEP) {
        CHECK(nsc_optim_zero_grad(m->opt, true) == NSC_OK);
    }
    if (c != ADAMW) {
        forward_backward(m);
    }
    if (c != FWD_BWD) {
        CHECK(nsc_optim_step(m->opt) == NSC_OK);
    }
    return now_ms() - start;
}

// Multiply-adds of the step: forward and weight gradients of every layer,
// input gradients of all but the first (x needs none); 2 flops each.
static double step_flops(bench_case c) {
    double fwd = 0, first = (double)SIZES[0] * (double)SIZES[1];
    for (int l = 0; l < N_LAYERS; l++) {
        fwd += (double)SIZES[l] * (double)SIZES[l + 1];
    }
    return c == ADAMW ? 0 : 2.0 * BATCH * (3 * fwd - first);
}

static void report(FILE *json, bench_case c, int threads, double ms) {
    double flops = step_flops(c);
    double gflops = flops > 0 ? flops / (ms * 1e6) : 0;
    printf("%-28s %-22s %d %10.3f %8.1f      -\n", CASE_NAMES[c], SHAPE, threads, ms, gflops);
    if (json) {
        fprintf(json,
                "{\"bench\":\"mlp\",\"backend\":\"%s\",\"name\":\"%s\",\"shape\":\"%s\","
                "\"threads\":%d,\"runs\":%d,\"median_ms\":%.4f,\"gflops\":%.2f,"
                "\"raw_median_ms\":null,\"ratio_to_raw\":null,\"time\":%lld}\n",
#ifdef NSC_NO_BLAS
                "portable",
#else
                "openblas",
#endif
                CASE_NAMES[c], SHAPE, threads, n_runs(), ms, gflops, (long long)time(NULL));
    }
}

static void bench_threads(FILE *json, int threads, const char *filter) {
    nsc_set_num_threads(threads);
    mlp m = { 0 };
    mlp_init(&m);
    for (int c = 0; c < N_CASES; c++) {
        if (filter && !strstr(CASE_NAMES[c], filter)) {
            continue;
        }
        int runs = n_runs();
        double ms[99];
        run_case(&m, (bench_case)c); // warm-up: state, allocator caches, BLAS buffers
        for (int i = 0; i < runs; i++) {
            ms[i] = run_case(&m, (bench_case)c);
        }
        qsort(ms, (size_t)runs, sizeof ms[0], cmp_double);
        report(json, (bench_case)c, threads, ms[runs / 2]);
        fflush(stdout);
    }
    mlp_free(&m);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 && strcmp(argv[1], "all") != 0 ? argv[1] : NULL;
    int only_threads = argc > 2 ? atoi(argv[2]) : 0;
    const char *path = getenv("NSC_BENCH_OUT") ? getenv("NSC_BENCH_OUT") : "bench/results.jsonl";
    FILE *json = fopen(path, "a");
    if (!json) {
        fprintf(stderr, "bench_mlp: cannot append to %s; printing only\n", path);
    }
    printf("%-28s %-22s %s %10s %8s %6s\n", "name", "shape", "threads", "median_ms", "gflops",
           "ratio_to_raw");
    for (int t = 0; t < (int)(sizeof THREADS / sizeof THREADS[0]); t++) {
        if (only_threads <= 0 || only_threads == THREADS[t]) {
            bench_threads(json, THREADS[t], filter);
        }
    }
    if (only_threads > 0 && only_threads != 1 && only_threads != 2) {
        bench_threads(json, only_threads, filter);
    }
    if (json) {
        fclose(json);
    }
    return 0;
}
