// Matrix products. See nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_LINALG_H
#define NSC_OPS_LINALG_H

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// torch.matmul: 1-D @ 1-D is a dot product; 2-D @ 2-D a matrix product; a
// 1-D operand gains (then loses) a dim; batch dims broadcast. Transposed and
// strided operands go to BLAS as they are, without copies. f32 and f64.
nsc_tensor *nsc_matmul(nsc_tensor *a, nsc_tensor *b);

// torch.nn.functional.linear: x @ weight^T + bias. x: [..., in]; weight:
// [out, in]; bias: [out] or NULL. Pass nsc_transpose(w, 0, 1) for a weight
// stored [in, out] (GPT-2's Conv1D): no copy is made.
nsc_tensor *nsc_linear(nsc_tensor *x, nsc_tensor *weight, nsc_tensor *bias);

#ifdef __cplusplus
}
#endif

#endif
