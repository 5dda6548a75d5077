// Threads (issue 12): the error record and grad mode are per thread; two
// traces on two models in two threads at once give the results each gives
// alone; one model without hooks serves several threads; ops and GPT-2
// forwards from several threads share the one CPU pool. What is not
// thread-safe is listed in docs/RELIABILITY.md.
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tests/graph_models.h"
#include "tests/harness.h"
#include "tests/reliability_util.h"
#include "tests/st_util.h"

enum {
    N_THREADS = 4,
    ROUNDS = 20
};

// Starts n threads on fn(args[i]) at once and joins them.
static void run_threads(int n, void *(*fn)(void *), void *args, size_t arg_bytes) {
    pthread_t threads[N_THREADS];
    cr_assert_leq(n, N_THREADS);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(pthread_create(&threads[i], NULL, fn, (char *)args + (size_t)i * arg_bytes),
                     0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(threads[i], NULL);
    }
}

// --- the error record and grad mode ---

typedef struct error_arg {
    int index;
    bool ok; // every check held on this thread
} error_arg;

static pthread_barrier_t g_barrier;

// Thread i fails a call of its own each round, then checks that the record
// holds its own message after the others have failed theirs.
static void *errors_thread(void *p) {
    error_arg *a = p;
    a->ok = true;
    nsc_tensor *x = nsc_zeros(NSC_F32, NSC_CPU, NSC_SHAPE(2, 3));
    for (int r = 0; r < ROUNDS; r++) {
        if (a->index == 0) {
            nsc_clear_error(); // thread 0 stays clear
        } else {
            nsc_tensor *bad = nsc_select(x, 0, 10 + a->index);
            a->ok = a->ok && !bad;
        }
        pthread_barrier_wait(&g_barrier); // every thread has made its call
        char want[64];
        snprintf(want, sizeof want, "index %d is out of range", 10 + a->index);
        bool mine = a->index == 0 ? nsc_last_status() == NSC_OK && !nsc_last_error()[0]
                                  : nsc_last_status() == NSC_ERR_ARG &&
                                        strstr(nsc_last_error(), want) != NULL;
        a->ok = a->ok && mine;
        pthread_barrier_wait(&g_barrier);
    }
    nsc_free(x);
    return NULL;
}

Test(reliability_threads, errors_are_per_thread) {
    error_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i].index = i;
    }
    pthread_barrier_init(&g_barrier, NULL, N_THREADS);
    run_threads(N_THREADS, errors_thread, args, sizeof args[0]);
    pthread_barrier_destroy(&g_barrier);
    for (int i = 0; i < N_THREADS; i++) {
        cr_expect(args[i].ok, "thread %d saw another thread's error record", i);
    }
}

// Thread i records (or not) according to its own grad mode while the
// others switch theirs.
static void *grad_mode_thread(void *p) {
    error_arg *a = p;
    a->ok = true;
    nsc_tensor *w = nsc_ones(NSC_F32, NSC_CPU, NSC_SHAPE(3));
    nsc_requires_grad_(w, true);
    bool recording = a->index % 2 == 0;
    for (int r = 0; r < ROUNDS; r++) {
        nsc_set_grad_enabled(recording);
        pthread_barrier_wait(&g_barrier);
        nsc_tensor *y = nsc_mul_scalar(w, 2.0);
        a->ok = a->ok && y && nsc_tensor_requires_grad(y) == recording &&
                nsc_grad_enabled() == recording;
        nsc_free(y);
        recording = !recording;
        pthread_barrier_wait(&g_barrier);
    }
    nsc_set_grad_enabled(true);
    nsc_free(w);
    return NULL;
}

Test(reliability_threads, grad_mode_is_per_thread) {
    error_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i].index = i;
    }
    pthread_barrier_init(&g_barrier, NULL, N_THREADS);
    run_threads(N_THREADS, grad_mode_thread, args, sizeof args[0]);
    pthread_barrier_destroy(&g_barrier);
    for (int i = 0; i < N_THREADS; i++) {
        cr_expect(args[i].ok, "thread %d recorded against its own grad mode", i);
    }
    cr_expect(nsc_grad_enabled(), "the main thread's mode is its own");
}

// --- traces on their own models, in parallel ---

typedef struct trace_arg {
    nsc_module *model;
    nsc_tensor *x;
    nsc_tensor *got[3]; // h.0 output, h.1 after the edit, the model output
    nsc_status status;
    char error[256];
} trace_arg;

static nsc_status trace_once(trace_arg *a) {
    nsc_trace *tr = nsc_trace_new(a->model);
    nsc_invoke *inv = nsc_trace_invoke(tr, 1, &a->x);
    nsc_tensor *h0 = nsc_save(nsc_invoke_output(inv, "h.0", 0));
    nsc_tensor *h1 = nsc_invoke_output(inv, "h.1", 0);
    nsc_zero_(nsc_select(h1, 1, 1));
    nsc_tensor *h1s = nsc_save(nsc_mul_scalar(h1, 1.0));
    nsc_invoke_set_output(inv, "h.2", 0, nsc_mul_scalar(nsc_invoke_output(inv, "h.2", 0), -1.0));
    nsc_tensor *out = nsc_save(nsc_invoke_output(inv, "", 0));
    nsc_status s = nsc_trace_run(tr);
    if (s == NSC_OK) {
        nsc_tensor *proxies[3] = { h0, h1s, out };
        for (int i = 0; i < 3; i++) {
            nsc_free(a->got[i]);
            a->got[i] = nsc_trace_get(tr, proxies[i]);
        }
    }
    snprintf(a->error, sizeof a->error, "%s", nsc_last_error());
    nsc_trace_free(tr);
    return s;
}

static void *trace_thread(void *p) {
    trace_arg *a = p;
    a->status = NSC_OK;
    for (int r = 0; r < ROUNDS && a->status == NSC_OK; r++) {
        a->status = trace_once(a);
    }
    return NULL;
}

static nsc_tensor *model_input(int rows, int seed) {
    nsc_generator *gen = nsc_generator_new((uint64_t)seed);
    nsc_tensor *x = nsc_randn(gen, NSC_F32, NSC_SHAPE(rows, 16));
    nsc_generator_free(gen);
    return x;
}

Test(reliability_threads, traces_on_their_own_models_in_parallel) {
    int64_t start = nsct_rel_live_blocks();
    trace_arg alone[N_THREADS], together[N_THREADS];
    memset(alone, 0, sizeof alone);
    for (int i = 0; i < N_THREADS; i++) {
        alone[i].model = nsct_chain_model(3 + i % 2, 16);
        alone[i].x = model_input(3 + i, i);
        cr_assert_eq(trace_once(&alone[i]), NSC_OK, "%s", alone[i].error);
        together[i] = alone[i];
        memset(together[i].got, 0, sizeof together[i].got);
    }
    run_threads(N_THREADS, trace_thread, together, sizeof together[0]);
    for (int i = 0; i < N_THREADS; i++) {
        cr_expect_eq(together[i].status, NSC_OK, "thread %d: %s", i, together[i].error);
        for (int k = 0; k < 3; k++) {
            cr_expect(nsct_st_equal(together[i].got[k], alone[i].got[k]),
                      "thread %d, value %d differs from the trace run alone", i, k);
            nsc_free(together[i].got[k]);
            nsc_free(alone[i].got[k]);
        }
        nsc_free(alone[i].x);
        nsc_module_free(alone[i].model);
    }
    cr_expect_eq(nsct_rel_live_blocks(), start);
}

// --- one model without hooks, several threads ---

typedef struct forward_arg {
    nsc_module *model;
    nsc_tensor *x;
    nsc_tensor *want;
    bool ok;
} forward_arg;

static void *forward_thread(void *p) {
    forward_arg *a = p;
    a->ok = true;
    for (int r = 0; r < ROUNDS && a->ok; r++) {
        nsc_tensor *y = nsc_module_forward(a->model, 1, &a->x);
        a->ok = nsct_st_equal(y, a->want);
        nsc_free(y);
    }
    return NULL;
}

// nsc_module_forward counts nothing, so the threads share no mutable state
// of the model (nsc_module_call increments its call counters: see
// docs/RELIABILITY.md).
Test(reliability_threads, one_model_without_hooks_serves_several_threads) {
    nsc_module *model = nsct_chain_model(4, 16);
    nsct_warm_paths(model);
    forward_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i].model = model;
        args[i].x = model_input(2 + i, 10 + i);
        args[i].want = nsc_module_forward(model, 1, &args[i].x);
        cr_assert(args[i].want, "%s", nsc_last_error());
    }
    run_threads(N_THREADS, forward_thread, args, sizeof args[0]);
    for (int i = 0; i < N_THREADS; i++) {
        cr_expect(args[i].ok, "thread %d got other numbers than alone", i);
        nsc_free(args[i].x);
        nsc_free(args[i].want);
    }
    nsc_module_free(model);
}

// GPT-2 forwards and backward passes from several threads: each thread its
// own inputs and leaves, the model's weights shared read-only.
typedef struct gpt2_arg {
    nsc_module *model;
    nsc_tensor *ids;
    nsc_tensor *want;
    bool ok;
} gpt2_arg;

static void *gpt2_thread(void *p) {
    gpt2_arg *a = p;
    a->ok = true;
    nsc_no_grad_begin();
    for (int r = 0; r < ROUNDS / 4 && a->ok; r++) {
        nsc_tensor *logits = nsc_module_forward(a->model, 1, &a->ids);
        a->ok = nsct_st_equal(logits, a->want);
        nsc_free(logits);
    }
    nsc_no_grad_end();
    return NULL;
}

Test(reliability_threads, gpt2_forwards_share_one_model) {
    nsc_gpt2_config c = nsc_gpt2_config_default();
    c.vocab_size = 64, c.n_positions = 32, c.n_embd = 32, c.n_layer = 2, c.n_head = 4;
    nsc_generator *gen = nsc_generator_new(7);
    nsc_module *model = nsc_gpt2_new(&c, gen);
    cr_assert(model, "%s", nsc_last_error());
    nsct_warm_paths(model);
    gpt2_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i].model = model;
        args[i].ids = nsc_randint(gen, 0, 64, NSC_SHAPE(1 + i % 2, 8 + 4 * i));
        args[i].want = nsc_module_forward(model, 1, &args[i].ids);
        cr_assert(args[i].want, "%s", nsc_last_error());
    }
    run_threads(N_THREADS, gpt2_thread, args, sizeof args[0]);
    for (int i = 0; i < N_THREADS; i++) {
        cr_expect(args[i].ok, "thread %d got other logits than alone", i);
        nsc_free(args[i].ids);
        nsc_free(args[i].want);
    }
    nsc_generator_free(gen);
    nsc_module_free(model);
}

// Large products from several threads at once: one gets the pool, the
// others run inline; every result equals the one computed alone.
typedef struct matmul_arg {
    nsc_tensor *a, *b, *want;
    bool ok;
} matmul_arg;

static void *matmul_thread(void *p) {
    matmul_arg *m = p;
    m->ok = true;
    for (int r = 0; r < ROUNDS / 2 && m->ok; r++) {
        nsc_tensor *y = nsc_matmul(m->a, m->b);
        nsc_tensor *s = nsc_softmax(y, -1);
        m->ok = nsct_st_equal(s, m->want);
        nsc_free(y);
        nsc_free(s);
    }
    return NULL;
}

Test(reliability_threads, ops_from_several_threads_share_the_pool) {
    nsc_generator *gen = nsc_generator_new(99);
    matmul_arg args[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        args[i].a = nsc_randn(gen, NSC_F32, NSC_SHAPE(96 + 8 * i, 128));
        args[i].b = nsc_randn(gen, NSC_F32, NSC_SHAPE(128, 80));
        nsc_tensor *y = nsc_matmul(args[i].a, args[i].b);
        args[i].want = nsc_softmax(y, -1);
        nsc_free(y);
    }
    run_threads(N_THREADS, matmul_thread, args, sizeof args[0]);
    for (int i = 0; i < N_THREADS; i++) {
        cr_expect(args[i].ok, "thread %d got other numbers than alone", i);
        nsc_free(args[i].a);
        nsc_free(args[i].b);
        nsc_free(args[i].want);
    }
    nsc_generator_free(gen);
}

// Module paths are cached on first use; threads that ask for them at once
// publish one copy and free the others (the race leaked a copy, or handed
// out one being replaced).
typedef struct path_arg {
    nsc_module *model;
    const char *seen[64];
    int n;
} path_arg;

static void *path_thread(void *p) {
    path_arg *a = p;
    pthread_barrier_wait(&g_barrier);
    a->n = (int)nsc_module_n_modules(a->model);
    for (int i = 0; i < a->n && i < 64; i++) {
        a->seen[i] = nsc_module_path(nsc_module_at(a->model, i));
    }
    return NULL;
}

Test(reliability_threads, module_paths_are_built_once) {
    for (int round = 0; round < ROUNDS; round++) {
        int64_t start = nsct_rel_live_blocks();
        nsc_module *model = nsct_chain_model(6, 2);
        int64_t built = nsct_rel_live_blocks();
        path_arg args[N_THREADS];
        for (int i = 0; i < N_THREADS; i++) {
            args[i].model = model;
        }
        pthread_barrier_init(&g_barrier, NULL, N_THREADS);
        run_threads(N_THREADS, path_thread, args, sizeof args[0]);
        pthread_barrier_destroy(&g_barrier);
        for (int i = 1; i < N_THREADS; i++) {
            for (int k = 0; k < args[0].n; k++) {
                cr_expect_eq(args[i].seen[k], args[0].seen[k], "one published copy per module");
            }
        }
        cr_expect_eq(nsct_rel_live_blocks() - built, args[0].n - 1, "one path per non-root");
        nsc_module_free(model);
        cr_expect_eq(nsct_rel_live_blocks(), start);
    }
}

// Threads encoding the same words at once: each misses the shared BPE cache
// and stores its result; the second store of a word leaked the first one's
// copy (found by valgrind). The live block count after freeing the
// tokenizer catches it whatever the interleaving was.
typedef struct encode_arg {
    const nsc_tokenizer *tok;
    int64_t n;
    int64_t ids[256];
} encode_arg;

static const char ENCODE_TEXT[] = "the quick brown fox jumps over the lazy dog, again and again; "
                                  "threads that tokenize the same words share one cache";

static void *encode_thread(void *p) {
    encode_arg *a = p;
    pthread_barrier_wait(&g_barrier);
    a->n = nsc_tokenizer_encode(a->tok, ENCODE_TEXT, sizeof ENCODE_TEXT - 1, a->ids, 256);
    return NULL;
}

Test(reliability_threads, concurrent_encoding_leaves_nothing) {
    char dir[1024];
    const char *root = getenv("NSC_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/tests/fixtures/bpe", root ? root : ".");
    for (int round = 0; round < 5 * ROUNDS; round++) {
        int64_t start = nsct_rel_live_blocks();
        nsc_tokenizer *tok = nsc_tokenizer_load(dir);
        cr_assert(tok, "%s", nsc_last_error());
        encode_arg args[N_THREADS];
        for (int i = 0; i < N_THREADS; i++) {
            args[i].tok = tok;
        }
        pthread_barrier_init(&g_barrier, NULL, N_THREADS);
        run_threads(N_THREADS, encode_thread, args, sizeof args[0]);
        pthread_barrier_destroy(&g_barrier);
        for (int i = 1; i < N_THREADS; i++) {
            cr_expect(args[i].n == args[0].n && args[0].n > 0 &&
                          memcmp(args[i].ids, args[0].ids, (size_t)args[0].n * 8) == 0,
                      "thread %d encoded differently", i);
        }
        nsc_tokenizer_free(tok);
        cr_expect_eq(nsct_rel_live_blocks(), start, "round %d: the tokenizer left blocks", round);
    }
}
