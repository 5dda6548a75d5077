// libFuzzer target: the tokenizers. The first byte picks a mode: 0, 1 encode
// the rest with the BPE fixture or the character vocabulary (valid UTF-8 must
// decode back to itself; the same bytes read as ids exercise decoding);
// 2 loads the rest as a character vocab.json, 3 as a merges.txt over the BPE
// fixture's vocabulary, then encodes a sample. Nothing may leak.
// NSC_SOURCE_DIR locates tests/fixtures (default: the current directory).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/tokenizer_impl.h"
#include "nsc.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static nsc_tokenizer *g_tok[2];
static char *g_vocab; // the BPE fixture's vocab.json text
static size_t g_vocab_bytes;

static void check(bool ok) {
    if (!ok) {
        __builtin_trap();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *root = getenv("NSC_SOURCE_DIR");
    const char *dirs[2] = { "bpe", "chars" };
    for (int i = 0; i < 2; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/fixtures/%s", root ? root : ".", dirs[i]);
        g_tok[i] = nsc_tokenizer_load(path);
        if (!g_tok[i]) {
            fprintf(stderr, "fuzz_bpe: %s\n", nsc_last_error());
            abort();
        }
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/bpe/vocab.json", root ? root : ".");
    g_vocab = nsci_read_file(path, 0, &g_vocab_bytes);
    if (!g_vocab) {
        abort();
    }
    return 0;
}

static void round_trip(const nsc_tokenizer *tok, const char *text, size_t len) {
    int64_t n = nsc_tokenizer_encode(tok, text, len, NULL, 0);
    if (n < 0) {
        check(nsc_last_status() == NSC_ERR_ARG || nsc_last_status() == NSC_ERR_OOM);
        return;
    }
    int64_t *ids = malloc((size_t)(n + 1) * sizeof *ids);
    check(nsc_tokenizer_encode(tok, text, len, ids, n) == n);
    char *back = malloc(len + 1);
    check(nsc_tokenizer_decode(tok, ids, n, back, len + 1) == (int64_t)len);
    check(memcmp(back, text, len) == 0);
    free(back);
    free(ids);
}

static void decode_raw(const nsc_tokenizer *tok, const uint8_t *data, size_t size) {
    int64_t ids[64];
    int64_t n = 0;
    for (size_t i = 0; i + 1 < size && n < 64; i += 2) {
        ids[n++] = (int64_t)(data[i] | data[i + 1] << 8) - 8; // some negative, some too large
    }
    char out[256];
    int64_t len = nsc_tokenizer_decode(tok, ids, n, out, sizeof out);
    check(len >= 0 || nsc_last_status() == NSC_ERR_ARG);
}

// Loads a tokenizer from fuzzed vocab.json (mode 2) or merges.txt (mode 3).
static void load_fuzzed(int mode, const char *text, size_t len) {
    nsc_tokenizer *tok = mode == 2 ? nsci_tok_load_memory(text, len, "vocab.json", NULL, 0, NULL)
                                   : nsci_tok_load_memory(g_vocab, g_vocab_bytes, "vocab.json",
                                                          text, len, "merges.txt");
    if (!tok) {
        check(nsc_last_status() == NSC_ERR_FORMAT || nsc_last_status() == NSC_ERR_OOM);
        return;
    }
    const char *sample = "Hello world, it's  a t\xc3\xa9st <|endoftext|> 123";
    int64_t ids[256];
    int64_t n = nsc_tokenizer_encode(tok, sample, strlen(sample), ids, 256);
    if (n >= 0 && n <= 256) {
        char back[256];
        check(nsc_tokenizer_decode(tok, ids, n, back, sizeof back) >= 0);
    }
    nsc_tokenizer_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) {
        return 0;
    }
    int mode = data[0] & 3;
    nsci_tok_cache_free(g_tok[0]); // the caches would count as live blocks
    nsci_tok_cache_free(g_tok[1]);
    int64_t before = nsc_mem_stats_get().live_blocks;
    if (mode < 2) {
        round_trip(g_tok[mode], (const char *)data + 1, size - 1);
        decode_raw(g_tok[mode], data + 1, size - 1);
        nsci_tok_cache_free(g_tok[mode]);
    } else {
        load_fuzzed(mode, (const char *)data + 1, size - 1);
    }
    check(nsc_mem_stats_get().live_blocks == before);
    return 0;
}
