// Tokenizers: byte-level BPE against ids from Hugging Face `tokenizers`
// (tests/fixtures/bpe, made by make_bpe_fixture.py), round trips, the
// character vocabulary, every load/encode/decode error, out of memory, and
// concurrent encoding.
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/tokenizer_impl.h"
#include "nsc.h"

static int64_t live_blocks(void) {
    return nsc_mem_stats_get().live_blocks;
}

static const char *fixture(const char *file) {
    static _Thread_local char path[1024];
    const char *root = getenv("NSC_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/tests/fixtures/%s", root ? root : ".", file);
    return path;
}

static nsc_tokenizer *load_bpe(void) {
    nsc_tokenizer *tok = nsc_tokenizer_load(fixture("bpe"));
    cr_assert_not_null(tok, "%s", nsc_last_error());
    return tok;
}

// Encodes text into a malloc'd array (caller free()s); *n gets the count.
static int64_t *encode(const nsc_tokenizer *tok, const char *text, size_t len, int64_t *n) {
    *n = nsc_tokenizer_encode(tok, text, len, NULL, 0);
    cr_assert(*n >= 0, "encode failed: %s", nsc_last_error());
    int64_t *ids = malloc((size_t)(*n + 1) * sizeof *ids);
    cr_assert_eq(nsc_tokenizer_encode(tok, text, len, ids, *n), *n);
    return ids;
}

// Decodes into a malloc'd string (caller free()s).
static char *decode(const nsc_tokenizer *tok, const int64_t *ids, int64_t n, int64_t *len) {
    *len = nsc_tokenizer_decode(tok, ids, n, NULL, 0);
    cr_assert(*len >= 0, "decode failed: %s", nsc_last_error());
    char *text = malloc((size_t)*len + 1);
    cr_assert_eq(nsc_tokenizer_decode(tok, ids, n, text, (size_t)*len + 1), *len);
    return text;
}

// --- byte-level BPE against the reference ---

Test(tokenizer, bpe_ids_match_hugging_face) {
    int64_t before = live_blocks();
    nsc_tokenizer *tok = load_bpe();
    cr_expect(nsc_tokenizer_is_bpe(tok));
    cr_expect_eq(nsc_tokenizer_vocab_size(tok), 800);
    size_t len;
    char *text = nsci_read_file(fixture("bpe/reference.json"), 0, &len);
    cr_assert_not_null(text, "%s", nsc_last_error());
    nsci_json_doc *doc = nsci_json_parse(text, len, NULL, "reference.json");
    cr_assert_not_null(doc, "%s", nsc_last_error());
    const nsci_json *cases = nsci_json_get(nsci_json_root(doc), "cases");
    cr_assert(cases && cases->n_items > 20);
    for (int64_t c = 0; c < cases->n_items; c++) {
        const nsci_json *s = nsci_json_get(cases->items[c], "text");
        const nsci_json *want = nsci_json_get(cases->items[c], "ids");
        int64_t n;
        int64_t *ids = encode(tok, s->string, s->string_len, &n);
        bool same = n == want->n_items;
        for (int64_t i = 0; same && i < n; i++) {
            same = ids[i] == want->items[i]->integer;
        }
        cr_expect(same, "case %lld (\"%.40s\"): %lld ids, reference has %lld", (long long)c,
                  s->string, (long long)n, (long long)want->n_items);
        int64_t back_len;
        char *back = decode(tok, ids, n, &back_len);
        cr_expect(back_len == (int64_t)s->string_len && memcmp(back, s->string, s->string_len) == 0,
                  "case %lld: decode(encode(s)) != s", (long long)c);
        free(back);
        free(ids);
    }
    nsci_json_doc_free(doc);
    nsci_free(text);
    nsc_tokenizer_free(tok);
    cr_expect_eq(live_blocks(), before);
}

Test(tokenizer, bpe_round_trips_the_corpus_and_arbitrary_bytes) {
    nsc_tokenizer *tok = load_bpe();
    size_t len;
    char *corpus = nsci_read_file(fixture("bpe/corpus.txt"), 0, &len);
    cr_assert_not_null(corpus);
    int64_t n, back_len;
    int64_t *ids = encode(tok, corpus, len, &n);
    cr_expect(n > 0 && n < (int64_t)len, "BPE compresses: %lld ids for %zu bytes", (long long)n,
              len);
    char *back = decode(tok, ids, n, &back_len);
    cr_expect(back_len == (int64_t)len && memcmp(back, corpus, len) == 0);
    free(back);
    free(ids);
    // Every UTF-8 encodable code point class: ASCII controls, Latin-1, astral.
    const char text[] = "\x01\x7f\xc2\x80\xc2\xa0\xc3\xbf\xe2\x80\x8b\xf4\x8f\xbf\xbf";
    ids = encode(tok, text, sizeof text - 1, &n);
    back = decode(tok, ids, n, &back_len);
    cr_expect(back_len == (int64_t)sizeof text - 1 && memcmp(back, text, sizeof text - 1) == 0);
    free(back);
    free(ids);
    nsci_free(corpus);
    nsc_tokenizer_free(tok);
}

Test(tokenizer, pre_tokenizer_splits_like_gpt2) {
    // Each piece is merged separately, so no token may cross these borders.
    nsc_tokenizer *tok = load_bpe();
    struct {
        const char *text;
        const char *pieces[8];
    } cases[] = {
        { "a   b", { "a", "  ", " b" } }, { "a \n b", { "a", " \n", " b" } },
        { "it's", { "it", "'s" } },       { "IT'S", { "IT", "'", "S" } },
        { "x  ", { "x", "  " } },         { "?!'s", { "?!'", "s" } },
        { "12ab", { "12", "ab" } },
    };
    for (int c = 0; c < NSCI_ARRAY_LEN(cases); c++) {
        int64_t want[64], n_want = 0, n;
        for (int p = 0; cases[c].pieces[p]; p++) {
            int64_t k = nsc_tokenizer_encode(tok, cases[c].pieces[p], strlen(cases[c].pieces[p]),
                                             want + n_want, 64 - n_want);
            n_want += k;
        }
        int64_t *ids = encode(tok, cases[c].text, strlen(cases[c].text), &n);
        cr_expect(n == n_want && memcmp(ids, want, (size_t)n * sizeof *ids) == 0,
                  "\"%s\" is not split as expected", cases[c].text);
        free(ids);
    }
    nsc_tokenizer_free(tok);
}

Test(tokenizer, buffers_and_tensors) {
    nsc_tokenizer *tok = load_bpe();
    const char *text = "Hello world, hello tokens";
    int64_t all[64], few[2] = { -1, -1 }, guard[3] = { -7, -7, -7 };
    int64_t n = nsc_tokenizer_encode(tok, text, strlen(text), all, 64);
    cr_assert(n > 3);
    cr_expect_eq(nsc_tokenizer_encode(tok, text, strlen(text), guard, 2), n, "returns the need");
    cr_expect(guard[0] == all[0] && guard[1] == all[1] && guard[2] == -7, "writes only max_ids");
    cr_expect_eq(nsc_tokenizer_encode(tok, text, strlen(text), few, 0), n);
    cr_expect_eq(few[0], -1);
    cr_expect_eq(nsc_tokenizer_encode(tok, "", 0, NULL, 0), 0);
    nsc_tensor *t = nsc_tokenizer_encode_tensor(tok, text, strlen(text));
    cr_assert_not_null(t);
    cr_expect_eq(nsc_tensor_dtype(t), NSC_I64);
    cr_expect_eq(nsc_tensor_numel(t), n);
    cr_expect_eq(memcmp(nsc_tensor_data(t), all, (size_t)n * 8), 0);
    nsc_free(t);
    t = nsc_tokenizer_encode_tensor(tok, "", 0);
    cr_expect(t && nsc_tensor_numel(t) == 0);
    nsc_free(t);
    char small[6];
    cr_expect_eq(nsc_tokenizer_decode(tok, all, n, small, sizeof small), (int64_t)strlen(text));
    cr_expect_str_eq(small, "Hello", "truncated output is NUL-terminated");
    cr_expect_eq(nsc_tokenizer_decode(tok, all, 0, small, sizeof small), 0);
    cr_expect_str_eq(small, "");
    nsc_tokenizer_free(tok);
}

Test(tokenizer, vocabulary_queries) {
    nsc_tokenizer *tok = load_bpe();
    cr_expect_eq(nsc_tokenizer_token_id(tok, "<|endoftext|>"), 0);
    int64_t space = nsc_tokenizer_token_id(tok, "\xc4\xa0"); // "Ġ", the space byte
    cr_expect(space > 0);
    cr_expect_str_eq(nsc_tokenizer_token(tok, space), "\xc4\xa0");
    cr_expect_eq(nsc_tokenizer_token_id(tok, " "), -1, "a raw space is no byte-level token");
    cr_expect_null(nsc_tokenizer_token(tok, 800));
    cr_expect_null(nsc_tokenizer_token(tok, -1));
    cr_expect_eq(nsc_tokenizer_token_id(NULL, "a"), -1);
    cr_expect_eq(nsc_tokenizer_vocab_size(NULL), 0);
    cr_expect(!nsc_tokenizer_is_bpe(NULL));
    nsc_tokenizer_free(tok);
    nsc_tokenizer_free(NULL);
}

Test(tokenizer, ids_splitting_a_character_decode_to_its_bytes) {
    nsc_tokenizer *tok = load_bpe();
    const char *emoji = "\xf0\x9f\xa7\xac"; // U+1F9EC: not in the vocabulary as a whole
    int64_t n;
    int64_t *ids = encode(tok, emoji, 4, &n);
    cr_assert(n >= 2, "%lld ids", (long long)n);
    char part[5];
    int64_t len = nsc_tokenizer_decode(tok, ids, 1, part, sizeof part);
    cr_expect(len >= 1 && len < 4 && memcmp(part, emoji, (size_t)len) == 0,
              "the first id gives the first bytes of the character");
    free(ids);
    nsc_tokenizer_free(tok);
}

// --- the character vocabulary ---

Test(tokenizer, character_vocabulary) {
    int64_t before = live_blocks();
    nsc_tokenizer *tok = nsc_tokenizer_load(fixture("chars"));
    cr_assert_not_null(tok, "%s", nsc_last_error());
    cr_expect(!nsc_tokenizer_is_bpe(tok));
    const char *text = "Hi \xc3\xa9t\xc3\xa9!\n<|endoftext|>\t~";
    int64_t n, len;
    int64_t *ids = encode(tok, text, strlen(text), &n);
    cr_expect_eq(n, 11, "one id per character, one for the special token");
    cr_expect_eq(ids[0], 'H' - 32);
    cr_expect_eq(ids[8], nsc_tokenizer_token_id(tok, "<|endoftext|>"));
    char *back = decode(tok, ids, n, &len);
    cr_expect_str_eq(back, text);
    free(back);
    free(ids);
    cr_expect_eq(nsc_tokenizer_encode(tok, "ok \xc3\xa0", 5, NULL, 0), -1);
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "character U+00E0 '\xc3\xa0' at byte 3: expected one in "
                                       "the vocabulary"),
              "%s", nsc_last_error());
    cr_expect(strstr(nsc_last_error(), "chars/vocab.json"), "%s", nsc_last_error());
    cr_expect_eq(nsc_tokenizer_encode(tok, "<|endoftext", 11, NULL, 0), 11, "no partial match");
    nsc_tokenizer_free(tok);
    cr_expect_eq(live_blocks(), before);
}

// --- errors ---

// A temporary directory holding the given vocab.json and merges.txt (NULL: none).
static const char *make_dir(const char *vocab, const char *merges) {
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/nsc_tok_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    const char *names[2] = { "vocab.json", "merges.txt" }, *texts[2] = { vocab, merges };
    for (int i = 0; i < 2; i++) {
        if (texts[i]) {
            char path[128];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            FILE *f = fopen(path, "wb");
            fputs(texts[i], f);
            fclose(f);
        }
    }
    return dir;
}

static void remove_dir(const char *dir) {
    char path[128];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    unlink(path);
    rmdir(dir);
}

static void expect_load_error(const char *vocab, const char *merges, nsc_status status,
                              const char *want) {
    const char *dir = make_dir(vocab, merges);
    int64_t before = live_blocks();
    nsc_tokenizer *tok = nsc_tokenizer_load(dir);
    cr_expect_null(tok, "loading <%s> should fail", vocab);
    nsc_tokenizer_free(tok);
    cr_expect_eq(nsc_last_status(), status, "<%s>: %s", vocab, nsc_last_error());
    cr_expect(strstr(nsc_last_error(), want), "<%s>:\n  message \"%s\"\n  lacks \"%s\"", vocab,
              nsc_last_error(), want);
    cr_expect(strstr(nsc_last_error(), dir), "names the file: %s", nsc_last_error());
    cr_expect_eq(live_blocks(), before, "<%s>: leaked", vocab);
    remove_dir(dir);
}

Test(tokenizer, vocab_errors) {
    expect_load_error("{\"a\": 0,", NULL, NSC_ERR_FORMAT,
                      "vocab.json: line 1, column 9: expected a string key");
    expect_load_error("[\"a\"]", NULL, NSC_ERR_FORMAT,
                      "expected a non-empty object of token: id (line 1, column 1)");
    expect_load_error("{}", NULL, NSC_ERR_FORMAT, "expected a non-empty object");
    expect_load_error("{\"a\": -1}", NULL, NSC_ERR_FORMAT,
                      "token \"a\": id: expected an integer in 0..16777215 (line 1, column 7)");
    expect_load_error("{\"a\": 1.5}", NULL, NSC_ERR_FORMAT, "id: expected an integer");
    expect_load_error("{\"a\": \"1\"}", NULL, NSC_ERR_FORMAT, "id: expected an integer");
    expect_load_error("{\"a\": 16777216}", NULL, NSC_ERR_FORMAT, "expected an integer in 0..");
    expect_load_error("{\"a\": 0, \"a\": 1}", NULL, NSC_ERR_FORMAT, "token \"a\" appears twice");
    expect_load_error("{\"a\": 0, \"b\": 0}", NULL, NSC_ERR_FORMAT,
                      "id 0 is given to \"a\" and \"b\"");
    expect_load_error("{\"\": 0}", NULL, NSC_ERR_FORMAT, "token \"\": expected 1..1024 bytes");
    expect_load_error("{\"\xff\": 0}", NULL, NSC_ERR_FORMAT,
                      "vocab.json: line 1, column 3: invalid UTF-8 in a string: a byte UTF-8 "
                      "never uses (lead byte 0xff) (byte 2)");
    expect_load_error("{\"ab\": 0}", NULL, NSC_ERR_FORMAT,
                      "token \"ab\": a character vocabulary (no merges.txt) maps single "
                      "characters, this is 2");
    expect_load_error("{\"a\": {\"b\": {\"c\": {\"d\": {}}}}}", NULL, NSC_ERR_FORMAT,
                      "nesting deeper than 4");
}

Test(tokenizer, missing_and_oversized_files) {
    int64_t before = live_blocks();
    cr_expect_null(nsc_tokenizer_load("/nonexistent/tok"));
    cr_expect_eq(nsc_last_status(), NSC_ERR_IO);
    cr_expect(strstr(nsc_last_error(), "tokenizer: /nonexistent/tok/vocab.json: cannot open"), "%s",
              nsc_last_error());
    cr_expect_null(nsc_tokenizer_load(NULL));
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect_null(nsc_tokenizer_load_files(NULL, NULL));
    cr_expect_null(nsc_tokenizer_load_files(fixture("bpe/vocab.json"), "/nonexistent/merges"));
    cr_expect(strstr(nsc_last_error(), "/nonexistent/merges: cannot open"), "%s", nsc_last_error());
    const char *dir = make_dir("{\"a\": 0}", NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    cr_assert_eq(truncate(path, ((off_t)64 << 20) + 1), 0); // sparse
    cr_expect_null(nsc_tokenizer_load(dir));
    cr_expect_eq(nsc_last_status(), NSC_ERR_FORMAT);
    cr_expect(strstr(nsc_last_error(), "67108865 bytes is over the limit of 67108864 bytes"), "%s",
              nsc_last_error());
    remove_dir(dir);
    cr_expect_eq(live_blocks(), before);
}

// A small byte-level vocabulary: every byte's character plus "ab" and "abc".
static char *byte_vocab(bool drop_byte_z) {
    nsci_buf b;
    nsci_buf_init(&b);
    nsci_buf_puts(&b, "{");
    for (int byte = 0; byte < 256; byte++) {
        if (drop_byte_z && byte == 'z') {
            continue;
        }
        char utf8[4];
        int n = nsci_tok_utf8_put(utf8, nsci_tok_byte_char((uint8_t)byte));
        nsci_buf_json_string(&b, utf8, (size_t)n);
        nsci_buf_printf(&b, ": %d, ", byte);
    }
    nsci_buf_puts(&b, "\"ab\": 256, \"abc\": 257}");
    char *text = strdup(b.data);
    nsci_buf_free(&b);
    return text;
}

Test(tokenizer, merges_errors) {
    char *vocab = byte_vocab(false);
    expect_load_error(vocab, "#version: 0.2\na\n", NSC_ERR_FORMAT,
                      "merges.txt: line 2: \"a\": expected two tokens separated by one space");
    expect_load_error(vocab, "a b c\n", NSC_ERR_FORMAT, "line 1: \"a b c\": expected two tokens");
    expect_load_error(vocab, "a  b\n", NSC_ERR_FORMAT, "expected two tokens");
    expect_load_error(vocab, " ab\n", NSC_ERR_FORMAT, "expected two tokens");
    expect_load_error(vocab, "a b\nq xyz\n", NSC_ERR_FORMAT,
                      "line 2: \"q xyz\": the right token is not in the vocabulary");
    expect_load_error(vocab, "xyz q\n", NSC_ERR_FORMAT, "the left token is not in the vocabulary");
    expect_load_error(vocab, "b c\n", NSC_ERR_FORMAT,
                      "\"b c\": the merged token is not in the vocabulary");
    const char *dir = make_dir(vocab, "#version: 0.2\r\na b\r\n\r\nab c\r\n");
    nsc_tokenizer *tok = nsc_tokenizer_load(dir);
    cr_assert_not_null(tok, "CRLF and blank lines are accepted: %s", nsc_last_error());
    int64_t ids[4];
    cr_expect_eq(nsc_tokenizer_encode(tok, "abcab", 5, ids, 4), 2);
    cr_expect(ids[0] == 257 && ids[1] == 256);
    nsc_tokenizer_free(tok);
    remove_dir(dir);
    free(vocab);
}

Test(tokenizer, a_byte_without_a_token_fails_encoding) {
    char *vocab = byte_vocab(true);
    const char *dir = make_dir(vocab, "a b\n");
    nsc_tokenizer *tok = nsc_tokenizer_load(dir);
    cr_assert_not_null(tok, "%s", nsc_last_error());
    cr_expect_eq(nsc_tokenizer_encode(tok, "ab", 2, NULL, 0), 1);
    cr_expect_eq(nsc_tokenizer_encode(tok, "abz", 3, NULL, 0), -1);
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "byte 0x7a: expected a token for it in the vocabulary"),
              "%s", nsc_last_error());
    nsc_tokenizer_free(tok);
    remove_dir(dir);
    free(vocab);
}

Test(tokenizer, encode_and_decode_errors) {
    nsc_tokenizer *tok = load_bpe();
    int64_t before = live_blocks();
    const char *bad[] = { "ok \xff", "ok \xc3", "ok \xc0\xaf", "ok \xed\xa0\x80",
                          "ok \xf4\x90\x80\x80" };
    for (int i = 0; i < NSCI_ARRAY_LEN(bad); i++) {
        cr_expect_eq(nsc_tokenizer_encode(tok, bad[i], strlen(bad[i]), NULL, 0), -1);
        cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
        cr_expect(strstr(nsc_last_error(), "byte 3 ("), "%s", nsc_last_error());
        cr_expect(strstr(nsc_last_error(), "expected valid UTF-8 text"));
    }
    cr_expect_eq(nsc_tokenizer_encode(NULL, "a", 1, NULL, 0), -1);
    cr_expect_eq(nsc_tokenizer_encode(tok, NULL, 1, NULL, 0), -1);
    cr_expect_eq(nsc_tokenizer_encode(tok, "a", 1, NULL, 5), -1);
    cr_expect_eq(nsc_tokenizer_encode(tok, "a", 1, NULL, -1), -1);
    cr_expect_null(nsc_tokenizer_encode_tensor(tok, "\xff", 1));
    const int64_t ids[] = { 5, 800 }, neg[] = { -1 };
    char out[16] = "unchanged";
    cr_expect_eq(nsc_tokenizer_decode(tok, ids, 2, out, sizeof out), -1);
    cr_expect_eq(nsc_last_status(), NSC_ERR_ARG);
    cr_expect(strstr(nsc_last_error(), "id 800 at position 1: expected an id of the vocabulary, "
                                       "0..799"),
              "%s", nsc_last_error());
    cr_expect_str_eq(out, "unchanged", "nothing written on failure");
    cr_expect_eq(nsc_tokenizer_decode(tok, neg, 1, out, sizeof out), -1);
    cr_expect_eq(nsc_tokenizer_decode(tok, NULL, 1, out, sizeof out), -1);
    cr_expect_eq(nsc_tokenizer_decode(NULL, ids, 1, out, sizeof out), -1);
    cr_expect_eq(live_blocks(), before);
    nsc_tokenizer_free(tok);
}

Test(tokenizer, gaps_in_ids_fail_decoding) {
    const char *dir = make_dir("{\"a\": 0, \"b\": 5}", NULL);
    nsc_tokenizer *tok = nsc_tokenizer_load(dir);
    cr_assert_not_null(tok);
    cr_expect_eq(nsc_tokenizer_vocab_size(tok), 6);
    const int64_t ids[] = { 3 };
    cr_expect_eq(nsc_tokenizer_decode(tok, ids, 1, NULL, 0), -1);
    cr_expect(strstr(nsc_last_error(), "id 3 at position 0"));
    nsc_tokenizer_free(tok);
    remove_dir(dir);
}

// --- resources ---

Test(tokenizer, out_of_memory_sweep) {
    int64_t before = live_blocks();
    const char *text = "Hello world, it's   CJK \xe4\xbd\xa0\xe5\xa5\xbd and <|endoftext|> end";
    bool succeeded = false;
    for (int k = 1; k < 400 && !succeeded; k++) {
        nsc_mem_fail_after(k);
        nsc_tokenizer *tok = nsc_tokenizer_load(fixture("bpe"));
        nsc_tensor *ids = tok ? nsc_tokenizer_encode_tensor(tok, text, strlen(text)) : NULL;
        nsc_mem_fail_after(0);
        succeeded = ids != NULL;
        if (!succeeded) {
            cr_expect_eq(nsc_last_status(), NSC_ERR_OOM, "k=%d: %s", k, nsc_last_error());
        }
        nsc_free(ids);
        nsc_tokenizer_free(tok);
        cr_expect_eq(live_blocks(), before, "k=%d leaked", k);
    }
    cr_expect(succeeded);
}

Test(tokenizer, cache_turnover_keeps_results) {
    nsc_tokenizer *tok = load_bpe();
    char word[32];
    int64_t first[8], again[8];
    int64_t n = nsc_tokenizer_encode(tok, " tokenizers", 11, first, 8);
    for (int i = 0; i < 5000; i++) { // more distinct words than the cache holds
        snprintf(word, sizeof word, " w%dq", i);
        cr_assert(nsc_tokenizer_encode(tok, word, strlen(word), NULL, 0) > 0);
    }
    cr_expect_eq(nsc_tokenizer_encode(tok, " tokenizers", 11, again, 8), n);
    cr_expect_eq(memcmp(first, again, (size_t)n * 8), 0);
    nsc_tokenizer_free(tok);
}

typedef struct worker {
    const nsc_tokenizer *tok;
    const char *text;
    size_t len;
    int64_t n;
    int64_t ids[4096];
} worker;

static void *encode_worker(void *arg) {
    worker *w = arg;
    for (int i = 0; i < 20; i++) {
        w->n = nsc_tokenizer_encode(w->tok, w->text, w->len, w->ids, 4096);
    }
    return NULL;
}

Test(tokenizer, concurrent_encoding_agrees) {
    nsc_tokenizer *tok = load_bpe();
    size_t len;
    char *corpus = nsci_read_file(fixture("bpe/corpus.txt"), 0, &len);
    len = NSCI_MIN(len, (size_t)6000);
    while (len > 0 && ((unsigned char)corpus[len] & 0xC0) == 0x80) {
        len--; // cut on a character boundary
    }
    static worker w[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker){ .tok = tok, .text = corpus, .len = len };
        pthread_create(&threads[i], NULL, encode_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
    }
    cr_assert(w[0].n > 0 && w[0].n <= 4096, "%lld", (long long)w[0].n);
    for (int i = 1; i < 4; i++) {
        cr_expect(w[i].n == w[0].n && memcmp(w[i].ids, w[0].ids, (size_t)w[0].n * 8) == 0);
    }
    nsci_free(corpus);
    nsc_tokenizer_free(tok);
}
