// Matrix products. See nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_LINALG_H
#define NSC_OPS_LINALG_H

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// torch.matmul (a 1-D operand gains, then loses, a dim; batch dims
// broadcast); f32, f64 or i64 (wrapping), one dtype. Strided and broadcast
// operands reach BLAS uncopied. New reference, or NULL (0-dim, shapes, dtypes).
nsc_tensor *nsc_matmul(nsc_tensor *a, nsc_tensor *b);

// F.linear: x [..., in] @ weight [out, in]ᵀ + bias ([out], [1] or 0-dim; NULL
// for none). For a weight stored [in, out] (GPT-2's Conv1D) pass
// nsc_transpose(w, 0, 1): no copy is made. New reference, or NULL as matmul.
nsc_tensor *nsc_linear(nsc_tensor *x, nsc_tensor *weight, nsc_tensor *bias);

#ifdef __cplusplus
}
#endif

#endif
