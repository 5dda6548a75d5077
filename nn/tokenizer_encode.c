// Text in and out: UTF-8, GPT-2's pre-tokenizer regex written out by hand,
// special tokens, encoding (BPE or one id per character) and decoding.
#include <string.h>

#include "nn/tokenizer_impl.h"

// --- UTF-8 ---

int nsci_tok_utf8_next(const char *s, size_t len, size_t pos, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s + pos;
    size_t left = len - pos;
    int n = p[0] < 0x80             ? 1
            : (p[0] & 0xE0) == 0xC0 ? 2
            : (p[0] & 0xF0) == 0xE0 ? 3
            : (p[0] & 0xF8) == 0xF0 ? 4
                                    : 0;
    if (n == 0 || (size_t)n > left) {
        return 0;
    }
    uint32_t c = n == 1 ? p[0] : (uint32_t)(p[0] & (0x7F >> n));
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            return 0;
        }
        c = c << 6 | (p[i] & 0x3F);
    }
    static const uint32_t min_for_length[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    if (c < min_for_length[n] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        return 0; // overlong, out of range, or a surrogate
    }
    *cp = c;
    return n;
}

int nsci_tok_utf8_put(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Fails with the offset of the first byte that is not valid UTF-8, if any.
static nsc_status check_utf8(const char *text, size_t len) {
    uint32_t cp;
    for (size_t pos = 0; pos < len;) {
        int n = nsci_tok_utf8_next(text, len, pos, &cp);
        if (n == 0) {
            return nsci_fail(NSC_ERR_ARG,
                             "tokenizer_encode: byte %zu (0x%02x): expected valid "
                             "UTF-8 text",
                             pos, (unsigned char)text[pos]);
        }
        pos += (size_t)n;
    }
    return NSC_OK;
}

// --- the GPT-2 pre-tokenizer ---
// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// The text is valid UTF-8 (checked before), so decoding here cannot fail.

typedef enum char_class {
    CLASS_LETTER,
    CLASS_NUMBER,
    CLASS_SPACE,
    CLASS_OTHER
} char_class;

static char_class class_of(uint32_t cp) {
    return nsci_tok_is_letter(cp)   ? CLASS_LETTER
           : nsci_tok_is_number(cp) ? CLASS_NUMBER
           : nsci_tok_is_space(cp)  ? CLASS_SPACE
                                    : CLASS_OTHER;
}

// End of the run of characters of class k starting at pos.
static size_t run_end(const char *s, size_t len, size_t pos, char_class k) {
    uint32_t cp;
    while (pos < len) {
        int n = nsci_tok_utf8_next(s, len, pos, &cp);
        if (class_of(cp) != k) {
            break;
        }
        pos += (size_t)n;
    }
    return pos;
}

static size_t contraction(const char *s, size_t len, size_t pos) {
    char a = pos + 1 < len ? s[pos + 1] : 0, b = pos + 2 < len ? s[pos + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        return 2;
    }
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        return 3;
    }
    return 0;
}

// End of the pre-token that starts at pos (pos < len).
static size_t next_piece(const char *s, size_t len, size_t pos) {
    uint32_t cp, next_cp;
    int n = nsci_tok_utf8_next(s, len, pos, &cp);
    if (cp == '\'' && contraction(s, len, pos)) {
        return pos + contraction(s, len, pos);
    }
    // " ?X+": an optional ASCII space, then a run of one class other than space.
    size_t start = pos;
    char_class k = class_of(cp);
    if (cp == ' ' && pos + 1 < len) {
        nsci_tok_utf8_next(s, len, pos + 1, &next_cp);
        if (class_of(next_cp) != CLASS_SPACE) {
            start = pos + 1;
            k = class_of(next_cp);
        }
    }
    if (k != CLASS_SPACE) {
        return run_end(s, len, start, k);
    }
    // "\s+(?!\S)" keeps the last space for the next word; "\s+" takes a
    // lone one, or the whole run at the end of the text.
    size_t end = pos + (size_t)n, last = pos;
    while (end < len) {
        int m = nsci_tok_utf8_next(s, len, end, &next_cp);
        if (!nsci_tok_is_space(next_cp)) {
            break;
        }
        last = end;
        end += (size_t)m;
    }
    return end < len && last > pos ? last : end;
}

// --- encoding ---

static nsc_status encode_chars(const nsc_tokenizer *tok, const char *s, size_t len, size_t base,
                               nsci_tok_out *out) {
    uint32_t cp;
    for (size_t pos = 0; pos < len;) {
        int n = nsci_tok_utf8_next(s, len, pos, &cp);
        int32_t id = nsci_tok_find(tok, s + pos, (size_t)n);
        if (id < 0) {
            return nsci_fail(NSC_ERR_ARG,
                             "tokenizer_encode: character U+%04X '%.*s' at byte %zu: "
                             "expected one in the vocabulary (%s)",
                             (unsigned)cp, n, s + pos, base + pos, tok->label);
        }
        nsci_tok_push(out, id);
        pos += (size_t)n;
    }
    return NSC_OK;
}

static nsc_status encode_plain(const nsc_tokenizer *tok, const char *s, size_t len, size_t base,
                               nsci_tok_out *out) {
    if (!tok->is_bpe) {
        return encode_chars(tok, s, len, base, out);
    }
    for (size_t pos = 0; pos < len;) {
        size_t end = next_piece(s, len, pos);
        nsc_status status = nsci_tok_bpe_word(tok, s + pos, end - pos, out);
        if (status != NSC_OK) {
            return status;
        }
        pos = end;
    }
    return NSC_OK;
}

// The special token starting at s[pos] (longest first), or -1.
static int32_t special_at(const nsc_tokenizer *tok, const char *s, size_t len, size_t pos) {
    for (int i = 0; i < tok->n_special && len - pos >= 5 && s[pos] == '<'; i++) {
        int32_t id = tok->special[i];
        size_t n = (size_t)tok->tok_bytes[id];
        if (n <= len - pos && memcmp(s + pos, tok->text + tok->tok_offset[id], n) == 0) {
            return id;
        }
    }
    return -1;
}

static nsc_status encode_all(const nsc_tokenizer *tok, const char *text, size_t len,
                             nsci_tok_out *out) {
    size_t start = 0;
    for (size_t pos = 0; pos <= len; pos++) {
        int32_t id = pos < len ? special_at(tok, text, len, pos) : -1;
        if (id < 0 && pos < len) {
            continue;
        }
        nsc_status s = encode_plain(tok, text + start, pos - start, start, out);
        if (s != NSC_OK) {
            return s;
        }
        if (id >= 0) {
            nsci_tok_push(out, id);
            pos += (size_t)tok->tok_bytes[id] - 1;
            start = pos + 1;
        }
    }
    return NSC_OK;
}

int64_t nsc_tokenizer_encode(const nsc_tokenizer *tok, const char *text, size_t text_bytes,
                             int64_t *ids, int64_t max_ids) {
    if (!tok || (!text && text_bytes > 0) || max_ids < 0 || (!ids && max_ids > 0)) {
        nsci_fail(NSC_ERR_ARG,
                  "tokenizer_encode: %s: expected a tokenizer, text and room for "
                  "max_ids >= 0 ids",
                  !tok          ? "tokenizer is NULL"
                  : max_ids < 0 ? "max_ids < 0"
                                : "NULL buffer");
        return -1;
    }
    nsci_tok_out out = { ids, max_ids, 0 };
    if (check_utf8(text, text_bytes) != NSC_OK ||
        encode_all(tok, text, text_bytes, &out) != NSC_OK) {
        return -1;
    }
    return out.n;
}

nsc_tensor *nsc_tokenizer_encode_tensor(const nsc_tokenizer *tok, const char *text,
                                        size_t text_bytes) {
    int64_t n = nsc_tokenizer_encode(tok, text, text_bytes, NULL, 0);
    if (n < 0) {
        return NULL;
    }
    nsc_tensor *t = nsc_empty(NSC_I64, NSC_CPU, 1, &n);
    if (t && n > 0 && nsc_tokenizer_encode(tok, text, text_bytes, nsc_tensor_data(t), n) != n) {
        nsc_free(t);
        return NULL;
    }
    return t;
}

// --- decoding ---

typedef struct text_out {
    char *text;
    size_t cap, n;
} text_out;

static void put_byte(text_out *o, char c) {
    if (o->n + 1 < o->cap) {
        o->text[o->n] = c;
    }
    o->n++;
}

// A BPE token's bytes through the byte map; a token with a character outside
// the map (not byte-level) gives its own UTF-8 bytes, as Hugging Face's decoder.
static void decode_token(const nsc_tokenizer *tok, const char *s, size_t n, text_out *o) {
    uint32_t cp;
    bool mapped = tok->is_bpe;
    for (size_t pos = 0; mapped && pos < n;) {
        int len = nsci_tok_utf8_next(s, n, pos, &cp);
        mapped = len > 0 && nsci_tok_char_byte(cp) >= 0;
        pos += (size_t)(len > 0 ? len : 1);
    }
    for (size_t pos = 0; pos < n;) {
        int len = mapped ? nsci_tok_utf8_next(s, n, pos, &cp) : 1;
        put_byte(o, mapped ? (char)nsci_tok_char_byte(cp) : s[pos]);
        pos += (size_t)len;
    }
}

int64_t nsc_tokenizer_decode(const nsc_tokenizer *tok, const int64_t *ids, int64_t n_ids,
                             char *text, size_t text_bytes) {
    if (!tok || n_ids < 0 || (!ids && n_ids > 0) || (!text && text_bytes > 0)) {
        nsci_fail(NSC_ERR_ARG, "tokenizer_decode: expected a tokenizer, n_ids >= 0 ids and a "
                               "buffer of text_bytes");
        return -1;
    }
    for (int64_t i = 0; i < n_ids; i++) {
        if (!nsc_tokenizer_token(tok, ids[i])) {
            nsci_fail(NSC_ERR_ARG,
                      "tokenizer_decode: id %lld at position %lld: expected an id "
                      "of the vocabulary, 0..%lld (%s)",
                      (long long)ids[i], (long long)i, (long long)tok->n_ids - 1, tok->label);
            return -1;
        }
    }
    text_out o = { text, text_bytes, 0 };
    for (int64_t i = 0; i < n_ids; i++) {
        decode_token(tok, tok->text + tok->tok_offset[ids[i]], (size_t)tok->tok_bytes[ids[i]], &o);
    }
    if (text_bytes > 0) {
        text[NSCI_MIN(o.n, text_bytes - 1)] = '\0';
    }
    return (int64_t)o.n;
}
