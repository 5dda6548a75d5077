// Op-level timing (nsc/profile.h). Counts and host times accumulate per op
// and device under a lock as kernels finish; a CUDA kernel leaves a pair of
// stream marks instead, read when the profile stops (reading one at each
// kernel would wait for the GPU there and change what is measured).
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nsc/profile.h"
#include "tensor/profile.h"

enum {
    MAX_PAIRS = 1 << 20 // device kernels timed per profile; later ones are counted only
};

typedef struct op_total {
    int64_t calls;
    double ms;
} op_total;

typedef struct mark_pair {
    nsc_op op;
    nsc_device device;
    void *from, *to;
} mark_pair;

// The marks' list uses the C allocator, not nsc's: a failure only leaves a
// kernel untimed, and must not leave an error behind an op that succeeded.
static struct {
    atomic_bool on;
    atomic_uint run; // advanced by each start
    pthread_mutex_t lock;
    op_total total[NSC_OP_COUNT][NSC_N_DEVICES];
    mark_pair *pairs;
    int64_t n_pairs, cap_pairs;
    int64_t untimed; // device kernels whose marks could not be made or read
} g = { .lock = PTHREAD_MUTEX_INITIALIZER };

static _Thread_local int t_depth; // kernels of this thread now running

static double host_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

void nsci_profile_begin(nsci_profile_mark *m, nsc_device dev) {
    *m = (nsci_profile_mark){ 0 };
    if (!atomic_load_explicit(&g.on, memory_order_relaxed)) {
        return;
    }
    m->run = atomic_load(&g.run);
    m->nested = t_depth++ > 0;
    m->timed = !m->nested;
    if (!m->timed) {
        return;
    }
    const nsci_device_ops *ops = &nsci_device_table[dev];
    if (ops->mark) {
        m->device = ops->mark();
    } else {
        m->host_ms = host_ms();
    }
}

// Keeps a pair of marks for stop; false when there is no room.
static bool keep_pair(nsc_op op, nsc_device dev, void *from, void *to) {
    if (g.n_pairs == g.cap_pairs) {
        int64_t cap = g.cap_pairs ? 2 * g.cap_pairs : 1024;
        mark_pair *grown = cap <= MAX_PAIRS ? realloc(g.pairs, (size_t)cap * sizeof *grown) : NULL;
        if (!grown) {
            return false;
        }
        g.pairs = grown;
        g.cap_pairs = cap;
    }
    g.pairs[g.n_pairs++] = (mark_pair){ op, dev, from, to };
    return true;
}

static void free_marks(const nsci_device_ops *ops, void *from, void *to) {
    if (from) {
        ops->mark_free(from);
    }
    if (to) {
        ops->mark_free(to);
    }
}

void nsci_profile_end(const nsci_profile_mark *m, nsc_op op, nsc_device dev) {
    if (!m->timed && !m->nested) {
        return;
    }
    t_depth--;
    if (!m->timed) {
        return;
    }
    const nsci_device_ops *ops = &nsci_device_table[dev];
    void *to = m->device ? ops->mark() : NULL;
    double end = ops->mark ? 0.0 : host_ms();
    pthread_mutex_lock(&g.lock);
    if (!atomic_load(&g.on) || atomic_load(&g.run) != m->run) {
        // The profile stopped (or another started) while this kernel ran.
        pthread_mutex_unlock(&g.lock);
        free_marks(ops, m->device, to);
        return;
    }
    g.total[op][dev].calls++;
    if (!ops->mark) {
        g.total[op][dev].ms += end - m->host_ms;
    } else if (!m->device || !to || !keep_pair(op, dev, m->device, to)) {
        g.untimed++;
        free_marks(ops, m->device, to);
    }
    pthread_mutex_unlock(&g.lock);
}

nsc_status nsc_profile_start(void) {
    pthread_mutex_lock(&g.lock);
    if (atomic_load(&g.on)) {
        pthread_mutex_unlock(&g.lock);
        return nsci_fail(NSC_ERR_STATE, "profile_start: a profile is already running "
                                        "(nsc_profile_stop ends it)");
    }
    memset(g.total, 0, sizeof g.total);
    g.n_pairs = 0;
    g.untimed = 0;
    atomic_fetch_add(&g.run, 1);
    atomic_store(&g.on, true);
    pthread_mutex_unlock(&g.lock);
    return NSC_OK;
}

nsc_status nsc_profile_stop(void) {
    pthread_mutex_lock(&g.lock);
    if (!atomic_load(&g.on)) {
        pthread_mutex_unlock(&g.lock);
        return nsci_fail(NSC_ERR_STATE, "profile_stop: no profile is running "
                                        "(nsc_profile_start begins one)");
    }
    atomic_store(&g.on, false);
    nsc_status status = NSC_OK;
    for (int64_t i = 0; i < g.n_pairs; i++) {
        const mark_pair *p = &g.pairs[i];
        const nsci_device_ops *ops = &nsci_device_table[p->device];
        float ms = 0;
        nsc_status s = status == NSC_OK ? ops->mark_elapsed(p->from, p->to, &ms) : status;
        if (s == NSC_OK) {
            g.total[p->op][p->device].ms += (double)ms;
        } else {
            status = s; // the first error; later pairs are released unread
            g.untimed++;
        }
        ops->mark_free(p->from);
        ops->mark_free(p->to);
    }
    g.n_pairs = 0;
    free(g.pairs);
    g.pairs = NULL;
    g.cap_pairs = 0;
    pthread_mutex_unlock(&g.lock);
    return status;
}

static int by_total(const void *a, const void *b) {
    const nsc_profile_row *x = a, *y = b;
    return (x->total_ms < y->total_ms) - (x->total_ms > y->total_ms);
}

int nsc_profile_rows(nsc_profile_row *rows, int max) {
    nsc_profile_row all[NSC_OP_COUNT * NSC_N_DEVICES];
    int n = 0;
    pthread_mutex_lock(&g.lock);
    for (int op = 0; op < NSC_OP_COUNT; op++) {
        for (int d = 0; d < NSC_N_DEVICES; d++) {
            if (g.total[op][d].calls > 0) {
                all[n++] = (nsc_profile_row){ nsci_op_defs[op]->name, (nsc_device)d,
                                              g.total[op][d].calls, g.total[op][d].ms };
            }
        }
    }
    pthread_mutex_unlock(&g.lock);
    qsort(all, (size_t)n, sizeof *all, by_total);
    for (int i = 0; rows && i < n && i < max; i++) {
        rows[i] = all[i];
    }
    return n;
}

nsc_status nsc_profile_print(FILE *out) {
    if (!out) {
        return nsci_fail(NSC_ERR_ARG, "profile_print: out is NULL: expected an open FILE");
    }
    nsc_profile_row rows[NSC_OP_COUNT * NSC_N_DEVICES];
    int n = nsc_profile_rows(rows, NSC_OP_COUNT * NSC_N_DEVICES);
    double total = 0;
    int64_t calls = 0;
    for (int i = 0; i < n; i++) {
        total += rows[i].total_ms;
        calls += rows[i].calls;
    }
    fprintf(out, "%-24s %-6s %8s %12s %10s %7s\n", "op", "device", "calls", "total_ms", "mean_us",
            "share");
    for (int i = 0; i < n; i++) {
        const nsc_profile_row *r = &rows[i];
        fprintf(out, "%-24s %-6s %8lld %12.3f %10.1f %6.1f%%\n", r->op, nsc_device_name(r->device),
                (long long)r->calls, r->total_ms, 1e3 * r->total_ms / (double)r->calls,
                total > 0 ? 100.0 * r->total_ms / total : 0.0);
    }
    fprintf(out, "%-24s %-6s %8lld %12.3f\n", "total", "", (long long)calls, total);
    pthread_mutex_lock(&g.lock);
    int64_t untimed = g.untimed;
    pthread_mutex_unlock(&g.lock);
    if (untimed > 0) {
        fprintf(out, "(%lld device kernels counted but not timed)\n", (long long)untimed);
    }
    return NSC_OK;
}
