// The one CPU thread pool (STYLE.md: "CPU threads go through one
// nsci_parallel_for"). Workers spin briefly for the next job, then sleep, so
// back-to-back kernels in a forward pass do not pay a wake-up each.
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "util_impl.h"

// A short spin: OpenBLAS runs its own threads on the same cores, and a worker
// spinning through a GEMM takes a core from it. 500 rounds (a few µs) against
// 20000 (about a millisecond), A/B pairs on 2 cores: GPT-2 forward 1x64
// 0.76x the time, training step 4x64 ~0.85x, MLP step 0.71x, generation
// 0.82x, forward 1x256 unchanged (bench_gpt2, bench_mlp at 2 threads).
enum { MAX_THREADS = 256, SPIN_ROUNDS = 500 };

typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    pthread_mutex_t submit; // one job at a time; others run inline
    int n_workers;          // threads besides the caller
    pthread_t threads[MAX_THREADS];
    bool shutting_down;
    // the current job
    nsci_range_fn fn;
    void *ctx;
    int64_t n;
    int64_t chunk;
    atomic_llong next;
    atomic_int busy_workers;
    atomic_ullong generation;
} pool;

static pool g_pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .submit = PTHREAD_MUTEX_INITIALIZER,
};
static int g_n_threads; // 0 = not decided yet
static pthread_once_t g_started = PTHREAD_ONCE_INIT;
static _Thread_local bool t_in_worker;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_chunks(pool *p) {
    for (;;) {
        int64_t begin = atomic_fetch_add(&p->next, p->chunk);
        if (begin >= p->n) {
            return;
        }
        p->fn(p->ctx, begin, NSCI_MIN(begin + p->chunk, p->n));
    }
}

static void *worker_main(void *arg) {
    pool *p = arg;
    t_in_worker = true;
    // Workers start before the first job is published (generation 0), but
    // may first run after it: starting from 0 makes them see that job.
    unsigned long long seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&p->generation, memory_order_acquire) == seen &&
               spins < SPIN_ROUNDS) {
            spins++;
            cpu_relax();
        }
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->generation) == seen && !p->shutting_down) {
            pthread_cond_wait(&p->wake, &p->lock);
        }
        if (p->shutting_down) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        pthread_mutex_unlock(&p->lock);
        seen = atomic_load(&p->generation);
        run_chunks(p);
        if (atomic_fetch_sub(&p->busy_workers, 1) == 1) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

static int default_threads(void) {
    const char *env = getenv("NSC_NUM_THREADS");
    if (env && atoi(env) > 0) {
        return NSCI_MIN(atoi(env), MAX_THREADS);
    }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)NSCI_MIN(cpus, MAX_THREADS) : 1;
}

static void start_workers(void) {
    if (g_n_threads == 0) {
        g_n_threads = default_threads();
    }
    int wanted = g_n_threads - 1;
    int started = 0;
    for (; started < wanted; started++) {
        if (pthread_create(&g_pool.threads[started], NULL, worker_main, &g_pool) != 0) {
            break; // run with the threads we could get
        }
        pthread_detach(g_pool.threads[started]);
    }
    g_pool.n_workers = started;
}

void nsci_pool_set_threads(int n) {
    // Only before the pool starts: workers are detached and live for the process.
    g_n_threads = NSCI_MAX(1, NSCI_MIN(n, MAX_THREADS));
}

int nsci_pool_threads(void) {
    if (g_n_threads == 0) {
        g_n_threads = default_threads();
    }
    return g_n_threads;
}

void nsci_parallel_for(int64_t n, int64_t grain, nsci_range_fn fn, void *ctx) {
    if (n <= 0) {
        return;
    }
    grain = NSCI_MAX(grain, 1);
    if (n <= grain || t_in_worker || nsci_pool_threads() <= 1) {
        fn(ctx, 0, n);
        return;
    }
    pthread_once(&g_started, start_workers);
    pool *p = &g_pool;
    if (p->n_workers == 0 || pthread_mutex_trylock(&p->submit) != 0) {
        fn(ctx, 0, n);
        return;
    }
    int64_t n_parts = NSCI_MIN((int64_t)(p->n_workers + 1) * 4, (n + grain - 1) / grain);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = (n + n_parts - 1) / n_parts;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy_workers, p->n_workers);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    bool was_worker = t_in_worker;
    t_in_worker = true; // nested calls from fn run inline
    run_chunks(p);
    t_in_worker = was_worker;
    int spins = 0;
    while (atomic_load(&p->busy_workers) > 0 && spins < SPIN_ROUNDS) {
        spins++;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    while (atomic_load(&p->busy_workers) > 0) {
        pthread_cond_wait(&p->done, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_unlock(&p->submit);
}
