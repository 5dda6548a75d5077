// Prints the case table as JSON lines for tests/fixtures/make_fixtures.py:
// name, op, torch expression and each input's dtype, layout, range and shape.
#include <stdio.h>

#include "tests/harness.h"

int main(void) {
    static const char *const layouts[] = { "contig", "transposed", "stepped", "expanded" };
    for (int i = 0; i < nsct_n_cases; i++) {
        const nsct_case *c = &nsct_all_cases[i];
        printf("{\"name\": \"%s\", \"op\": \"%s\", \"torch\": \"%s\", \"inputs\": [", c->name,
               nsci_op_defs[c->op]->name, c->torch);
        for (int k = 0; k < c->n_in; k++) {
            const nsct_input *in = &c->in[k];
            printf("%s{\"dtype\": \"%s\", \"layout\": \"%s\", \"lo\": %.17g, \"hi\": %.17g, "
                   "\"shape\": [",
                   k ? ", " : "", nsc_dtype_name(in->dtype), layouts[in->layout], in->lo, in->hi);
            for (int d = 0; d < in->ndim; d++) {
                printf("%s%lld", d ? ", " : "", (long long)in->shape[d]);
            }
            printf("]}");
        }
        printf("]}\n");
    }
    return 0;
}
