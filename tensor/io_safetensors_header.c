// Opening only the header of a safetensors file: names, dtypes, shapes and
// metadata of a checkpoint whose data is absent (a header-only copy of a
// large checkpoint committed as a test fixture) or not needed (checking a
// model's key set before reading gigabytes). Separate from the opener: it
// reads the header with read(2) instead of mapping the file, and refuses
// loads. The validation is the reader's own (io_safetensors.c).
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "tensor/io_safetensors_impl.h"

// Reads exactly bytes at offset; false with NSC_ERR_IO or NSC_ERR_FORMAT.
static bool read_at(int fd, const char *path, void *dst, size_t bytes, uint64_t offset) {
    size_t done = 0;
    while (done < bytes) {
        ssize_t n = pread(fd, (char *)dst + done, bytes - done, (off_t)(offset + done));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            nsci_fail(NSC_ERR_IO, "safetensors: %s: cannot read: %s", path, strerror(errno));
            return false;
        }
        if (n == 0) {
            nsci_fail(NSC_ERR_FORMAT,
                      "safetensors: %s: file ends at byte %llu: expected %s up to byte %llu", path,
                      (unsigned long long)(offset + done),
                      offset == 0 ? "the 8-byte header length" : "the header",
                      (unsigned long long)(offset + bytes));
            return false;
        }
        done += (size_t)n;
    }
    return true;
}

// The largest data_offsets end the header declares (0 when it declares none
// or is malformed: the full validation then reports the problem).
static uint64_t declared_data_bytes(const char *header, size_t bytes, const char *path) {
    nsci_json_limits limits = { 0, 8, NULL };
    nsci_json_doc *doc = nsci_json_parse(header, bytes, &limits, path);
    if (!doc) {
        nsc_clear_error();
        return 0;
    }
    const nsci_json *root = nsci_json_root(doc);
    uint64_t end = 0;
    for (int64_t i = 0; root->type == NSCI_JSON_OBJECT && i < root->n_items; i++) {
        const nsci_json *off = nsci_json_get(root->items[i], "data_offsets");
        if (off && off->type == NSCI_JSON_ARRAY && off->n_items == 2 &&
            off->items[1]->type == NSCI_JSON_NUMBER && off->items[1]->is_int &&
            off->items[1]->integer > 0) {
            end = NSCI_MAX(end, (uint64_t)off->items[1]->integer);
        }
    }
    nsci_json_doc_free(doc);
    return end;
}

// Reads the 8-byte length and the header of path into a new buffer (length
// bytes included). Returns it with *total set, or NULL with an error.
static char *read_header(const char *path, size_t *total) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return nsci_fail_null(NSC_ERR_IO, "safetensors: %s: cannot open: %s", path,
                              strerror(errno));
    }
    unsigned char len[8];
    char *buf = NULL;
    uint64_t header_bytes = 0;
    if (read_at(fd, path, len, 8, 0)) {
        for (int i = 7; i >= 0; i--) {
            header_bytes = header_bytes << 8 | len[i];
        }
        if (header_bytes > NSCI_ST_MAX_HEADER_BYTES) {
            nsci_fail(NSC_ERR_FORMAT,
                      "safetensors: %s: header length %llu: expected at most %llu (the header "
                      "size limit) (byte 0)",
                      path, (unsigned long long)header_bytes,
                      (unsigned long long)NSCI_ST_MAX_HEADER_BYTES);
        } else if ((buf = nsci_malloc((size_t)header_bytes + 8)) != NULL) {
            memcpy(buf, len, 8);
            if (!read_at(fd, path, buf + 8, (size_t)header_bytes, 8)) {
                nsci_free(buf);
                buf = NULL;
            }
        }
    }
    close(fd);
    *total = (size_t)header_bytes + 8;
    return buf;
}

nsc_safetensors *nsc_safetensors_open_header(const char *path) {
    if (!path) {
        return nsci_fail_null(NSC_ERR_ARG, "safetensors_open_header: path is NULL");
    }
    size_t total = 0;
    char *bytes = read_header(path, &total);
    if (!bytes) {
        return NULL;
    }
    // The mapping claims the data the header declares, so the reader's checks
    // of offsets against the data section pass; nothing past the header is
    // ever read: nsc_safetensors_load refuses a header-only handle.
    uint64_t data = declared_data_bytes(bytes + 8, total - 8, path);
    nsci_st_mapping *map = nsci_malloc(sizeof *map);
    char *label = nsci_malloc(strlen(path) + 40);
    nsc_safetensors *st = nsci_calloc(1, sizeof *st);
    if (!map || !label || !st) {
        nsci_free(bytes);
        nsci_free(map);
        nsci_free(label);
        nsci_free(st);
        return NULL;
    }
    atomic_init(&map->refcount, 1);
    map->addr = bytes;
    map->bytes = total + (size_t)data;
    map->is_mmap = false;
    sprintf(label, "%s (header only)", path);
    st->map = map;
    st->label = label;
    if (nsci_st_parse_header(st) != NSC_OK) {
        nsc_safetensors_free(st);
        return NULL;
    }
    st->header_only = true;
    return st;
}
