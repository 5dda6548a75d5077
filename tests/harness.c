// Test harness: deterministic case inputs with layouts, the fixture file
// reader, and comparisons. The input generator is mirrored exactly by
// tests/fixtures/make_fixtures.py.
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- deterministic values: FNV-1a of the case name, then splitmix64 ---

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static uint64_t splitmix_next(uint64_t *state) {
    *state += 0x9E3779B97F4A7C15ull;
    uint64_t z = *state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Fills a contiguous tensor of the input's dtype with the case's values.
static void fill_values(nsc_tensor *t, const nsct_input *in, uint64_t seed) {
    int64_t n = nsc_tensor_numel(t);
    char *p = nsc_tensor_data(t);
    size_t elem = nsc_dtype_size(nsc_tensor_dtype(t));
    uint64_t state = seed;
    for (int64_t k = 0; k < n; k++) {
        uint64_t z = splitmix_next(&state);
        double v;
        if (in->dtype == NSC_BOOL) {
            v = (double)(z >> 63);
        } else if (in->dtype == NSC_I64) {
            uint64_t range = (uint64_t)(int64_t)(in->hi - in->lo);
            v = in->lo + (double)(z % (range ? range : 1));
        } else {
            v = in->lo + (in->hi - in->lo) * ((double)(z >> 11) * 0x1.0p-53);
        }
        nsci_store(p + (size_t)k * elem, nsc_tensor_dtype(t), v);
    }
}

uint32_t nsct_case_flags(const nsct_case *c) {
    uint32_t flags = 0;
    for (int i = 0; i < c->n_in; i++) {
        const nsct_input *in = &c->in[i];
        if (in->layout == NSCT_TRANSPOSED) {
            flags |= 1u << NSCI_CASE_TRANSPOSED;
        }
        if (in->layout == NSCT_STEPPED) {
            flags |= 1u << NSCI_CASE_STEPPED;
        }
        if (in->layout == NSCT_EXPANDED) {
            flags |= 1u << NSCI_CASE_EXPANDED;
        }
        if (in->ndim == 0) {
            flags |= 1u << NSCI_CASE_RANK0;
        }
        for (int d = 0; d < in->ndim; d++) {
            if (in->shape[d] == 0) {
                flags |= 1u << NSCI_CASE_EMPTY;
            }
        }
        if (i > 0 && (in->ndim != c->in[0].ndim ||
                      memcmp(in->shape, c->in[0].shape, (size_t)in->ndim * 8) != 0)) {
            flags |= 1u << NSCI_CASE_BROADCAST;
        }
    }
    return flags;
}

// The contiguous tensor holding the logical values (before the layout).
static nsc_tensor *logical_values(const nsct_case *c, int i, nsc_dtype dtype) {
    const nsct_input *in = &c->in[i];
    uint64_t seed = fnv1a(c->name) ^ ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull);
    int64_t shape[NSC_MAX_DIMS];
    memcpy(shape, in->shape, sizeof shape);
    if (in->layout == NSCT_EXPANDED) {
        shape[0] = 1; // values repeat along dim 0
    }
    nsc_tensor *t = nsc_empty(in->dtype, NSC_CPU, in->ndim, shape);
    if (!t) {
        return NULL;
    }
    fill_values(t, in, seed);
    if (dtype != in->dtype) {
        nsc_tensor *converted = nsc_to_dtype(t, dtype);
        nsc_free(t);
        t = converted;
    }
    return t;
}

// The tensor that owns the input's storage: values arranged so that
// nsct_layout_view() of it shows the logical values with the input's layout.
nsc_tensor *nsct_make_leaf(const nsct_case *c, int i, nsc_dtype dtype) {
    const nsct_input *in = &c->in[i];
    nsc_tensor *values = logical_values(c, i, dtype);
    if (!values || in->layout == NSCT_CONTIG || in->layout == NSCT_EXPANDED) {
        return values;
    }
    int nd = in->ndim;
    nsc_tensor *leaf = NULL;
    if (in->layout == NSCT_TRANSPOSED) {
        nsc_tensor *tv = nsc_transpose(values, nd - 2, nd - 1);
        leaf = nsc_contiguous(tv); // stored transposed
        nsc_free(tv);
    } else {
        int64_t wide[NSC_MAX_DIMS];
        memcpy(wide, in->shape, sizeof wide);
        wide[nd - 1] *= 2;
        leaf = nsc_full(dtype, NSC_CPU, nd, wide, -7.0); // the filler must never show
        nsc_tensor *view = nsc_slice(leaf, nd - 1, 0, NSC_END, 2);
        if (!view || nsc_copy_(view, values) != NSC_OK) {
            nsc_free(leaf);
            leaf = NULL;
        }
        nsc_free(view);
    }
    nsc_free(values);
    return leaf;
}

nsc_tensor *nsct_layout_view(const nsct_case *c, int i, nsc_tensor *leaf) {
    const nsct_input *in = &c->in[i];
    int nd = in->ndim;
    switch (in->layout) {
        case NSCT_EXPANDED:
            return nsc_expand(leaf, nd, in->shape);
        case NSCT_TRANSPOSED:
            return nsc_transpose(leaf, nd - 2, nd - 1);
        case NSCT_STEPPED:
            return nsc_slice(leaf, nd - 1, 0, NSC_END, 2);
        default:
            return nsc_retain(leaf);
    }
}

// A META tensor with the same geometry as a CPU one.
static nsc_tensor *meta_twin(nsc_tensor *t) {
    nsc_tensor *m = nsci_tensor_header(nsc_tensor_dtype(t), NSC_META, t->ndim, t->shape);
    if (m) {
        memcpy(m->stride, t->stride, sizeof t->stride);
        m->offset = t->offset;
        m->target_device = NSC_META;
    }
    return m;
}

nsc_tensor *nsct_make_input(const nsct_case *c, int i, nsc_dtype dtype, nsc_device device) {
    nsc_tensor *leaf = nsct_make_leaf(c, i, dtype);
    // On a GPU the leaf moves and the layout is taken there, so the kernels
    // see the transposed, stepped and expanded strides themselves.
    if (leaf && device != NSC_CPU && device != NSC_META) {
        nsc_tensor *moved = nsc_to(leaf, device);
        nsc_free(leaf);
        leaf = moved;
    }
    nsc_tensor *t = leaf ? nsct_layout_view(c, i, leaf) : NULL;
    nsc_free(leaf);
    if (t && device == NSC_META) {
        nsc_tensor *m = meta_twin(t);
        nsc_free(t);
        return m;
    }
    return t;
}

// --- fixtures ---
// File: "NSCF" u32 version, u32 count; per tensor: u32 name_len, name bytes,
// u32 dtype (nsc_dtype), u32 ndim, i64 shape[ndim], u64 byte_len, data.

typedef struct fixture_entry {
    char *name;
    nsc_tensor *tensor;
} fixture_entry;

struct nsct_fixtures {
    int count;
    fixture_entry *entries;
};

static bool read_exact(FILE *f, void *dst, size_t n) {
    return fread(dst, 1, n, f) == n;
}

nsct_fixtures *nsct_fixtures_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    char magic[4];
    uint32_t version, count;
    nsct_fixtures *fx = NULL;
    if (!read_exact(f, magic, 4) || memcmp(magic, "NSCF", 4) != 0 || !read_exact(f, &version, 4) ||
        !read_exact(f, &count, 4)) {
        goto done;
    }
    fx = calloc(1, sizeof *fx);
    fx->entries = calloc(count ? count : 1, sizeof *fx->entries);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t name_len, dtype, ndim;
        int64_t shape[NSC_MAX_DIMS];
        uint64_t bytes;
        if (!read_exact(f, &name_len, 4) || name_len > 4096) {
            break;
        }
        char *name = calloc(1, name_len + 1);
        if (!read_exact(f, name, name_len) || !read_exact(f, &dtype, 4) ||
            !read_exact(f, &ndim, 4) || ndim > NSC_MAX_DIMS ||
            !read_exact(f, shape, 8 * (size_t)ndim) || !read_exact(f, &bytes, 8)) {
            free(name);
            break;
        }
        nsc_tensor *t = nsc_empty((nsc_dtype)dtype, NSC_CPU, (int)ndim, shape);
        if (!t || bytes != (uint64_t)nsc_tensor_numel(t) * nsc_dtype_size((nsc_dtype)dtype) ||
            (bytes && !read_exact(f, nsc_tensor_data(t), bytes))) {
            nsc_free(t);
            free(name);
            break;
        }
        fx->entries[fx->count++] = (fixture_entry){ name, t };
    }
done:
    fclose(f);
    return fx;
}

nsc_tensor *nsct_fixture_get(nsct_fixtures *fx, const char *name) {
    for (int i = 0; fx && i < fx->count; i++) {
        if (strcmp(fx->entries[i].name, name) == 0) {
            return nsc_retain(fx->entries[i].tensor);
        }
    }
    return NULL;
}

void nsct_fixtures_free(nsct_fixtures *fx) {
    if (!fx) {
        return;
    }
    for (int i = 0; i < fx->count; i++) {
        free(fx->entries[i].name);
        nsc_free(fx->entries[i].tensor);
    }
    free(fx->entries);
    free(fx);
}

const char *nsct_fixture_path(const char *file) {
    static _Thread_local char path[1024];
    const char *root = getenv("NSC_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", root ? root : ".", file);
    return path;
}

// --- comparisons ---

bool nsct_close(nsc_tensor *got, nsc_tensor *want, nsct_tol tol, char *why, size_t why_bytes) {
    char a[160], b[160];
    if (!got || !want) {
        snprintf(why, why_bytes, "missing tensor (got %p, want %p): %s", (void *)got,
                 (void *)want, nsc_last_error());
        return false;
    }
    if (got->ndim != want->ndim || memcmp(got->shape, want->shape, (size_t)got->ndim * 8) != 0) {
        snprintf(why, why_bytes, "shape %s, expected %s",
                 nsci_shape_str(a, sizeof a, got->ndim, got->shape),
                 nsci_shape_str(b, sizeof b, want->ndim, want->shape));
        return false;
    }
    if (got->dtype != want->dtype) {
        snprintf(why, why_bytes, "dtype %s, expected %s", nsc_dtype_name(got->dtype),
                 nsc_dtype_name(want->dtype));
        return false;
    }
    if (!nsc_allclose(got, want, tol.rtol, tol.atol, true)) {
        snprintf(why, why_bytes, "%s (tolerance: %s)", nsc_last_error(), tol.why);
        return false;
    }
    return true;
}

int64_t nsct_live_blocks(void) {
    return nsc_mem_stats_get().live_blocks;
}

double nsct_sum(nsc_tensor *t) {
    nsc_tensor *s = nsc_sum_all(t);
    double v = s ? nsc_tensor_item(s) : (double)NAN;
    nsc_free(s);
    return v;
}

double nsct_flat(nsc_tensor *t, int64_t i) {
    int64_t n = t ? nsc_tensor_numel(t) : 0;
    if (i < 0 || i >= n) {
        return (double)NAN;
    }
    double *v = malloc((size_t)n * sizeof *v);
    double r = (double)NAN;
    if (v && nsc_tensor_copy_to(t, NSC_F64, v, (size_t)n * sizeof *v) == NSC_OK) {
        r = v[i];
    }
    free(v);
    return r;
}

// --- locales ---

locale_t nsct_comma_locale(void) {
    locale_t loc = newlocale(LC_ALL_MASK, "de_DE.UTF-8", (locale_t)0);
    if (loc) {
        return loc;
    }
    char dir[] = "/tmp/nsc_locale_XXXXXX", cmd[160];
    if (!mkdtemp(dir)) {
        return (locale_t)0;
    }
    snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
    if (system(cmd) == 0) {
        // glibc reads LOCPATH at each newlocale; the loaded data outlives the files.
        const char *had = getenv("LOCPATH");
        char *saved = had ? strdup(had) : NULL;
        setenv("LOCPATH", dir, 1);
        loc = newlocale(LC_ALL_MASK, "de_DE.UTF-8", (locale_t)0);
        if (saved) {
            setenv("LOCPATH", saved, 1);
        } else {
            unsetenv("LOCPATH");
        }
        free(saved);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "nsct_comma_locale: cannot remove %s\n", dir);
    }
    return loc;
}

char *nsct_printed(nsc_tensor *t) {
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (out) {
        nsc_tensor_print(t, out);
        fclose(out);
    }
    return text;
}
