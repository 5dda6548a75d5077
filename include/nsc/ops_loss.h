// Losses and dropout. See nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_LOSS_H
#define NSC_OPS_LOSS_H

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nsc_reduction {
    NSC_REDUCTION_MEAN,
    NSC_REDUCTION_SUM,
    NSC_REDUCTION_NONE,
} nsc_reduction;

// Cross-entropy of logits [N, C] (or [C]) against i64 targets [N] (or []).
// Targets equal to ignore_index contribute nothing, also to the mean's count
// (torch uses -100). MEAN over no counted target gives NaN, as torch.
nsc_tensor *nsc_cross_entropy(nsc_tensor *logits, nsc_tensor *target, nsc_reduction reduction,
                              int64_t ignore_index);
// Negative log-likelihood of log-probabilities [N, C] against targets [N].
nsc_tensor *nsc_nll_loss(nsc_tensor *log_probs, nsc_tensor *target, nsc_reduction reduction,
                         int64_t ignore_index);
// (a - b)^2 reduced; a and b broadcast (float dtypes, promoted).
nsc_tensor *nsc_mse_loss(nsc_tensor *a, nsc_tensor *b, nsc_reduction reduction);
// Zeroes each element with probability p and scales the rest by 1/(1-p) when
// train (p == 1 gives x * 0); returns a new reference to x itself otherwise. p
// outside [0, 1] fails either way. gen NULL uses the thread's default
// generator; a training call with p > 0 draws 64 bits from it (also on META),
// so a fixed seed repeats the mask on any thread count.
nsc_tensor *nsc_dropout(nsc_tensor *x, double p, bool train, nsc_generator *gen);

#ifdef __cplusplus
}
#endif

#endif
