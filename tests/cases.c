// The one case table for all ops (STYLE.md): every family's rows, gathered
// from tests/cases/<family>.def. Adding a family: two lines below.
#include "tests/cases/cases.h"
#include "tensor/op_params.h"

#define CASE CASE_RUN
#include "tests/cases/compare.def"
#include "tests/cases/scalar.def"
#include "tests/cases/unary.def"
#include "tests/cases/unary_grad.def"
#include "tests/cases/binary.def"
#include "tests/cases/copy.def"
#include "tests/cases/inplace.def"
#include "tests/cases/view.def"
#include "tests/cases/reduce.def"
#include "tests/cases/softmax.def"
#include "tests/cases/norm.def"
#include "tests/cases/index.def"
#include "tests/cases/join.def"
#include "tests/cases/loss.def"
#include "tests/cases/matmul.def"
#include "tests/cases/attention.def"
#include "tests/cases/optim.def"
#undef CASE

const nsct_case nsct_all_cases[] = {
#define CASE CASE_ROW
#include "tests/cases/compare.def"
#include "tests/cases/scalar.def"
#include "tests/cases/unary.def"
#include "tests/cases/unary_grad.def"
#include "tests/cases/binary.def"
#include "tests/cases/copy.def"
#include "tests/cases/inplace.def"
#include "tests/cases/view.def"
#include "tests/cases/reduce.def"
#include "tests/cases/softmax.def"
#include "tests/cases/norm.def"
#include "tests/cases/index.def"
#include "tests/cases/join.def"
#include "tests/cases/loss.def"
#include "tests/cases/matmul.def"
#include "tests/cases/attention.def"
#include "tests/cases/optim.def"
#undef CASE
};

const int nsct_n_cases = (int)(sizeof nsct_all_cases / sizeof nsct_all_cases[0]);
