#!/usr/bin/env python3
"""nsc against PyTorch eager (and its OpenBLAS floor, and optionally llm.c)
on the model workloads of bench_gpt2 and bench_mlp, on this machine, at the
same thread counts, in alternating rounds so that load from other processes
hits every side alike.

Cases (B x T):
  gpt2.fwd         GPT-2 small, no-grad forward, full logits [B, T, 50257]: 1x64, 1x256
  gpt2.train_step  zero_grad + forward + cross-entropy + backward + AdamW: 4x64
  gpt2.generate    greedy, KV cache, 128 new tokens after a 16-token prompt
  mlp.train_step   MLP 784-1024-1024-10, batch 256, the same step
Dropout is off everywhere (nsc_gpt2_new returns evaluation mode; the torch
models are put in eval()), as in llm.c.

Peers:
  torch-1.13  Debian's python3-torch (/usr/bin/python3): no transformers
              there, so GPT-2 is written out below in plain torch (same
              shapes, same layout as transformers' GPT2LMHeadModel: Conv1D
              weights [in, out], tied lm_head), with its own KV cache.
  torch-pip   the pip torch of `python3` (2.x): transformers'
              GPT2LMHeadModel(GPT2Config()), random init; generation through
              model.generate with its own cache.
  floor       bench_floor: the case's GEMMs alone through raw OpenBLAS.
  llm.c       (train_step only, with --llmc PATH to a local llm.c checkout;
              never vendored): its CPU train_gpt2 at B=4, T=64 on the
              weights nsc saved, converted to its checkpoint format.
Generation checks tokens: the weights nsc generated with (bench_gpt2 --save)
are loaded into both torch models, and each must produce nsc's 128 tokens.

Thread settings for a count N: nsc_set_num_threads(N) (nsc's pool and
OpenBLAS); torch.set_num_threads(N) with OMP_NUM_THREADS, MKL_NUM_THREADS and
OPENBLAS_NUM_THREADS = N. For N > 1 torch also runs with one intra-op
thread and its BLAS on N (Debian torch 1.13's default here: its pool and
OpenBLAS's otherwise compete for the cores); the faster of the two is the
reference, and the table says which.

Every number is a median of RUNS timed runs after a warm-up, taken in each of
ROUNDS rounds; the table shows the median over rounds of the times and of
each round's ratio nsc / peer (the sides of a round run back to back, so a
ratio sees one load; time ratios: below 1 nsc is faster; for generation the
tokens/s ratio nsc / peer, above 1 nsc is faster; nsc/floor is a time ratio
everywhere). Rows go to
bench/results.jsonl ("bench": "vs_torch"); --write FILE writes the Markdown
table (bench/RESULTS.md).

Usage: make MODE=bench bench-bins
       python3 bench/compare_torch.py [--rounds 2] [--runs 5] [--threads 2,1]
           [--cases gpt2.fwd,gpt2.train_step,gpt2.generate,mlp.train_step]
           [--llmc ~/llm.c] [--write bench/RESULTS.md]
"""
import argparse
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
C, LAYERS, HEADS, VOCAB, POSITIONS = 768, 12, 12, 50257, 1024
PROMPT, NEW_TOKENS = 16, 128
GPT2_CASES = [("gpt2.fwd", 1, 64), ("gpt2.fwd", 1, 256), ("gpt2.train_step", 4, 64),
              ("gpt2.generate", 1, PROMPT)]


def case_key(name, b, t):
    return "%s.%dx%d" % (name, b, t)


def ids_of(b, t):
    """bench_gpt2.c's make_ids: a fixed pseudo-random sequence."""
    return [[((r * t + i) * 7919 + 13) % VOCAB for i in range(t)] for r in range(b)]


# --------------------------------------------------------------------------
# Worker side: runs inside a torch interpreter, prints one JSON line.
# --------------------------------------------------------------------------

def load_safetensors(path):
    """A safetensors file as {name: numpy array} (Debian has no safetensors)."""
    import numpy as np
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        lo, hi = info["data_offsets"]
        out[name] = np.frombuffer(data[lo:hi], dtype=np.float32).reshape(info["shape"])
    return out


def mini_gpt2(torch, weights=None):
    """GPT-2 small in plain torch, transformers' parameter names and layout."""
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(1)

    def param(*shape, std=0.02, zero=False, one=False):
        t = (torch.zeros(shape) if zero else torch.ones(shape) if one
             else torch.randn(shape, generator=gen) * std)
        return torch.nn.Parameter(t)

    class MiniGPT2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            proj = 0.02 / math.sqrt(2 * LAYERS)
            p = {"transformer.wte.weight": param(VOCAB, C),
                 "transformer.wpe.weight": param(POSITIONS, C),
                 "transformer.ln_f.weight": param(C, one=True),
                 "transformer.ln_f.bias": param(C, zero=True)}
            for i in range(LAYERS):
                h = "transformer.h.%d." % i
                p[h + "ln_1.weight"], p[h + "ln_1.bias"] = param(C, one=True), param(C, zero=True)
                p[h + "ln_2.weight"], p[h + "ln_2.bias"] = param(C, one=True), param(C, zero=True)
                p[h + "attn.c_attn.weight"] = param(C, 3 * C)
                p[h + "attn.c_attn.bias"] = param(3 * C, zero=True)
                p[h + "attn.c_proj.weight"] = param(C, C, std=proj)
                p[h + "attn.c_proj.bias"] = param(C, zero=True)
                p[h + "mlp.c_fc.weight"] = param(C, 4 * C)
                p[h + "mlp.c_fc.bias"] = param(4 * C, zero=True)
                p[h + "mlp.c_proj.weight"] = param(4 * C, C, std=proj)
                p[h + "mlp.c_proj.bias"] = param(C, zero=True)
            self.p = torch.nn.ParameterDict({k.replace(".", "/"): v for k, v in p.items()})

        def w(self, name):
            return self.p[name.replace(".", "/")]

        def conv1d(self, x, name):  # transformers' Conv1D: addmm(bias, x, W [in, out])
            out = torch.addmm(self.w(name + ".bias"), x.reshape(-1, x.shape[-1]),
                              self.w(name + ".weight"))
            return out.view(*x.shape[:-1], -1)

        def forward(self, ids, cache=None):
            b, t = ids.shape
            past = cache[0][0].shape[2] if cache and cache[0] else 0
            pos = torch.arange(past, past + t).unsqueeze(0)
            x = F.embedding(ids, self.w("transformer.wte.weight")) + \
                F.embedding(pos, self.w("transformer.wpe.weight"))
            keep = torch.ones(t, past + t, dtype=torch.bool).tril(diagonal=past)
            for i in range(LAYERS):
                h = "transformer.h.%d." % i
                a = F.layer_norm(x, (C,), self.w(h + "ln_1.weight"), self.w(h + "ln_1.bias"))
                q, k, v = self.conv1d(a, h + "attn.c_attn").split(C, dim=2)
                q, k, v = (z.view(b, t, HEADS, C // HEADS).transpose(1, 2) for z in (q, k, v))
                if cache is not None:
                    if cache[i]:
                        k = torch.cat([cache[i][0], k], dim=2)
                        v = torch.cat([cache[i][1], v], dim=2)
                    cache[i] = (k, v)
                att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(C // HEADS))
                att = torch.where(keep, att, torch.tensor(torch.finfo(att.dtype).min))
                y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, C)
                x = x + self.conv1d(y, h + "attn.c_proj")
                m = F.layer_norm(x, (C,), self.w(h + "ln_2.weight"), self.w(h + "ln_2.bias"))
                m = F.gelu(self.conv1d(m, h + "mlp.c_fc"), approximate="tanh")
                x = x + self.conv1d(m, h + "mlp.c_proj")
            x = F.layer_norm(x, (C,), self.w("transformer.ln_f.weight"),
                             self.w("transformer.ln_f.bias"))
            return x @ self.w("transformer.wte.weight").t()

    model = MiniGPT2()
    if weights is not None:
        with torch.no_grad():
            for name, array in weights.items():
                if name.replace(".", "/") in model.p:
                    model.w(name).copy_(torch.from_numpy(array.copy()))
    return model.eval()


def hf_gpt2(torch, weights_dir=None):
    import transformers
    transformers.logging.set_verbosity_error()
    if weights_dir:
        model = transformers.GPT2LMHeadModel.from_pretrained(weights_dir)
    else:
        torch.manual_seed(1)
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    return model.eval()


def timed(fn, runs, warmups=1):
    for _ in range(warmups):
        fn()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    ms = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - start) * 1e3)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return statistics.median(ms), faults / runs


def mlp_step(torch, runs):
    F = torch.nn.functional
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 10))
    x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
    opt = torch.optim.AdamW(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return timed(step, runs, warmups=2)


def gpt2_model(torch, hf, weights_dir):
    if hf:
        return hf_gpt2(torch, weights_dir)
    weights = load_safetensors(os.path.join(weights_dir, "model.safetensors")) \
        if weights_dir else None
    return mini_gpt2(torch, weights)


def run_worker(args):
    import torch
    n = args.threads
    torch.set_num_threads(args.torch_threads or n)
    out = {"torch": torch.__version__, "threads": n, "torch_threads": torch.get_num_threads()}
    case, runs = args.worker, args.runs
    if case == "mlp.train_step":
        out["median_ms"], out["minflt"] = mlp_step(torch, runs)
    else:
        name, shape = case.rsplit(".", 1)
        b, t = (int(v) for v in shape.split("x"))
        hf = args.hf
        model = gpt2_model(torch, hf, args.weights if name == "gpt2.generate" else None)
        ids = torch.tensor(ids_of(b, t))
        if name == "gpt2.fwd":
            def fwd():
                with torch.no_grad():
                    return model(ids, use_cache=False).logits if hf else model(ids)
            out["median_ms"], out["minflt"] = timed(fwd, runs)
        elif name == "gpt2.train_step":
            targets = torch.tensor(ids_of(b, t + 1))[:, 1:].reshape(-1)
            opt = torch.optim.AdamW(model.parameters())

            def step():
                opt.zero_grad(set_to_none=True)
                logits = model(ids, use_cache=False).logits if hf else model(ids)
                torch.nn.functional.cross_entropy(logits.view(-1, VOCAB), targets).backward()
                opt.step()
            out["median_ms"], out["minflt"] = timed(step, runs, warmups=2)
        else:
            result = {}

            def generate():
                with torch.no_grad():
                    if hf:
                        result["tokens"] = model.generate(
                            ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                            do_sample=False, eos_token_id=None, pad_token_id=VOCAB - 1,
                            attention_mask=torch.ones_like(ids))[0].tolist()
                        return
                    cache = [None] * LAYERS
                    seq, x = ids, ids
                    for _ in range(NEW_TOKENS):
                        nxt = model(x, cache)[:, -1].argmax(-1, keepdim=True)
                        seq = torch.cat([seq, nxt], dim=1)
                        x = nxt
                    result["tokens"] = seq[0].tolist()
            out["median_ms"], out["minflt"] = timed(generate, runs)
            out["tokens_per_s"] = NEW_TOKENS / (out["median_ms"] * 1e-3)
            out["tokens"] = result["tokens"]
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


# --------------------------------------------------------------------------
# Orchestrator: runs nsc, the floor and the peers as subprocesses.
# --------------------------------------------------------------------------

def run_json(cmd, env=None, timeout=3600):
    """Runs cmd; returns the JSON lines it appended to a temporary NSC_BENCH_OUT."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as tmp:
        env = dict(env or os.environ, NSC_BENCH_OUT=tmp.name)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, timeout=timeout)
        return [json.loads(line) for line in open(tmp.name) if line.strip()]


def torch_env(threads):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_peer(python, case, threads, torch_threads, runs, hf, weights):
    cmd = [python, os.path.abspath(__file__), "--worker", case, "--threads", str(threads),
           "--torch-threads", str(torch_threads), "--runs", str(runs), "--weights", weights]
    if hf:
        cmd.append("--hf")
    proc = subprocess.run(cmd, env=torch_env(threads), check=True, capture_output=True,
                          text=True, timeout=3600)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_torch(python, case, threads, runs, hf, weights):
    """The faster of torch's two thread settings at `threads` (one when 1)."""
    results = [run_peer(python, case, threads, threads, runs, hf, weights)]
    if threads > 1:
        results.append(run_peer(python, case, threads, 1, runs, hf, weights))
    return min(results, key=lambda r: r["median_ms"])


# llm.c ---------------------------------------------------------------------

def write_llmc_inputs(weights_dir, workdir):
    """nsc's weights as llm.c's gpt2_124M.bin (version 3, vocab padded to
    50304) and a token file of the bench ids (its data format)."""
    import numpy as np
    w = load_safetensors(os.path.join(weights_dir, "model.safetensors"))
    padded = 50304
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, 3, POSITIONS, VOCAB, LAYERS, HEADS, C, padded]
    wte = np.zeros((padded, C), dtype=np.float32)
    wte[:VOCAB] = w["transformer.wte.weight"]

    def per_layer(name, transpose=False):
        arrays = [w["transformer.h.%d.%s" % (i, name)] for i in range(LAYERS)]
        return np.stack([a.T if transpose else a for a in arrays])
    parts = [wte, w["transformer.wpe.weight"],
             per_layer("ln_1.weight"), per_layer("ln_1.bias"),
             per_layer("attn.c_attn.weight", True), per_layer("attn.c_attn.bias"),
             per_layer("attn.c_proj.weight", True), per_layer("attn.c_proj.bias"),
             per_layer("ln_2.weight"), per_layer("ln_2.bias"),
             per_layer("mlp.c_fc.weight", True), per_layer("mlp.c_fc.bias"),
             per_layer("mlp.c_proj.weight", True), per_layer("mlp.c_proj.bias"),
             w["transformer.ln_f.weight"], w["transformer.ln_f.bias"]]
    with open(os.path.join(workdir, "gpt2_124M.bin"), "wb") as f:
        f.write(header.tobytes())
        for p in parts:
            f.write(np.ascontiguousarray(p, dtype=np.float32).tobytes())
    data = os.path.join(workdir, "dev", "data", "tinyshakespeare")
    os.makedirs(data, exist_ok=True)
    tokens = np.array([(i * 7919 + 13) % VOCAB for i in range(64 * 4 * 40 + 1)], dtype=np.uint16)
    dh = np.zeros(256, dtype=np.int32)
    dh[:3] = [20240520, 1, len(tokens)]
    for split in ("train", "val"):
        with open(os.path.join(data, "tiny_shakespeare_%s.bin" % split), "wb") as f:
            f.write(dh.tobytes())
            f.write(tokens.tobytes())


def run_llmc(checkout, weights_dir, threads, runs):
    """Median ms of llm.c's CPU training steps 1..runs (step 0 warms up)."""
    checkout = os.path.expanduser(checkout)
    binary = os.path.join(checkout, "train_gpt2")
    if not os.access(binary, os.X_OK):
        subprocess.run(["make", "-C", checkout, "train_gpt2"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as work:
        write_llmc_inputs(weights_dir, work)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        proc = subprocess.Popen([binary], cwd=work, env=env, stdout=subprocess.PIPE, text=True)
        times = []
        for line in proc.stdout:
            m = re.match(r"step (\d+): train loss \S+ \(took ([\d.]+) ms\)", line)
            if m and int(m.group(1)) >= 1:
                times.append(float(m.group(2)))
            if len(times) >= runs:
                break
        proc.kill()
        proc.wait()
    return statistics.median(times) if times else float("nan")


# the table -------------------------------------------------------------------

def nsc_case(binary, filt, threads, runs):
    env = dict(os.environ, NSC_BENCH_RUNS=str(runs))
    rows = run_json([binary, filt, str(threads)], env)
    return [r for r in rows if r["threads"] == threads]


def median_of(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else float("nan")


def machine_line():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "%s, %d cores, %s" % (cpu, os.cpu_count() or 0, platform.platform())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--hf", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--torch-threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--weights", default="", help=argparse.SUPPRESS)
    ap.add_argument("--threads", default="2,1")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cases", default="gpt2.fwd,gpt2.train_step,gpt2.generate,mlp.train_step")
    ap.add_argument("--bin-dir", default="build/bench/bench")
    ap.add_argument("--torch113", default="/usr/bin/python3")
    ap.add_argument("--torch-pip", default=shutil.which("python3") or "python3")
    ap.add_argument("--llmc", help="a local llm.c checkout (built with make train_gpt2)")
    ap.add_argument("--write", help="write the Markdown table to this file")
    args = ap.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        return run_worker(args)
    orchestrate(args)


def orchestrate(args):
    bins = {k: os.path.join(args.bin_dir, "bench_" + k) for k in ("gpt2", "floor", "mlp")}
    for b in bins.values():
        if not os.access(b, os.X_OK):
            sys.exit("compare_torch: %s not found (make MODE=bench bench-bins)" % b)
    runs = max(args.runs, 5)
    wanted = args.cases.split(",")
    keys = [(n, b, t) for n, b, t in GPT2_CASES if n in wanted]
    if "mlp.train_step" in wanted:
        keys.append(("mlp.train_step", 256, 0))
    weights = tempfile.mkdtemp(prefix="nsc_gpt2_")
    subprocess.run([bins["gpt2"], "--save", weights], check=True, stdout=subprocess.DEVNULL)
    nsc_tokens = [int(v) for v in open(os.path.join(weights, "tokens.txt")).read().split()]
    peers = [("torch-1.13", args.torch113, False), ("torch-pip", args.torch_pip, True)]
    samples = {}  # (key, threads, who) -> list of result dicts

    def note(key, threads, who, result):
        samples.setdefault((key, threads, who), []).append(result)
        print("  %-26s %d %-11s %10.2f ms" % (case_key(*key) if key[2] else key[0], threads,
                                              who, result["median_ms"]), flush=True)

    for rnd in range(args.rounds):
        print("round %d (load %s)" % (rnd + 1, " ".join("%.2f" % v for v in os.getloadavg())),
              flush=True)
        for threads in [int(v) for v in args.threads.split(",")]:
            for key in keys:
                name, b, t = key
                if name == "mlp.train_step":
                    rows = nsc_case(bins["mlp"], "mlp.train_step", threads, runs)
                    note(key, threads, "nsc", [r for r in rows if r["name"] == name][0])
                    floor = nsc_case(bins["floor"], "floor.mlp", threads, runs)
                else:
                    filt = case_key(name, b, t)
                    note(key, threads, "nsc", nsc_case(bins["gpt2"], filt, threads, runs)[0])
                    shape = "%dx%d" % (b, t) + ("+%d" % NEW_TOKENS if "generate" in name else "")
                    floor = [r for r in nsc_case(bins["floor"], "floor." + name, threads, runs)
                             if r["shape"] == shape]
                note(key, threads, "floor", floor[0])
                for who, python, hf in peers:
                    note(key, threads, who, best_torch(python, case_key(*key) if t else name,
                                                       threads, runs, hf, weights))
                if args.llmc and name == "gpt2.train_step":
                    ms = run_llmc(args.llmc, weights, threads, runs)
                    note(key, threads, "llm.c", {"median_ms": ms})
    table = summarize(args, keys, samples, nsc_tokens, runs)
    if args.write:
        with open(args.write, "w") as f:
            f.write(table)
        print("wrote", args.write)
    shutil.rmtree(weights, ignore_errors=True)


def summarize(args, keys, samples, nsc_tokens, runs):
    out_path = os.environ.get("NSC_BENCH_OUT", os.path.join(HERE, "results.jsonl"))
    lines = []
    versions = {}
    for (key, threads, who), rs in samples.items():
        if "torch" in rs[0]:
            versions[who] = rs[0]["torch"]
    head = ("| case | threads | nsc ms | floor ms | nsc/floor | torch-1.13 ms | nsc/1.13 | "
            "torch-pip ms | nsc/pip | llm.c ms | nsc/llm.c | nsc RSS MB | 1.13 RSS MB | "
            "pip RSS MB | tokens |")
    lines.append(head)
    lines.append("|" + "---|" * (head.count("|") - 1))
    with open(out_path, "a") as jf:
        for key in keys:
            for threads in [int(v) for v in args.threads.split(",")]:
                row = {who: samples.get((key, threads, who), []) for who in
                       ("nsc", "floor", "torch-1.13", "torch-pip", "llm.c")}
                med = {w: median_of([r["median_ms"] for r in rs]) for w, rs in row.items()}
                gen = key[0] == "gpt2.generate"

                def ratio(w, inverse=gen):
                    """Median over rounds of the round's nsc/peer (peer/nsc for tokens/s)."""
                    pairs = zip(row["nsc"], row[w])
                    return median_of([(p["median_ms"] / n["median_ms"]) if inverse
                                      else (n["median_ms"] / p["median_ms"]) for n, p in pairs])
                rss = {w: median_of([r.get("peak_rss_bytes") for r in rs]) / 2**20
                       for w, rs in row.items()}
                tok = "-"
                if gen:
                    same = [all(r.get("tokens") == nsc_tokens for r in row[w])
                            for w in ("torch-1.13", "torch-pip")]
                    tok = "1.13 %s, pip %s" % tuple("same" if s else "DIFFER" for s in same)
                tt = {w: (rs[0].get("torch_threads") if rs else None) for w, rs in row.items()}

                def fmt(v, pattern="%.1f"):
                    return "-" if math.isnan(v) else pattern % v

                name = case_key(*key) if key[2] else "mlp.train_step.B256"
                lines.append("| %s | %d | %s | %s | %s | %s%s | %s | %s%s | %s | %s | %s | %s | "
                             "%s | %s | %s |" % (
                                 name, threads, fmt(med["nsc"]), fmt(med["floor"]),
                                 fmt(ratio("floor", False), "%.2f"),
                                 fmt(med["torch-1.13"]), torch_note(tt["torch-1.13"], threads),
                                 fmt(ratio("torch-1.13"), "%.2f"),
                                 fmt(med["torch-pip"]), torch_note(tt["torch-pip"], threads),
                                 fmt(ratio("torch-pip"), "%.2f"),
                                 fmt(med["llm.c"]), fmt(ratio("llm.c"), "%.2f"),
                                 fmt(rss["nsc"], "%.0f"), fmt(rss["torch-1.13"], "%.0f"),
                                 fmt(rss["torch-pip"], "%.0f"), tok))
                jf.write(json.dumps({
                    "bench": "vs_torch", "name": name, "threads": threads,
                    "rounds": args.rounds, "runs": runs,
                    "median_ms": {w: (None if math.isnan(v) else round(v, 3))
                                  for w, v in med.items()},
                    "ratio": {w: (None if math.isnan(ratio(w, gen and w != "floor")) else
                                  round(ratio(w, gen and w != "floor"), 4))
                              for w in med if w != "nsc"},
                    "peak_rss_mb": {w: (None if math.isnan(v) else round(v, 1))
                                    for w, v in rss.items()},
                    "torch": versions, "time": int(time.time())}) + "\n")
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    preface = ("Machine: %s. Load average at the end: %s. Peers: %s. Rounds: %d, runs per "
               "measurement: %d (median).\n\n" % (
                   machine_line(), " ".join("%.2f" % v for v in os.getloadavg()),
                   ", ".join("%s %s" % kv for kv in sorted(versions.items())),
                   args.rounds, runs))
    return preface + table


def torch_note(torch_threads, threads):
    """Marks a torch time taken with one intra-op thread (its BLAS on all)."""
    return " (1+BLAS)" if torch_threads == 1 and threads > 1 else ""


if __name__ == "__main__":
    main()
