// libFuzzer target: util/json.c on arbitrary bytes. Every parse must either
// fail with NSC_ERR_FORMAT/OOM or give a tree whose strings survive a round
// trip through nsci_buf_json_string; nothing may leak. See fuzz/README.md.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nsc.h"
#include "util/util_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

// Re-encodes a string value and parses it back: same bytes expected.
static void round_trip_string(const nsci_json *v) {
    nsci_buf b;
    nsci_buf_init(&b);
    nsci_buf_json_string(&b, v->string, v->string_len);
    if (b.failed) {
        nsci_buf_free(&b);
        return;
    }
    nsci_json_doc *doc = nsci_json_parse(b.data, b.len, NULL, "round trip");
    check(doc != NULL);
    const nsci_json *back = nsci_json_root(doc);
    check(back->type == NSCI_JSON_STRING && back->string_len == v->string_len &&
          memcmp(back->string, v->string, v->string_len) == 0);
    nsci_json_doc_free(doc);
    nsci_buf_free(&b);
}

static void walk(const nsci_json *v, int depth) {
    check(depth <= 64 && v->line >= 1 && v->column >= 1);
    if (v->type == NSCI_JSON_STRING) {
        round_trip_string(v);
    }
    if (v->type == NSCI_JSON_OBJECT) {
        for (int64_t i = 0; i < v->n_items; i++) {
            check(strlen(v->keys[i]) < (size_t)1 << 31);
            check(nsci_json_get(v, v->keys[i]) != NULL);
        }
    }
    for (int64_t i = 0;
         (v->type == NSCI_JSON_ARRAY || v->type == NSCI_JSON_OBJECT) && i < v->n_items; i++) {
        walk(v->items[i], depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t before = nsc_mem_stats_get().live_blocks;
    nsci_json_limits limits = { 1 << 20, 0, NULL };
    nsci_json_doc *doc = nsci_json_parse((const char *)data, size, &limits, "fuzz");
    if (doc) {
        walk(nsci_json_root(doc), 1);
        nsci_json_doc_free(doc);
    } else {
        check(nsc_last_status() == NSC_ERR_FORMAT || nsc_last_status() == NSC_ERR_OOM);
        check(strncmp(nsc_last_error(), "fuzz", 4) == 0 || nsc_last_status() == NSC_ERR_OOM);
    }
    check(nsc_mem_stats_get().live_blocks == before);
    return 0;
}
