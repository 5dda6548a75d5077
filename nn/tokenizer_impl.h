// Internal view of a tokenizer, shared by nn/tokenizer.c (loading),
// nn/tokenizer_bpe.c (byte map, merges, cache), nn/tokenizer_encode.c and the
// generated Unicode tables of nn/tokenizer_unicode.c.
#ifndef NSC_NN_TOKENIZER_IMPL_H
#define NSC_NN_TOKENIZER_IMPL_H

#include <pthread.h>

#include "nsc/tokenizer.h"
#include "util/util_impl.h"

#define NSCI_TOK_MAX_FILE_BYTES  ((size_t)64 << 20)
#define NSCI_TOK_MAX_ID          ((int64_t)(1 << 24) - 1)
#define NSCI_TOK_MAX_TOKEN_BYTES 1024

// One merge rule: the pair (left << 32 | right) of token ids, its rank and
// the id of the merged token. key UINT64_MAX marks an empty slot.
typedef struct nsci_tok_merge {
    uint64_t key;
    int32_t rank;
    int32_t id;
} nsci_tok_merge;

// A cached BPE result for one pre-token.
typedef struct nsci_tok_cached {
    char *word; // NULL: empty slot
    uint32_t word_bytes;
    int32_t n_ids;
    int32_t *ids;
} nsci_tok_cached;

struct nsc_tokenizer {
    bool is_bpe;
    char *label; // the vocab path, for messages
    // Vocabulary: id -> string, and string -> id by open addressing.
    int64_t n_ids;       // largest id + 1
    char *text;          // every token, NUL-terminated, back to back
    int64_t *tok_offset; // per id: offset into text, or -1
    int32_t *tok_bytes;  // per id: length
    int32_t *slots;      // ids, -1 empty
    uint64_t slot_mask;
    // Special tokens "<|...|>", longest first.
    int n_special;
    int32_t *special;
    // BPE only.
    int32_t byte_id[256]; // token of each byte's character, or -1
    nsci_tok_merge *merges;
    uint64_t merge_mask;
    int64_t n_merges;
    pthread_mutex_t cache_lock;
    nsci_tok_cached *cache;
    uint32_t n_cached;
};

// --- vocabulary (tokenizer.c) ---

// Builds a tokenizer from the texts of vocab.json and merges.txt (merges NULL:
// a character vocabulary); labels name them in messages. For fuzzing and
// nsc_tokenizer_load_files, which reads the files first.
nsc_tokenizer *nsci_tok_load_memory(const char *vocab, size_t vocab_bytes, const char *vocab_label,
                                    const char *merges, size_t merges_bytes,
                                    const char *merges_label);

// Id of the token spelled by bytes, or -1.
int32_t nsci_tok_find(const nsc_tokenizer *tok, const char *bytes, size_t n);

// --- byte map, merges and cache (tokenizer_bpe.c) ---

// GPT-2's byte -> code point map (printable bytes map to themselves) and back
// (-1 for code points that are no byte's).
uint32_t nsci_tok_byte_char(uint8_t byte);
int nsci_tok_char_byte(uint32_t cp);

// Fills byte_id from the vocabulary (BPE load).
void nsci_tok_init_bytes(nsc_tokenizer *tok);

// Reads merges text (merges.txt) into tok->merges; NSC_ERR_FORMAT names path and line.
nsc_status nsci_tok_load_merges(nsc_tokenizer *tok, const char *text, size_t len, const char *path);

// Appends the BPE ids of one pre-token (raw bytes) to out via push.
typedef struct nsci_tok_out {
    int64_t *ids;
    int64_t max_ids;
    int64_t n;
} nsci_tok_out;
nsc_status nsci_tok_bpe_word(const nsc_tokenizer *tok, const char *word, size_t n,
                             nsci_tok_out *out);

void nsci_tok_cache_free(nsc_tokenizer *tok);

static inline void nsci_tok_push(nsci_tok_out *out, int64_t id) {
    if (out->n < out->max_ids) {
        out->ids[out->n] = id;
    }
    out->n++;
}

// --- text (tokenizer_encode.c) ---

// Decodes the UTF-8 character at s[pos] (pos < len): its length, or 0 when
// the bytes there are not valid UTF-8.
int nsci_tok_utf8_next(const char *s, size_t len, size_t pos, uint32_t *cp);
// Writes cp as UTF-8 into out (4 bytes room); returns the length.
int nsci_tok_utf8_put(char *out, uint32_t cp);

// --- Unicode classes (tokenizer_unicode.c, generated) ---

bool nsci_tok_is_letter(uint32_t cp);
bool nsci_tok_is_number(uint32_t cp);
bool nsci_tok_is_space(uint32_t cp);

#endif
