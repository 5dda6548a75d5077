// nsct_force_grad (tests/optim_util.h): a .grad set behind the public API,
// which checks dtype and device, through the autograd internals. Its own
// file: the autograd and graph internals both name a type nsci_node.
#include <criterion/criterion.h>

#include "autograd/autograd_impl.h"
#include "tests/optim_util.h"

void nsct_force_grad(nsc_tensor *t, nsc_tensor *g) {
    struct nsci_autograd *ag = nsci_autograd_of(t);
    cr_assert(ag, "%s", nsc_last_error());
    nsc_free(ag->slot->grad);
    ag->slot->grad = nsc_retain(g);
}
