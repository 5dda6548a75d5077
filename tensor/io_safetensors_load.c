// Queries on an open safetensors file and loading its tensors: zero-copy
// views of the mapping where dtype and alignment allow, exact conversions
// (F16, BF16 to f32; small integers to i64) otherwise.
#include <string.h>

#include "tensor/io_safetensors_impl.h"

// --- dtypes ---

enum {
    ST_BOOL,
    ST_U8,
    ST_I8,
    ST_I16,
    ST_U16,
    ST_F16,
    ST_BF16,
    ST_I32,
    ST_U32,
    ST_F32,
    ST_F64,
    ST_I64,
    ST_U64,
    ST_N_DTYPES_LOADABLE,
};

// Every dtype the format defines; those nsc cannot load still validate.
const nsci_st_dtype nsci_st_dtypes[] = {
    [ST_BOOL] = { "BOOL", 8, NSC_BOOL },
    [ST_U8] = { "U8", 8, NSC_I64 },
    [ST_I8] = { "I8", 8, NSC_I64 },
    [ST_I16] = { "I16", 16, NSC_I64 },
    [ST_U16] = { "U16", 16, NSC_I64 },
    [ST_F16] = { "F16", 16, NSC_F32 },
    [ST_BF16] = { "BF16", 16, NSC_F32 },
    [ST_I32] = { "I32", 32, NSC_I64 },
    [ST_U32] = { "U32", 32, NSC_I64 },
    [ST_F32] = { "F32", 32, NSC_F32 },
    [ST_F64] = { "F64", 64, NSC_F64 },
    [ST_I64] = { "I64", 64, NSC_I64 },
    [ST_U64] = { "U64", 64, -1 }, // values above INT64_MAX have no i64
    [ST_N_DTYPES_LOADABLE] = { "F8_E5M2", 8, -1 },
    { "F8_E4M3", 8, -1 },
    { "F8_E8M0", 8, -1 },
    { "C64", 64, -1 },
    { "F4", 4, -1 },
    { "F6_E2M3", 6, -1 },
    { "F6_E3M2", 6, -1 },
};
const int nsci_st_n_dtypes = NSCI_ARRAY_LEN(nsci_st_dtypes);

int nsci_st_dtype_find(const char *name) {
    for (int i = 0; i < nsci_st_n_dtypes; i++) {
        if (strcmp(nsci_st_dtypes[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

// --- queries ---

const nsci_st_entry *nsci_st_find(const nsc_safetensors *st, const char *name) {
    int64_t lo = 0, hi = st->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) {
            return st->by_name[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

int64_t nsc_safetensors_count(const nsc_safetensors *st) {
    return st ? st->n : 0;
}

const char *nsc_safetensors_name(const nsc_safetensors *st, int64_t i) {
    if (!st || i < 0 || i >= st->n) {
        return nsci_fail_null(NSC_ERR_ARG, "safetensors_name: index %lld: expected 0..%lld",
                              (long long)i, (long long)(st ? st->n - 1 : -1));
    }
    return st->entries[i].name;
}

bool nsc_safetensors_has(const nsc_safetensors *st, const char *name) {
    return st && name && nsci_st_find(st, name);
}

// The entry called name, or NULL with NSC_ERR_ARG naming op and file.
static const nsci_st_entry *find_or_fail(const nsc_safetensors *st, const char *name,
                                         const char *op) {
    if (!st || !name) {
        nsci_fail(NSC_ERR_ARG, "%s: %s is NULL", op, st ? "name" : "file handle");
        return NULL;
    }
    const nsci_st_entry *e = nsci_st_find(st, name);
    if (!e) {
        nsci_fail(NSC_ERR_ARG, "%s: %s: no tensor \"%.200s\" among its %lld tensors", op, st->label,
                  name, (long long)st->n);
    }
    return e;
}

nsc_status nsc_safetensors_get_info(const nsc_safetensors *st, const char *name,
                                    nsc_safetensors_info *info) {
    const nsci_st_entry *e = find_or_fail(st, name, "safetensors_get_info");
    if (!e) {
        return NSC_ERR_ARG;
    }
    if (!info) {
        return nsci_fail(NSC_ERR_ARG, "safetensors_get_info: info is NULL");
    }
    info->name = e->name;
    info->dtype = e->dtype;
    info->ndim = e->ndim;
    info->shape = e->shape;
    info->numel = e->numel;
    info->file_offset = st->data_start + e->begin;
    info->data_bytes = e->end - e->begin;
    return NSC_OK;
}

const char *nsc_safetensors_get_metadata(const nsc_safetensors *st, const char *key) {
    for (int64_t i = 0; st && key && i < st->n_meta; i++) {
        if (strcmp(st->meta_keys[i], key) == 0) {
            return st->meta_values[i];
        }
    }
    return NULL;
}

int64_t nsc_safetensors_metadata_count(const nsc_safetensors *st) {
    return st ? st->n_meta : 0;
}

const char *nsc_safetensors_metadata_key(const nsc_safetensors *st, int64_t i) {
    return st && i >= 0 && i < st->n_meta ? st->meta_keys[i] : NULL;
}

// --- conversions ---

// IEEE half to single, exactly: subnormals are normalised, inf and NaN keep
// their sign and payload bits.
static uint32_t f16_bits_to_f32_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) {
        return sign | 0x7f800000u | (mant << 13);
    }
    if (exp != 0) {
        return sign | ((exp + 112) << 23) | (mant << 13);
    }
    if (mant == 0) {
        return sign;
    }
    uint32_t shifts = 0;
    while (!(mant & 0x400)) {
        mant <<= 1;
        shifts++;
    }
    // mant * 2^-24 with the leading bit moved to 2^10: exponent -24 + 10 - (shifts - 1).
    return sign | ((113 - shifts) << 23) | ((mant & 0x3ff) << 13);
}

static int64_t load_int(const unsigned char *p, int kind) {
    switch (kind) {
        case ST_U8:
            return p[0];
        case ST_I8:
            return (int8_t)p[0];
        case ST_I16:
            return (int16_t)(uint16_t)(p[0] | p[1] << 8);
        case ST_U16:
            return (uint16_t)(p[0] | p[1] << 8);
        case ST_I32:
            return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        default: // ST_U32
            return (int64_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
    }
}

// Writes n converted elements of src (file dtype kind) into dst.
static void convert(const unsigned char *src, int kind, int64_t n, void *dst) {
    int bytes = nsci_st_dtypes[kind].bits / 8;
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *p = src + i * bytes;
        if (kind == ST_F16 || kind == ST_BF16) {
            uint16_t h = (uint16_t)(p[0] | p[1] << 8);
            uint32_t bits = kind == ST_F16 ? f16_bits_to_f32_bits(h) : (uint32_t)h << 16;
            memcpy((float *)dst + i, &bits, 4);
        } else if (kind == ST_BOOL) {
            ((uint8_t *)dst)[i] = p[0] != 0;
        } else {
            ((int64_t *)dst)[i] = load_int(p, kind);
        }
    }
}

// --- loading ---

// True when the data can be viewed in place: same dtype, aligned, and for
// bool every byte 0 or 1 (other bytes are normalised by a copy).
static bool can_view(const unsigned char *src, int kind, int64_t n) {
    int bytes = nsci_st_dtypes[kind].bits / 8;
    if (!(kind == ST_F32 || kind == ST_F64 || kind == ST_I64 || kind == ST_BOOL) ||
        (uintptr_t)src % (uintptr_t)bytes != 0) {
        return false;
    }
    for (int64_t i = 0; kind == ST_BOOL && i < n; i++) {
        if (src[i] > 1) {
            return false;
        }
    }
    return true;
}

static nsc_tensor *load_view(const nsc_safetensors *st, const nsci_st_entry *e, nsc_dtype dtype,
                             unsigned char *src) {
    atomic_fetch_add(&st->map->refcount, 1);
    nsc_tensor *t = nsci_tensor_wrap(dtype, NSC_CPU, e->ndim, e->shape, src, e->end - e->begin,
                                     nsci_st_mapping_release, st->map);
    if (!t) {
        nsci_st_mapping_release(st->map);
    }
    return t;
}

static nsc_tensor *load_copy(const nsci_st_entry *e, nsc_dtype dtype, const unsigned char *src) {
    nsc_tensor *t = nsc_empty(dtype, NSC_CPU, e->ndim, e->shape);
    if (!t) {
        return NULL;
    }
    if (e->kind == ST_F32 || e->kind == ST_F64 || e->kind == ST_I64) {
        memcpy(nsc_tensor_data(t), src, e->end - e->begin);
    } else {
        convert(src, e->kind, e->numel, nsc_tensor_data(t));
    }
    return t;
}

nsc_tensor *nsc_safetensors_load(const nsc_safetensors *st, const char *name) {
    const nsci_st_entry *e = find_or_fail(st, name, "safetensors_load");
    if (!e) {
        return NULL;
    }
    if (st->header_only) { // its mapping ends after the header: there is no data to read
        return nsci_fail_null(NSC_ERR_STATE,
                              "safetensors_load: %s: tensor \"%.200s\": the data is not loaded "
                              "(opened with nsc_safetensors_open_header)",
                              st->label, e->name);
    }
    const nsci_st_dtype *d = &nsci_st_dtypes[e->kind];
    if (d->load_as < 0) {
        return nsci_fail_null(NSC_ERR_FORMAT,
                              "safetensors_load: %s: tensor \"%.200s\": dtype %s: expected F32, "
                              "F64, I64, BOOL, F16, BF16 or an integer type of up to 32 bits",
                              st->label, e->name, e->dtype);
    }
    if (e->ndim > NSC_MAX_DIMS) {
        return nsci_fail_null(NSC_ERR_FORMAT,
                              "safetensors_load: %s: tensor \"%.200s\": rank %d: expected at "
                              "most %d dims",
                              st->label, e->name, e->ndim, NSC_MAX_DIMS);
    }
    nsc_dtype dtype = (nsc_dtype)d->load_as;
    unsigned char *src = (unsigned char *)st->map->addr + st->data_start + e->begin;
    if (e->numel == 0) {
        return nsc_empty(dtype, NSC_CPU, e->ndim, e->shape);
    }
    if (can_view(src, e->kind, e->numel)) {
        return load_view(st, e, dtype, src);
    }
    return load_copy(e, dtype, src);
}
