// The emulator's grid runner: blocks run one after another; each thread of a
// block is a fiber on its own small stack, and the fibers of a block run
// until each finishes or waits at a warp collective or __syncthreads. When
// none can run, the scheduler releases the collectives whose lanes have all
// arrived, then the barrier once every live thread is at it; if neither can
// be released the kernel would hang or read garbage on a GPU, and the launch
// fails with a description of where each warp stands. Between waits the
// fibers run in a shuffled order (fixed seed), so a kernel that relies on
// the order of threads without a barrier tends to give wrong results here
// too. docs/CUDA.md ("Running the GPU tests without a GPU").
#include <sys/mman.h>

#include <mutex>
#include <string>
#include <vector>

#include "cuda/emu/cuda_emu.h"
#include "cuda/emu/emu_impl.h"

#if !defined(__x86_64__)
#error "the CUDA emulator's fiber switch is written for x86-64"
#endif

// Under AddressSanitizer (make MODE=asan CUDA=emu) every stack switch is
// announced, so ASan checks the kernels' memory accesses on fiber stacks too.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define NSCI_EMU_ASAN 1
#else
#define NSCI_EMU_ASAN 0
#endif

// Saves the callee-saved registers on the current stack, stores its pointer
// in *save_sp, and resumes the stack new_sp (which was saved the same way or
// made by new_stack below).
extern "C" void nsci_emu_switch(void **save_sp, void *new_sp);
asm(R"(
    .text
    .globl nsci_emu_switch
    .type nsci_emu_switch, @function
nsci_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size nsci_emu_switch, .-nsci_emu_switch
)");

// The linker's bounds of the __shared__ variables' section (cuda_emu.h);
// weak: a program may have none.
extern "C" char __start_nsci_emu_shared[] __attribute__((weak));
extern "C" char __stop_nsci_emu_shared[] __attribute__((weak));

namespace nsci_emu {

dim3 g_thread_idx, g_block_idx, g_block_dim, g_grid_dim;

namespace {

const size_t STACK_BYTES = 256 * 1024;
const size_t GUARD_BYTES = 4096;
const unsigned MAX_THREADS = 1024;
const size_t MAX_SHARED = 48 * 1024; // a block's, without cudaFuncSetAttribute

enum fiber_state {
    READY,
    AT_COLLECTIVE,
    AT_BARRIER,
    DONE
};

struct fiber {
    void *sp;
    void *fake_stack; // ASan's record while switched out
    dim3 tid;
    fiber_state state;
    collective_op op;
    unsigned mask;
    int arg, width;
    uint64_t value, result;
};

struct block_run {
    std::vector<fiber> fibers;
    void *scheduler_sp = nullptr;
    void *scheduler_fake_stack = nullptr;
    const void *scheduler_bottom = nullptr; // the launching thread's stack (ASan)
    size_t scheduler_size = 0;
    fiber *current = nullptr;
    void (*body)(void *) = nullptr;
    void *ctx = nullptr;
    std::vector<unsigned char> shared;
    std::string fault;
    std::string undefined_read; // the launch's first shuffle of a lane not taking part
    uint64_t rng = 0x9E3779B97F4A7C15ull;
};

std::mutex g_launch_lock; // one launch at a time: the globals above are the launch's
block_run g_run;
char *g_stacks; // MAX_THREADS stacks, each below a guard page

const char *op_name(collective_op op) {
    static const char *const names[] = { "__shfl_sync",    "__shfl_xor_sync", "__shfl_down_sync",
                                         "__shfl_up_sync", "__ballot_sync",   "__any_sync",
                                         "__all_sync",     "__syncwarp" };
    return names[op];
}

[[maybe_unused]] char *stack_bottom(unsigned i) {
    return g_stacks + (size_t)i * (STACK_BYTES + GUARD_BYTES) + GUARD_BYTES;
}

// The switches, announced to ASan when it is on: fake_stack is where ASan
// keeps the leaving side's record (NULL: that side never resumes).
void switch_to_fiber(fiber &f, unsigned i) {
#if NSCI_EMU_ASAN
    __sanitizer_start_switch_fiber(&g_run.scheduler_fake_stack, stack_bottom(i), STACK_BYTES);
#else
    (void)i;
#endif
    nsci_emu_switch(&g_run.scheduler_sp, f.sp);
#if NSCI_EMU_ASAN
    __sanitizer_finish_switch_fiber(g_run.scheduler_fake_stack, nullptr, nullptr);
#endif
}

void switch_to_scheduler(fiber &f, bool finished) {
#if NSCI_EMU_ASAN
    __sanitizer_start_switch_fiber(finished ? nullptr : &f.fake_stack, g_run.scheduler_bottom,
                                   g_run.scheduler_size);
#else
    (void)finished;
#endif
    nsci_emu_switch(&f.sp, g_run.scheduler_sp);
#if NSCI_EMU_ASAN
    __sanitizer_finish_switch_fiber(f.fake_stack, nullptr, nullptr);
#endif
}

void fiber_main() {
#if NSCI_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &g_run.scheduler_bottom, &g_run.scheduler_size);
#endif
    g_run.body(g_run.ctx);
    g_run.current->state = DONE;
    switch_to_scheduler(*g_run.current, true);
    __builtin_unreachable();
}

bool map_stacks() {
    if (g_stacks) {
        return true;
    }
    size_t bytes = MAX_THREADS * (STACK_BYTES + GUARD_BYTES);
    void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        return false;
    }
    for (unsigned i = 0; i < MAX_THREADS; i++) {
        mprotect((char *)p + i * (STACK_BYTES + GUARD_BYTES), GUARD_BYTES, PROT_NONE);
    }
    g_stacks = (char *)p;
    return true;
}

void *new_stack(unsigned i) {
    char *top = g_stacks + (size_t)(i + 1) * (STACK_BYTES + GUARD_BYTES);
#if NSCI_EMU_ASAN
    // A fiber abandoned by a fault left its frames' redzones behind.
    ASAN_UNPOISON_MEMORY_REGION(stack_bottom(i), STACK_BYTES);
#endif
    void **sp = (void **)((uintptr_t)top & ~(uintptr_t)15);
    *--sp = nullptr;            // fiber_main's return address: it never returns
    *--sp = (void *)fiber_main; // where nsci_emu_switch's ret goes
    for (int r = 0; r < 6; r++) {
        *--sp = nullptr; // rbp rbx r12 r13 r14 r15
    }
    return sp;
}

void wait_here(fiber_state why) {
    fiber *f = g_run.current;
    f->state = why;
    switch_to_scheduler(*f, false);
}

void fail(const std::string &why) {
    if (g_run.fault.empty()) {
        g_run.fault = why;
    }
}

std::string lane_name(size_t i) {
    return "thread " + std::to_string(i) + " (warp " + std::to_string(i / 32) + ", lane " +
           std::to_string(i % 32) + ")";
}

// Completes the collective of the lanes of [lo, hi) that wait with mask, if
// every live lane it names is there; false when it cannot complete yet or
// faults (recorded).
bool release_group(size_t lo, size_t hi, unsigned mask, collective_op op) {
    for (size_t i = lo; i < hi; i++) {
        fiber &f = g_run.fibers[i];
        bool named = (mask >> (i - lo)) & 1u;
        bool here = f.state == AT_COLLECTIVE && f.mask == mask;
        if (here && f.op != op) {
            fail(lane_name(i) + " is at " + op_name(f.op) +
                 " while other lanes of its mask are at " + op_name(op));
            return false;
        }
        if (here && !named) {
            fail(lane_name(i) + " calls " + op_name(f.op) + " with a mask that leaves it out");
            return false;
        }
        // A named lane elsewhere (another collective: since sm_70 it may
        // finish that group first, READY, or at the barrier) is not there
        // yet: a hang if nothing else can move, which run_block reports.
        if (named && !here && f.state != DONE) {
            return false;
        }
    }
    uint64_t ballot = 0;
    bool any = false, all = true;
    for (size_t i = lo; i < hi; i++) {
        fiber &f = g_run.fibers[i];
        if (f.state == AT_COLLECTIVE && f.mask == mask) {
            ballot |= (uint64_t)(f.value != 0) << (i - lo);
            any = any || f.value != 0;
            all = all && f.value != 0;
        }
    }
    for (size_t i = lo; i < hi; i++) {
        fiber &f = g_run.fibers[i];
        if (f.state != AT_COLLECTIVE || f.mask != mask) {
            continue;
        }
        int lane = (int)(i - lo), width = f.width, seg = lane & ~(width - 1);
        int src = lane;
        switch (f.op) {
            case SHFL_IDX:
                src = seg + (f.arg & (width - 1));
                break;
            // The lane operands count in their low 5 bits, as PTX's shfl; xor
            // may reach earlier groups of width lanes, never later ones.
            case SHFL_XOR:
                src = lane ^ (f.arg & 31);
                src = src < seg + width ? src : lane;
                break;
            case SHFL_DOWN:
                src = lane + (f.arg & 31) < seg + width ? lane + (f.arg & 31) : lane;
                break;
            case SHFL_UP:
                src = lane - (f.arg & 31) >= seg ? lane - (f.arg & 31) : lane;
                break;
            case BALLOT:
                f.result = ballot;
                break;
            case ANY:
                f.result = any;
                break;
            case ALL:
                f.result = all;
                break;
            case SYNCWARP:
                f.result = 0;
                break;
        }
        if (f.op <= SHFL_UP) {
            // A lane outside the group (exited, left out of the mask, past
            // the block's end) gives an undefined value on a GPU: garbage
            // here, and a note on stderr, once per launch.
            size_t s = lo + (size_t)src;
            bool exists = src >= 0 && src < 32 && s < hi;
            bool taking_part =
                exists && g_run.fibers[s].state == AT_COLLECTIVE && g_run.fibers[s].mask == mask;
            f.result = taking_part ? g_run.fibers[s].value : 0xCDCDCDCDCDCDCDCDull;
            if (!taking_part && g_run.undefined_read.empty()) {
                g_run.undefined_read = lane_name(i) + " reads lane " + std::to_string(src) +
                                       " with " + op_name(f.op) + ", which " +
                                       (exists ? "is not taking part (exited, or left out of "
                                                 "the mask)"
                                               : "does not exist in this block") +
                                       ": an undefined value";
            }
        }
    }
    for (size_t i = lo; i < hi; i++) {
        fiber &f = g_run.fibers[i];
        if (f.state == AT_COLLECTIVE && f.mask == mask) {
            f.state = READY;
        }
    }
    return true;
}

// Every collective of warp w that can complete; true if one did.
bool release_warp(size_t w) {
    size_t lo = w * 32, hi = std::min(g_run.fibers.size(), lo + 32);
    bool released = false;
    for (size_t i = lo; i < hi && g_run.fault.empty(); i++) {
        fiber &f = g_run.fibers[i];
        if (f.state == AT_COLLECTIVE) {
            released = release_group(lo, hi, f.mask, f.op) || released;
        }
    }
    return released;
}

std::string describe_block() {
    std::string s;
    for (size_t w = 0; w * 32 < g_run.fibers.size(); w++) {
        int ready = 0, coll = 0, barrier = 0, done = 0;
        for (size_t i = w * 32; i < std::min(g_run.fibers.size(), w * 32 + 32); i++) {
            switch (g_run.fibers[i].state) {
                case READY:
                    ready++;
                    break;
                case AT_COLLECTIVE:
                    coll++;
                    break;
                case AT_BARRIER:
                    barrier++;
                    break;
                case DONE:
                    done++;
            }
        }
        if (coll || barrier) {
            s += "; warp " + std::to_string(w) + ": " + std::to_string(coll) +
                 " at a warp collective, " + std::to_string(barrier) + " at __syncthreads, " +
                 std::to_string(done) + " exited";
        }
    }
    return s;
}

uint64_t next_random() {
    g_run.rng ^= g_run.rng << 13;
    g_run.rng ^= g_run.rng >> 7;
    g_run.rng ^= g_run.rng << 17;
    return g_run.rng;
}

// What a GPU block finds in its shared memory: garbage. (Under ASan the
// section holds redzones between the variables, so it is left alone.)
void scribble_shared() {
    if (!NSCI_EMU_ASAN && __start_nsci_emu_shared && __stop_nsci_emu_shared) {
        memset(__start_nsci_emu_shared, 0xCD,
               (size_t)(__stop_nsci_emu_shared - __start_nsci_emu_shared));
    }
    if (!g_run.shared.empty()) {
        memset(g_run.shared.data(), 0xCD, g_run.shared.size());
    }
}

// Runs one block to completion; false on a fault (recorded).
bool run_block(unsigned n) {
    scribble_shared();
    g_run.fibers.assign(n, fiber{});
    for (unsigned i = 0; i < n; i++) {
        fiber &f = g_run.fibers[i];
        f.sp = new_stack(i);
        f.tid = dim3(i % g_block_dim.x, (i / g_block_dim.x) % g_block_dim.y,
                     i / (g_block_dim.x * g_block_dim.y));
        f.state = READY;
    }
    std::vector<unsigned> order(n);
    for (unsigned i = 0; i < n; i++) {
        order[i] = i;
    }
    for (;;) {
        for (unsigned i = n; i > 1; i--) {
            unsigned j = (unsigned)(next_random() % i);
            std::swap(order[i - 1], order[j]);
        }
        for (unsigned i : order) {
            fiber &f = g_run.fibers[i];
            if (f.state != READY) {
                continue;
            }
            g_run.current = &f;
            g_thread_idx = f.tid;
            switch_to_fiber(f, i);
            if (!g_run.fault.empty()) {
                return false;
            }
        }
        bool live = false, released = false;
        for (fiber &f : g_run.fibers) {
            live = live || f.state != DONE;
        }
        if (!live) {
            return true;
        }
        for (size_t w = 0; w * 32 < n; w++) {
            released = release_warp(w) || released;
            if (!g_run.fault.empty()) {
                return false;
            }
        }
        if (released) {
            continue;
        }
        bool all_at_barrier = true;
        for (fiber &f : g_run.fibers) {
            all_at_barrier = all_at_barrier && (f.state == DONE || f.state == AT_BARRIER);
        }
        if (!all_at_barrier) {
            fail("the block cannot go on" + describe_block() +
                 " (a collective waits for a lane that never reaches it)");
            return false;
        }
        for (fiber &f : g_run.fibers) {
            f.state = f.state == AT_BARRIER ? READY : f.state;
        }
    }
}

} // namespace

uint64_t collective(collective_op op, unsigned mask, uint64_t value, int arg, int width) {
    fiber *f = g_run.current;
    if (width <= 0 || width > 32 || (width & (width - 1))) {
        fail(std::string(op_name(op)) + ": width " + std::to_string(width) +
             " is not a power of two up to 32");
        width = 32;
    }
    f->op = op;
    f->mask = mask;
    f->value = value;
    f->arg = arg;
    f->width = width;
    wait_here(AT_COLLECTIVE);
    return f->result;
}

void block_barrier() {
    wait_here(AT_BARRIER);
}

void *dynamic_shared() {
    return g_run.shared.data();
}

void run_grid(const char *kernel_expr, dim3 grid, dim3 block, size_t smem, void (*body)(void *),
              void *ctx) {
    std::lock_guard<std::mutex> guard(g_launch_lock);
    std::string kernel = kernel_expr; // "(name<T>)": NSCI_LAUNCH's parentheses
    if (kernel.size() > 1 && kernel.front() == '(' && kernel.back() == ')') {
        kernel = kernel.substr(1, kernel.size() - 2);
    }
    uint64_t threads = (uint64_t)block.x * block.y * block.z;
    bool bad_config = grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu ||
                      grid.y > 65535 || grid.z > 65535 || threads == 0 || threads > MAX_THREADS ||
                      block.x > 1024 || block.y > 1024 || block.z > 64;
    if (bad_config) {
        emu_set_error(cudaErrorInvalidConfiguration,
                      kernel + ": grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) +
                          ", " + std::to_string(grid.z) + "), block (" + std::to_string(block.x) +
                          ", " + std::to_string(block.y) + ", " + std::to_string(block.z) + ")");
        return;
    }
    // Every kernel's static __shared__ variables share one section: its size
    // bounds this kernel's from above.
    size_t static_shared = __start_nsci_emu_shared && __stop_nsci_emu_shared
                               ? (size_t)(__stop_nsci_emu_shared - __start_nsci_emu_shared)
                               : 0;
    if (smem + static_shared > MAX_SHARED) {
        emu_set_error(cudaErrorInvalidValue, kernel + ": " + std::to_string(smem) +
                                                 " bytes of dynamic shared memory (and at most " +
                                                 std::to_string(static_shared) +
                                                 " static): over 48 KiB");
        return;
    }
    if (!map_stacks()) {
        emu_set_error(cudaErrorMemoryAllocation, "no memory for the emulator's thread stacks");
        return;
    }
    g_grid_dim = grid;
    g_block_dim = block;
    g_run.body = body;
    g_run.ctx = ctx;
    g_run.fault.clear();
    g_run.undefined_read.clear();
    g_run.shared.assign(smem, 0xCD);
    for (unsigned z = 0; z < grid.z; z++) {
        for (unsigned y = 0; y < grid.y; y++) {
            for (unsigned x = 0; x < grid.x; x++) {
                g_block_idx = dim3(x, y, z);
                if (!run_block((unsigned)threads)) {
                    emu_set_error(cudaErrorLaunchFailure, kernel + ", block (" + std::to_string(x) +
                                                              ", " + std::to_string(y) + ", " +
                                                              std::to_string(z) +
                                                              "): " + g_run.fault);
                    return;
                }
            }
        }
    }
    if (!g_run.undefined_read.empty()) {
        emu_note(kernel + ": " + g_run.undefined_read);
    }
}

} // namespace nsci_emu
