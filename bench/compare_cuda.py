"""PyTorch eager on the GPU for bench/bench_cuda.c's cases: GPT-2 small
(transformers' GPT2LMHeadModel when installed, random weights) forward of
8 x 1024 tokens without grad, forward + cross_entropy + backward, and the
training step (that, then torch.optim.AdamW's step, lr 1e-4, and
zero_grad); the median of 5 runs after one warm-up (two for the training
steps: the first makes the optimizer's state), synchronized, TF32 off
(as nsc's cuBLAS calls). AdamW runs three ways: foreach=False (the
single-tensor path, one kernel per op), the default (foreach: fewer
launches, what a torch user gets) and fused=True (one kernel per parameter
list, the closest to nsc's fused_adamw_, one kernel per parameter); and
the step with clip_grad_norm_(1.0) before the default AdamW (nanoGPT's
loop). Prints the same line format as bench_cuda.
Run: python3 bench/compare_cuda.py (on a machine with a GPU and torch)."""
import statistics
import time

import torch


def model():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    return GPT2LMHeadModel(cfg).cuda().eval()


def measure(name, fn, runs=5, warmups=1):
    for _ in range(warmups):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    print(f"{name:<28} {'8x1024':<22} 1 {statistics.median(times):10.3f}        -      -")


def main():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(1234)
    m = model()
    ids = torch.randint(0, 50257, (8, 1024), device="cuda")

    def forward():
        with torch.no_grad():
            m(ids).logits

    def fwd_bwd():
        logits = m(ids).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), ids.view(-1))
        loss.backward()

    def train_step(opt, clip=False):
        def step():
            fwd_bwd()
            if clip:
                torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    def fwd_bwd_clear():
        fwd_bwd()
        m.zero_grad(set_to_none=True)

    measure("gpt2_small.forward.torch", forward)
    m.train()
    measure("gpt2_small.fwd_bwd.torch", fwd_bwd_clear)
    single = torch.optim.AdamW(m.parameters(), lr=1e-4, foreach=False)
    # two warm-ups: the first step makes the optimizer's state (as bench_cuda)
    measure("gpt2_small.train_step.torch", train_step(single), warmups=2)
    del single
    foreach = torch.optim.AdamW(m.parameters(), lr=1e-4)
    measure("gpt2_small.train_step.foreach", train_step(foreach), warmups=2)
    # nanoGPT's loop: clip to 1, then the default (foreach) AdamW
    measure("gpt2_small.train_step_clip.torch", train_step(foreach, clip=True), warmups=2)
    del foreach
    try:
        fused = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)
    except (TypeError, RuntimeError) as e:  # torch before 2.0 has no fused AdamW
        print(f"# fused AdamW unavailable: {e}")
        return
    measure("gpt2_small.train_step.fused", train_step(fused), warmups=2)


if __name__ == "__main__":
    main()
