// Internal view of an open safetensors file, shared by the opener
// (io_safetensors_open.c), the header validation (io_safetensors.c), the
// tensor loader (io_safetensors_load.c) and the writer.
#ifndef NSC_TENSOR_IO_SAFETENSORS_IMPL_H
#define NSC_TENSOR_IO_SAFETENSORS_IMPL_H

#include <stdatomic.h>

#include "nsc/io.h"
#include "tensor/tensor_impl.h"

// Largest header accepted, as the reference implementation's MAX_HEADER_SIZE.
#define NSCI_ST_MAX_HEADER_BYTES ((uint64_t)100000000)
// Largest rank accepted in a header (nsc tensors hold up to NSC_MAX_DIMS).
#define NSCI_ST_MAX_RANK 64

// The bytes of a file: an mmap or an nsci_malloc copy. One reference for the
// handle and one per zero-copy tensor; the last one unmaps.
typedef struct nsci_st_mapping {
    atomic_int refcount;
    void *addr;
    size_t bytes;
    bool is_mmap;
} nsci_st_mapping;

// One dtype the format knows: its name, bits per element and what it loads as.
typedef struct nsci_st_dtype {
    const char *name;
    int bits;
    int load_as; // an nsc_dtype, or -1 when nsc cannot load it
} nsci_st_dtype;

typedef struct nsci_st_entry {
    const char *name;  // in the JSON document
    const char *dtype; // the file's spelling
    int kind;          // index into nsci_st_dtypes
    int ndim;
    const int64_t *shape;
    int64_t numel;
    uint64_t begin, end;   // relative to the data section
    const nsci_json *node; // the entry in the header, for messages
} nsci_st_entry;

struct nsc_safetensors {
    char *label; // the path (or memory name) for messages
    nsci_st_mapping *map;
    uint64_t data_start; // file offset of the data section (8 + header length)
    uint64_t data_bytes;
    int64_t n;
    nsci_st_entry *entries;  // header order
    nsci_st_entry **by_name; // sorted by name (strcmp), for lookups
    int64_t *dims;           // every entry's shape, back to back
    int64_t n_meta;
    const char **meta_keys; // in the JSON document
    const char **meta_values;
    nsci_json_doc *doc;
    bool header_only; // from nsc_safetensors_open_header: the data was never read
};

extern const nsci_st_dtype nsci_st_dtypes[];
extern const int nsci_st_n_dtypes;

// Index of a dtype name in nsci_st_dtypes, or -1.
int nsci_st_dtype_find(const char *name);

// The entry called name, or NULL.
const nsci_st_entry *nsci_st_find(const nsc_safetensors *st, const char *name);

// Validates the header of st->map and fills st (io_safetensors.c).
nsc_status nsci_st_parse_header(nsc_safetensors *st);

// Fails with NSC_ERR_FORMAT: a file of bytes is too short for the header length.
nsc_status nsci_st_fail_short(const char *label, uint64_t bytes);

// Drops one reference to a mapping (the release callback of zero-copy tensors).
void nsci_st_mapping_release(void *mapping);

#endif
