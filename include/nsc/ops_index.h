// Indexing, joins and masks. Index tensors are i64; negative indices are out
// of range (as in torch.gather). See nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_INDEX_H
#define NSC_OPS_INDEX_H

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// Rows of weight [V, C] picked by ids (any shape): [..., C]. An id outside
// [0, V) fails naming it and its position.
nsc_tensor *nsc_embedding(nsc_tensor *weight, nsc_tensor *ids);
// Entries of x along dim at index (1-D).
nsc_tensor *nsc_index_select(nsc_tensor *x, int dim, nsc_tensor *index);
// out[i][j] = x[index[i][j]][j] for dim 0, and so on (torch.gather).
nsc_tensor *nsc_gather(nsc_tensor *x, int dim, nsc_tensor *index);
// A copy of x with src added at index along dim (torch.scatter_add).
nsc_tensor *nsc_scatter_add(nsc_tensor *x, int dim, nsc_tensor *index, nsc_tensor *src);
// A copy of x with src's slices added at index (1-D) along dim (torch.index_add).
nsc_tensor *nsc_index_add(nsc_tensor *x, int dim, nsc_tensor *index, nsc_tensor *src);
// The k largest (or smallest) along dim, sorted: values and i64 indices, both
// new references written only on success. NaN ranks above every number (as
// torch); equal values keep their order (lower index first).
nsc_status nsc_topk(nsc_tensor *x, int64_t k, int dim, bool largest, nsc_tensor **values,
                    nsc_tensor **indices);
// Indices of nonzero elements, [n, ndim] i64 (torch.nonzero; torch.where(cond)
// as one tensor). Its shape depends on the data, so it fails on META inputs.
nsc_tensor *nsc_nonzero(nsc_tensor *x);
// ids (i64, any shape) as one-hot rows: [..., num_classes] i64. num_classes -1
// uses max(ids) + 1 (as torch), which needs the values: it fails on META.
nsc_tensor *nsc_one_hot(nsc_tensor *ids, int64_t num_classes);
// Lower / upper triangle of the last two dims; others zero (torch.tril/triu).
nsc_tensor *nsc_tril(nsc_tensor *x, int64_t diagonal);
nsc_tensor *nsc_triu(nsc_tensor *x, int64_t diagonal);

// Concatenates n tensors along dim (shapes agree elsewhere; dtypes promote).
// 1-D tensors of size 0 are skipped whatever the other shapes (torch 1.13's
// legacy rule); 0-dim tensors are refused. xs borrowed.
nsc_tensor *nsc_cat(int n, nsc_tensor *const *xs, int dim);
// Stacks n same-shaped tensors along a new dim.
nsc_tensor *nsc_stack(int n, nsc_tensor *const *xs, int dim);

#ifdef __cplusplus
}
#endif

#endif
