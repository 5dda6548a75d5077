// The optimizer update ops on CUDA: operands described in the CPU kernel's
// input order (param first, read and written in place) and handed to the
// fused kernels of cuda/op_optim.cu. Shapes, dtypes and aliasing were
// checked by the ops' infer rules (tensor/op_optim.c).
#ifdef NSC_HAVE_CUDA
#include "cuda/cuda_impl.h"
#include "tensor/op_params.h"

static nsc_status fused_sgd_cuda(nsci_call *c) {
    nsci_cuda_ew e;
    nsci_cuda_ew_make(&e, c->in[0], c->n_in - 1, c->in + 1);
    return nsci_cuda_fused_sgd(&e, c->params);
}

static nsc_status fused_adamw_cuda(nsci_call *c) {
    nsci_adamw_scalars scalars = nsci_adamw_scalars_of(c->params);
    nsci_cuda_ew e;
    nsci_cuda_ew_make(&e, c->in[0], c->n_in - 1, c->in + 1);
    return nsci_cuda_fused_adamw(&e, &scalars);
}

void nsci_cuda_fill_optim(nsci_kernel_fn *t) {
    t[NSC_OP_fused_sgd_] = fused_sgd_cuda;
    t[NSC_OP_fused_adamw_] = fused_adamw_cuda;
}
#endif
