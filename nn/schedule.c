// Learning-rate schedule: linear warmup, then cosine decay to a floor. A pure
// function of the step, so a run resumed at step s gets the same rates.
#include <math.h>

#include "nn/optim_impl.h"

static nsc_status check_schedule(const nsc_lr_schedule *s, int64_t step) {
    if (!s) {
        return nsci_fail(NSC_ERR_ARG, "lr_schedule: schedule is NULL");
    }
    if (!(s->min_lr >= 0) || !(s->max_lr >= s->min_lr) || s->warmup_steps < 0 ||
        s->total_steps < s->warmup_steps || step < 0) {
        return nsci_fail(NSC_ERR_ARG,
                         "lr_schedule: step %lld of max_lr %g, min_lr %g, warmup_steps %lld, "
                         "total_steps %lld: expected 0 <= min_lr <= max_lr, 0 <= warmup_steps "
                         "<= total_steps and step >= 0",
                         (long long)step, s->max_lr, s->min_lr, (long long)s->warmup_steps,
                         (long long)s->total_steps);
    }
    return NSC_OK;
}

double nsc_lr_schedule_at(const nsc_lr_schedule *s, int64_t step) {
    if (check_schedule(s, step) != NSC_OK) {
        return NAN;
    }
    if (step < s->warmup_steps) {
        return s->max_lr * (double)(step + 1) / (double)s->warmup_steps;
    }
    if (step >= s->total_steps) {
        return s->min_lr;
    }
    double ratio = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    double coeff = 0.5 * (1.0 + cos(M_PI * ratio));
    return s->min_lr + coeff * (s->max_lr - s->min_lr);
}

nsc_status nsc_lr_schedule_apply(const nsc_lr_schedule *s, int64_t step, nsc_optim *opt) {
    double lr = nsc_lr_schedule_at(s, step);
    if (isnan(lr)) {
        return nsc_last_status();
    }
    return nsc_optim_set_lr(opt, lr);
}
