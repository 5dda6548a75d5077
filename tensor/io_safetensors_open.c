// Opening safetensors files: mapping the bytes (an mmap, or a copy of
// memory), the reference-counted mapping that zero-copy tensors keep alive,
// and freeing the handle. Validation is in io_safetensors.c.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/io_safetensors_impl.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian and is mapped as is");

// --- mappings ---

static nsci_st_mapping *mapping_new(void *addr, size_t bytes, bool is_mmap) {
    nsci_st_mapping *m = nsci_malloc(sizeof *m);
    if (!m) {
        return NULL;
    }
    atomic_init(&m->refcount, 1);
    m->addr = addr;
    m->bytes = bytes;
    m->is_mmap = is_mmap;
    return m;
}

void nsci_st_mapping_release(void *mapping) {
    nsci_st_mapping *m = mapping;
    if (!m || atomic_fetch_sub(&m->refcount, 1) != 1) {
        return;
    }
    if (m->is_mmap) {
        munmap(m->addr, m->bytes);
    } else {
        nsci_free(m->addr);
    }
    nsci_free(m);
}

// Maps a regular file read-only. Files shorter than 8 bytes fail here.
static nsci_st_mapping *map_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return nsci_fail_null(NSC_ERR_IO, "safetensors: %s: cannot open: %s", path,
                              strerror(errno));
    }
    nsci_st_mapping *m = NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        nsci_fail(NSC_ERR_IO, "safetensors: %s: cannot stat: %s", path, strerror(errno));
    } else if (!S_ISREG(sb.st_mode)) {
        nsci_fail(NSC_ERR_IO, "safetensors: %s: not a regular file", path);
    } else if (sb.st_size < 8) {
        nsci_st_fail_short(path, (uint64_t)sb.st_size);
    } else {
        // Private and writable: in-place ops on zero-copy tensors (an optimizer
        // step on loaded weights) copy the touched pages and never reach the file.
        void *addr = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            nsci_fail(NSC_ERR_IO, "safetensors: %s: cannot map %lld bytes: %s", path,
                      (long long)sb.st_size, strerror(errno));
        } else if (!(m = mapping_new(addr, (size_t)sb.st_size, true))) {
            munmap(addr, (size_t)sb.st_size);
        }
    }
    close(fd);
    return m;
}

// --- open and free ---

static void st_destroy(nsc_safetensors *st) {
    nsci_json_doc_free(st->doc);
    nsci_free(st->entries);
    nsci_free(st->by_name);
    nsci_free(st->dims);
    nsci_free(st->meta_keys);
    nsci_free(st->meta_values);
    nsci_free(st->label);
    nsci_st_mapping_release(st->map);
    nsci_free(st);
}

// Takes over map (released on failure).
static nsc_safetensors *open_mapped(const char *label, nsci_st_mapping *map) {
    nsc_safetensors *st = nsci_calloc(1, sizeof *st);
    if (!st) {
        nsci_st_mapping_release(map);
        return NULL;
    }
    st->map = map;
    st->label = nsci_strdup(label);
    if (!st->label || nsci_st_parse_header(st) != NSC_OK) {
        st_destroy(st);
        return NULL;
    }
    return st;
}

nsc_safetensors *nsc_safetensors_open(const char *path) {
    if (!path) {
        return nsci_fail_null(NSC_ERR_ARG, "safetensors_open: path is NULL");
    }
    nsci_st_mapping *map = map_file(path);
    return map ? open_mapped(path, map) : NULL;
}

nsc_safetensors *nsc_safetensors_open_memory(const void *data, size_t bytes, const char *name) {
    if (!name) {
        name = "<memory>";
    }
    if (!data && bytes > 0) {
        return nsci_fail_null(NSC_ERR_ARG,
                              "safetensors_open_memory: %s: data is NULL for %zu "
                              "bytes",
                              name, bytes);
    }
    void *copy = nsci_malloc(bytes ? bytes : 1);
    if (!copy) {
        return NULL;
    }
    if (bytes > 0) {
        memcpy(copy, data, bytes);
    }
    nsci_st_mapping *map = mapping_new(copy, bytes, false);
    if (!map) {
        nsci_free(copy);
        return NULL;
    }
    return open_mapped(name, map);
}

void nsc_safetensors_free(nsc_safetensors *st) {
    if (st) {
        st_destroy(st);
    }
}
