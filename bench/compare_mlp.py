#!/usr/bin/env python3
"""nsc against PyTorch on bench_mlp's workload: one training step of an MLP
784-1024-1024-10 (ReLU) at batch 256 (zero_grad, forward, cross-entropy,
backward, AdamW with torch's defaults), plus its two halves:

  mlp.train_step  zero_grad(set_to_none=True) + forward + loss + backward + step
  mlp.fwd_bwd     forward + loss + backward (grads cleared before, untimed)
  mlp.adamw       optimizer.step() alone (1.86M parameters)

Both sides run on this machine in one invocation, at the same thread counts
(nsc_set_num_threads / torch.set_num_threads), in alternating rounds so that
load from other processes hits both alike: each round runs the bench_mlp
program once per thread count, then the same cases in PyTorch. Every number
is a median of RUNS timed runs after one warm-up; the table shows the median
over rounds and the ratio nsc / PyTorch (below 1: nsc is faster). Each row is
also appended as a JSON line ("bench": "mlp_vs_torch") to bench/results.jsonl
(or $NSC_BENCH_OUT).

PyTorch reference: Debian's python3-torch 1.13 (/usr/bin/python3), whose
AdamW runs the single-tensor path by default (foreach=None means False).
Usage: make MODE=bench build/bench/bench/bench_mlp
       /usr/bin/python3 bench/compare_mlp.py [--rounds 3] [--runs 5] [--threads 2,1]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

CASES = ["mlp.train_step", "mlp.fwd_bwd", "mlp.adamw"]
SHAPE = "784-1024-1024-10xB256"
BATCH = 256


def make_model():
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 10))
    x = torch.randn(BATCH, 784)
    y = torch.randint(0, 10, (BATCH,))
    opt = torch.optim.AdamW(model.parameters())  # torch's defaults, as bench_mlp
    return model, x, y, opt


def torch_case(case, model, x, y, opt):
    """One timed run of a case, in ms (mirrors bench_mlp.c's run_case)."""
    if case == "mlp.adamw" and model[0].weight.grad is None:
        F.cross_entropy(model(x), y).backward()
    if case == "mlp.fwd_bwd":
        opt.zero_grad(set_to_none=True)
    start = time.perf_counter()
    if case == "mlp.train_step":
        opt.zero_grad(set_to_none=True)
    if case != "mlp.adamw":
        F.cross_entropy(model(x), y).backward()
    if case != "mlp.fwd_bwd":
        opt.step()
    return (time.perf_counter() - start) * 1e3


def torch_round(threads, runs):
    torch.set_num_threads(threads)
    model, x, y, opt = make_model()
    out = {}
    for case in CASES:
        torch_case(case, model, x, y, opt)  # warm-up
        out[case] = statistics.median(torch_case(case, model, x, y, opt) for _ in range(runs))
    return out


def nsc_round(binary, threads, runs):
    env = dict(os.environ, NSC_BENCH_RUNS=str(runs))
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as tmp:
        env["NSC_BENCH_OUT"] = tmp.name  # the per-round lines stay out of results.jsonl
        subprocess.run([binary, "all", str(threads)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in open(tmp.name) if line.strip()]
    return {r["name"]: r["median_ms"] for r in rows if r["threads"] == threads}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build/bench/bench/bench_mlp")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", default="2,1")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit("compare_mlp: %s not found (make MODE=bench %s)" % (args.bin, args.bin))
    runs = max(args.runs, 5)
    out_path = os.environ.get("NSC_BENCH_OUT", "bench/results.jsonl")
    print("torch %s, %d rounds of %d runs" % (torch.__version__, args.rounds, runs))
    print("%-16s %-22s %7s %10s %10s %8s" % ("name", "shape", "threads", "nsc_ms", "torch_ms",
                                             "ratio"))
    with open(out_path, "a") as out:
        for threads in [int(t) for t in args.threads.split(",")]:
            nsc = {c: [] for c in CASES}
            ref = {c: [] for c in CASES}
            for _ in range(args.rounds):
                for c, ms in nsc_round(args.bin, threads, runs).items():
                    nsc[c].append(ms)
                for c, ms in torch_round(threads, runs).items():
                    ref[c].append(ms)
            for c in CASES:
                a, b = statistics.median(nsc[c]), statistics.median(ref[c])
                print("%-16s %-22s %7d %10.3f %10.3f %8.3f" % (c, SHAPE, threads, a, b, a / b))
                out.write(json.dumps({
                    "bench": "mlp_vs_torch", "name": c, "shape": SHAPE, "threads": threads,
                    "rounds": args.rounds, "runs": runs, "median_ms": round(a, 4),
                    "torch_median_ms": round(b, 4), "ratio_to_torch": round(a / b, 4),
                    "torch_version": torch.__version__, "time": int(time.time())}) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
