// GPT-2 byte-level BPE: the byte <-> character map, the merge table read from
// merges.txt, the merge loop of Hugging Face tokenizers (lowest rank first,
// leftmost on ties) and a cache of merged words.
#include <string.h>

#include "nn/tokenizer_impl.h"

// --- the byte map ---

// Printable Latin-1 bytes stand for themselves; the other 68 bytes map, in
// order, to U+0100..U+0143 (GPT-2's bytes_to_unicode).
static bool byte_is_printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t nsci_tok_byte_char(uint8_t byte) {
    if (byte_is_printable(byte)) {
        return byte;
    }
    uint32_t n = 0;
    for (int b = 0; b < byte; b++) {
        n += !byte_is_printable(b);
    }
    return 256 + n;
}

int nsci_tok_char_byte(uint32_t cp) {
    if (cp < 256) {
        return byte_is_printable((int)cp) ? (int)cp : -1;
    }
    uint32_t n = 256;
    for (int b = 0; b < 256; b++) {
        if (!byte_is_printable(b) && n++ == cp) {
            return b;
        }
    }
    return -1;
}

void nsci_tok_init_bytes(nsc_tokenizer *tok) {
    for (int b = 0; b < 256; b++) {
        char utf8[4];
        int n = nsci_tok_utf8_put(utf8, nsci_tok_byte_char((uint8_t)b));
        tok->byte_id[b] = nsci_tok_find(tok, utf8, (size_t)n);
    }
}

// --- merges ---

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

// The slot of pair key: where it is, or the empty slot where it would go.
static nsci_tok_merge *merge_slot(const nsc_tokenizer *tok, uint64_t key) {
    uint64_t i = mix(key) & tok->merge_mask;
    while (tok->merges[i].key != UINT64_MAX && tok->merges[i].key != key) {
        i = (i + 1) & tok->merge_mask;
    }
    return &tok->merges[i];
}

static const nsci_tok_merge *merge_find(const nsc_tokenizer *tok, int32_t a, int32_t b) {
    if (!tok->merges) {
        return NULL;
    }
    const nsci_tok_merge *m = merge_slot(tok, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    return m->key == UINT64_MAX ? NULL : m;
}

static nsc_status merge_fail(const char *path, int64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static nsc_status merge_fail(const char *path, int64_t line, const char *fmt, ...) {
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nsci_fail(NSC_ERR_FORMAT, "tokenizer: %s: line %lld: %s", path, (long long)line, msg);
}

// Adds the merge on one line ("left right"); later duplicates win, as in
// Hugging Face's and GPT-2's loaders.
static nsc_status add_merge(nsc_tokenizer *tok, const char *line, size_t n, const char *path,
                            int64_t line_no) {
    const char *space = memchr(line, ' ', n);
    if (!space || space == line || space == line + n - 1 ||
        memchr(space + 1, ' ', n - (size_t)(space - line) - 1)) {
        return merge_fail(path, line_no, "\"%.*s\": expected two tokens separated by one space",
                          (int)NSCI_MIN(n, (size_t)80), line);
    }
    size_t left = (size_t)(space - line), right = n - left - 1;
    char joined[2 * NSCI_TOK_MAX_TOKEN_BYTES];
    int32_t a = nsci_tok_find(tok, line, left), b = nsci_tok_find(tok, space + 1, right);
    int32_t id = -1;
    if (a >= 0 && b >= 0 && n - 1 <= sizeof joined) {
        memcpy(joined, line, left);
        memcpy(joined + left, space + 1, right);
        id = nsci_tok_find(tok, joined, n - 1);
    }
    if (id < 0) {
        return merge_fail(path, line_no, "\"%.*s\": %s is not in the vocabulary",
                          (int)NSCI_MIN(n, (size_t)80), line,
                          a < 0   ? "the left token"
                          : b < 0 ? "the right token"
                                  : "the merged token");
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    nsci_tok_merge *m = merge_slot(tok, key);
    tok->n_merges += m->key == UINT64_MAX;
    *m = (nsci_tok_merge){ key, (int32_t)line_no, id }; // rank follows file order
    return NSC_OK;
}

nsc_status nsci_tok_load_merges(nsc_tokenizer *tok, const char *text, size_t len,
                                const char *path) {
    uint64_t lines = 1, cap = 16;
    for (size_t i = 0; i < len; i++) {
        lines += text[i] == '\n';
    }
    while (cap < 2 * lines) { // at most half full
        cap *= 2;
    }
    tok->merges = nsci_malloc(cap * sizeof *tok->merges);
    if (!tok->merges) {
        return nsc_last_status();
    }
    memset(tok->merges, 0xff, cap * sizeof *tok->merges);
    tok->merge_mask = cap - 1;
    int64_t line_no = 0;
    for (size_t pos = 0; pos < len;) {
        const char *end = memchr(text + pos, '\n', len - pos);
        size_t n = end ? (size_t)(end - (text + pos)) : len - pos;
        const char *line = text + pos;
        pos += n + 1;
        line_no++;
        n -= n > 0 && line[n - 1] == '\r';
        if (n == 0 || (n >= 8 && memcmp(line, "#version", 8) == 0)) {
            continue;
        }
        nsc_status s = add_merge(tok, line, n, path, line_no);
        if (s != NSC_OK) {
            return s;
        }
    }
    return NSC_OK;
}

// --- merging one word ---

typedef struct symbol {
    int32_t id;
    int32_t prev, next; // -1 at the ends
    bool removed;
} symbol;

typedef struct candidate {
    int32_t rank, pos, id;
} candidate;

// A binary min-heap of candidate merges: lowest rank, then leftmost.
typedef struct heap {
    candidate *items;
    int64_t n;
} heap;

static bool before(candidate a, candidate b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(heap *h, candidate c) {
    int64_t i = h->n++;
    while (i > 0 && before(c, h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = c;
}

static candidate heap_pop(heap *h) {
    candidate top = h->items[0], last = h->items[--h->n];
    int64_t i = 0;
    for (;;) {
        int64_t child = 2 * i + 1;
        if (child >= h->n) {
            break;
        }
        if (child + 1 < h->n && before(h->items[child + 1], h->items[child])) {
            child++;
        }
        if (!before(h->items[child], last)) {
            break;
        }
        h->items[i] = h->items[child];
        i = child;
    }
    h->items[i] = last;
    return top;
}

static void push_pair(const nsc_tokenizer *tok, heap *h, const symbol *s, int32_t pos) {
    if (pos < 0 || s[pos].next < 0) {
        return;
    }
    const nsci_tok_merge *m = merge_find(tok, s[pos].id, s[s[pos].next].id);
    if (m) {
        heap_push(h, (candidate){ m->rank, pos, m->id });
    }
}

// Hugging Face's Word::merge_all without dropout: pop the best candidate,
// skip it if its pair no longer holds, merge, queue the two new pairs.
static void merge_all(const nsc_tokenizer *tok, symbol *s, int32_t n, heap *h) {
    for (int32_t i = 0; i + 1 < n; i++) {
        push_pair(tok, h, s, i);
    }
    while (h->n > 0) {
        candidate c = heap_pop(h);
        if (s[c.pos].removed || s[c.pos].next < 0) {
            continue;
        }
        int32_t next = s[c.pos].next;
        const nsci_tok_merge *m = merge_find(tok, s[c.pos].id, s[next].id);
        if (!m || m->id != c.id) {
            continue;
        }
        s[c.pos].id = c.id;
        s[c.pos].next = s[next].next;
        s[next].removed = true;
        if (s[next].next >= 0) {
            s[s[next].next].prev = c.pos;
        }
        push_pair(tok, h, s, s[c.pos].prev);
        push_pair(tok, h, s, c.pos);
    }
}

// --- the cache ---

enum {
    CACHE_SLOTS = 4096,
    CACHE_MAX_WORD_BYTES = 256
};

static nsci_tok_cached *cache_slot(nsc_tokenizer *tok, const char *word, size_t n) {
    uint64_t i = mix(n);
    for (size_t k = 0; k < n; k++) {
        i = (i ^ (unsigned char)word[k]) * 0x100000001b3ull;
    }
    for (i &= CACHE_SLOTS - 1;; i = (i + 1) & (CACHE_SLOTS - 1)) {
        nsci_tok_cached *c = &tok->cache[i];
        if (!c->word || (c->word_bytes == n && memcmp(c->word, word, n) == 0)) {
            return c;
        }
    }
}

void nsci_tok_cache_free(nsc_tokenizer *tok) {
    for (int i = 0; tok->cache && i < CACHE_SLOTS; i++) {
        nsci_free(tok->cache[i].word);
        nsci_free(tok->cache[i].ids);
    }
    nsci_free(tok->cache);
    tok->cache = NULL;
    tok->n_cached = 0;
}

// Copies a cached result into out; false when word is not cached.
static bool cache_get(nsc_tokenizer *tok, const char *word, size_t n, nsci_tok_out *out) {
    bool found = false;
    pthread_mutex_lock(&tok->cache_lock);
    if (tok->cache) {
        const nsci_tok_cached *c = cache_slot(tok, word, n);
        for (int32_t i = 0; c->word && i < c->n_ids; i++) {
            nsci_tok_push(out, c->ids[i]);
        }
        found = c->word != NULL;
    }
    pthread_mutex_unlock(&tok->cache_lock);
    return found;
}

// Remembers a result; best effort (an allocation failure only skips it).
static void cache_put(nsc_tokenizer *tok, const char *word, size_t n, const symbol *s) {
    pthread_mutex_lock(&tok->cache_lock);
    if (tok->n_cached >= CACHE_SLOTS / 2) {
        nsci_tok_cache_free(tok); // full: start over rather than evict
    }
    if (!tok->cache) {
        tok->cache = nsci_calloc(CACHE_SLOTS, sizeof *tok->cache);
    }
    nsci_tok_cached *c = tok->cache ? cache_slot(tok, word, n) : NULL;
    if (c && c->word) { // another thread cached this word since our lookup missed
        pthread_mutex_unlock(&tok->cache_lock);
        return;
    }
    int32_t n_ids = 0;
    for (int32_t i = 0; i >= 0; i = s[i].next) { // symbol 0 always survives
        n_ids++;
    }
    char *copy = c ? nsci_malloc(n) : NULL;
    int32_t *ids = copy ? nsci_malloc((size_t)n_ids * sizeof *ids) : NULL;
    if (ids) {
        memcpy(copy, word, n);
        int32_t k = 0;
        for (int32_t i = 0; i >= 0; i = s[i].next) {
            ids[k++] = s[i].id;
        }
        *c = (nsci_tok_cached){ copy, (uint32_t)n, n_ids, ids };
        tok->n_cached++;
    } else {
        nsci_free(copy);
    }
    pthread_mutex_unlock(&tok->cache_lock);
}

// --- one pre-token ---

enum {
    SMALL_WORD = 64
};

static nsc_status merge_word(const nsc_tokenizer *tok, const char *word, int32_t n,
                             nsci_tok_out *out) {
    symbol small_s[SMALL_WORD];
    candidate small_c[3 * SMALL_WORD];
    bool small = n <= SMALL_WORD;
    symbol *s = small ? small_s : nsci_malloc((size_t)n * sizeof *s);
    heap h = { small ? small_c : nsci_malloc((size_t)n * 3 * sizeof *h.items), 0 };
    if (!s || !h.items) {
        nsc_status status = nsc_last_status();
        if (!small) {
            nsci_free(s);
            nsci_free(h.items);
        }
        return status;
    }
    for (int32_t i = 0; i < n; i++) {
        s[i] =
            (symbol){ tok->byte_id[(unsigned char)word[i]], i - 1, i + 1 < n ? i + 1 : -1, false };
    }
    merge_all(tok, s, n, &h);
    for (int32_t i = 0; i >= 0; i = s[i].next) {
        nsci_tok_push(out, s[i].id);
    }
    if ((size_t)n <= CACHE_MAX_WORD_BYTES) {
        cache_put((nsc_tokenizer *)tok, word, (size_t)n, s);
    }
    if (!small) {
        nsci_free(s);
        nsci_free(h.items);
    }
    return NSC_OK;
}

nsc_status nsci_tok_bpe_word(const nsc_tokenizer *tok, const char *word, size_t n,
                             nsci_tok_out *out) {
    if (n == 0) {
        return NSC_OK; // no bytes, no tokens (merge_word starts from symbol 0)
    }
    // The cache is the only state encoding changes; it has its own lock.
    if (n <= CACHE_MAX_WORD_BYTES && cache_get((nsc_tokenizer *)tok, word, n, out)) {
        return NSC_OK;
    }
    if (n > (size_t)INT32_MAX / 4) {
        return nsci_fail(NSC_ERR_ARG,
                         "tokenizer_encode: a run of %zu bytes without a break: "
                         "expected at most %d (%s)",
                         n, INT32_MAX / 4, tok->label);
    }
    for (size_t i = 0; i < n; i++) {
        if (tok->byte_id[(unsigned char)word[i]] < 0) {
            return nsci_fail(NSC_ERR_ARG,
                             "tokenizer_encode: byte 0x%02x: expected a token for "
                             "it in the vocabulary (%s)",
                             (unsigned char)word[i], tok->label);
        }
    }
    return merge_word(tok, word, (int32_t)n, out);
}
