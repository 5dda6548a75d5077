// bench_matmul: nsc_matmul against a raw cblas_sgemm on the same shapes, for
// GPT-2 small's linear layers at 64, 256 and 1024 tokens: the forward
// product x @ Wᵀ and both backward ones (grad @ W, gradᵀ @ x), at 2 and 1
// threads. One line per case (bench/README.md):
//   name shape threads median_ms gflops ratio_to_raw
// and one JSON line appended to bench/results.jsonl (NSC_BENCH_OUT).
// Run: make bench (or build/bench/bench/bench_matmul [name-filter]). A
// BLAS=none library has no raw column unless built with -DNSC_BENCH_RAW and
// -lopenblas: then the ratio is the portable GEMM's to OpenBLAS's.
// Letters: T tokens, IN/OUT the layer's features; shape is MxKxN.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if !defined(NSC_NO_BLAS) && !defined(NSC_BENCH_RAW)
#define NSC_BENCH_RAW 1
#endif
#ifdef NSC_BENCH_RAW
#include <cblas.h>
#endif

#include "nsc.h"

typedef struct layer {
    const char *name;
    int64_t in, out;
} layer;

static const layer LAYERS[] = {
    { "attn.c_attn", 768, 2304 }, { "attn.c_proj", 768, 768 }, { "mlp.c_fc", 768, 3072 },
    { "mlp.c_proj", 3072, 768 },  { "lm_head", 768, 50257 },
};
static const int64_t TOKENS[] = { 64, 256, 1024 };
static const int THREADS[] = { 2, 1 }; // descending: the pool cannot grow once started

// The three products of one layer. x [T, IN], W [OUT, IN], grad [T, OUT].
typedef enum kind {
    FORWARD,
    GRAD_X,
    GRAD_W,
    N_KINDS
} kind;
static const char *const KIND_NAMES[] = { "fwd", "bwd_x", "bwd_w" };

typedef struct operands {
    nsc_tensor *x, *w, *grad;
    nsc_tensor *wt, *gradt; // transposed views
    float *raw_out;         // the raw sgemm's output
} operands;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// M, K, N of a product.
static void dims_of(kind k, int64_t t, const layer *l, int64_t *m, int64_t *kk, int64_t *n) {
    *m = k == GRAD_W ? l->out : t;
    *kk = k == FORWARD ? l->in : (k == GRAD_X ? l->out : t);
    *n = k == FORWARD ? l->out : l->in;
}

static double run_nsc(kind k, const operands *o) {
    double start = now_ms();
    nsc_tensor *r = k == FORWARD  ? nsc_matmul(o->x, o->wt)
                    : k == GRAD_X ? nsc_matmul(o->grad, o->w)
                                  : nsc_matmul(o->gradt, o->x);
    double ms = now_ms() - start;
    if (!r) {
        fprintf(stderr, "bench_matmul: %s\n", nsc_last_error());
        exit(1);
    }
    nsc_free(r);
    return ms;
}

#ifdef NSC_BENCH_RAW
// The same product straight through cblas_sgemm into a preallocated output.
static double run_raw(kind k, const operands *o, int64_t t, const layer *l) {
    const float *x = nsc_tensor_data(o->x), *w = nsc_tensor_data(o->w);
    const float *g = nsc_tensor_data(o->grad);
    int T = (int)t, in = (int)l->in, out = (int)l->out;
    double start = now_ms();
    if (k == FORWARD) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, out, in, 1.0f, x, in, w, in, 0.0f,
                    o->raw_out, out);
    } else if (k == GRAD_X) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, in, out, 1.0f, g, out, w, in,
                    0.0f, o->raw_out, in);
    } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, T, 1.0f, g, out, x, in, 0.0f,
                    o->raw_out, in);
    }
    return now_ms() - start;
}
#endif

static int n_runs(void) {
    const char *env = getenv("NSC_BENCH_RUNS");
    int n = env ? atoi(env) : 5;
    return n < 5 ? 5 : (n > 99 ? 99 : n);
}

// Medians of nsc and raw over the runs, interleaved so that load from other
// processes hits both alike; one warm-up each first.
static void measure(kind k, const operands *o, int64_t t, const layer *l, double *nsc_ms,
                    double *raw_ms) {
    int runs = n_runs();
    double a[99], b[99];
    run_nsc(k, o);
#ifdef NSC_BENCH_RAW
    run_raw(k, o, t, l);
#endif
    for (int i = 0; i < runs; i++) {
        a[i] = run_nsc(k, o);
#ifdef NSC_BENCH_RAW
        b[i] = run_raw(k, o, t, l);
#else
        b[i] = 0;
        (void)t;
        (void)l;
#endif
    }
    qsort(a, (size_t)runs, sizeof a[0], cmp_double);
    qsort(b, (size_t)runs, sizeof b[0], cmp_double);
    *nsc_ms = a[runs / 2];
    *raw_ms = b[runs / 2];
}

static void report(FILE *json, const char *name, const char *shape, int threads, double ms,
                   double raw_ms, double flops) {
    double gflops = flops / (ms * 1e6);
#ifdef NSC_NO_BLAS
    const char *backend = "portable";
#else
    const char *backend = "openblas";
#endif
    if (raw_ms > 0) {
        printf("%-28s %-16s %d %10.3f %8.1f %6.3f\n", name, shape, threads, ms, gflops,
               ms / raw_ms);
    } else {
        printf("%-28s %-16s %d %10.3f %8.1f      -\n", name, shape, threads, ms, gflops);
    }
    if (json) {
        fprintf(json,
                "{\"bench\":\"matmul\",\"backend\":\"%s\",\"name\":\"%s\",\"shape\":\"%s\","
                "\"threads\":%d,\"runs\":%d,\"median_ms\":%.4f,\"gflops\":%.2f,",
                backend, name, shape, threads, n_runs(), ms, gflops);
        if (raw_ms > 0) {
            fprintf(json, "\"raw_median_ms\":%.4f,\"ratio_to_raw\":%.4f,", raw_ms, ms / raw_ms);
        } else {
            fprintf(json, "\"raw_median_ms\":null,\"ratio_to_raw\":null,");
        }
        fprintf(json, "\"time\":%lld}\n", (long long)time(NULL));
    }
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

static nsc_tensor *randn(nsc_generator *gen, int64_t rows, int64_t cols) {
    nsc_tensor *t = nsc_randn(gen, NSC_F32, NSC_SHAPE(rows, cols));
    if (!t) {
        fprintf(stderr, "bench_matmul: %s\n", nsc_last_error());
        exit(1);
    }
    return t;
}

static void bench_layer(FILE *json, const layer *l, int64_t t, int threads, const char *filter) {
    nsc_generator *gen = nsc_generator_new(1);
    operands o = { .x = randn(gen, t, l->in), .w = randn(gen, l->out, l->in) };
    o.grad = randn(gen, t, l->out);
    o.wt = nsc_transpose(o.w, 0, 1);
    o.gradt = nsc_transpose(o.grad, 0, 1);
    o.raw_out = malloc((size_t)(max64(t, l->out) * max64(l->in, l->out)) * sizeof(float));
    for (int k = 0; k < N_KINDS && o.raw_out; k++) {
        char name[64], shape[48];
        int64_t m, kk, n;
        dims_of((kind)k, t, l, &m, &kk, &n);
        snprintf(name, sizeof name, "%s.%s", KIND_NAMES[k], l->name);
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)m, (long long)kk, (long long)n);
        if (filter && !strstr(name, filter)) {
            continue;
        }
        double ms, raw_ms;
        measure((kind)k, &o, t, l, &ms, &raw_ms);
        report(json, name, shape, threads, ms, raw_ms, 2.0 * (double)m * (double)kk * (double)n);
    }
    free(o.raw_out);
    nsc_tensor *all[] = { o.x, o.w, o.grad, o.wt, o.gradt };
    for (int i = 0; i < 5; i++) {
        nsc_free(all[i]);
    }
    nsc_generator_free(gen);
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    const char *path = getenv("NSC_BENCH_OUT") ? getenv("NSC_BENCH_OUT") : "bench/results.jsonl";
    FILE *json = fopen(path, "a");
    if (!json) {
        fprintf(stderr, "bench_matmul: cannot append to %s; printing only\n", path);
    }
    printf("%-28s %-16s %s %10s %8s %6s\n", "name", "shape(MxKxN)", "threads", "median_ms",
           "gflops", "ratio_to_raw");
    for (int th = 0; th < (int)(sizeof THREADS / sizeof THREADS[0]); th++) {
        nsc_set_num_threads(THREADS[th]);
#if defined(NSC_BENCH_RAW) && defined(NSC_NO_BLAS)
        openblas_set_num_threads(THREADS[th]); // the library does not drive OpenBLAS here
#endif
        for (int t = 0; t < (int)(sizeof TOKENS / sizeof TOKENS[0]); t++) {
            for (int l = 0; l < (int)(sizeof LAYERS / sizeof LAYERS[0]); l++) {
                bench_layer(json, &LAYERS[l], TOKENS[t], THREADS[th], filter);
                fflush(stdout);
            }
        }
    }
    if (json) {
        fclose(json);
    }
    return 0;
}
