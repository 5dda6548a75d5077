// bench_floor: the OpenBLAS floor of each model case of bench_gpt2 and
// bench_mlp: the fixed list of matrix products the case needs (as PyTorch's
// eager mode issues them: one sgemm per linear layer and per attention head,
// sgemv where a product has one row), timed alone, back to back, with raw
// cblas calls into preallocated buffers. No model can run its products
// faster through OpenBLAS, so a case's time over its floor is what
// everything else costs (elementwise kernels, allocation, dispatch, threads).
// One line per case, the median of NSC_BENCH_RUNS (>= 5) runs of the whole
// list after a warm-up, at 2 and 1 threads (openblas_set_num_threads):
//   name shape threads median_ms gflops cpu_ms n_calls
// (cpu_ms: the median CPU time of a run, all threads) and one JSON line per case appended to bench/results.jsonl (NSC_BENCH_OUT).
// Operands are distinct per layer (and head) as in the model, cycled through
// in order, so that weights stream from memory as a forward streams them
// rather than sitting in cache across calls (decisive for the one-row
// products of generation). Run: make bench, or build/bench/bench/bench_floor
// [name-filter] [threads]; -v after them prints each product's own median.
// Letters: M rows, K inner, N columns (C = A B, A [M, K], B [K, N]); the
// transposes are PyTorch's: Conv1D weights [in, out] are read as they lie
// (NN), Linear and lm_head weights [out, in] transposed (NT); backward
// products dX = dY Wᵀ and dW = Xᵀ dY.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef NSC_NO_BLAS
#include <cblas.h>
#endif

enum {
    MAX_PRODUCTS = 64,
    MAX_RUNS = 99
};

// One kind of product and how many times the case issues it.
typedef struct product {
    const char *what;
    char ta, tb; // 'N' or 'T': A is [M, K] (or stored [K, M] when 'T'), B [K, N] (or [N, K])
    int m, k, n;
    int count;    // calls per run
    int distinct; // operand sets the calls cycle through (one per layer or head)
} product;

typedef struct floor_case {
    const char *name, *shape;
    int n_products;
    product products[MAX_PRODUCTS];
} floor_case;

static void add(floor_case *c, const char *what, char ta, char tb, int m, int k, int n, int count,
                int distinct) {
    if (c->n_products < MAX_PRODUCTS && count > 0) {
        c->products[c->n_products++] = (product){ what, ta, tb, m, k, n, count, distinct };
    }
}

// GPT-2 small: C 768, 12 layers, 12 heads of 64, vocab 50257.
enum {
    C = 768,
    LAYERS = 12,
    HEADS = 12,
    HEAD = 64,
    VOCAB = 50257
};

// The forward of B rows of T new tokens after `past` cached ones.
static void gpt2_forward(floor_case *c, int b, int t, int past, int times) {
    int rows = b * t, keys = past + t, heads = LAYERS * b * HEADS;
    add(c, "c_attn", 'N', 'N', rows, C, 3 * C, LAYERS * times, LAYERS);
    add(c, "q@kT", 'N', 'T', t, HEAD, keys, heads * times, heads);
    add(c, "p@v", 'N', 'N', t, keys, HEAD, heads * times, heads);
    add(c, "attn.c_proj", 'N', 'N', rows, C, C, LAYERS * times, LAYERS);
    add(c, "c_fc", 'N', 'N', rows, C, 4 * C, LAYERS * times, LAYERS);
    add(c, "mlp.c_proj", 'N', 'N', rows, 4 * C, C, LAYERS * times, LAYERS);
    add(c, "lm_head", 'N', 'T', rows, C, VOCAB, times, 1);
}

// The backward of gpt2_forward(b, t, 0, 1): dX and dW of every layer
// (wte's gradient through the embedding is a scatter, not a product).
static void gpt2_backward(floor_case *c, int b, int t) {
    int rows = b * t;
    add(c, "lm_head.dX", 'N', 'N', rows, VOCAB, C, 1, 1);
    add(c, "lm_head.dW", 'T', 'N', VOCAB, rows, C, 1, 1);
    static const struct {
        const char *dx, *dw;
        int in, out;
    } linears[] = {
        { "c_attn.dX", "c_attn.dW", C, 3 * C },
        { "attn.c_proj.dX", "attn.c_proj.dW", C, C },
        { "c_fc.dX", "c_fc.dW", C, 4 * C },
        { "mlp.c_proj.dX", "mlp.c_proj.dW", 4 * C, C },
    };
    for (int i = 0; i < 4; i++) {
        add(c, linears[i].dx, 'N', 'T', rows, linears[i].out, linears[i].in, LAYERS, LAYERS);
        add(c, linears[i].dw, 'T', 'N', linears[i].in, rows, linears[i].out, LAYERS, LAYERS);
    }
    int h = LAYERS * b * HEADS;
    add(c, "dP=dO@vT", 'N', 'T', t, HEAD, t, h, h);
    add(c, "dV=PT@dO", 'T', 'N', t, t, HEAD, h, h);
    add(c, "dQ=dS@k", 'N', 'N', t, t, HEAD, h, h);
    add(c, "dK=dST@q", 'T', 'N', t, t, HEAD, h, h);
}

// The MLP 784-1024-1024-10 step at batch 256 (nn.Linear: weights [out, in]).
static void mlp_step(floor_case *c) {
    static const int sizes[] = { 784, 1024, 1024, 10 };
    for (int l = 0; l < 3; l++) {
        add(c, "fwd", 'N', 'T', 256, sizes[l], sizes[l + 1], 1, 1);
    }
    for (int l = 2; l >= 0; l--) {
        add(c, "dW", 'T', 'N', sizes[l + 1], 256, sizes[l], 1, 1);
        if (l > 0) {
            add(c, "dX", 'N', 'N', 256, sizes[l + 1], sizes[l], 1, 1);
        }
    }
}

static floor_case CASES[6];

static int build_cases(void) {
    int n = 0;
    CASES[n] = (floor_case){ .name = "floor.gpt2.fwd", .shape = "1x64" };
    gpt2_forward(&CASES[n++], 1, 64, 0, 1);
    CASES[n] = (floor_case){ .name = "floor.gpt2.fwd", .shape = "1x256" };
    gpt2_forward(&CASES[n++], 1, 256, 0, 1);
    CASES[n] = (floor_case){ .name = "floor.gpt2.train_step", .shape = "4x64" };
    gpt2_forward(&CASES[n], 4, 64, 0, 1);
    gpt2_backward(&CASES[n++], 4, 64);
    // Generation: the 16-token prompt, then 127 one-token steps whose
    // attention reads on average 16 + 63.5 cached keys (rounded to 80).
    CASES[n] = (floor_case){ .name = "floor.gpt2.generate", .shape = "1x16+128" };
    gpt2_forward(&CASES[n], 1, 16, 0, 1);
    gpt2_forward(&CASES[n++], 1, 1, 79, 127);
    CASES[n] = (floor_case){ .name = "floor.mlp.train_step", .shape = "784-1024-1024-10xB256" };
    mlp_step(&CASES[n++]);
    return n;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int n_runs(void) {
    const char *env = getenv("NSC_BENCH_RUNS");
    int n = env ? atoi(env) : 5;
    return n < 5 ? 5 : (n > MAX_RUNS ? MAX_RUNS : n);
}

#ifndef NSC_NO_BLAS

// Operands of one product, filled once (values do not change the time).
typedef struct buffers {
    float *a, *b, *c;
} buffers;

static float *filled(size_t n) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) {
        p[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    }
    return p;
}

// Call r of product p (operand set r % distinct): sgemv when a side is one
// row, else sgemm.
static void call(const product *p, const buffers *buf, int r) {
    size_t set = (size_t)(r % p->distinct);
    const buffers operands = { buf->a + set * (size_t)p->m * p->k,
                               buf->b + set * (size_t)p->k * p->n,
                               buf->c + set * (size_t)p->m * p->n };
    const buffers *x = &operands;
    CBLAS_TRANSPOSE ta = p->ta == 'T' ? CblasTrans : CblasNoTrans;
    CBLAS_TRANSPOSE tb = p->tb == 'T' ? CblasTrans : CblasNoTrans;
    int lda = p->ta == 'T' ? p->m : p->k, ldb = p->tb == 'T' ? p->k : p->n;
    if (p->m == 1) { // c [1, N] = a [1, K] B: cᵀ = Bᵀ aᵀ
        CBLAS_TRANSPOSE t = p->tb == 'T' ? CblasNoTrans : CblasTrans;
        int rows = p->tb == 'T' ? p->n : p->k, cols = p->tb == 'T' ? p->k : p->n;
        cblas_sgemv(CblasRowMajor, t, rows, cols, 1.0f, x->b, ldb, x->a, 1, 0.0f, x->c, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta, tb, p->m, p->n, p->k, 1.0f, x->a, lda, x->b, ldb, 0.0f, x->c,
                p->n);
}

static double flops_of(const floor_case *c, int *n_calls) {
    double f = 0;
    *n_calls = 0;
    for (int i = 0; i < c->n_products; i++) {
        const product *p = &c->products[i];
        f += 2.0 * p->m * (double)p->k * p->n * p->count;
        *n_calls += p->count;
    }
    return f;
}

// Times the whole list once (each product's calls back to back); per[i]
// gets product i's share.
static double run_list(const floor_case *c, const buffers *x, double *per) {
    double total = 0;
    for (int i = 0; i < c->n_products; i++) {
        double start = now_ms();
        for (int r = 0; r < c->products[i].count; r++) {
            call(&c->products[i], &x[i], r);
        }
        double ms = now_ms() - start;
        per[i] = ms;
        total += ms;
    }
    return total;
}

static void report(const floor_case *c, int threads, double ms, double cpu, double flops,
                   int n_calls) {
    printf("%-24s %-22s %7d %10.2f %8.1f %10.2f %8d\n", c->name, c->shape, threads, ms,
           flops / (ms * 1e6), cpu, n_calls);
    const char *path = getenv("NSC_BENCH_OUT") ? getenv("NSC_BENCH_OUT") : "bench/results.jsonl";
    FILE *json = fopen(path, "a");
    if (!json) {
        return;
    }
    fprintf(json,
            "{\"bench\":\"floor\",\"backend\":\"openblas\",\"name\":\"%s\",\"shape\":\"%s\","
            "\"threads\":%d,\"runs\":%d,\"median_ms\":%.4f,\"gflops\":%.2f,\"cpu_ms\":%.4f,"
            "\"n_calls\":%d,\"time\":%lld}\n",
            c->name, c->shape, threads, n_runs(), ms, flops / (ms * 1e6), cpu, n_calls,
            (long long)time(NULL));
    fclose(json);
}

static int bench_case(const floor_case *c, int threads, int verbose) {
    buffers x[MAX_PRODUCTS] = { { 0 } };
    int ok = 1;
    for (int i = 0; i < c->n_products && ok; i++) {
        const product *p = &c->products[i];
        x[i].a = filled((size_t)p->distinct * p->m * p->k);
        x[i].b = filled((size_t)p->distinct * p->k * p->n);
        x[i].c = filled((size_t)p->distinct * p->m * p->n);
        ok = x[i].a && x[i].b && x[i].c;
    }
    int runs = n_runs();
    static double per[MAX_PRODUCTS][MAX_RUNS];
    double total[MAX_RUNS], cpu[MAX_RUNS], scratch[MAX_PRODUCTS];
    if (ok) {
        run_list(c, x, scratch); // warm-up: OpenBLAS's buffers, the operands' pages
        for (int r = 0; r < runs; r++) {
            double cpu_start = cpu_ms();
            total[r] = run_list(c, x, scratch);
            cpu[r] = cpu_ms() - cpu_start;
            for (int i = 0; i < c->n_products; i++) {
                per[i][r] = scratch[i];
            }
        }
        qsort(total, (size_t)runs, sizeof total[0], cmp_double);
        qsort(cpu, (size_t)runs, sizeof cpu[0], cmp_double);
        int n_calls;
        double flops = flops_of(c, &n_calls);
        report(c, threads, total[runs / 2], cpu[runs / 2], flops, n_calls);
        for (int i = 0; verbose && i < c->n_products; i++) {
            const product *p = &c->products[i];
            qsort(per[i], (size_t)runs, sizeof per[i][0], cmp_double);
            printf("    %-16s %c%c %5dx%5dx%5d x%-5d %10.3f ms\n", p->what, p->ta, p->tb, p->m,
                   p->k, p->n, p->count, per[i][runs / 2]);
        }
        fflush(stdout);
    }
    for (int i = 0; i < c->n_products; i++) {
        free(x[i].a);
        free(x[i].b);
        free(x[i].c);
    }
    return ok;
}

int main(int argc, char **argv) {
    static const int threads[] = { 2, 1 };
    const char *filter = argc > 1 && strcmp(argv[1], "all") != 0 ? argv[1] : NULL;
    int only = argc > 2 ? atoi(argv[2]) : 0;
    int verbose = argc > 3 && strcmp(argv[3], "-v") == 0;
    int n = build_cases(), ok = 1;
    printf("%-24s %-22s %7s %10s %8s %10s %8s\n", "name", "shape", "threads", "median_ms",
           "gflops", "cpu_ms", "n_calls");
    for (int t = 0; t < 2; t++) {
        if (only > 0 && only != threads[t]) {
            continue;
        }
        openblas_set_num_threads(threads[t]);
        for (int i = 0; i < n; i++) {
            if (!filter || strstr(CASES[i].name, filter) || strstr(CASES[i].shape, filter)) {
                ok &= bench_case(&CASES[i], threads[t], verbose);
            }
        }
    }
    return ok ? 0 : 1;
}

#else

int main(void) {
    (void)build_cases;
    (void)now_ms;
    (void)cpu_ms;
    (void)cmp_double;
    (void)n_runs;
    printf("bench_floor: built without OpenBLAS (BLAS=none): no floor to time\n");
    return 0;
}

#endif
