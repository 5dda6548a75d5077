// nsc: nnsight's intervention model, native in C. The umbrella header.
#ifndef NSC_H
#define NSC_H

#include "nsc/autograd.h"
#include "nsc/base.h"
#include "nsc/check.h"
#include "nsc/cuda.h"
#include "nsc/generate.h"
#include "nsc/gpt2.h"
#include "nsc/graph_text.h"
#include "nsc/io.h"
#include "nsc/module.h"
#include "nsc/nn.h"
#include "nsc/ops.h"
#include "nsc/ops_attention.h"
#include "nsc/optim.h"
#include "nsc/profile.h"
#include "nsc/session.h"
#include "nsc/tensor.h"
#include "nsc/tokenizer.h"
#include "nsc/trace.h"

// Last: same-named macros recording file:line (see nsc/source.h).
#include "nsc/source.h"

#endif
