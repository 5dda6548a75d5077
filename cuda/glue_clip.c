// Gradient clipping's list ops on CUDA (tensor/op_clip.c): contiguous
// tensors go to the list kernels, up to NSCI_CUDA_LIST_MAX a launch; a
// strided one takes a launch of its own. The infer rules checked dtypes
// and, for the in-place scale, layouts and aliasing.
#ifdef NSC_HAVE_CUDA
#include "cuda/op_optim.h"

static bool listable(const nsci_cuda_ew *e) {
    return nsci_cuda_ew_flat(e) && e->numel < ((int64_t)1 << 31);
}

static void list_add(nsci_cuda_clip_list *l, const nsci_cuda_ew *e) {
    l->data[l->n] = e->data[0];
    l->numel[l->n] = e->numel;
    l->dtype[l->n] = e->dtype[0];
    l->n++;
}

// Partial sums: the contiguous tensors' blocks first, in list order (a list
// launch writes consecutive slots), then each strided tensor's; the fold
// adds them in slot order, so the value does not depend on scheduling.
static nsc_status sumsq_into(nsci_call *c, double *partial, int64_t slots) {
    nsci_cuda_clip_list list = { 0 };
    int64_t next = 0, list_base = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < c->n_in; i++) {
            nsci_cuda_ew e;
            nsci_cuda_ew_make(&e, c->in[i], 0, NULL);
            if (e.numel == 0 || listable(&e) != (pass == 0)) {
                continue;
            }
            nsc_status s = NSC_OK;
            if (pass == 1) {
                s = nsci_cuda_sumsq_strided(&e, partial + next);
            } else {
                list_base = list.n == 0 ? next : list_base;
                list_add(&list, &e);
                if (list.n == NSCI_CUDA_LIST_MAX) {
                    s = nsci_cuda_sumsq_list(&list, partial + list_base);
                    list.n = 0;
                }
            }
            next += nsci_cuda_clip_blocks(e.numel);
            if (s != NSC_OK) {
                return s;
            }
        }
        if (pass == 0 && list.n > 0 && nsci_cuda_sumsq_list(&list, partial + list_base) != NSC_OK) {
            return nsc_last_status();
        }
    }
    return nsci_cuda_sumsq_fold(partial, slots, (double *)nsci_data_ptr(c->out[0]));
}

static nsc_status clip_sumsq_cuda(nsci_call *c) {
    int64_t slots = 0;
    for (int i = 0; i < c->n_in; i++) {
        slots += nsci_cuda_clip_blocks(nsci_numel(c->in[i]->ndim, c->in[i]->shape));
    }
    nsc_tensor *scratch = slots > 0 ? nsci_cuda_empty(NSC_F64, 1, &slots) : NULL;
    if (slots > 0 && !scratch) {
        return nsc_last_status();
    }
    nsc_status s = sumsq_into(c, scratch ? (double *)nsci_data_ptr(scratch) : NULL, slots);
    nsc_free(scratch); // the stream orders its reuse after the fold
    return s;
}

static nsc_status clip_scale_cuda(nsci_call *c) {
    double coef = ((const clip_scale_params *)c->params)->coef;
    nsci_cuda_clip_list list = { 0 };
    for (int i = 0; i < c->n_in; i++) {
        nsci_cuda_ew e;
        nsci_cuda_ew_make(&e, c->in[i], 0, NULL);
        if (e.numel == 0) {
            continue;
        }
        if (!listable(&e)) {
            if (nsci_cuda_scale_strided(&e, coef) != NSC_OK) {
                return nsc_last_status();
            }
            continue;
        }
        list_add(&list, &e);
        if (list.n == NSCI_CUDA_LIST_MAX) {
            if (nsci_cuda_scale_list(&list, coef) != NSC_OK) {
                return nsc_last_status();
            }
            list.n = 0;
        }
    }
    return list.n > 0 ? nsci_cuda_scale_list(&list, coef) : NSC_OK;
}

void nsci_cuda_fill_clip(nsci_kernel_fn *t) {
    t[NSC_OP_clip_sumsq] = clip_sumsq_cuda;
    t[NSC_OP_clip_scale_] = clip_scale_cuda;
}
#endif
