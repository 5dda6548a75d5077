// Sessions and iterators (nnsight's session and iterator contexts): several
// traces, also on different models, run in order as one unit; values flow
// from earlier traces to later ones without saving; an iterator runs its
// traces once per item of a list; session values carry state across traces
// and iterations (Update); exit leaves an iterator.
//
// Ownership: the session owns its traces, iterators and values (do not free
// them; nsc_trace_free on a session trace does nothing). Proxies of a
// session's values and traces may be used in any later trace of the same
// session: the value is bridged across when that trace starts.
//
// Errors: a building call (nsc_session_trace, _value, _iterate,
// nsc_iterator_trace) that fails returns NULL, adds nothing, and marks the
// session failed: nsc_session_run and nsc_session_to_text then refuse with
// the first failure, as a trace whose build failed does. A NULL session,
// iterator or proxy (a failed call's result) keeps the error already
// recorded.
#ifndef NSC_SESSION_H
#define NSC_SESSION_H

#include <stdint.h>
#include <stdio.h>

#include "nsc/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nsc_session nsc_session;
typedef struct nsc_iterator nsc_iterator;

// A new, empty session. Caller frees with nsc_session_free.
nsc_session *nsc_session_new(void);
// Frees the session, its traces, iterators and values. Accepts NULL.
void nsc_session_free(nsc_session *s);

// A trace that runs as the next step of the session (LocalBackendExecute).
// Build it as any trace; it runs when the session runs. model is retained.
nsc_trace *nsc_session_trace(nsc_session *s, nsc_module *model);

// A session value holding a copy of initial: a proxy usable in the
// session's traces, rebound with nsc_update, read with nsc_session_get.
nsc_tensor *nsc_session_value(nsc_session *s, nsc_tensor *initial);

// An iterator: the next step of the session runs the iterator's traces once
// per item (items retained). The item is a value rebound each time; when its
// shape changes the iterator's traces are validated again for it.
nsc_iterator *nsc_session_iterate(nsc_session *s, int n_items, nsc_tensor *const *items);
// The current item, a proxy (its shape is the first item's until the run).
nsc_tensor *nsc_iterator_item(nsc_iterator *it);
// A trace run once per item of it, in creation order within the iteration.
nsc_trace *nsc_iterator_trace(nsc_iterator *it, nsc_module *model);
// Leaves the iterator after the current iteration (nnsight's exit); place
// it inside a conditional block to leave on a condition. tr must belong to
// an iterator.
nsc_status nsc_iterator_exit(nsc_trace *tr);
// Iterations run by the last nsc_session_run.
int64_t nsc_iterator_iterations(const nsc_iterator *it);

// Overwrites target (a session value) with value when this node runs,
// without re-running target's consumers (loop-carried state).
nsc_status nsc_update(nsc_tensor *target, nsc_tensor *value);

// Validates every trace of the session, then runs the steps in order. A
// later trace reading an iterator's value was checked with the first
// item's shape; a last iteration's value of another shape fails the run
// at that trace's turn, naming the value.
// Returns NSC_OK or the first error (naming the trace step and the node);
// refuses a session whose building failed, with that failure. A second run
// runs the steps again from the session values as they are (what updates
// wrote stays: loop-carried state goes on, as a second pass of a loop).
nsc_status nsc_session_run(nsc_session *s);

// After the run: a session value's current tensor, or a saved proxy of any
// of the session's traces (the last iteration's value for iterator traces).
// A new reference.
nsc_tensor *nsc_session_get(nsc_session *s, nsc_tensor *proxy);

// DOT of the session: each step's trace as a cluster, iterators around theirs.
nsc_status nsc_session_dot(const nsc_session *s, FILE *out);

#ifdef __cplusplus
}
#endif

#endif
