// Views (share storage, never copy), copies and conversions, and in-place
// writes. See nsc/ops.h for the rules every op follows.
#ifndef NSC_OPS_VIEW_H
#define NSC_OPS_VIEW_H

#include "nsc/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

// Stop index meaning "to the end" for nsc_slice.
#define NSC_END INT64_MAX

// --- views ---

// x viewed with a new shape (one size may be -1). Fails when x's strides do
// not allow a view (torch.Tensor.view); use nsc_reshape to copy then.
nsc_tensor *nsc_view(nsc_tensor *x, int ndim, const int64_t *shape);
// A view when strides allow, otherwise a contiguous copy (torch.reshape).
nsc_tensor *nsc_reshape(nsc_tensor *x, int ndim, const int64_t *shape);
// Dims reordered: output dim i is input dim dims[i] (torch.permute).
nsc_tensor *nsc_permute(nsc_tensor *x, int ndim, const int *dims);
nsc_tensor *nsc_transpose(nsc_tensor *x, int dim0, int dim1);
// x[start:stop:step] along dim, Python rules: negative indices count from the
// end, out-of-range bounds clamp, step >= 1. stop may be NSC_END.
nsc_tensor *nsc_slice(nsc_tensor *x, int dim, int64_t start, int64_t stop, int64_t step);
// x[..., index, ...] along dim (the dim is removed); negative counts from the end.
nsc_tensor *nsc_select(nsc_tensor *x, int dim, int64_t index);
// length elements from start along dim (torch.narrow).
nsc_tensor *nsc_narrow(nsc_tensor *x, int dim, int64_t start, int64_t length);
// x broadcast to shape (stride 0 on new or size-1 dims; -1 keeps a size).
nsc_tensor *nsc_expand(nsc_tensor *x, int ndim, const int64_t *shape);
// Same as nsc_expand (torch.broadcast_to).
nsc_tensor *nsc_broadcast_to(nsc_tensor *x, int ndim, const int64_t *shape);
// Removes dim if its size is 1 (otherwise returns a view of x unchanged).
nsc_tensor *nsc_squeeze(nsc_tensor *x, int dim);
// Inserts a size-1 dim at dim (-1 appends).
nsc_tensor *nsc_unsqueeze(nsc_tensor *x, int dim);
// Merges dims start_dim..end_dim (inclusive; negative allowed); a view when possible.
nsc_tensor *nsc_flatten(nsc_tensor *x, int start_dim, int end_dim);
// Raw view of x's storage (torch.as_strided); offset in elements from the
// storage start. Not differentiable in nsc: refused (NSC_ERR_UNSUPPORTED)
// when x requires grad and grad mode is on.
nsc_tensor *nsc_as_strided(nsc_tensor *x, int ndim, const int64_t *shape, const int64_t *stride,
                           int64_t offset);

// Splits x along dim into pieces of split_size (the last may be smaller), as
// views; a size-0 dim gives one empty piece (split_size may then be 0). Writes
// up to max_out new references into out and their count into *n_out; fails
// (writing nothing) if more pieces than max_out would result.
nsc_status nsc_split(nsc_tensor *x, int64_t split_size, int dim, int max_out, nsc_tensor **out,
                     int *n_out);
// Splits x into `chunks` near-equal views along dim (torch.chunk); an empty
// dim gives `chunks` empty views.
nsc_status nsc_chunk(nsc_tensor *x, int chunks, int dim, int max_out, nsc_tensor **out,
                     int *n_out);

// A tensor sharing x's storage that requires no grad and has no history
// (torch.Tensor.detach); writes into it are not tracked.
nsc_tensor *nsc_detach(nsc_tensor *x);

// --- copies and conversions ---

// When x is contiguous, a new tensor viewing all of x (same storage, shape
// and strides: writes through one show in the other; torch returns x
// itself); else a contiguous copy.
nsc_tensor *nsc_contiguous(nsc_tensor *x);
// A contiguous copy that shares nothing with x.
nsc_tensor *nsc_clone(nsc_tensor *x);
// x converted to dtype; when x already has it, a new tensor viewing all of x,
// as nsc_contiguous does.
nsc_tensor *nsc_to_dtype(nsc_tensor *x, nsc_dtype dtype);
// x copied to device; when already there, a new tensor viewing all of x.
nsc_tensor *nsc_to(nsc_tensor *x, nsc_device device);

// --- in-place ---
// Each writes into dst (which may be a view: slice assignment is
// nsc_copy_(nsc_slice(h, ...), v)) and returns NSC_OK or an error status with
// nothing written. dst may not have overlapping elements (stride 0).

// dst[...] = src, src broadcast to dst's shape and converted to its dtype.
nsc_status nsc_copy_(nsc_tensor *dst, nsc_tensor *src);
// value must fit dst's dtype (NaN or 1e30 into i64 is NSC_ERR_ARG).
nsc_status nsc_fill_(nsc_tensor *dst, double value);
nsc_status nsc_zero_(nsc_tensor *dst);
// dst += src / dst *= src, src broadcast to dst's shape. src may have a
// wider dtype of dst's kind (f64 into f32, as torch allows; computed in
// dst's dtype), not a higher kind (a float into an integer dst is refused).
nsc_status nsc_add_(nsc_tensor *dst, nsc_tensor *src);
nsc_status nsc_mul_(nsc_tensor *dst, nsc_tensor *src);

#ifdef __cplusplus
}
#endif

#endif
