// Writing safetensors files as the reference Python/Rust writer does: data
// sorted by dtype alignment (largest first) then name, a compact JSON header
// padded with spaces to a multiple of 8, written to a temporary file that is
// renamed into place only once complete.
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "tensor/io_safetensors_impl.h"

typedef struct save_args {
    const char *path;
    int n;
    const char *const *names;
    nsc_tensor *const *tensors;
    int n_meta;
    const char *const *keys;
    const char *const *values;
} save_args;

// --- validation ---

static bool valid_utf8(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xE0) == 0xC0 ? 1
                : (*p & 0xF0) == 0xE0 ? 2
                : (*p & 0xF8) == 0xF0 ? 3
                                      : -1;
        if (n < 0 || (n == 1 && *p < 0xC2) || (n == 3 && *p > 0xF4)) {
            return false;
        }
        uint32_t cp = n == 0 ? *p : (uint32_t)(*p & (0x3F >> n));
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80) {
                return false;
            }
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
            return false;
        }
        p += n + 1;
    }
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Checks a list of names: present, UTF-8, unique, not reserved.
static nsc_status check_names(const char *path, const char *what, int n, const char *const *names) {
    for (int i = 0; i < n; i++) {
        if (!names[i] || !valid_utf8(names[i])) {
            return nsci_fail(NSC_ERR_ARG, "safetensors_save: %s %d: %s (%s)", what, i,
                             names[i] ? "is not valid UTF-8" : "is NULL", path);
        }
        if (strcmp(what, "name") == 0 && strcmp(names[i], "__metadata__") == 0) {
            return nsci_fail(NSC_ERR_ARG,
                             "safetensors_save: name %d: \"__metadata__\" is "
                             "reserved for the metadata (%s)",
                             i, path);
        }
    }
    const char **sorted = nsci_malloc((size_t)(n ? n : 1) * sizeof *sorted);
    if (!sorted) {
        return nsc_last_status();
    }
    if (n > 0) {
        memcpy(sorted, names, (size_t)n * sizeof *sorted);
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_str);
    nsc_status s = NSC_OK;
    for (int i = 1; i < n && s == NSC_OK; i++) {
        if (strcmp(sorted[i - 1], sorted[i]) == 0) {
            s = nsci_fail(NSC_ERR_ARG, "safetensors_save: %s \"%.200s\" appears twice (%s)", what,
                          sorted[i], path);
        }
    }
    nsci_free(sorted);
    return s;
}

static nsc_status check_args(const save_args *a) {
    if (!a->path) {
        return nsci_fail(NSC_ERR_ARG, "safetensors_save: path is NULL");
    }
    if (a->n < 0 || a->n_meta < 0 || (a->n > 0 && (!a->names || !a->tensors)) ||
        (a->n_meta > 0 && (!a->keys || !a->values))) {
        return nsci_fail(NSC_ERR_ARG,
                         "safetensors_save: %d tensors, %d metadata entries: "
                         "expected counts >= 0 with non-NULL arrays (%s)",
                         a->n, a->n_meta, a->path);
    }
    for (int i = 0; i < a->n; i++) {
        const nsc_tensor *t = a->tensors[i];
        if (!t || t->device == NSC_META) {
            return nsci_fail(t ? NSC_ERR_DEVICE : NSC_ERR_ARG,
                             "safetensors_save: tensor %d (\"%.200s\"): %s (%s)", i,
                             a->names[i] ? a->names[i] : "?",
                             t ? "is on meta and has no data" : "is NULL", a->path);
        }
    }
    for (int i = 0; i < a->n_meta; i++) {
        if (!a->values[i] || !valid_utf8(a->values[i])) {
            return nsci_fail(NSC_ERR_ARG, "safetensors_save: metadata value %d: %s (%s)", i,
                             a->values[i] ? "is not valid UTF-8" : "is NULL", a->path);
        }
    }
    nsc_status s = check_names(a->path, "name", a->n, a->names);
    return s == NSC_OK ? check_names(a->path, "metadata key", a->n_meta, a->keys) : s;
}

// --- order and header ---

// Alignment rank of the reference writer's dtype order (larger first).
static int dtype_rank(nsc_dtype d) {
    return d == NSC_I64 ? 4 : d == NSC_F64 ? 3 : d == NSC_F32 ? 2 : 1;
}

static const char *dtype_tag(nsc_dtype d) {
    return d == NSC_I64 ? "I64" : d == NSC_F64 ? "F64" : d == NSC_F32 ? "F32" : "BOOL";
}

typedef struct order_item {
    const char *name;
    const nsc_tensor *t;
    int index;
} order_item;

static int cmp_order(const void *a, const void *b) {
    const order_item *x = a, *y = b;
    int rx = dtype_rank((nsc_dtype)x->t->dtype), ry = dtype_rank((nsc_dtype)y->t->dtype);
    return rx != ry ? ry - rx : strcmp(x->name, y->name);
}

// JSON string as serde_json writes it: short escapes, \u00XX for other
// control characters, everything else (UTF-8 included) as is.
static void put_string(nsci_buf *b, const char *s) {
    nsci_buf_puts(b, "\"");
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc) {
            nsci_buf_puts(b, esc);
        } else if (c < 0x20) {
            nsci_buf_printf(b, "\\u%04x", c);
        } else {
            nsci_buf_append(b, p, 1);
        }
    }
    nsci_buf_puts(b, "\"");
}

static void put_metadata(nsci_buf *b, const save_args *a) {
    int *idx = nsci_malloc((size_t)a->n_meta * sizeof *idx);
    if (!idx) {
        b->failed = true;
        return;
    }
    for (int i = 0; i < a->n_meta; i++) { // insertion sort by key: metadata is short
        int j = i;
        while (j > 0 && strcmp(a->keys[idx[j - 1]], a->keys[i]) > 0) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = i;
    }
    nsci_buf_puts(b, "\"__metadata__\":{");
    for (int i = 0; i < a->n_meta; i++) {
        nsci_buf_puts(b, i ? "," : "");
        put_string(b, a->keys[idx[i]]);
        nsci_buf_puts(b, ":");
        put_string(b, a->values[idx[i]]);
    }
    nsci_buf_puts(b, "}");
    nsci_free(idx);
}

// Builds the padded header for the tensors in write order.
static nsc_status build_header(nsci_buf *b, const save_args *a, const order_item *order) {
    nsci_buf_puts(b, "{");
    if (a->n_meta > 0) {
        put_metadata(b, a);
    }
    uint64_t offset = 0;
    for (int i = 0; i < a->n; i++) {
        const nsc_tensor *t = order[i].t;
        uint64_t bytes = (uint64_t)nsci_numel(t->ndim, t->shape) * nsc_dtype_size(t->dtype);
        nsci_buf_puts(b, i || a->n_meta ? "," : "");
        put_string(b, order[i].name);
        nsci_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", dtype_tag((nsc_dtype)t->dtype));
        for (int d = 0; d < t->ndim; d++) {
            nsci_buf_printf(b, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        }
        nsci_buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                        (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    nsci_buf_puts(b, "}");
    while (b->len % 8 != 0 && !b->failed) {
        nsci_buf_puts(b, " ");
    }
    return b->failed ? nsc_last_status() : NSC_OK;
}

// --- data ---

// Copies the row-major values of a CPU tensor of any layout into dst, bit-exactly.
static void gather(const nsc_tensor *t, char *dst) {
    size_t elem = nsc_dtype_size((nsc_dtype)t->dtype);
    int64_t n = nsci_numel(t->ndim, t->shape), idx[NSC_MAX_DIMS] = { 0 }, off = t->offset;
    const char *base = t->storage->data;
    for (int64_t i = 0; i < n; i++) {
        memcpy(dst + (size_t)i * elem, base + (size_t)off * elem, elem);
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += t->stride[d];
            if (++idx[d] < t->shape[d]) {
                break;
            }
            off -= t->stride[d] * t->shape[d];
            idx[d] = 0;
        }
    }
}

static nsc_status write_all(int fd, const void *data, size_t bytes, const char *tmp) {
    const char *p = data;
    while (bytes > 0) {
        ssize_t w = write(fd, p, bytes);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return nsci_fail(NSC_ERR_IO, "safetensors_save: %s: write failed: %s", tmp,
                             w < 0 ? strerror(errno) : "no progress");
        }
        p += w;
        bytes -= (size_t)w;
    }
    return NSC_OK;
}

// Writes one tensor's values: straight from its storage when it is a
// contiguous CPU tensor, through a row-major copy otherwise.
static nsc_status write_tensor(int fd, const nsc_tensor *t, const char *tmp) {
    size_t bytes = (size_t)nsci_numel(t->ndim, t->shape) * nsc_dtype_size((nsc_dtype)t->dtype);
    if (bytes == 0) {
        return NSC_OK;
    }
    nsc_tensor *cpu =
        t->device == NSC_CPU ? nsc_retain((nsc_tensor *)t) : nsc_to((nsc_tensor *)t, NSC_CPU);
    if (!cpu) {
        return nsc_last_status();
    }
    nsc_status s;
    if (nsci_is_contiguous(cpu)) {
        s = write_all(fd, nsci_data_ptr(cpu), bytes, tmp);
    } else {
        char *copy = nsci_malloc(bytes);
        s = copy ? NSC_OK : nsc_last_status();
        if (copy) {
            gather(cpu, copy);
            s = write_all(fd, copy, bytes, tmp);
        }
        nsci_free(copy);
    }
    nsc_free(cpu);
    return s;
}

// --- the file ---

// Creates a fresh temporary file beside path; writes its name into tmp.
static int open_temp(const char *path, nsci_buf *tmp) {
    static atomic_uint counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        tmp->len = 0;
        nsci_buf_printf(tmp, "%s.tmp%ld.%u", path, (long)getpid(), atomic_fetch_add(&counter, 1));
        if (tmp->failed) {
            return -1;
        }
        int fd = open(tmp->data, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) {
            if (fd < 0) {
                nsci_fail(NSC_ERR_IO, "safetensors_save: %s: cannot create: %s", tmp->data,
                          strerror(errno));
            }
            return fd;
        }
    }
    nsci_fail(NSC_ERR_IO, "safetensors_save: %s: no free temporary name beside it", path);
    return -1;
}

static nsc_status write_file(int fd, const char *tmp, const nsci_buf *header,
                             const order_item *order, int n) {
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) {
        len8[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    }
    nsc_status s = write_all(fd, len8, 8, tmp);
    if (s == NSC_OK) {
        s = write_all(fd, header->data, header->len, tmp);
    }
    for (int i = 0; i < n && s == NSC_OK; i++) {
        s = write_tensor(fd, order[i].t, tmp);
        if (s != NSC_OK) {
            nsci_error_context("tensor \"%.200s\"", order[i].name);
        }
    }
    if (s == NSC_OK && fsync(fd) != 0) {
        s = nsci_fail(NSC_ERR_IO, "safetensors_save: %s: fsync failed: %s", tmp, strerror(errno));
    }
    return s;
}

nsc_status nsc_safetensors_save(const char *path, int n, const char *const *names,
                                nsc_tensor *const *tensors, int n_meta,
                                const char *const *meta_keys, const char *const *meta_values) {
    save_args a = { path, n, names, tensors, n_meta, meta_keys, meta_values };
    nsc_status s = check_args(&a);
    if (s != NSC_OK) {
        return s;
    }
    nsci_buf header, tmp;
    nsci_buf_init(&header);
    nsci_buf_init(&tmp);
    int fd = -1;
    order_item *order = nsci_malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) {
        return nsc_last_status();
    }
    for (int i = 0; i < n; i++) {
        order[i] = (order_item){ names[i], tensors[i], i };
    }
    qsort(order, (size_t)n, sizeof *order, cmp_order);
    s = build_header(&header, &a, order);
    if (s == NSC_OK) {
        fd = open_temp(path, &tmp);
        s = fd < 0 ? nsc_last_status() : write_file(fd, tmp.data, &header, order, n);
    }
    if (fd >= 0 && close(fd) != 0 && s == NSC_OK) {
        s = nsci_fail(NSC_ERR_IO, "safetensors_save: %s: close failed: %s", tmp.data,
                      strerror(errno));
    }
    if (s == NSC_OK && rename(tmp.data, path) != 0) {
        s = nsci_fail(NSC_ERR_IO, "safetensors_save: cannot rename %s to %s: %s", tmp.data, path,
                      strerror(errno));
    }
    if (s != NSC_OK && fd >= 0) {
        unlink(tmp.data);
    }
    nsci_buf_free(&header);
    nsci_buf_free(&tmp);
    nsci_free(order);
    return s;
}
