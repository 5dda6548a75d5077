// The optimizer updates and gradient clipping written as tensor ops, for
// parameters on a device the fused CPU loops of nn/optim_update.c cannot
// reach (CUDA). The ops dispatch to the tensors' device, so one path serves
// every device. Each op repeats one step of the fused loops, in the same
// order, with the scalar rounded to the tensor's dtype as the loops round it
// (and as nsc_mul_scalar does): on the CPU both paths give the same bits,
// which test_optim checks.
//
// New values are computed into temporaries first and written into the
// parameter and its state only when all of them exist, so an update that
// fails (the device is out of memory) leaves that parameter as it was.
#include "nn/optim_impl.h"

enum {
    MAX_TEMPS = 24
};

// The temporaries of one update, freed together. A failed op returns NULL
// and every later op refuses NULL inputs keeping the first error, so a
// chain is checked once, at its end.
typedef struct temps {
    nsc_tensor *t[MAX_TEMPS];
    int n;
} temps;

static nsc_tensor *keep(temps *s, nsc_tensor *t) {
    s->t[s->n++] = t;
    return t;
}

static void temps_free(temps *s) {
    for (int i = 0; i < s->n; i++) {
        nsc_free(s->t[i]);
    }
}

static bool all_made(const temps *s) {
    for (int i = 0; i < s->n; i++) {
        if (!s->t[i]) {
            return false;
        }
    }
    return true;
}

// Writes each (dst, src) pair; the copies only fail on a device error.
static nsc_status write_back(int n, nsc_tensor *const *dst, nsc_tensor *const *src) {
    for (int i = 0; i < n; i++) {
        nsc_status status = nsc_copy_(dst[i], src[i]);
        if (status != NSC_OK) {
            return status;
        }
    }
    return NSC_OK;
}

nsc_status nsci_sgd_update_ops(const nsc_optim *opt, int64_t i, nsc_tensor *grad, bool first_step) {
    const nsc_sgd_config *c = &opt->sgd;
    nsc_tensor *p = opt->params[i], *buf = opt->state[i * NSCI_OPTIM_MAX_STATE];
    temps s = { .n = 0 };
    nsc_tensor *d = grad;
    if (c->weight_decay != 0) {
        d = keep(&s, nsc_add(grad, keep(&s, nsc_mul_scalar(p, c->weight_decay))));
    }
    nsc_tensor *new_buf = NULL;
    if (c->momentum != 0) {
        new_buf = first_step ? d
                             : keep(&s, nsc_add(keep(&s, nsc_mul_scalar(buf, c->momentum)),
                                                keep(&s, nsc_mul_scalar(d, 1.0 - c->dampening))));
        d = c->nesterov ? keep(&s, nsc_add(d, keep(&s, nsc_mul_scalar(new_buf, c->momentum))))
                        : new_buf;
    }
    nsc_tensor *new_p = keep(&s, nsc_add(p, keep(&s, nsc_mul_scalar(d, -opt->lr))));
    nsc_status status = nsc_last_status();
    if (all_made(&s)) {
        nsc_tensor *dst[2] = { p, buf }, *src[2] = { new_p, new_buf };
        status = write_back(new_buf ? 2 : 1, dst, src);
    }
    temps_free(&s);
    return status;
}

nsc_status nsci_adamw_update_ops(const nsc_optim *opt, int64_t i, nsc_tensor *grad) {
    const nsci_adamw_scalars scalars = nsci_adamw_scalars_of(opt, i), *k = &scalars;
    nsc_tensor *p = opt->params[i];
    nsc_tensor *const *state = &opt->state[i * NSCI_OPTIM_MAX_STATE];
    temps s = { .n = 0 };
    nsc_tensor *decayed = keep(&s, nsc_mul_scalar(p, k->decay));
    nsc_tensor *m = keep(&s, nsc_add(keep(&s, nsc_mul_scalar(state[0], k->beta1)),
                                     keep(&s, nsc_mul_scalar(grad, k->one_minus_beta1))));
    nsc_tensor *g2 = keep(&s, nsc_mul(keep(&s, nsc_mul_scalar(grad, k->one_minus_beta2)), grad));
    nsc_tensor *v = keep(&s, nsc_add(keep(&s, nsc_mul_scalar(state[1], k->beta2)), g2));
    nsc_tensor *vhat = k->amsgrad ? keep(&s, nsc_maximum(state[2], v)) : v;
    nsc_tensor *denom =
        keep(&s, nsc_add_scalar(keep(&s, nsc_div_scalar(keep(&s, nsc_sqrt(vhat)), k->bc2_sqrt)),
                                k->eps));
    nsc_tensor *step = keep(&s, nsc_div(keep(&s, nsc_mul_scalar(m, k->neg_step_size)), denom));
    nsc_tensor *new_p = keep(&s, nsc_add(decayed, step));
    nsc_status status = nsc_last_status();
    if (all_made(&s)) {
        nsc_tensor *dst[4] = { p, state[0], state[1], state[2] };
        nsc_tensor *src[4] = { new_p, m, v, vhat };
        status = write_back(k->amsgrad ? 4 : 3, dst, src);
    }
    temps_free(&s);
    return status;
}

nsc_status nsci_grad_sumsq_ops(nsc_tensor *grad, double *sumsq) {
    temps s = { .n = 0 };
    nsc_tensor *wide = keep(&s, nsc_to_dtype(grad, NSC_F64));
    nsc_tensor *total = keep(&s, nsc_sum_all(keep(&s, nsc_mul(wide, wide))));
    nsc_tensor *host = keep(&s, nsc_to(total, NSC_CPU));
    nsc_status status = nsc_last_status();
    if (all_made(&s)) {
        *sumsq = nsc_tensor_item(host);
        status = NSC_OK;
    }
    temps_free(&s);
    return status;
}

nsc_status nsci_grad_scale_ops(nsc_tensor *grad, double coef) {
    nsc_tensor *scaled = nsc_mul_scalar(grad, coef);
    nsc_status status = scaled ? nsc_copy_(grad, scaled) : nsc_last_status();
    nsc_free(scaled);
    return status;
}
