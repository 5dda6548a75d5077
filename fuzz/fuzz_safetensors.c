// libFuzzer target: the safetensors reader on arbitrary bytes. A file either
// fails to open with NSC_ERR_FORMAT or every tensor in it loads (or fails
// with NSC_ERR_FORMAT for dtypes and ranks nsc cannot hold) with the shape
// its header declares; tensors outlive the handle; nothing leaks.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nsc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

// Loads tensor i and checks it against its header entry.
static nsc_tensor *load_checked(nsc_safetensors *st, int64_t i) {
    const char *name = nsc_safetensors_name(st, i);
    check(name != NULL && nsc_safetensors_has(st, name));
    nsc_safetensors_info info;
    check(nsc_safetensors_get_info(st, name, &info) == NSC_OK);
    check(info.file_offset + info.data_bytes >= info.file_offset);
    nsc_tensor *t = nsc_safetensors_load(st, name);
    if (!t) {
        check(nsc_last_status() == NSC_ERR_FORMAT || nsc_last_status() == NSC_ERR_OOM);
        return NULL;
    }
    check(nsc_tensor_ndim(t) == info.ndim && nsc_tensor_numel(t) == info.numel);
    for (int d = 0; d < info.ndim; d++) {
        check(nsc_tensor_size(t, d) == info.shape[d]);
    }
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t before = nsc_mem_stats_get().live_blocks;
    nsc_safetensors *st = nsc_safetensors_open_memory(data, size, "fuzz.safetensors");
    if (!st) {
        check(nsc_last_status() == NSC_ERR_FORMAT || nsc_last_status() == NSC_ERR_OOM);
        check(nsc_mem_stats_get().live_blocks == before);
        return 0;
    }
    enum {
        MAX_KEPT = 16
    };
    nsc_tensor *kept[MAX_KEPT] = { 0 };
    int64_t n = nsc_safetensors_count(st), n_kept = 0;
    for (int64_t i = 0; i < n && i < 256; i++) {
        nsc_tensor *t = load_checked(st, i);
        if (t && n_kept < MAX_KEPT) {
            kept[n_kept++] = t;
        } else {
            nsc_free(t);
        }
    }
    for (int64_t i = 0; i < nsc_safetensors_metadata_count(st); i++) {
        const char *key = nsc_safetensors_metadata_key(st, i);
        check(key && nsc_safetensors_get_metadata(st, key) != NULL);
    }
    nsc_safetensors_free(st);
    for (int64_t i = 0; i < n_kept; i++) { // tensors outlive the handle
        int64_t numel = nsc_tensor_numel(kept[i]);
        if (numel > 0) {
            volatile const char *p = nsc_tensor_data(kept[i]);
            size_t last = (size_t)(numel - 1) * nsc_dtype_size(nsc_tensor_dtype(kept[i]));
            (void)p[0];
            (void)p[last];
        }
        nsc_free(kept[i]);
    }
    check(nsc_mem_stats_get().live_blocks == before);
    return 0;
}
