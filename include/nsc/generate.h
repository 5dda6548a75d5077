// Autoregressive generation with a GPT-2 (nsc/gpt2.h): greedy or sampled
// (temperature, top-k), a per-layer key/value cache, stop tokens, and module
// call indices that number the steps (step k is call k of every module), so
// an intervention can address "the third generated token" as nnsight's
// .next() does.
#ifndef NSC_GENERATE_H
#define NSC_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/module.h"
#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// --- the key/value cache ---

// Keys and values of every layer for the tokens seen so far: per layer
// [B, H, capacity, D] buffers filled up to the length, grown by doubling
// when a step needs more (never per step). Holds what the attention's
// hook_k and hook_v returned, so an edit there at step 0 is what later steps
// attend to. Not differentiable: writes happen without recording.
typedef struct nsc_kv_cache nsc_kv_cache;

// A cache for model (a GPT-2 root) and batch rows, with room for capacity
// tokens before it grows (0: grow as needed). Returns it (caller
// nsc_kv_cache_free()s) or NULL.
nsc_kv_cache *nsc_kv_cache_new(const nsc_module *model, int64_t batch, int64_t capacity);
void nsc_kv_cache_free(nsc_kv_cache *cache);
// Tokens whose keys and values the cache holds (the past length).
int64_t nsc_kv_cache_length(const nsc_kv_cache *cache);
// Forgets every token (capacity kept).
void nsc_kv_cache_reset(nsc_kv_cache *cache);
// Tokens the buffers hold before growing.
int64_t nsc_kv_cache_capacity(const nsc_kv_cache *cache);

// Makes model's forward read and extend cache (NULL: run without one). While
// attached, input_ids hold only the new tokens, attention_mask covers past
// and new tokens ([B, past + T]) and default position ids start at the past
// length. A call that fails or stops anywhere, output hooks of lm_head and
// the root included, leaves the length unchanged.
// The model does not own the cache: detach before freeing it. A trace on
// the model runs with the cache as a plain call does (its shape scan reads
// the length and writes nothing); a generation trace refuses it, as
// nsc_generate does.
nsc_status nsc_gpt2_set_cache(nsc_module *model, nsc_kv_cache *cache);

// --- generation ---

typedef struct nsc_generate_options {
    int64_t max_new_tokens; // tokens to add per row (>= 0)
    bool sample;            // false: greedy (argmax, first index on ties)
    double temperature;     // sampling: logits / temperature (> 0)
    int64_t top_k;          // sampling: keep the k largest logits (0: all)
    uint64_t seed;          // sampling: Philox seed; the same seed gives the same tokens
    int64_t stop_token;     // a row that emits it stops (-1: none)
    bool use_cache;         // false: every step reruns the whole sequence
} nsc_generate_options;

// Greedy, 20 tokens, temperature 1, no top-k, seed 0, no stop token, cache on.
nsc_generate_options nsc_generate_options_default(void);

// Generates from input_ids [B, T] (i64; left-padded with attention_mask [B, T]
// when prompts differ in length, or NULL). Resets the model's call counters,
// then step 0 runs the prompt and step k one new token per row; position ids
// come from the mask as Hugging Face computes them (nsc_gpt2_position_ids).
// A row that emits the stop token is filled with it from then on (HF's
// pad_token_id = eos); generation ends when every row has stopped. Finally
// the root's child "generator" (an identity, type "Generator") is called
// once with the tokens [B, T + n], and what it returns is written to
// *tokens_out (caller frees). Runs without grad recording. Returns NSC_OK,
// an error, or NSC_STOPPED (a hook stopped a step: *tokens_out is NULL).
// input_ids on the model's device (torch's rule): tokens are chosen on the
// host, each step's inputs are uploaded to input_ids' device, and the tokens
// are returned there.
nsc_status nsc_generate(nsc_module *model, nsc_tensor *input_ids, nsc_tensor *attention_mask,
                        const nsc_generate_options *options, nsc_tensor **tokens_out);

#ifdef __cplusplus
}
#endif

#endif
