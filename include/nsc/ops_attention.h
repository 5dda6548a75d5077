// Scaled dot-product attention as GPT-2 computes it in Hugging Face's eager
// path, fused (scores in blocks of queries, never the whole [B, H, T, S]),
// and the additive mask it uses. See nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_ATTENTION_H
#define NSC_OPS_ATTENTION_H

#include <stdbool.h>
#include <stdint.h>

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// softmax(q k^T * scale + bias) v with heads moved after time.
// q: [B, H, T, D]; k: [B, H, S, D]; v: [B, H, S, Dv]; mask: [B, S] of any
// dtype (nonzero: attend; Hugging Face's attention_mask) or NULL. Returns
// [B, T, H, Dv] (so merging heads into [B, T, H*Dv] is a view). bias is what
// nsc_attention_bias gives: 0 where query i may attend key j, the dtype's
// lowest value elsewhere, added before the softmax (taken in q's dtype). With
// causal, query i sits at position S - T + i (the cache holds S - T earlier
// keys; S >= T). A query that may attend no key gets weight 1/S on every key,
// as the additive mask gives in PyTorch. q, k, v: f32 or f64, one dtype.
nsc_tensor *nsc_attention(nsc_tensor *q, nsc_tensor *k, nsc_tensor *v, nsc_tensor *mask,
                          double scale, bool causal);

// The additive mask of nsc_attention: [B, 1, T, S] (or [1, 1, T, S] without
// mask) of dtype (f32 or f64) on device: 0 where allowed, the dtype's lowest
// value where mask is 0 or (causal) key j > S - T + i. mask: [B, S] or NULL.
nsc_tensor *nsc_attention_bias(nsc_tensor *mask, int64_t t, int64_t s, bool causal, nsc_dtype dtype,
                               nsc_device device);

#ifdef __cplusplus
}
#endif

#endif
