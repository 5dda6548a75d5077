// Loading tokenizers: vocab.json checked entry by entry, merges.txt when
// present (byte-level BPE), special "<|...|>" tokens, and the vocabulary
// queries. Encoding is in tokenizer_encode.c, BPE merging in tokenizer_bpe.c.
#include <string.h>
#include <unistd.h>

#include "nn/tokenizer_impl.h"

// --- the string -> id table ---

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    }
    return h;
}

int32_t nsci_tok_find(const nsc_tokenizer *tok, const char *bytes, size_t n) {
    for (uint64_t i = hash_bytes(bytes, n) & tok->slot_mask;; i = (i + 1) & tok->slot_mask) {
        int32_t id = tok->slots[i];
        if (id < 0 || ((size_t)tok->tok_bytes[id] == n &&
                       memcmp(tok->text + tok->tok_offset[id], bytes, n) == 0)) {
            return id;
        }
    }
}

static void slot_insert(nsc_tokenizer *tok, int32_t id) {
    const char *s = tok->text + tok->tok_offset[id];
    uint64_t i = hash_bytes(s, (size_t)tok->tok_bytes[id]) & tok->slot_mask;
    while (tok->slots[i] >= 0) {
        i = (i + 1) & tok->slot_mask;
    }
    tok->slots[i] = id;
}

// --- vocab.json ---

// Fails with "tokenizer: <path>: <message> (line L, column C)".
static nsc_status vocab_fail(const char *path, const nsci_json *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static nsc_status vocab_fail(const char *path, const nsci_json *at, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nsci_fail(NSC_ERR_FORMAT, "tokenizer: %s: %s (line %d, column %d)", path, msg, at->line,
                     at->column);
}

static bool is_special(const char *s, size_t n) {
    return n > 4 && memcmp(s, "<|", 2) == 0 && memcmp(s + n - 2, "|>", 2) == 0;
}

// Number of UTF-8 characters in s, or -1 when s is not valid UTF-8.
static int64_t utf8_count(const char *s, size_t n) {
    int64_t count = 0;
    uint32_t cp;
    for (size_t pos = 0; pos < n; count++) {
        int len = nsci_tok_utf8_next(s, n, pos, &cp);
        if (len == 0) {
            return -1;
        }
        pos += (size_t)len;
    }
    return count;
}

static nsc_status check_entry(const nsc_tokenizer *tok, const char *path, const char *key,
                              const nsci_json *value) {
    size_t n = strlen(key);
    if (n == 0 || n > NSCI_TOK_MAX_TOKEN_BYTES) {
        return vocab_fail(path, value, "token \"%.60s\": expected 1..%d bytes, got %zu", key,
                          NSCI_TOK_MAX_TOKEN_BYTES, n);
    }
    int64_t chars = utf8_count(key, n);
    if (chars < 0) {
        return vocab_fail(path, value, "token \"%.60s\": not valid UTF-8", key);
    }
    if (!tok->is_bpe && chars != 1 && !is_special(key, n)) {
        return vocab_fail(path, value,
                          "token \"%.60s\": a character vocabulary (no merges.txt) maps single "
                          "characters, this is %lld",
                          key, (long long)chars);
    }
    if (value->type != NSCI_JSON_NUMBER || !value->is_int || value->integer < 0 ||
        value->integer > NSCI_TOK_MAX_ID) {
        return vocab_fail(path, value, "token \"%.60s\": id: expected an integer in 0..%lld", key,
                          (long long)NSCI_TOK_MAX_ID);
    }
    return NSC_OK;
}

static nsc_status alloc_vocab(nsc_tokenizer *tok, const nsci_json *root, size_t text_bytes) {
    uint64_t cap = 16;
    while (cap < (uint64_t)root->n_items * 2) {
        cap *= 2;
    }
    tok->slot_mask = cap - 1;
    tok->text = nsci_malloc(text_bytes);
    tok->tok_offset = nsci_malloc((size_t)tok->n_ids * sizeof *tok->tok_offset);
    tok->tok_bytes = nsci_calloc((size_t)tok->n_ids, sizeof *tok->tok_bytes);
    tok->slots = nsci_malloc(cap * sizeof *tok->slots);
    if (!tok->text || !tok->tok_offset || !tok->tok_bytes || !tok->slots) {
        return nsc_last_status();
    }
    memset(tok->slots, 0xff, cap * sizeof *tok->slots);
    for (int64_t i = 0; i < tok->n_ids; i++) {
        tok->tok_offset[i] = -1;
    }
    return NSC_OK;
}

// Stores every entry, refusing a repeated token or id.
static nsc_status fill_vocab(nsc_tokenizer *tok, const char *path, const nsci_json *root) {
    size_t used = 0;
    for (int64_t i = 0; i < root->n_items; i++) {
        const char *key = root->keys[i];
        size_t n = strlen(key);
        int64_t id = root->items[i]->integer;
        if (nsci_tok_find(tok, key, n) >= 0) {
            return vocab_fail(path, root->items[i], "token \"%.60s\" appears twice", key);
        }
        if (tok->tok_offset[id] >= 0) {
            return vocab_fail(path, root->items[i], "id %lld is given to \"%.60s\" and \"%.60s\"",
                              (long long)id, tok->text + tok->tok_offset[id], key);
        }
        memcpy(tok->text + used, key, n + 1);
        tok->tok_offset[id] = (int64_t)used;
        tok->tok_bytes[id] = (int32_t)n;
        used += n + 1;
        slot_insert(tok, (int32_t)id);
        tok->n_special += is_special(key, n);
    }
    return NSC_OK;
}

static int cmp_special(const void *a, const void *b, void *ctx) {
    const nsc_tokenizer *tok = ctx;
    return tok->tok_bytes[*(const int32_t *)b] - tok->tok_bytes[*(const int32_t *)a];
}

// Collects the special tokens, longest first so the longest one matches.
static nsc_status collect_specials(nsc_tokenizer *tok) {
    if (tok->n_special == 0) {
        return NSC_OK;
    }
    tok->special = nsci_malloc((size_t)tok->n_special * sizeof *tok->special);
    if (!tok->special) {
        return nsc_last_status();
    }
    int k = 0;
    for (int64_t id = 0; id < tok->n_ids; id++) {
        if (tok->tok_offset[id] >= 0 &&
            is_special(tok->text + tok->tok_offset[id], (size_t)tok->tok_bytes[id])) {
            tok->special[k++] = (int32_t)id;
        }
    }
    qsort_r(tok->special, (size_t)k, sizeof *tok->special, cmp_special, tok);
    return NSC_OK;
}

static nsc_status parse_vocab(nsc_tokenizer *tok, const char *path, const nsci_json *root) {
    if (root->type != NSCI_JSON_OBJECT || root->n_items == 0) {
        return vocab_fail(path, root, "expected a non-empty object of token: id");
    }
    size_t text_bytes = 0;
    int64_t max_id = 0;
    for (int64_t i = 0; i < root->n_items; i++) {
        nsc_status s = check_entry(tok, path, root->keys[i], root->items[i]);
        if (s != NSC_OK) {
            return s;
        }
        text_bytes += strlen(root->keys[i]) + 1;
        max_id = NSCI_MAX(max_id, root->items[i]->integer);
    }
    tok->n_ids = max_id + 1;
    nsc_status s = alloc_vocab(tok, root, text_bytes);
    if (s == NSC_OK) {
        s = fill_vocab(tok, path, root);
    }
    return s == NSC_OK ? collect_specials(tok) : s;
}

static nsc_status load_vocab(nsc_tokenizer *tok, const char *text, size_t len, const char *path) {
    nsci_json_limits limits = { NSCI_TOK_MAX_FILE_BYTES, 4, NULL };
    nsci_json_doc *doc = nsci_json_parse(text, len, &limits, path);
    if (!doc) {
        nsci_error_prefix("tokenizer");
        return nsc_last_status();
    }
    nsc_status s = parse_vocab(tok, path, nsci_json_root(doc));
    nsci_json_doc_free(doc);
    return s;
}

// --- load and free ---

void nsc_tokenizer_free(nsc_tokenizer *tok) {
    if (!tok) {
        return;
    }
    nsci_tok_cache_free(tok);
    pthread_mutex_destroy(&tok->cache_lock);
    nsci_free(tok->merges);
    nsci_free(tok->special);
    nsci_free(tok->slots);
    nsci_free(tok->tok_bytes);
    nsci_free(tok->tok_offset);
    nsci_free(tok->text);
    nsci_free(tok->label);
    nsci_free(tok);
}

nsc_tokenizer *nsci_tok_load_memory(const char *vocab, size_t vocab_bytes, const char *vocab_label,
                                    const char *merges, size_t merges_bytes,
                                    const char *merges_label) {
    nsc_tokenizer *tok = nsci_calloc(1, sizeof *tok);
    if (!tok) {
        return NULL;
    }
    pthread_mutex_init(&tok->cache_lock, NULL);
    tok->is_bpe = merges != NULL;
    tok->label = nsci_strdup(vocab_label);
    nsc_status s =
        tok->label ? load_vocab(tok, vocab, vocab_bytes, vocab_label) : nsc_last_status();
    if (s == NSC_OK && tok->is_bpe) {
        s = nsci_tok_load_merges(tok, merges, merges_bytes, merges_label);
    }
    if (s != NSC_OK) {
        nsc_tokenizer_free(tok);
        return NULL;
    }
    if (tok->is_bpe) {
        nsci_tok_init_bytes(tok);
    }
    return tok;
}

// Reads a tokenizer file (size-limited); NULL with "tokenizer: <path>: ...".
static char *read_file(const char *path, size_t *len) {
    char *text = nsci_read_file(path, NSCI_TOK_MAX_FILE_BYTES, len);
    if (!text) {
        nsci_error_prefix("tokenizer");
    }
    return text;
}

nsc_tokenizer *nsc_tokenizer_load_files(const char *vocab_path, const char *merges_path) {
    if (!vocab_path) {
        return nsci_fail_null(NSC_ERR_ARG, "tokenizer_load: vocab path is NULL");
    }
    size_t vocab_bytes = 0, merges_bytes = 0;
    char *vocab = read_file(vocab_path, &vocab_bytes);
    char *merges = vocab && merges_path ? read_file(merges_path, &merges_bytes) : NULL;
    nsc_tokenizer *tok = NULL;
    if (vocab && (merges || !merges_path)) {
        tok =
            nsci_tok_load_memory(vocab, vocab_bytes, vocab_path, merges, merges_bytes, merges_path);
    }
    nsci_free(vocab);
    nsci_free(merges);
    return tok;
}

nsc_tokenizer *nsc_tokenizer_load(const char *dir) {
    if (!dir) {
        return nsci_fail_null(NSC_ERR_ARG, "tokenizer_load: directory is NULL");
    }
    nsci_buf vocab, merges;
    nsci_buf_init(&vocab);
    nsci_buf_init(&merges);
    nsci_buf_printf(&vocab, "%s/vocab.json", dir);
    nsci_buf_printf(&merges, "%s/merges.txt", dir);
    nsc_tokenizer *tok = NULL;
    if (!vocab.failed && !merges.failed) {
        bool has_merges = access(merges.data, F_OK) == 0;
        tok = nsc_tokenizer_load_files(vocab.data, has_merges ? merges.data : NULL);
    }
    nsci_buf_free(&vocab);
    nsci_buf_free(&merges);
    return tok;
}

// --- queries ---

bool nsc_tokenizer_is_bpe(const nsc_tokenizer *tok) {
    return tok && tok->is_bpe;
}

int64_t nsc_tokenizer_vocab_size(const nsc_tokenizer *tok) {
    return tok ? tok->n_ids : 0;
}

int64_t nsc_tokenizer_token_id(const nsc_tokenizer *tok, const char *token) {
    return tok && token ? nsci_tok_find(tok, token, strlen(token)) : -1;
}

const char *nsc_tokenizer_token(const nsc_tokenizer *tok, int64_t id) {
    if (!tok || id < 0 || id >= tok->n_ids || tok->tok_offset[id] < 0) {
        return NULL;
    }
    return tok->text + tok->tok_offset[id];
}
