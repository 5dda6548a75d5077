// The seeded generator: Philox4x32-10 (Salmon et al., SC'11), counter-based,
// so its raw words depend only on seed and position, on every machine.
// Floats are made from those words with exact integer-to-float steps.
#include <math.h>
#include <string.h>

#include "tensor/tensor_impl.h"

struct nsc_generator {
    uint32_t key[2];
    uint32_t counter[4];
    uint32_t block[4];
    int used; // words of block already handed out
};

enum { PHILOX_ROUNDS = 10 };
static const uint32_t PHILOX_M0 = 0xD2511F53u, PHILOX_M1 = 0xCD9E8D57u;
static const uint32_t PHILOX_W0 = 0x9E3779B9u, PHILOX_W1 = 0xBB67AE85u;

static void philox_block(const uint32_t key_in[2], const uint32_t ctr_in[4], uint32_t out[4]) {
    uint32_t key[2] = { key_in[0], key_in[1] };
    uint32_t c[4] = { ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3] };
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
        uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ key[0];
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ key[1];
        uint32_t n3 = (uint32_t)p0;
        c[0] = n0;
        c[1] = n1;
        c[2] = n2;
        c[3] = n3;
        key[0] += PHILOX_W0;
        key[1] += PHILOX_W1;
    }
    memcpy(out, c, sizeof c);
}

static void seed_state(nsc_generator *g, uint64_t seed) {
    memset(g, 0, sizeof *g);
    g->key[0] = (uint32_t)seed;
    g->key[1] = (uint32_t)(seed >> 32);
    g->used = 4;
}

nsc_generator *nsc_generator_new(uint64_t seed) {
    nsc_generator *g = nsci_malloc(sizeof *g);
    if (g) {
        seed_state(g, seed);
    }
    return g;
}

void nsc_generator_free(nsc_generator *gen) {
    nsci_free(gen);
}

uint32_t nsc_generator_next_u32(nsc_generator *g) {
    if (!g) { // as the creation functions: NULL draws from the thread's default
        g = nsc_generator_default();
    }
    if (g->used == 4) {
        philox_block(g->key, g->counter, g->block);
        for (int i = 0; i < 4 && ++g->counter[i] == 0; i++) {
        }
        g->used = 0;
    }
    return g->block[g->used++];
}

static _Thread_local nsc_generator t_default;
static _Thread_local bool t_default_ready;

nsc_generator *nsc_generator_default(void) {
    if (!t_default_ready) {
        seed_state(&t_default, 0);
        t_default_ready = true;
    }
    return &t_default;
}

void nsc_manual_seed(uint64_t seed) {
    seed_state(&t_default, seed);
    t_default_ready = true;
}

static uint64_t next_u64(nsc_generator *g) {
    uint64_t hi = nsc_generator_next_u32(g);
    return hi << 32 | nsc_generator_next_u32(g);
}

// Uniform in [0, 1): 24 random bits for f32, 53 for f64 (exact conversions).
static double next_uniform(nsc_generator *g, nsc_dtype dtype) {
    if (dtype == NSC_F64) {
        return (double)(next_u64(g) >> 11) * 0x1.0p-53;
    }
    return (double)(nsc_generator_next_u32(g) >> 8) * 0x1.0p-24;
}

static nsc_tensor *random_tensor(const char *op, nsc_dtype dtype, int ndim,
                                 const int64_t *shape) {
    if (!nsci_is_float(dtype) && strcmp(op, "randint") != 0) {
        return nsci_fail_null(NSC_ERR_DTYPE, "%s: dtype %s: expected f32 or f64", op,
                              nsc_dtype_name(dtype));
    }
    if (nsci_check_shape(op, ndim, shape) != NSC_OK) {
        return NULL;
    }
    return nsc_empty(dtype, NSC_CPU, ndim, shape);
}

nsc_tensor *nsc_rand(nsc_generator *gen, nsc_dtype dtype, int ndim, const int64_t *shape) {
    nsc_tensor *t = random_tensor("rand", dtype, ndim, shape);
    if (!t) {
        return NULL;
    }
    gen = gen ? gen : nsc_generator_default();
    char *p = nsci_data_ptr(t);
    int64_t n = nsci_numel(ndim, shape);
    size_t elem = nsc_dtype_size(dtype);
    for (int64_t i = 0; i < n; i++) {
        nsci_store(p + (size_t)i * elem, dtype, next_uniform(gen, dtype));
    }
    return t;
}

nsc_tensor *nsc_randn(nsc_generator *gen, nsc_dtype dtype, int ndim, const int64_t *shape) {
    nsc_tensor *t = random_tensor("randn", dtype, ndim, shape);
    if (!t) {
        return NULL;
    }
    gen = gen ? gen : nsc_generator_default();
    char *p = nsci_data_ptr(t);
    int64_t n = nsci_numel(ndim, shape);
    size_t elem = nsc_dtype_size(dtype);
    // Box-Muller in double from two 53-bit uniforms; u1 in (0, 1] avoids log(0).
    for (int64_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - next_uniform(gen, NSC_F64);
        double u2 = next_uniform(gen, NSC_F64);
        double r = sqrt(-2.0 * log(u1));
        nsci_store(p + (size_t)i * elem, dtype, r * cos(2.0 * M_PI * u2));
        if (i + 1 < n) {
            nsci_store(p + (size_t)(i + 1) * elem, dtype, r * sin(2.0 * M_PI * u2));
        }
    }
    return t;
}

nsc_tensor *nsc_randint(nsc_generator *gen, int64_t low, int64_t high, int ndim,
                        const int64_t *shape) {
    if (high <= low) {
        return nsci_fail_null(NSC_ERR_ARG, "randint: low %lld, high %lld: expected low < high",
                              (long long)low, (long long)high);
    }
    nsc_tensor *t = random_tensor("randint", NSC_I64, ndim, shape);
    if (!t) {
        return NULL;
    }
    gen = gen ? gen : nsc_generator_default();
    int64_t *p = (int64_t *)nsci_data_ptr(t);
    int64_t n = nsci_numel(ndim, shape);
    uint64_t range = (uint64_t)high - (uint64_t)low;
    // Rejection keeps every value equally likely.
    uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r;
        do {
            r = next_u64(gen);
        } while (r >= limit);
        p[i] = (int64_t)((uint64_t)low + r % range);
    }
    return t;
}
