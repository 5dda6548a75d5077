// Tokenizers: GPT-2's byte-level BPE (Hugging Face vocab.json + merges.txt)
// and plain character vocabularies (vocab.json alone), behind one interface.
#ifndef NSC_TOKENIZER_H
#define NSC_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nsc/base.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- types ---

// A loaded vocabulary (and merges). Opaque. Encoding and decoding may run
// from several threads at once (the BPE cache is locked).
typedef struct nsc_tokenizer nsc_tokenizer;

// --- loading ---

// Loads dir/vocab.json and, when dir/merges.txt exists, dir/merges.txt.
// With merges the tokenizer is GPT-2 byte-level BPE; without, a character
// vocabulary: every key of vocab.json is one UTF-8 character. In both kinds
// keys of the form "<|...|>" are special tokens, matched literally in text
// before anything else (GPT-2's "<|endoftext|>"). Files are limited to 64 MiB
// and ids to 0..2^24-1. Returns a new tokenizer (caller
// nsc_tokenizer_free()s) or NULL with NSC_ERR_IO (missing or unreadable file)
// or NSC_ERR_FORMAT (the message names the file and line).
nsc_tokenizer *nsc_tokenizer_load(const char *dir);

// Same with explicit paths; merges_path NULL loads a character vocabulary.
nsc_tokenizer *nsc_tokenizer_load_files(const char *vocab_path, const char *merges_path);

// Frees the tokenizer. Accepts NULL.
void nsc_tokenizer_free(nsc_tokenizer *tok);

// --- queries ---

// True for byte-level BPE, false for a character vocabulary.
bool nsc_tokenizer_is_bpe(const nsc_tokenizer *tok);

// Largest id plus one (ids without a token may exist below it).
int64_t nsc_tokenizer_vocab_size(const nsc_tokenizer *tok);

// Id of a vocabulary entry as written in vocab.json (byte-level form for BPE,
// "Ġthe"), or -1 when absent.
int64_t nsc_tokenizer_token_id(const nsc_tokenizer *tok, const char *token);

// Vocabulary entry of id (borrowed from tok), or NULL when id has none.
const char *nsc_tokenizer_token(const nsc_tokenizer *tok, int64_t id);

// --- encoding and decoding ---

// Encodes text_bytes of UTF-8 text into ids. Writes at most max_ids ids and
// returns how many the whole text needs (call again with a larger buffer if
// that is more), or -1 with NSC_ERR_ARG on invalid UTF-8 (byte offset given),
// a character a character vocabulary lacks, or a byte BPE has no token for.
int64_t nsc_tokenizer_encode(const nsc_tokenizer *tok, const char *text, size_t text_bytes,
                             int64_t *ids, int64_t max_ids);

// Encodes text into a new 1-D i64 CPU tensor (caller nsc_free()s), or NULL.
nsc_tensor *nsc_tokenizer_encode_tensor(const nsc_tokenizer *tok, const char *text,
                                        size_t text_bytes);

// Decodes n_ids ids into text: the bytes of their tokens (for BPE, through
// GPT-2's byte map). Writes at most text_bytes - 1 bytes plus a NUL and
// returns how many bytes the whole text needs (without the NUL), or -1 with
// NSC_ERR_ARG when an id is out of range or has no token. Ids that split a
// UTF-8 character give its bytes as they are.
int64_t nsc_tokenizer_decode(const nsc_tokenizer *tok, const int64_t *ids, int64_t n_ids,
                             char *text, size_t text_bytes);

#ifdef __cplusplus
}
#endif

#endif
