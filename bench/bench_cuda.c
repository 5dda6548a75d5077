// GPT-2 small on the GPU: the forward of 8 x 1024 tokens (logits, no grad)
// and a training step's forward + cross_entropy + backward (parameter
// gradients on the GPU; the optimizers are CPU-only for now), median of
// NSC_BENCH_RUNS (5) runs after one warm-up, synchronized. Prints the
// bench/README.md line (gflops and ratio '-': bench/compare_cuda.py runs
// PyTorch eager on the same shapes). Without CUDA or a GPU it prints why.
// Run: make CUDA=1 bench-bins && build/release-cuda/bench/bench_cuda
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nsc.h"
#include "nsc/cuda.h"

enum { BATCH = 8, TOKENS = 1024 };

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Moves every parameter and buffer to the GPU (tied tensors stay tied).
static int model_to_cuda(nsc_module *model) {
    int64_t n = nsc_module_n_params(model) + nsc_module_n_buffers(model);
    nsc_tensor **old = calloc((size_t)n + 1, sizeof *old), **moved = calloc((size_t)n + 1, 8);
    int64_t used = 0;
    int ok = old && moved;
    for (int64_t i = 0; ok && i < n; i++) {
        const char *path;
        int64_t np = nsc_module_n_params(model);
        nsc_tensor *t = i < np ? nsc_module_param_at(model, i, &path)
                               : nsc_module_buffer_at(model, i - np, &path);
        nsc_tensor *m = NULL;
        for (int64_t j = 0; j < used && !m; j++) {
            m = old[j] == t ? moved[j] : NULL;
        }
        if (!m) {
            old[used] = t;
            m = moved[used++] = nsc_to(t, NSC_CUDA);
        }
        char owner[512];
        snprintf(owner, sizeof owner, "%s", path);
        char *dot = strrchr(owner, '.');
        *dot = '\0';
        ok = m && nsc_module_set_tensor(nsc_module_find(model, owner), dot + 1, m) == NSC_OK;
    }
    for (int64_t j = 0; j < used; j++) {
        nsc_free(moved[j]);
    }
    free(old);
    free(moved);
    return ok;
}

static nsc_tensor *logits_of(nsc_module *model, nsc_tensor *ids) {
    nsc_tensor *in[3] = { ids, NULL, NULL };
    return nsc_module_call(model, 3, in);
}

// One measured run; returns its milliseconds or -1.
static double run_once(nsc_module *model, nsc_tensor *ids, int train) {
    double t0 = now_ms();
    nsc_tensor *logits = logits_of(model, ids);
    if (!logits) {
        return -1;
    }
    if (train) {
        nsc_tensor *flat = nsc_reshape(logits, NSC_SHAPE(-1, 50257));
        nsc_tensor *target = nsc_reshape(ids, NSC_SHAPE(-1));
        nsc_tensor *loss = nsc_cross_entropy(flat, target, NSC_REDUCTION_MEAN, -100);
        nsc_status s = loss ? nsc_backward(loss, NULL, false) : NSC_ERR_STATE;
        nsc_free(flat);
        nsc_free(target);
        nsc_free(loss);
        if (s != NSC_OK) {
            nsc_free(logits);
            return -1;
        }
    }
    nsc_free(logits);
    if (nsc_cuda_synchronize() != NSC_OK) {
        return -1;
    }
    return now_ms() - t0;
}

static void measure(const char *name, nsc_module *model, nsc_tensor *ids, int train, int runs) {
    double ms[64];
    if (run_once(model, ids, train) < 0) { // warm-up: fills the allocator's cache
        printf("%-28s failed: %s\n", name, nsc_last_error());
        return;
    }
    for (int r = 0; r < runs; r++) {
        ms[r] = run_once(model, ids, train);
        if (ms[r] < 0) {
            printf("%-28s failed: %s\n", name, nsc_last_error());
            return;
        }
    }
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    printf("%-28s %-22s %d %10.3f %8s %6s\n", name, "8x1024", 1, ms[runs / 2], "-", "-");
}

int main(void) {
    if (nsc_cuda_init() != NSC_OK) {
        printf("bench_cuda: skipped: %s\n", nsc_last_error());
        return 0;
    }
    const char *env = getenv("NSC_BENCH_RUNS");
    int runs = env ? atoi(env) : 5;
    runs = runs < 5 ? 5 : runs > 64 ? 64 : runs;
    nsc_gpt2_config cfg = nsc_gpt2_config_default();
    nsc_generator *gen = nsc_generator_new(1234);
    nsc_module *model = nsc_gpt2_new(&cfg, gen);
    int64_t *ids = malloc(sizeof(int64_t) * BATCH * TOKENS);
    for (int i = 0; ids && i < BATCH * TOKENS; i++) {
        ids[i] = nsc_generator_next_u32(gen) % 50257;
    }
    nsc_tensor *host = ids ? nsc_from_data(NSC_I64, NSC_SHAPE(BATCH, TOKENS), ids) : NULL;
    nsc_tensor *dev = host ? nsc_to(host, NSC_CUDA) : NULL;
    if (!model || !dev || !model_to_cuda(model)) {
        printf("bench_cuda: setup failed: %s\n", nsc_last_error());
        return 1;
    }
    printf("%-28s %-22s %s %10s %8s %6s\n", "name", "shape", "threads", "median_ms", "gflops",
           "ratio");
    nsc_no_grad_begin();
    measure("gpt2_small.forward.cuda", model, dev, 0, runs);
    nsc_no_grad_end();
    nsc_module_requires_grad_(model, true);
    measure("gpt2_small.train_step.cuda", model, dev, 1, runs);
    nsc_cuda_stats st = nsc_cuda_stats_get();
    printf("# cuda: %lld cudaMalloc calls, %lld transfers, %.1f MiB live, %.1f MiB cached\n",
           (long long)st.device_mallocs, (long long)st.transfers, (double)st.live_bytes / 1048576.0,
           (double)st.cached_bytes / 1048576.0);
    nsc_free(host);
    nsc_free(dev);
    free(ids);
    nsc_module_free(model);
    nsc_generator_free(gen);
    return 0;
}
