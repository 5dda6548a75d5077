// Reading and writing safetensors files (the Hugging Face format: an 8-byte
// little-endian header length, a JSON header, then the raw tensor data).
#ifndef NSC_IO_H
#define NSC_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsc/base.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- types ---

// An open safetensors file whose header has been fully validated. Opaque.
typedef struct nsc_safetensors nsc_safetensors;

// What the header says about one tensor. Pointers are borrowed from the file
// handle and valid until nsc_safetensors_free.
typedef struct nsc_safetensors_info {
    const char *name;
    const char *dtype;    // as written in the file: "F32", "BF16", "I64", ...
    int ndim;             // may exceed NSC_MAX_DIMS (loading then fails)
    const int64_t *shape; // ndim sizes
    int64_t numel;
    uint64_t file_offset; // absolute byte offset of the first data byte in the file
    uint64_t data_bytes;  // bytes of data in the file
} nsc_safetensors_info;

// --- reading ---

// Maps path read-only and validates the whole header (sizes, dtypes, shapes,
// offsets against the file length, duplicate names, metadata) before
// returning. Returns a handle (caller nsc_safetensors_free()s) or NULL with
// NSC_ERR_IO (cannot open/map) or NSC_ERR_FORMAT (bad file: the message names
// the path, the tensor and the byte offset or header line and column).
// A failed open leaves nothing allocated.
nsc_safetensors *nsc_safetensors_open(const char *path);

// Same over bytes in memory. Copies data (the caller may free it at once);
// name only labels error messages (NULL: "<memory>").
nsc_safetensors *nsc_safetensors_open_memory(const void *data, size_t bytes, const char *name);

// Reads only the header of path (tensor/io_safetensors_header.c): the file
// may end right after it (a header-only copy of a large checkpoint) or hold
// data that is not needed. Validates as nsc_safetensors_open does, except
// that data offsets are checked against each other and the shapes, not
// against the file length. Names, infos and metadata work; every
// nsc_safetensors_load on the handle fails with NSC_ERR_STATE ("... (header
// only): tensor "x": the data is not loaded"). Returns a handle (caller
// nsc_safetensors_free()s) or NULL.
nsc_safetensors *nsc_safetensors_open_header(const char *path);

// Closes the handle. Tensors loaded from it stay valid: zero-copy tensors keep
// the mapping alive until the last of them is freed. Accepts NULL.
void nsc_safetensors_free(nsc_safetensors *st);

// Number of tensors in the file (the "__metadata__" entry is not one).
int64_t nsc_safetensors_count(const nsc_safetensors *st);

// Name of tensor i, 0 <= i < count, in the order the header lists them
// (stable). Borrowed from st; NULL with NSC_ERR_ARG when i is out of range.
const char *nsc_safetensors_name(const nsc_safetensors *st, int64_t i);

// True when the file holds a tensor called name.
bool nsc_safetensors_has(const nsc_safetensors *st, const char *name);

// Fills *info for tensor name without reading its data. Returns NSC_OK, or
// NSC_ERR_ARG when there is no such tensor.
nsc_status nsc_safetensors_get_info(const nsc_safetensors *st, const char *name,
                                    nsc_safetensors_info *info);

// Loads tensor name as a new contiguous CPU tensor (caller nsc_free()s), or
// NULL with an error. F32, F64, I64 and BOOL load as themselves, zero-copy
// (viewing the mapping) when the data is aligned for the dtype; F16 and BF16
// convert exactly to f32; I8, U8, I16, U16, I32 and U32 to i64. Other dtypes
// (U64, F8_*, ...) and ranks above NSC_MAX_DIMS fail with NSC_ERR_FORMAT
// naming the tensor; a missing name fails with NSC_ERR_ARG; a handle from
// nsc_safetensors_open_header with NSC_ERR_STATE.
nsc_tensor *nsc_safetensors_load(const nsc_safetensors *st, const char *name);

// Value of the "__metadata__" entry key, borrowed from st, or NULL when absent.
const char *nsc_safetensors_get_metadata(const nsc_safetensors *st, const char *key);

// Number of metadata entries and the key of entry i (header order; borrowed;
// NULL when i is out of range).
int64_t nsc_safetensors_metadata_count(const nsc_safetensors *st);
const char *nsc_safetensors_metadata_key(const nsc_safetensors *st, int64_t i);

// --- writing ---

// Writes n tensors (f32, f64, i64, bool; any layout; CPU or CUDA) under the
// given names, plus n_meta metadata strings, as the reference writer does:
// data ordered by dtype alignment then name, header padded with spaces to a
// multiple of 8 bytes. Writes a temporary file beside path and renames it, so
// a failure leaves path untouched. All arguments borrowed. Returns NSC_OK, or
// NSC_ERR_ARG (duplicate or invalid UTF-8 names, NULL entries), NSC_ERR_DTYPE,
// NSC_ERR_DEVICE (META tensors) or NSC_ERR_IO.
nsc_status nsc_safetensors_save(const char *path, int n, const char *const *names,
                                nsc_tensor *const *tensors, int n_meta,
                                const char *const *meta_keys, const char *const *meta_values);

#ifdef __cplusplus
}
#endif

#endif
