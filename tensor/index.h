// Shared helpers of the indexing and loss families (op_index.c, op_gather.c,
// op_index_more.c, op_loss.c): index checks whose messages name the bad value
// and its position, and zeros on a gradient's device for backward rules.
#ifndef NSC_TENSOR_INDEX_H
#define NSC_TENSOR_INDEX_H

#include "tensor/tensor_impl.h"

// Formats the coordinates of row-major position i in shape as "[a,b]". Returns buf.
char *nsci_position_str(char *buf, size_t buf_bytes, int ndim, const int64_t *shape, int64_t i);

// Fails c unless index is i64 (what names it in the message).
nsc_status nsci_check_index_dtype(nsci_call *c, const nsc_tensor *index, const char *what);

// Fails c naming the first value of index (contiguous CPU i64) outside
// [0, size) and its position; NSC_OK when all are in range.
nsc_status nsci_check_index(nsci_call *c, const nsc_tensor *index, int64_t size,
                            const char *what);

// Zeros of shape with like's dtype, device and target device (new reference).
nsc_tensor *nsci_zeros_on(nsc_tensor *like, int ndim, const int64_t *shape);

#endif
