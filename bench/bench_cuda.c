// GPT-2 small on the GPU: the forward of 8 x 1024 tokens (logits, no grad),
// forward + cross_entropy + backward, and the whole training step (that,
// then AdamW's update and zero_grad; the parameters and the optimizer state
// stay on the GPU), and that step with the gradients' norm clipped to 1
// first (nanoGPT's loop), median of NSC_BENCH_RUNS (5) runs after one warm-up,
// then the op profiler's table (nsc/profile.h) of one more clipped step,
// synchronized. Prints the
// bench/README.md line (gflops and ratio '-': bench/compare_cuda.py runs
// PyTorch eager on the same shapes). Without CUDA or a GPU it prints why.
// Run: make CUDA=1 bench-bins && build/release-cuda/bench/bench_cuda
// NSC_BENCH_SMOKE=1: a 2-layer, 64-wide model on 2 x 64 tokens, to check the
// program end to end where timing means nothing (the CUDA emulator in CI).
// Exit status 1 when a measurement failed or a timed run copied between
// host and device (beyond the clip's one read of the total norm).
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nsc.h"
#include "nsc/cuda.h"

static int g_batch = 8, g_tokens = 1024;
static char g_shape[32] = "8x1024";

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static nsc_tensor *logits_of(nsc_module *model, nsc_tensor *ids) {
    nsc_tensor *in[3] = { ids, NULL, NULL };
    return nsc_module_call(model, 3, in);
}

// One measured run; returns its milliseconds or -1. opt: also step and
// clear the gradients (NULL: forward, or forward + backward when train);
// clip: clip the gradients' norm to 1 before the step (nanoGPT's loop).
static double run_once(nsc_module *model, nsc_tensor *ids, int train, nsc_optim *opt, bool clip) {
    double t0 = now_ms();
    nsc_tensor *logits = logits_of(model, ids);
    if (!logits) {
        return -1;
    }
    if (train) {
        nsc_tensor *flat = nsc_reshape(logits, NSC_SHAPE(-1, nsc_tensor_shape(logits)[2]));
        nsc_tensor *target = nsc_reshape(ids, NSC_SHAPE(-1));
        nsc_tensor *loss = nsc_cross_entropy(flat, target, NSC_REDUCTION_MEAN, -100);
        nsc_status s = loss ? nsc_backward(loss, NULL, false) : NSC_ERR_STATE;
        nsc_free(flat);
        nsc_free(target);
        nsc_free(loss);
        if (s == NSC_OK && opt && clip) {
            s = nsc_optim_clip_grad_norm(opt, 1.0, NULL);
        }
        if (s == NSC_OK && opt) {
            s = nsc_optim_step(opt);
        }
        if (s == NSC_OK) {
            s = opt ? nsc_optim_zero_grad(opt, true) : nsc_module_zero_grad(model, true);
        }
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

// Prints the median's line; false (and why) when a run failed or copied
// more than clipping's one scalar per run.
static bool measure(const char *name, nsc_module *model, nsc_tensor *ids, int train, nsc_optim *opt,
                    bool clip, int runs) {
    double ms[64];
    // Warm-up: fills the allocator's cache. A training step's first run also
    // makes the optimizer's state, which takes blocks the next forward would
    // have found cached: a second run reaches the steady state (without it,
    // the first timed run called cudaMalloc 18 times on the smoke model).
    for (int w = 0; w < (opt ? 2 : 1); w++) {
        if (run_once(model, ids, train, opt, clip) < 0) {
            printf("%-28s failed: %s\n", name, nsc_last_error());
            return false;
        }
    }
    nsc_cuda_stats before = nsc_cuda_stats_get();
    for (int r = 0; r < runs; r++) {
        ms[r] = run_once(model, ids, train, opt, clip);
        if (ms[r] < 0) {
            printf("%-28s failed: %s\n", name, nsc_last_error());
            return false;
        }
    }
    nsc_cuda_stats after = nsc_cuda_stats_get();
    qsort(ms, (size_t)runs, sizeof *ms, cmp_double);
    printf("%-28s %-22s %d %10.3f %8s %6s\n", name, g_shape, 1, ms[runs / 2], "-", "-");
    // A step that copies to or from the host waits for it: a bug, not a cost,
    // except the clip's one read of the total norm (it returns a double).
    long long copies = (long long)(after.transfers - before.transfers);
    long long mallocs = (long long)(after.device_mallocs - before.device_mallocs);
    long long launches = (long long)(after.kernel_launches - before.kernel_launches) / runs;
    printf("# %s: %lld host<->device copies, %lld cudaMalloc calls in the timed runs; %lld nsc "
           "kernel launches a run (cuBLAS's not counted)\n",
           name, copies, mallocs, launches);
    return copies == (clip ? runs : 0);
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
    const char *smoke = getenv("NSC_BENCH_SMOKE");
    if (smoke && strcmp(smoke, "0") != 0) {
        cfg.n_layer = 2;
        cfg.n_head = 2;
        cfg.n_embd = 64;
        cfg.vocab_size = 512;
        cfg.n_positions = 64;
        g_batch = 2;
        g_tokens = 64;
        snprintf(g_shape, sizeof g_shape, "%dx%d (smoke)", g_batch, g_tokens);
    }
    nsc_generator *gen = nsc_generator_new(1234);
    nsc_module *model = nsc_gpt2_new(&cfg, gen);
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(g_batch * g_tokens));
    for (int i = 0; ids && i < g_batch * g_tokens; i++) {
        ids[i] = nsc_generator_next_u32(gen) % (uint32_t)cfg.vocab_size;
    }
    nsc_tensor *host = ids ? nsc_from_data(NSC_I64, NSC_SHAPE(g_batch, g_tokens), ids) : NULL;
    nsc_tensor *dev = host ? nsc_to(host, NSC_CUDA) : NULL;
    if (!model || !dev || nsc_module_to(model, NSC_CUDA) != NSC_OK) {
        printf("bench_cuda: setup failed: %s\n", nsc_last_error());
        return 1;
    }
    printf("%-28s %-22s %s %10s %8s %6s\n", "name", "shape", "threads", "median_ms", "gflops",
           "ratio");
    nsc_no_grad_begin();
    bool ok = measure("gpt2_small.forward.cuda", model, dev, 0, NULL, false, runs);
    nsc_no_grad_end();
    nsc_module_requires_grad_(model, true);
    ok = measure("gpt2_small.fwd_bwd.cuda", model, dev, 1, NULL, false, runs) && ok;
    nsc_adamw_config adamw = nsc_adamw_defaults();
    adamw.lr = 1e-4;
    nsc_optim *opt = nsc_optim_adamw_new_module(model, &adamw);
    if (opt) {
        ok = measure("gpt2_small.train_step.cuda", model, dev, 1, opt, false, runs) && ok;
        ok = measure("gpt2_small.train_step_clip.cuda", model, dev, 1, opt, true, runs) && ok;
    } else {
        printf("%-28s failed: %s\n", "gpt2_small.train_step.cuda", nsc_last_error());
        ok = false;
    }
    // Where a step's time goes: one more clipped step under the op profiler
    // (GPU time per op from CUDA events; after the timed runs, so its
    // events cannot slow them).
    if (opt && nsc_profile_start() == NSC_OK) {
        bool ran = run_once(model, dev, 1, opt, true) >= 0;
        if (nsc_profile_stop() == NSC_OK && ran) {
            printf("# profile of one gpt2_small.train_step_clip.cuda (GPU ms per op):\n");
            nsc_profile_print(stdout);
        } else {
            printf("# profile failed: %s\n", nsc_last_error());
        }
    }
    nsc_optim_free(opt);
    nsc_cuda_stats st = nsc_cuda_stats_get();
    printf("# cuda: %lld cudaMalloc calls, %lld transfers, %.1f MiB live, %.1f MiB cached\n",
           (long long)st.device_mallocs, (long long)st.transfers, (double)st.live_bytes / 1048576.0,
           (double)st.cached_bytes / 1048576.0);
    nsc_free(host);
    nsc_free(dev);
    free(ids);
    nsc_module_free(model);
    nsc_generator_free(gen);
    return ok ? 0 : 1;
}
