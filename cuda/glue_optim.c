// The optimizer update ops on CUDA. The inputs are lists, role by role
// (tensor/op_optim.c): contiguous parameters go to the list kernels, up to
// NSCI_CUDA_LIST_MAX a launch, so a GPT-2 step is 3 launches, not 148; a
// strided parameter takes the elementwise kernel of its own. Shapes, dtypes
// and aliasing were checked by the ops' infer rules.
#ifdef NSC_HAVE_CUDA
#include "cuda/op_optim.h"

typedef struct update_kernels {
    nsc_status (*one)(const nsci_cuda_ew *e, const void *args);
    nsc_status (*list)(const nsci_cuda_list *l, const void *args);
} update_kernels;

static nsc_status run_lists(const nsci_call *c, int roles, const update_kernels *k,
                            const void *args) {
    int n = c->n_in / roles;
    nsci_cuda_list list = { .roles = roles, .dtype = c->in[0]->dtype };
    for (int j = 0; j < n; j++) {
        nsc_tensor *operands[NSCI_OPTIM_ROLES];
        for (int r = 0; r < roles; r++) {
            operands[r] = c->in[r * n + j];
        }
        nsci_cuda_ew e;
        nsci_cuda_ew_make(&e, operands[0], roles - 1, operands + 1);
        if (e.numel == 0) {
            continue;
        }
        if (!nsci_cuda_ew_flat(&e) || e.numel >= ((int64_t)1 << 31)) {
            nsc_status s = k->one(&e, args);
            if (s != NSC_OK) {
                return s;
            }
            continue;
        }
        for (int r = 0; r < roles; r++) {
            list.data[list.n][r] = e.data[r];
        }
        list.numel[list.n++] = e.numel;
        if (list.n == NSCI_CUDA_LIST_MAX) {
            nsc_status s = k->list(&list, args);
            if (s != NSC_OK) {
                return s;
            }
            list.n = 0;
        }
    }
    return list.n > 0 ? k->list(&list, args) : NSC_OK;
}

static nsc_status sgd_one(const nsci_cuda_ew *e, const void *args) {
    return nsci_cuda_fused_sgd(e, args);
}
static nsc_status sgd_list(const nsci_cuda_list *l, const void *args) {
    return nsci_cuda_fused_sgd_list(l, args);
}
static nsc_status adamw_one(const nsci_cuda_ew *e, const void *args) {
    return nsci_cuda_fused_adamw(e, args);
}
static nsc_status adamw_list(const nsci_cuda_list *l, const void *args) {
    return nsci_cuda_fused_adamw_list(l, args);
}

static nsc_status fused_sgd_cuda(nsci_call *c) {
    const fused_sgd_params *p = c->params;
    static const update_kernels k = { sgd_one, sgd_list };
    return run_lists(c, nsci_sgd_roles(&p->config), &k, p);
}

static nsc_status fused_adamw_cuda(nsci_call *c) {
    const fused_adamw_params *p = c->params;
    nsci_adamw_scalars scalars = nsci_adamw_scalars_of(p);
    static const update_kernels k = { adamw_one, adamw_list };
    return run_lists(c, nsci_adamw_roles(&p->config), &k, &scalars);
}

void nsci_cuda_fill_optim(nsci_kernel_fn *t) {
    t[NSC_OP_fused_sgd_] = fused_sgd_cuda;
    t[NSC_OP_fused_adamw_] = fused_adamw_cuda;
}
#endif
