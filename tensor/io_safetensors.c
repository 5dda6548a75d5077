// Validating a safetensors header: every field of every entry is checked
// against the file length (sizes, dtypes, shapes, offsets, overlaps,
// duplicates, metadata) before a handle is handed out. Mapping and opening
// are in io_safetensors_open.c, loading in io_safetensors_load.c.
#include <string.h>

#include "tensor/io_safetensors_impl.h"

// --- errors with a position ---

nsc_status nsci_st_fail_short(const char *label, uint64_t bytes) {
    return nsci_fail(NSC_ERR_FORMAT,
                     "safetensors: %s: file of %llu bytes: expected at least the 8-byte "
                     "header length (byte 0)",
                     label, (unsigned long long)bytes);
}

// File offset of a (line, column) position in the header text.
static uint64_t header_byte(const char *header, size_t header_bytes, int line, int column) {
    size_t pos = 0;
    for (int l = 1; l < line && pos < header_bytes; pos++) {
        if (header[pos] == '\n') {
            l++;
        }
    }
    return 8 + (uint64_t)pos + (uint64_t)(column - 1);
}

typedef struct st_parse {
    nsc_safetensors *st;
    const char *header;
    size_t header_bytes;
} st_parse;

// Fails with "safetensors: <file>: <message> (header line L, column C, byte B)".
static nsc_status bad_at(const st_parse *p, const nsci_json *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static nsc_status bad_at(const st_parse *p, const nsci_json *at, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    uint64_t byte = header_byte(p->header, p->header_bytes, at->line, at->column);
    return nsci_fail(NSC_ERR_FORMAT, "safetensors: %s: %s (header line %d, column %d, byte %llu)",
                     p->st->label, msg, at->line, at->column, (unsigned long long)byte);
}

// --- header fields ---

static bool is_count(const nsci_json *v) {
    return v && v->type == NSCI_JSON_NUMBER && v->is_int && v->integer >= 0;
}

// Finds dtype, shape and data_offsets, refusing duplicated fields.
static nsc_status entry_fields(const st_parse *p, const char *name, const nsci_json *v,
                               const nsci_json **field) {
    static const char *const names[3] = { "dtype", "shape", "data_offsets" };
    if (v->type != NSCI_JSON_OBJECT) {
        return bad_at(p, v,
                      "tensor \"%.200s\": expected an object with dtype, shape and "
                      "data_offsets",
                      name);
    }
    for (int k = 0; k < 3; k++) {
        field[k] = NULL;
        for (int64_t i = 0; i < v->n_items; i++) {
            if (strcmp(v->keys[i], names[k]) != 0) {
                continue;
            }
            if (field[k]) {
                return bad_at(p, v->items[i], "tensor \"%.200s\": field %s appears twice", name,
                              names[k]);
            }
            field[k] = v->items[i];
        }
        if (!field[k]) {
            return bad_at(p, v, "tensor \"%.200s\": missing field %s", name, names[k]);
        }
    }
    return NSC_OK;
}

static nsc_status parse_dtype(const st_parse *p, const nsci_json *v, nsci_st_entry *e) {
    if (v->type != NSCI_JSON_STRING) {
        return bad_at(p, v, "tensor \"%.200s\": dtype: expected a string such as \"F32\"", e->name);
    }
    e->dtype = v->string;
    e->kind = nsci_st_dtype_find(v->string);
    if (e->kind < 0) {
        return bad_at(p, v, "tensor \"%.200s\": dtype \"%.40s\": not a safetensors dtype", e->name,
                      v->string);
    }
    return NSC_OK;
}

// Reads the shape into dims and the element count, refusing overflow.
static nsc_status parse_shape(const st_parse *p, const nsci_json *v, nsci_st_entry *e,
                              int64_t *dims) {
    if (v->type != NSCI_JSON_ARRAY) {
        return bad_at(p, v, "tensor \"%.200s\": shape: expected an array of sizes", e->name);
    }
    if (v->n_items > NSCI_ST_MAX_RANK) {
        return bad_at(p, v, "tensor \"%.200s\": shape of rank %lld: expected at most %d dims",
                      e->name, (long long)v->n_items, NSCI_ST_MAX_RANK);
    }
    int64_t nonzero = 1;
    bool empty = false;
    for (int64_t i = 0; i < v->n_items; i++) {
        if (!is_count(v->items[i])) {
            return bad_at(p, v->items[i],
                          "tensor \"%.200s\": shape[%lld]: expected a non-negative integer",
                          e->name, (long long)i);
        }
        dims[i] = v->items[i]->integer;
        empty = empty || dims[i] == 0;
        if (dims[i] > 0 && nsci_mul_overflows(nonzero, dims[i], &nonzero)) {
            return bad_at(p, v, "tensor \"%.200s\": shape: element count overflows int64", e->name);
        }
    }
    e->ndim = (int)v->n_items;
    e->shape = dims;
    e->numel = empty ? 0 : nonzero;
    return NSC_OK;
}

// Checks data_offsets against the data section and the byte length.
static nsc_status parse_offsets(const st_parse *p, const nsci_json *v, nsci_st_entry *e) {
    const nsc_safetensors *st = p->st;
    if (v->type != NSCI_JSON_ARRAY || v->n_items != 2 || !is_count(v->items[0]) ||
        !is_count(v->items[1])) {
        return bad_at(p, v,
                      "tensor \"%.200s\": data_offsets: expected [begin, end], two "
                      "non-negative integers",
                      e->name);
    }
    e->begin = (uint64_t)v->items[0]->integer;
    e->end = (uint64_t)v->items[1]->integer;
    if (e->begin > e->end) {
        return bad_at(p, v, "tensor \"%.200s\": data_offsets [%llu, %llu]: begin is after end",
                      e->name, (unsigned long long)e->begin, (unsigned long long)e->end);
    }
    if (e->end > st->data_bytes) {
        return bad_at(p, v,
                      "tensor \"%.200s\": data_offsets [%llu, %llu]: end is beyond the "
                      "data section of %llu bytes (file bytes %llu..%llu)",
                      e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)st->data_bytes, (unsigned long long)st->data_start,
                      (unsigned long long)(st->data_start + st->data_bytes));
    }
    const nsci_st_dtype *d = &nsci_st_dtypes[e->kind];
    uint64_t bits;
    if (__builtin_mul_overflow((uint64_t)e->numel, (uint64_t)d->bits, &bits) || bits % 8 != 0 ||
        bits / 8 != e->end - e->begin) {
        char buf[160];
        return bad_at(p, v,
                      "tensor \"%.200s\": shape %s of %s: data_offsets [%llu, %llu] hold "
                      "%llu bytes, expected %lld elements x %d bits",
                      e->name, nsci_shape_str(buf, sizeof buf, e->ndim, e->shape), d->name,
                      (unsigned long long)e->begin, (unsigned long long)e->end,
                      (unsigned long long)(e->end - e->begin), (long long)e->numel, d->bits);
    }
    return NSC_OK;
}

static nsc_status parse_entry(const st_parse *p, const char *name, const nsci_json *v,
                              nsci_st_entry *e, int64_t *dims) {
    e->name = name;
    const nsci_json *field[3];
    nsc_status s = entry_fields(p, name, v, field);
    if (s == NSC_OK) {
        s = parse_dtype(p, field[0], e);
    }
    if (s == NSC_OK) {
        s = parse_shape(p, field[1], e, dims);
    }
    if (s == NSC_OK) {
        s = parse_offsets(p, field[2], e);
    }
    return s;
}

// --- names ---

// Refuses an object whose keys repeat (the JSON reader keeps every member).
static nsc_status check_unique_keys(const st_parse *p, const nsci_json *obj, const char *what) {
    int64_t again;
    nsc_status s = nsci_json_repeated_key(obj, &again);
    if (s == NSC_OK && again >= 0) {
        s = bad_at(p, obj->items[again], "%s \"%.200s\" appears twice", what, obj->keys[again]);
    }
    return s;
}

static int cmp_entry_name(const void *a, const void *b) {
    const nsci_st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int cmp_entry_begin(const void *a, const void *b) {
    const nsci_st_entry *const *x = a, *const *y = b;
    if ((*x)->begin != (*y)->begin) {
        return (*x)->begin < (*y)->begin ? -1 : 1;
    }
    return ((*x)->end > (*y)->end) - ((*x)->end < (*y)->end);
}

// Refuses two tensors whose byte ranges share a byte (empty ranges share none).
static nsc_status check_overlap(const st_parse *p) {
    const nsc_safetensors *st = p->st;
    nsci_st_entry **order = nsci_malloc((size_t)(st->n ? st->n : 1) * sizeof *order);
    if (!order) {
        return nsc_last_status();
    }
    for (int64_t i = 0; i < st->n; i++) {
        order[i] = &st->entries[i];
    }
    qsort(order, (size_t)st->n, sizeof *order, cmp_entry_begin);
    nsc_status s = NSC_OK;
    const nsci_st_entry *last = NULL; // the non-empty range reaching furthest so far
    for (int64_t i = 0; i < st->n && s == NSC_OK; i++) {
        const nsci_st_entry *e = order[i];
        if (e->begin == e->end) {
            continue;
        }
        if (last && e->begin < last->end) {
            s = bad_at(p, e->node,
                       "tensor \"%.200s\": data_offsets [%llu, %llu] overlap tensor \"%.200s\" "
                       "at [%llu, %llu]",
                       e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                       last->name, (unsigned long long)last->begin, (unsigned long long)last->end);
        }
        if (!last || e->end > last->end) {
            last = e;
        }
    }
    nsci_free(order);
    return s;
}

// --- the header ---

static nsc_status parse_metadata(const st_parse *p, const nsci_json *v) {
    nsc_safetensors *st = p->st;
    if (v->type == NSCI_JSON_NULL || (v->type == NSCI_JSON_OBJECT && v->n_items == 0)) {
        return NSC_OK;
    }
    if (v->type != NSCI_JSON_OBJECT) {
        return bad_at(p, v, "__metadata__: expected an object of strings");
    }
    nsc_status s = check_unique_keys(p, v, "__metadata__ key");
    if (s != NSC_OK) {
        return s;
    }
    st->meta_keys = nsci_malloc((size_t)v->n_items * sizeof *st->meta_keys);
    st->meta_values = nsci_malloc((size_t)v->n_items * sizeof *st->meta_values);
    if (!st->meta_keys || !st->meta_values) {
        return nsc_last_status();
    }
    for (int64_t i = 0; i < v->n_items; i++) {
        if (v->items[i]->type != NSCI_JSON_STRING) {
            return bad_at(p, v->items[i], "__metadata__ \"%.200s\": expected a string value",
                          v->keys[i]);
        }
        if (strlen(v->items[i]->string) != v->items[i]->string_len) {
            // Handed out as a C string, it would end at the NUL without a word.
            return bad_at(p, v->items[i],
                          "__metadata__ \"%.200s\": the value holds \\u0000: expected a string "
                          "without NUL",
                          v->keys[i]);
        }
        st->meta_keys[i] = v->keys[i];
        st->meta_values[i] = v->items[i]->string;
    }
    st->n_meta = v->n_items;
    return NSC_OK;
}

// Allocates the entry arrays for the tensors of root (all but __metadata__).
static nsc_status alloc_entries(nsc_safetensors *st, const nsci_json *root) {
    int64_t n_dims = 0;
    for (int64_t i = 0; i < root->n_items; i++) {
        const nsci_json *shape = nsci_json_get(root->items[i], "shape");
        if (strcmp(root->keys[i], "__metadata__") != 0) {
            st->n++;
            n_dims += shape && shape->type == NSCI_JSON_ARRAY
                          ? NSCI_MIN(shape->n_items, (int64_t)NSCI_ST_MAX_RANK)
                          : 0;
        }
    }
    size_t n = (size_t)(st->n ? st->n : 1);
    st->entries = nsci_calloc(n, sizeof *st->entries);
    st->by_name = nsci_malloc(n * sizeof *st->by_name);
    st->dims = nsci_malloc((size_t)(n_dims ? n_dims : 1) * sizeof *st->dims);
    return st->entries && st->by_name && st->dims ? NSC_OK : nsc_last_status();
}

static nsc_status parse_root(const st_parse *p, const nsci_json *root) {
    nsc_safetensors *st = p->st;
    if (root->type != NSCI_JSON_OBJECT) {
        return bad_at(p, root, "header: expected a JSON object");
    }
    nsc_status s = check_unique_keys(p, root, "tensor");
    if (s == NSC_OK) {
        s = alloc_entries(st, root);
    }
    int64_t k = 0, *dims = st->dims;
    for (int64_t i = 0; i < root->n_items && s == NSC_OK; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0) {
            s = parse_metadata(p, root->items[i]);
            continue;
        }
        nsci_st_entry *e = &st->entries[k];
        e->node = root->items[i];
        s = parse_entry(p, root->keys[i], root->items[i], e, dims);
        dims += e->ndim;
        st->by_name[k] = e;
        k++;
    }
    if (s == NSC_OK) {
        qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, cmp_entry_name);
        s = check_overlap(p);
    }
    return s;
}

nsc_status nsci_st_parse_header(nsc_safetensors *st) {
    const unsigned char *bytes = st->map->addr;
    uint64_t file_bytes = st->map->bytes, header_bytes = 0;
    if (file_bytes < 8) {
        return nsci_st_fail_short(st->label, file_bytes);
    }
    for (int i = 7; i >= 0; i--) {
        header_bytes = header_bytes << 8 | bytes[i];
    }
    if (header_bytes > file_bytes - 8) {
        return nsci_fail(NSC_ERR_FORMAT,
                         "safetensors: %s: header length %llu: expected at most the %llu bytes "
                         "after it (byte 0)",
                         st->label, (unsigned long long)header_bytes,
                         (unsigned long long)(file_bytes - 8));
    }
    if (header_bytes > NSCI_ST_MAX_HEADER_BYTES) {
        return nsci_fail(NSC_ERR_FORMAT,
                         "safetensors: %s: header length %llu: expected at most %llu (the header "
                         "size limit) (byte 0)",
                         st->label, (unsigned long long)header_bytes,
                         (unsigned long long)NSCI_ST_MAX_HEADER_BYTES);
    }
    st->data_start = 8 + header_bytes;
    st->data_bytes = file_bytes - st->data_start;
    char what[600];
    snprintf(what, sizeof what, "safetensors: %s: header", st->label);
    nsci_json_error error;
    nsci_json_limits limits = { 0, 8, &error };
    st->doc = nsci_json_parse((const char *)bytes + 8, header_bytes, &limits, what);
    if (!st->doc && error.line > 0) {
        // The reader's offset is into the header; the file's is 8 bytes on.
        return nsci_fail(NSC_ERR_FORMAT,
                         "safetensors: %s: header: %s (header line %d, column %d, byte %llu)",
                         st->label, error.message, error.line, error.column,
                         (unsigned long long)(8 + error.byte));
    }
    if (!st->doc) {
        return nsc_last_status();
    }
    st_parse p = { st, (const char *)bytes + 8, header_bytes };
    return parse_root(&p, nsci_json_root(st->doc));
}
