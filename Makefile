# nsc build. GNU make. Objects go to build/<config>/; see README.md.
#   make            library, the nsc tool, examples
#   make test       deps, then the whole suite
#   make asan       the suite under AddressSanitizer + UBSan
#   make valgrind   memcheck over a subset of the suite (tools/valgrind.sh)
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (default 30), clang
#   make bench      benchmarks (bench/), -march=native
#   make lint       symbol prefixes, file sizes, include layering
#   make BLAS=none  portable matmul instead of OpenBLAS
#   make CUDA=1     adds cuda/ (nvcc) and links cuBLAS; CUDA_ARCHS="80 90" by default
#   make CUDA=emu   cuda/ compiled as C++ and run on the CPU by cuda/emu (no GPU, no nvcc)
#   make install PREFIX=/usr/local

MODE ?= release
BLAS ?= openblas
CUDA ?= 0
PREFIX ?= /usr/local
WERROR ?= 0
FUZZ_SECONDS ?= 30

CC ?= cc
NVCC ?= nvcc
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(shell command -v $(NVCC) 2>/dev/null))

# GPU architectures nvcc builds for (sm_XX). Another list gets its own build
# folder: tools/gpu_check.sh builds sm_90 alone to carry less to the H200.
CUDA_ARCHS ?= 80 90
CUDA_ARCH_TAG := $(if $(filter-out 80 90,$(CUDA_ARCHS))$(filter-out $(CUDA_ARCHS),80 90),-sm$(subst $() ,-,$(strip $(CUDA_ARCHS))))
CONFIG := $(MODE)$(if $(filter none,$(BLAS)),-noblas)$(if $(filter 1,$(CUDA)),-cuda$(CUDA_ARCH_TAG))$(if $(filter emu,$(CUDA)),-cudaemu)
BUILD := build/$(CONFIG)

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla -Wdouble-promotion
ifeq ($(WERROR),1)
WARN += -Werror
endif
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -g -fPIC -pthread -Iinclude -I. -MMD -MP $(WARN)
# gcc 12's -O2 vectorizes only loops whose trip count it knows (the
# very-cheap cost model); the cheap model also takes the pointwise kernels'
# n-element loops (relu, compares, casts). Elementwise results are unchanged:
# -std=c11 keeps fp-contract off and no reduction is reassociated.
VECTORIZE := -fvect-cost-model=cheap
ifeq ($(MODE),release)
OPT := -O2 $(VECTORIZE)
else ifeq ($(MODE),asan)
OPT := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -DNSC_DEBUG
SAN_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(MODE),debug)
OPT := -O0 -DNSC_DEBUG
else ifeq ($(MODE),bench)
OPT := -O2 -march=native $(VECTORIZE)
else ifeq ($(MODE),fuzz)
OPT := -O1 -fsanitize=fuzzer-no-link,address,undefined -DNSC_DEBUG
SAN_LDFLAGS := -fsanitize=address,undefined
endif
CFLAGS := $(CFLAGS_BASE) $(OPT) $(EXTRA_CFLAGS)

LDLIBS := -lm -pthread
ifeq ($(BLAS),none)
CFLAGS += -DNSC_NO_BLAS
else
LDLIBS := -lopenblas $(LDLIBS)
endif
ifeq ($(CUDA),1)
CFLAGS += -DNSC_HAVE_CUDA
NVCCFLAGS := -O2 -g -std=c++17 -Iinclude -I. -DNSC_HAVE_CUDA -Xcompiler -fPIC,-Wall \
    $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
    --expt-relaxed-constexpr -MMD -MP
LDLIBS += -L$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
endif
# The emulator: the same kernels as C++, each GPU thread a fiber (docs/CUDA.md).
ifeq ($(CUDA),emu)
CFLAGS += -DNSC_HAVE_CUDA
EMU_CXXFLAGS := -std=c++17 -g -fPIC -pthread -Iinclude -I. -MMD -MP -DNSC_HAVE_CUDA -DNSCI_CUDA_EMU \
    -Wall -Wextra -Wno-unknown-pragmas -Wno-unused-parameter -Wno-sign-compare $(if $(filter 1,$(WERROR)),-Werror) \
    $(filter -O% -fsanitize% -fno-omit-frame-pointer -fno-sanitize-recover% -DNSC_DEBUG,$(OPT))
LDLIBS += -lstdc++
endif

LIB_DIRS := util tensor autograd nn graph protocols
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
ifeq ($(CUDA),1)
CU_SRCS := $(wildcard cuda/*.cu)
LIB_OBJS += $(CU_SRCS:%.cu=$(BUILD)/%.cu.o) $(patsubst %.c,$(BUILD)/%.o,$(wildcard cuda/*.c))
else ifeq ($(CUDA),emu)
LIB_OBJS += $(patsubst %.cu,$(BUILD)/%.emu.o,$(wildcard cuda/*.cu)) \
    $(patsubst %.c,$(BUILD)/%.o,$(wildcard cuda/*.c)) $(patsubst %.cc,$(BUILD)/%.o,$(wildcard cuda/emu/*.cc))
else
LIB_OBJS += $(patsubst %.c,$(BUILD)/%.o,$(wildcard cuda/*.c))
endif
LIB := $(BUILD)/libnsc.a

CLI_SRCS := $(wildcard cli/*.c)
CLI := $(BUILD)/nsc
# common.c and svg.c are the examples' shared code, linked into each one, not examples themselves.
EXAMPLE_SHARED_SRCS := examples/common.c examples/svg.c
EXAMPLE_SHARED_OBJS := $(EXAMPLE_SHARED_SRCS:%.c=$(BUILD)/%.o)
EXAMPLE_SRCS := $(filter-out $(EXAMPLE_SHARED_SRCS),$(wildcard examples/*.c))
EXAMPLES := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)
TEST_SRCS := $(wildcard tests/*.c)
TEST_BIN := $(BUILD)/tests/nsc_tests
# The emulator's own tests (C++), in the CUDA=emu build only.
TEST_EMU_OBJS := $(if $(filter emu,$(CUDA)),$(patsubst %.cc,$(BUILD)/%.o,$(wildcard tests/emu/*.cc)))
BENCH_SRCS := $(wildcard bench/bench_*.c)
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

# The Criterion runner: parallel jobs, failures summarized. Extra args: TEST_ARGS.
TEST_ARGS ?=
TEST_JOBS ?= 2

.PHONY: all lib test test-bin asan bench bench-bins lint deps demo install clean format cuda fixtures \
    check-install valgrind fuzz

all: $(LIB) $(if $(CLI_SRCS),$(CLI)) $(EXAMPLES) $(if $(filter release,$(CONFIG)),libnsc.a)

# The default build also leaves libnsc.a at the top, for `cc ... -L. -lnsc`.
libnsc.a: $(LIB)
	cp $(LIB) $@

lib: $(LIB)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/%.emu.o: %.cu
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -x c++ -c $< -o $@

$(BUILD)/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(CLI): $(CLI_SRCS:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $(CFLAGS) $(SAN_LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/examples/%: $(BUILD)/examples/%.o $(EXAMPLE_SHARED_OBJS) $(LIB)
	$(CC) $(CFLAGS) $(SAN_LDFLAGS) -o $@ $^ $(LDLIBS)

# Reached only through the pattern rule above, they would count as intermediate and be deleted.
.SECONDARY: $(EXAMPLE_SHARED_OBJS)

$(TEST_BIN): $(TEST_SRCS:%.c=$(BUILD)/%.o) $(TEST_EMU_OBJS) $(LIB)
	$(CC) $(CFLAGS) $(SAN_LDFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

# Tests may drop -Wmissing-prototypes: Criterion's macros define functions.
$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -c $< -o $@

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

test-bin: $(TEST_BIN) $(if $(CLI_SRCS),$(CLI)) $(EXAMPLES)

test: deps
	@$(MAKE) --no-print-directory test-bin
	NSC_BUILD=$(BUILD) NSC_LINK_FLAGS="$(LDLIBS)" $(TEST_BIN) --jobs $(TEST_JOBS) $(TEST_ARGS)
	@NSC_NO_DEPS=1 MODE=$(MODE) BLAS=$(BLAS) sh tools/check_install.sh
	@NSC_LDLIBS="$(LDLIBS)" sh tools/check_readme.sh $(BUILD)

# The asan build of this configuration (BLAS=none, CUDA=emu keep their suffixes).
ASAN_BUILD := build/asan$(patsubst $(MODE)%,%,$(CONFIG))

asan: deps
	@$(MAKE) --no-print-directory MODE=asan test-bin
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allocator_may_return_null=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tools/lsan.supp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    NSC_BUILD=$(ASAN_BUILD) NSC_LINK_FLAGS="-fsanitize=address,undefined $(LDLIBS)" \
	    $(ASAN_BUILD)/tests/nsc_tests --jobs $(TEST_JOBS) $(TEST_ARGS)

valgrind: deps
	@$(MAKE) --no-print-directory MODE=debug test-bin
	sh tools/valgrind.sh build/debug/tests/nsc_tests

fuzz: deps
	sh tools/fuzz_smoke.sh $(FUZZ_SECONDS)

bench: deps
	@$(MAKE) --no-print-directory MODE=bench bench-bins
	sh bench/run.sh build/bench

bench-bins: $(BENCH_BINS)

cuda:
	@command -v $(NVCC) >/dev/null || { echo "make cuda: nvcc not found on PATH" >&2; exit 1; }
	@$(MAKE) --no-print-directory CUDA=1 all test

lint:
	@sh tools/lint.sh $(LIB)

deps:
	@sh tools/deps.sh

demo: deps all
	@sh tools/demo.sh $(BUILD)

CASE_DUMP := $(BUILD)/tests/case_dump

$(CASE_DUMP): $(BUILD)/tests/tools/case_dump.o $(BUILD)/tests/cases.o $(BUILD)/tests/harness.o $(LIB)
	$(CC) $(CFLAGS) $(SAN_LDFLAGS) -o $@ $^ $(LDLIBS)

# Regenerates tests/fixtures/ops.bin with PyTorch (Debian's python3-torch).
fixtures: $(CASE_DUMP)
	$(CASE_DUMP) > $(BUILD)/cases.jsonl
	/usr/bin/python3 tests/fixtures/make_fixtures.py $(BUILD)/cases.jsonl tests/fixtures/ops.bin

install: $(LIB) $(if $(CLI_SRCS),$(CLI))
	mkdir -p $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/nsc $(DESTDIR)$(PREFIX)/bin
	cp $(LIB) $(DESTDIR)$(PREFIX)/lib/libnsc.a
	cp include/nsc.h $(DESTDIR)$(PREFIX)/include/nsc.h
	cp include/nsc/*.h $(DESTDIR)$(PREFIX)/include/nsc/
	$(if $(CLI_SRCS),cp $(CLI) $(DESTDIR)$(PREFIX)/bin/nsc)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBS@|$(LDLIBS)|' tools/nsc.pc.in \
	    > $(DESTDIR)$(PREFIX)/lib/pkgconfig/nsc.pc

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
