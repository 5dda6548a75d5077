// What tracing costs (issue 7): a GPT-2-small-sized forward (random weights,
// 12 layers, 768 wide, vocab 50257) at 1x64 tokens, plain against the same
// forward traced with 0, 1, 24 and 240 interventions, as interleaved A/B
// pairs (the machine is shared: each pair runs back to back, the ratio of
// the pair is what counts), median ratio and its spread (quartiles); and the
// cost of building and validating a node.
// Run: make bench (or build/bench/bench/bench_trace [pairs]).
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nsc.h"
#include "nsc/gpt2.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[(int)(q * (n - 1) + 0.5)];
}

static double plain_forward(nsc_module *model, nsc_tensor *ids) {
    double t0 = now_ms();
    nsc_tensor *out = nsc_module_call(model, 1, &ids);
    double t = now_ms() - t0;
    nsc_free(out);
    return t;
}

// Interventions (light ones: the point is the graph's own cost, not the
// compute a user asks for): 1 = save block 5's output; 24 = per block a
// read and a save; 240 = per block 20 nodes: the read, the last position (a
// view), 9 scalar ops on it with 9 saves.
static nsc_trace *build(nsc_module *model, nsc_tensor *ids, int n) {
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    if (n == 1) {
        nsc_save(nsc_invoke_output(inv, "transformer.h.5", 0));
    }
    for (int l = 0; n >= 24 && l < 12; l++) {
        char path[32];
        snprintf(path, sizeof path, "transformer.h.%d", l);
        nsc_tensor *h = nsc_invoke_output(inv, path, 0);
        nsc_tensor *last = n == 240 ? nsc_select(h, 1, -1) : NULL;
        for (int k = 0; n == 240 && k < 9; k++) {
            nsc_save(nsc_add_scalar(last, (double)k));
        }
        nsc_save(h);
    }
    return tr;
}

static double traced_forward(nsc_module *model, nsc_tensor *ids, int n) {
    double t0 = now_ms();
    nsc_trace *tr = build(model, ids, n);
    if (nsc_trace_run(tr) != NSC_OK) {
        fprintf(stderr, "bench_trace: %s\n", nsc_last_error());
        exit(1);
    }
    double t = now_ms() - t0;
    nsc_trace_free(tr);
    return t;
}

static void per_node_cost(nsc_module *model, nsc_tensor *ids) {
    nsc_trace *tr = nsc_trace_new(model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &ids);
    double t0 = now_ms();
    nsc_tensor *h = nsc_invoke_output(inv, "transformer.h.3", 0); // includes the shape scan
    double scan = now_ms() - t0;
    t0 = now_ms();
    const int nodes = 2000;
    for (int i = 0; i < nodes / 2; i++) {
        h = nsc_mul_scalar(nsc_add(h, h), 0.5);
    }
    double per_node_us = (now_ms() - t0) * 1e3 / nodes;
    printf("trace_build  scan(META forward)=%.2fms  per_node=%.2fus  (%d op nodes, each with "
           "its shape rule)\n",
           scan, per_node_us, nodes);
    nsc_trace_free(tr);
}

int main(int argc, char **argv) {
    int pairs = argc > 1 ? atoi(argv[1]) : 20;
    nsc_gpt2_config cfg = nsc_gpt2_config_default();
    nsc_generator *gen = nsc_generator_new(1);
    nsc_module *model = nsc_gpt2_new(&cfg, gen);
    nsc_tensor *ids = nsc_randint(gen, 0, cfg.vocab_size, NSC_SHAPE(1, 64));
    if (!model || !ids) {
        fprintf(stderr, "bench_trace: %s\n", nsc_last_error());
        return 1;
    }
    plain_forward(model, ids); // warm-up: caches, thread pools
    traced_forward(model, ids, 240);
    const int counts[] = { 0, 1, 24, 240 };
    printf("# GPT-2 small forward 1x64, traced vs plain, %d interleaved pairs, %d threads\n",
           pairs, nsc_get_num_threads());
    for (int c = 0; c < 4; c++) {
        double *ratio = malloc((size_t)pairs * sizeof *ratio), *plain = malloc((size_t)pairs * 8);
        for (int p = 0; p < pairs; p++) {
            double a = plain_forward(model, ids), b = traced_forward(model, ids, counts[c]);
            plain[p] = a;
            ratio[p] = b / a;
        }
        double q1 = quantile(ratio, pairs, 0.25), med = quantile(ratio, pairs, 0.5);
        double q3 = quantile(ratio, pairs, 0.75);
        printf("trace_overhead  interventions=%-4d  median_ratio=%.3f  quartiles=[%.3f, %.3f]  "
               "plain_median=%.1fms\n",
               counts[c], med, q1, q3, quantile(plain, pairs, 0.5));
        free(ratio);
        free(plain);
    }
    per_node_cost(model, ids);
    nsc_free(ids);
    nsc_module_free(model);
    nsc_generator_free(gen);
    return 0;
}
