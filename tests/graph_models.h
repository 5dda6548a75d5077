// Small models for the graph tests: a chain of tanh-linear blocks with
// GPT-2-like paths (h.N), a module with its batch on dim 1, and a feeder
// whose inputs are hook points for the table-driven op test.
#ifndef NSC_TESTS_GRAPH_MODELS_H
#define NSC_TESTS_GRAPH_MODELS_H

#include "nsc.h"

// root: h.0 .. h.{n-1} (y = tanh(x W + b), W [width, width]), then head
// (y = x W_head, [width, 3]). Input x [B, width] f32. Deterministic weights.
nsc_module *nsct_chain_model(int n_blocks, int64_t width);

// x [rows, 4] f32: 0.1 * (start, start + 1, ...), an input of the chain model.
nsc_tensor *nsct_chain_input(int64_t rows, double start);

// A trace on the chain model with one invoke of nsct_chain_input(2, 0).
typedef struct nsct_chain_trace {
    nsc_module *model;
    nsc_tensor *x;
    nsc_trace *tr;
    nsc_invoke *inv;
} nsct_chain_trace;
void nsct_chain_start(nsct_chain_trace *f, int n_blocks);
void nsct_chain_finish(nsct_chain_trace *f);

// root -> inner: inner's input and output are [T, B, C] with the batch on
// dim 1 (declared), y = x * 2 + bias where bias [C] has no batch dim.
// Root input x [T, B, C]; root output = inner output.
nsc_module *nsct_batch1_model(int64_t channels);

// root -> feed: feed takes up to 8 inputs (no batch dims) and returns input 0
// (a view of it). For running any op on hook-point proxies.
nsc_module *nsct_feed_model(void);

#endif
