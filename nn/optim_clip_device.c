// Gradient clipping's two pieces as tensor ops, for gradients on a device
// the CPU loops of nn/optim_clip.c cannot reach (CUDA): the ops dispatch to
// the gradient's device. Each op makes its result in a temporary first, so a
// failure (the device is out of memory) changes no gradient.
#include "nn/optim_impl.h"

enum {
    MAX_TEMPS = 4
};

// The temporaries of one piece, freed together. A failed op returns NULL
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
