// The optimizer updates on the GPU (cuda/op_optim.cu) and gradient
// clipping's list ops (cuda/op_clip.cu), called by cuda/glue_optim.c: one
// tensor described as elementwise operands, or lists of contiguous tensors
// handled by one launch.
#ifndef NSC_CUDA_OP_OPTIM_H
#define NSC_CUDA_OP_OPTIM_H

#include "cuda/cuda_impl.h"
#include "tensor/op_params.h"

#ifdef __cplusplus
extern "C" {
#endif

// One fused step over e's operands, all of the parameter's float dtype and
// shape (param, grad, state...: tensor/op_optim.c's role order), in place.
nsc_status nsci_cuda_fused_sgd(const nsci_cuda_ew *e, const fused_sgd_params *p);
nsc_status nsci_cuda_fused_adamw(const nsci_cuda_ew *e, const nsci_adamw_scalars *a);

// Parameters per list launch. The list travels as a kernel argument, whose
// limit is 4 KiB: 64 parameters of 5 operands are 3.3 KiB with the counts.
enum { NSCI_CUDA_LIST_MAX = 64 };

// Contiguous parameters (each numel in [1, 2^31)) of one dtype: data[j][r]
// is role r of parameter j (device pointers to element 0).
typedef struct nsci_cuda_list {
    int n, roles;
    int dtype; // nsc_dtype: f32 or f64
    void *data[NSCI_CUDA_LIST_MAX][NSCI_OPTIM_ROLES];
    int64_t numel[NSCI_CUDA_LIST_MAX];
} nsci_cuda_list;

// The same updates over every parameter of l, in one launch.
nsc_status nsci_cuda_fused_sgd_list(const nsci_cuda_list *l, const fused_sgd_params *p);
nsc_status nsci_cuda_fused_adamw_list(const nsci_cuda_list *l, const nsci_adamw_scalars *a);

// Contiguous tensors (each numel in [1, 2^31)) of f32 or f64 for clipping.
typedef struct nsci_cuda_clip_list {
    int n;
    void *data[NSCI_CUDA_LIST_MAX];
    int64_t numel[NSCI_CUDA_LIST_MAX];
    int dtype[NSCI_CUDA_LIST_MAX]; // nsc_dtype
} nsci_cuda_clip_list;

// Blocks (partial sums) a tensor of numel elements takes in the sum of
// squares: its list launch or strided launch writes one double per block
// into partial[0..blocks), and the fold adds partial[0..n) into *out.
int64_t nsci_cuda_clip_blocks(int64_t numel);
nsc_status nsci_cuda_sumsq_list(const nsci_cuda_clip_list *l, double *partial);
nsc_status nsci_cuda_sumsq_strided(const nsci_cuda_ew *e, double *partial);
nsc_status nsci_cuda_sumsq_fold(const double *partial, int64_t n, double *out);

// Every element *= coef rounded to its dtype, in place.
nsc_status nsci_cuda_scale_list(const nsci_cuda_clip_list *l, double coef);
nsc_status nsci_cuda_scale_strided(const nsci_cuda_ew *e, double coef);

#ifdef __cplusplus
}
#endif

#endif
