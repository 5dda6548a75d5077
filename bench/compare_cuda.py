"""PyTorch eager on the GPU for bench/bench_cuda.c's cases: GPT-2 small
(transformers' GPT2LMHeadModel when installed, random weights) forward of
8 x 1024 tokens without grad, and forward + cross_entropy + backward; the
median of 5 runs after one warm-up, synchronized, TF32 off (as nsc's
cuBLAS calls). Prints the same line format as bench_cuda.
Run: python3 bench/compare_cuda.py (on a machine with a GPU and torch)."""
import statistics
import time

import torch


def model():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0)
    return GPT2LMHeadModel(cfg).cuda().eval()


def measure(name, fn, runs=5):
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

    def train_step():
        logits = m(ids).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), ids.view(-1))
        loss.backward()
        m.zero_grad(set_to_none=True)

    measure("gpt2_small.forward.torch", forward)
    measure("gpt2_small.train_step.torch", train_step)


if __name__ == "__main__":
    main()
