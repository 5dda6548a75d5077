// The one shared list of test-graph builders: each builds a trace or a
// session over the small test models (tests/graph_models.h) or the tiny
// GPT-2 fixture, covering every protocol and the classic uses. The text-form
// tests run each as built and after a round trip through its text.
#ifndef NSC_TESTS_GRAPH_BUILDERS_H
#define NSC_TESTS_GRAPH_BUILDERS_H

#include "nsc.h"

// The models builders use.
typedef enum nsct_model_id {
    NSCT_CHAIN,   // nsct_chain_model(3, 4): h.0 .. h.2, head; x [B, 4]
    NSCT_CHAIN_B, // a second chain model (the other model of a session)
    NSCT_BATCH1,  // nsct_batch1_model(3): batch on dim 1
    NSCT_GPT2,    // tests/fixtures/gpt2_tiny (2 layers, 4 heads, 64 wide, 100 tokens)
    NSCT_N_MODELS
} nsct_model_id;

// What a builder made: a trace, or a session (the other is NULL).
typedef struct nsct_built {
    nsc_trace *trace;
    nsc_session *session;
} nsct_built;

typedef struct nsct_graph_builder {
    const char *name;
    const char *covers; // the protocols and uses it exercises
    int n_models;
    nsct_model_id models[2]; // in the order the graph first uses them
    // Builds the graph over models[i] (the models listed above, in order);
    // inputs it makes are released (traces retain them). A builder that
    // fails returns what it made so far with the error recorded.
    nsct_built (*build)(nsc_module *const *models);
} nsct_graph_builder;

extern const nsct_graph_builder nsct_graph_builders[];
extern const int nsct_n_graph_builders;

// A new model (caller nsc_module_free()s).
nsc_module *nsct_builder_model(nsct_model_id id);
// Registers the functions builders call (idempotent).
void nsct_builders_register(void);
// Runs a built trace or session.
nsc_status nsct_built_run(nsct_built *b);
void nsct_built_free(nsct_built *b);

#endif
