// bench_gpt2: GPT-2 small (nsc_gpt2_new with the default configuration: 12
// layers, 12 heads, 768 wide, vocab 50257; random weights, evaluation mode,
// so dropout is off) as a user runs it. Cases, at 2 and 1 threads:
//   gpt2.fwd         no-grad forward with full logits [B, T, 50257], 1x64 and 1x256
//   gpt2.train_step  zero_grad + forward + cross-entropy + backward + AdamW, 4x64
//   gpt2.generate    nsc_generate, greedy, KV cache: 128 tokens after a 16-token prompt
// Each (case, threads) runs in its own child process (a fresh thread pool,
// and its own peak RSS). One line per case, the median of NSC_BENCH_RUNS (>=
// 5) runs after a warm-up (two for the training step):
//   name shape threads median_ms gflops tok_s cpu_ms peak_MB rss_MB minflt
// gflops counts the model's products (below), tok_s the tokens processed
// (generated, for generate) per second, cpu_ms the median CPU time of a run
// (all threads; on a shared machine the steadier number at 1 thread),
// peak_MB nsc's peak live bytes
// (nsc_mem_stats_get; weights included), rss_MB the process's peak RSS and
// minflt the minor page faults per timed run (freshly mapped memory). One
// JSON line per case is appended to bench/results.jsonl (NSC_BENCH_OUT).
// Run: make bench, or build/bench/bench/bench_gpt2 [name-filter] [threads];
// bench_gpt2 --save DIR writes the weights (nsc_gpt2_save) and the greedy
// tokens (DIR/tokens.txt) that bench/compare_torch.py checks transformers
// against. Letters: B batch, T tokens, C width, V vocab, L layers.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nsc.h"
#include "nsc/generate.h"
#include "nsc/gpt2.h"

enum {
    PROMPT_TOKENS = 16,
    NEW_TOKENS = 128,
    MAX_RUNS = 99
};
static const int THREADS[] = { 2, 1 };

typedef enum kind {
    FORWARD,
    TRAIN_STEP,
    GENERATE
} kind;

typedef struct bench_case {
    const char *name;
    kind kind;
    int64_t batch, tokens; // generate: the prompt
} bench_case;

static const bench_case CASES[] = {
    { "gpt2.fwd", FORWARD, 1, 64 },
    { "gpt2.fwd", FORWARD, 1, 256 },
    { "gpt2.train_step", TRAIN_STEP, 4, 64 },
    { "gpt2.generate", GENERATE, 1, PROMPT_TOKENS },
};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "bench_gpt2: %s failed: %s\n", #cond, nsc_last_error());               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

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
    return n < 5 ? 5 : (n > MAX_RUNS ? MAX_RUNS : n);
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

// Flops of a forward at B x T: every linear layer (c_attn, c_proj, c_fc,
// mlp.c_proj: 12 C^2 multiply-adds per token and layer), the logits (C V per
// token) and causal attention (q k^T and p v over the T (T + 1) / 2 pairs:
// C T (T + 1) per layer and row); 2 flops per multiply-add. A training step
// counts 3 forwards (the backward's two products per forward product).
static double forward_flops(const nsc_gpt2_config *c, int64_t b, int64_t t) {
    double cc = (double)c->n_embd, rows = (double)(b * t);
    double linear = 12.0 * cc * cc * (double)c->n_layer + cc * (double)c->vocab_size;
    double attention = (double)c->n_layer * (double)b * cc * (double)t * (double)(t + 1);
    return 2.0 * (rows * linear + attention);
}

// ids [B, T]: a fixed pseudo-random sequence (the same in compare_torch.py).
static nsc_tensor *make_ids(int64_t b, int64_t t, int64_t vocab) {
    nsc_tensor *ids = nsc_empty(NSC_I64, NSC_CPU, NSC_SHAPE(b, t));
    CHECK(ids);
    int64_t *p = nsc_tensor_data(ids);
    for (int64_t i = 0; i < b * t; i++) {
        p[i] = (i * 7919 + 13) % vocab;
    }
    return ids;
}

typedef struct state {
    nsc_module *model;
    nsc_gpt2_config config;
    nsc_tensor *ids, *targets; // targets: ids shifted by one, [B*T]
    nsc_optim *opt;
    nsc_tensor *tokens; // generate's last output
} state;

static void state_init(state *s, const bench_case *bc) {
    nsc_generator *gen = nsc_generator_new(1);
    s->config = nsc_gpt2_config_default();
    s->model = nsc_gpt2_new(&s->config, gen);
    CHECK(s->model);
    nsc_generator_free(gen);
    s->ids = make_ids(bc->batch, bc->tokens, s->config.vocab_size);
    if (bc->kind == TRAIN_STEP) {
        nsc_tensor *next = make_ids(bc->batch, bc->tokens + 1, s->config.vocab_size);
        nsc_tensor *shifted = nsc_narrow(next, 1, 1, bc->tokens);
        s->targets = nsc_reshape(shifted, NSC_SHAPE(bc->batch * bc->tokens));
        nsc_free(next);
        nsc_free(shifted);
        CHECK(s->targets && nsc_module_requires_grad_(s->model, true) == NSC_OK);
        nsc_adamw_config config = nsc_adamw_defaults();
        s->opt = nsc_optim_adamw_new_module(s->model, &config);
        CHECK(s->opt);
    }
}

static void state_free(state *s) {
    nsc_optim_free(s->opt);
    nsc_free(s->tokens);
    nsc_free(s->targets);
    nsc_free(s->ids);
    nsc_module_free(s->model);
}

static void run_forward(state *s) {
    nsc_no_grad_begin();
    nsc_tensor *logits = nsc_module_call(s->model, 1, &s->ids);
    nsc_no_grad_end();
    CHECK(logits);
    nsc_free(logits);
}

static void run_train_step(state *s) {
    CHECK(nsc_optim_zero_grad(s->opt, true) == NSC_OK);
    nsc_tensor *logits = nsc_module_call(s->model, 1, &s->ids);
    CHECK(logits);
    int64_t v = s->config.vocab_size;
    nsc_tensor *flat = nsc_view(logits, NSC_SHAPE(nsc_tensor_numel(logits) / v, v));
    nsc_tensor *loss = nsc_cross_entropy(flat, s->targets, NSC_REDUCTION_MEAN, -100);
    nsc_free(flat);
    nsc_free(logits);
    CHECK(loss && nsc_backward(loss, NULL, false) == NSC_OK);
    nsc_free(loss);
    CHECK(nsc_optim_step(s->opt) == NSC_OK);
}

static void run_generate(state *s) {
    nsc_generate_options o = nsc_generate_options_default();
    o.max_new_tokens = NEW_TOKENS;
    nsc_free(s->tokens);
    s->tokens = NULL;
    CHECK(nsc_generate(s->model, s->ids, NULL, &o, &s->tokens) == NSC_OK);
}

// Wall time of one run, in ms; its CPU time goes to *cpu.
static double run_once(state *s, kind k, double *cpu) {
    double start = now_ms(), cpu_start = cpu_ms();
    if (k == FORWARD) {
        run_forward(s);
    } else if (k == TRAIN_STEP) {
        run_train_step(s);
    } else {
        run_generate(s);
    }
    *cpu = cpu_ms() - cpu_start;
    return now_ms() - start;
}

static const char *backend(void) {
#ifdef NSC_NO_BLAS
    return "portable";
#else
    return "openblas";
#endif
}

typedef struct result {
    double ms, gflops, tok_s, cpu_ms, peak_mb, rss_mb, minflt;
} result;

static void report(const bench_case *bc, int threads, const result *r, const char *shape) {
    printf("%-18s %-14s %7d %10.2f %8.1f %8.1f %10.2f %8.0f %8.0f %8.0f\n", bc->name, shape,
           threads, r->ms, r->gflops, r->tok_s, r->cpu_ms, r->peak_mb, r->rss_mb, r->minflt);
    fflush(stdout);
    const char *path = getenv("NSC_BENCH_OUT") ? getenv("NSC_BENCH_OUT") : "bench/results.jsonl";
    FILE *json = fopen(path, "a");
    if (!json) {
        fprintf(stderr, "bench_gpt2: cannot append to %s; printing only\n", path);
        return;
    }
    fprintf(json,
            "{\"bench\":\"gpt2\",\"backend\":\"%s\",\"name\":\"%s\",\"shape\":\"%s\","
            "\"threads\":%d,\"runs\":%d,\"median_ms\":%.4f,\"gflops\":%.2f,\"tokens_per_s\":%.2f,"
            "\"cpu_ms\":%.4f,\"peak_live_bytes\":%.0f,\"peak_rss_bytes\":%.0f,\"minflt_per_run\":%.0f,"
            "\"time\":%lld}\n",
            backend(), bc->name, shape, threads, n_runs(), r->ms, r->gflops, r->tok_s, r->cpu_ms,
            r->peak_mb * 1048576.0, r->rss_mb * 1048576.0, r->minflt, (long long)time(NULL));
    fclose(json);
}

// The child's work: build, warm up, time the runs, report.
static void run_case(const bench_case *bc, int threads) {
    nsc_set_num_threads(threads);
    state s = { 0 };
    state_init(&s, bc);
    int runs = n_runs();
    double ms[MAX_RUNS], cpu[MAX_RUNS];
    // Warm-up: allocator cache, BLAS buffers; a training step's first run
    // creates the optimizer state, so only its second finds every block cached.
    for (int i = 0; i < (bc->kind == TRAIN_STEP ? 2 : 1); i++) {
        run_once(&s, bc->kind, &cpu[0]);
    }
    long faults = minor_faults();
    for (int i = 0; i < runs; i++) {
        ms[i] = run_once(&s, bc->kind, &cpu[i]);
    }
    result r = { .minflt = (double)(minor_faults() - faults) / runs };
    qsort(ms, (size_t)runs, sizeof ms[0], cmp_double);
    qsort(cpu, (size_t)runs, sizeof cpu[0], cmp_double);
    r.ms = ms[runs / 2];
    r.cpu_ms = cpu[runs / 2];
    char shape[48];
    if (bc->kind == GENERATE) {
        snprintf(shape, sizeof shape, "%lldx%lld+%d", (long long)bc->batch, (long long)bc->tokens,
                 NEW_TOKENS);
        r.tok_s = (double)(bc->batch * NEW_TOKENS) / (r.ms * 1e-3);
    } else {
        snprintf(shape, sizeof shape, "%lldx%lld", (long long)bc->batch, (long long)bc->tokens);
        double flops = forward_flops(&s.config, bc->batch, bc->tokens);
        r.gflops = (bc->kind == TRAIN_STEP ? 3 : 1) * flops / (r.ms * 1e6);
        r.tok_s = (double)(bc->batch * bc->tokens) / (r.ms * 1e-3);
    }
    r.peak_mb = (double)nsc_mem_stats_get().peak_bytes / 1048576.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r.rss_mb = (double)ru.ru_maxrss / 1024.0;
    report(bc, threads, &r, shape);
    state_free(&s);
}

// Saves the model and its greedy tokens for compare_torch.py's check.
static int save(const char *dir) {
    state s = { 0 };
    state_init(&s, &CASES[3]);
    CHECK(nsc_gpt2_save(s.model, dir) == NSC_OK);
    run_generate(&s);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokens.txt", dir);
    FILE *f = fopen(path, "w");
    CHECK(f);
    const int64_t *tok = nsc_tensor_data(s.tokens);
    for (int64_t i = 0; i < nsc_tensor_numel(s.tokens); i++) {
        fprintf(f, "%lld%c", (long long)tok[i], i + 1 < nsc_tensor_numel(s.tokens) ? ' ' : '\n');
    }
    fclose(f);
    state_free(&s);
    return 0;
}

// Runs one case in a child process; false when it failed.
static int fork_case(const bench_case *bc, int threads) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_gpt2: fork");
        return 0;
    }
    if (pid == 0) {
        run_case(bc, threads);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "--save") == 0) {
        return save(argv[2]);
    }
    const char *filter = argc > 1 && strcmp(argv[1], "all") != 0 ? argv[1] : NULL;
    int only_threads = argc > 2 ? atoi(argv[2]) : 0;
    printf("%-18s %-14s %7s %10s %8s %8s %10s %8s %8s %8s\n", "name", "shape", "threads",
           "median_ms", "gflops", "tok_s", "cpu_ms", "peak_MB", "rss_MB", "minflt");
    int ok = 1;
    for (int t = 0; t < (int)(sizeof THREADS / sizeof THREADS[0]); t++) {
        if (only_threads > 0 && only_threads != THREADS[t]) {
            continue;
        }
        for (int c = 0; c < (int)(sizeof CASES / sizeof CASES[0]); c++) {
            char full[64];
            snprintf(full, sizeof full, "%s.%lldx%lld", CASES[c].name, (long long)CASES[c].batch,
                     (long long)CASES[c].tokens);
            if (!filter || strstr(full, filter)) {
                ok &= fork_case(&CASES[c], THREADS[t]);
            }
        }
    }
    return ok ? 0 : 1;
}
