// Helpers shared by the safetensors suites: temporary paths, raw file
// bytes, and a bit-exact tensor comparison that works for any layout.
#include "tests/st_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int64_t nsct_st_live_blocks(void) {
    return nsc_mem_stats_get().live_blocks;
}

const char *nsct_st_tmp_path(const char *name) {
    static _Thread_local char paths[4][256];
    static _Thread_local int next;
    char *p = paths[next++ % 4];
    snprintf(p, 256, "/tmp/nsc_st_%ld_%s.safetensors", (long)getpid(), name);
    return p;
}

const char *nsct_st_fixture(const char *file) {
    static _Thread_local char path[1024];
    const char *root = getenv("NSC_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", root ? root : ".", file);
    return path;
}

unsigned char *nsct_st_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)size + 1);
    *len = fread(data, 1, (size_t)size, f);
    fclose(f);
    return data;
}

unsigned char *nsct_st_file_bytes(const char *header, const void *data, size_t data_bytes,
                                  size_t *len) {
    size_t n = strlen(header);
    unsigned char *bytes = malloc(8 + n + data_bytes + 1);
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    memcpy(bytes + 8, header, n);
    if (data_bytes) {
        memcpy(bytes + 8 + n, data, data_bytes);
    }
    *len = 8 + n + data_bytes;
    return bytes;
}

// Byte offset of row-major element i of t from its first element.
static int64_t element_bytes(nsc_tensor *t, int64_t i) {
    int64_t off = 0;
    for (int d = nsc_tensor_ndim(t) - 1; d >= 0; d--) {
        int64_t size = nsc_tensor_size(t, d);
        off += (i % size) * nsc_tensor_stride(t, d);
        i /= size;
    }
    return off * (int64_t)nsc_dtype_size(nsc_tensor_dtype(t));
}

bool nsct_st_equal(nsc_tensor *a, nsc_tensor *b) {
    if (!a || !b || nsc_tensor_dtype(a) != nsc_tensor_dtype(b) ||
        nsc_tensor_ndim(a) != nsc_tensor_ndim(b)) {
        return false;
    }
    for (int d = 0; d < nsc_tensor_ndim(a); d++) {
        if (nsc_tensor_size(a, d) != nsc_tensor_size(b, d)) {
            return false;
        }
    }
    size_t elem = nsc_dtype_size(nsc_tensor_dtype(a));
    const char *pa = nsc_tensor_data(a), *pb = nsc_tensor_data(b);
    for (int64_t i = 0; i < nsc_tensor_numel(a); i++) {
        if (memcmp(pa + element_bytes(a, i), pb + element_bytes(b, i), elem) != 0) {
            return false;
        }
    }
    return true;
}
