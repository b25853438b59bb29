#!/usr/bin/python3
"""The same CARE conversion as `care-worker convert`, in PyTorch eager.

What users who do not run this service run: the CARE/TransMLA-style script
(load the Hugging Face checkpoint into float32 modules, forward hooks on
k_proj collect the input covariance over the calibration batch, Cholesky
whitening + SVD per K/V, perplexity of the original and the converted
model). This file is the project's own code; it exists to measure
`care-worker convert` against that peer, side by side, on the same
checkpoint and token ids (docs/performance.md, "Against PyTorch").

  bench/peer/care_peer.py --care-worker build/worker/cli/care-worker \\
      --model /tmp/peer/l1b4 --data /tmp/peer/l1b4.u32 --rounds 2

runs the peer and care-worker alternately (`--rounds` times each, both on
`--threads` threads), prints per-stage seconds, CPU seconds and peak RSS of
each run, the ratios (care / peer) of the medians, and checks that the
perplexities agree (see TOLERANCE below). `--peer-only` runs the peer once
and prints its JSON (that is what the comparison runs as a child process, so
each side's peak RSS is its own).

Needs Debian's python3-torch (1.13, CPU, OpenBLAS via
libopenblas0-pthread); without torch it prints a message and exits 0. It is
not part of CI.

Same math as the pipeline (docs/conversion.md):
- data: .u16/.u32 token ids; when calibration and evaluation use the same
  file, calibration takes [0, 0.9) of the stream and evaluation [0.9, 1);
  the last 10 % of the calibration range is held out (never sampled);
  N windows of T tokens start at splitmix64(seed)-drawn offsets.
- covariance C = (1/N) sum x^T x of the k/v input, 256-row float32 blocks
  summed in float64; C += damping * mean(diag C) * I; S = L^T (Cholesky);
  SVD of S W (W = k_proj.weight^T, float64); W_down = W V_r, W_up = V_r^T.
- uniform ranks: r = floor(floor((1 - save) * L * 2 * g * d_h) / (2 L)).
- perplexity: non-overlapping windows of T tokens from the evaluation range,
  inputs c[0..T-2], targets c[1..T-1], exp(mean NLL).
"""

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings

# The checkpoint is mapped read-only and only ever read.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

# Perplexities of the two pipelines must agree to this many nats of mean
# NLL (ppl within 0.1 %). Both run float32 forwards whose GEMMs sum in
# different orders (Eigen vs OpenBLAS blocking): relative errors ~1e-6 per
# dot product of D = 2048 terms, which move a mean NLL of ~12 nats by
# ~1e-5; the converted model adds the factors' float32 rounding and the
# eigen-of-Gram vs SVD route to the same subspace (agreement ~1e-9 in
# float64). 1e-3 leaves two orders of magnitude of margin and still catches
# any real difference in the math (a wrong rank, damping or window moves
# the NLL by > 1e-2).
TOLERANCE_NLL = 1e-3

MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------- data


def read_ids(path):
    width = 2 if path.endswith(".u16") else 4
    if not (path.endswith(".u16") or path.endswith(".u32")):
        sys.exit(f"{path}: expected a .u16/.u32 token id file")
    import numpy as np

    return np.fromfile(path, dtype="<u2" if width == 2 else "<u4").astype(
        np.int64)


class SplitMix64:
    """data::SplitMix64 (worker/care/data/windows.h), bit for bit."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound):
        threshold = ((1 << 64) - bound) % bound
        while True:
            x = self.next()
            if x >= threshold:
                return x % bound


def plan_windows(n, samples, seq_len, seed, eval_seq_len, eval_windows):
    """Calibration starts and evaluation starts, as ConvertModel cuts them
    when --eval is the --calib file (default ranges)."""
    calib_end = math.floor(0.9 * n)
    span = calib_end
    split = calib_end - math.floor(span * 0.1)
    starts_n = split - seq_len + 1
    if starts_n < 1 or split < samples * seq_len:
        sys.exit("calibration data is shorter than asked")
    rng = SplitMix64(seed)
    calib = [rng.below(starts_n) for _ in range(samples)]
    eval_begin = calib_end
    count = (n - eval_begin) // eval_seq_len
    if eval_windows > 0:
        count = min(count, eval_windows)
    evals = [eval_begin + w * eval_seq_len for w in range(count)]
    return calib, evals


# ---------------------------------------------------------------- model


def read_safetensors(model_dir, torch):
    """All tensors of the checkpoint as float32 torch tensors (the float32
    modules a PyTorch user builds from a BF16 checkpoint), read through a
    memory map as safetensors' own loader does."""
    import numpy as np

    files = sorted(f for f in os.listdir(model_dir)
                   if f.endswith(".safetensors"))
    out = {}
    for name in files:
        path = os.path.join(model_dir, name)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        raw = np.memmap(path, dtype=np.uint8, mode="r")
        for key, meta in header.items():
            if key == "__metadata__":
                continue
            a, b = (8 + n + o for o in meta["data_offsets"])
            dt = meta["dtype"]
            if dt == "F32":
                t = torch.from_numpy(np.array(raw[a:b].view("<f4")))
            elif dt == "BF16":
                t = torch.from_numpy(raw[a:b].view("<i2")).view(
                    torch.bfloat16).float()
            elif dt == "F16":
                t = torch.from_numpy(raw[a:b].view("<f2")).float()
            else:
                sys.exit(f"{path}: {key} has dtype {dt}")
            out[key] = t.reshape(meta["shape"])
        del raw
    return out


def rope_inv_freq(cfg):
    """engine::ComputeRopeFrequencies for none / linear / llama3."""
    dh = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    dim = int(dh * cfg.get("partial_rotary_factor", 1.0))
    base = cfg.get("rope_theta", 10000.0)
    inv = [1.0 / base ** (2 * i / dim) for i in range(dim // 2)]
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        inv = [v / rs["factor"] for v in inv]
    elif kind == "llama3":
        orig = rs.get("original_max_position_embeddings",
                      cfg["max_position_embeddings"])
        low_w = orig / rs["low_freq_factor"]
        high_w = orig / rs["high_freq_factor"]
        out = []
        for v in inv:
            wl = 2 * math.pi / v
            if wl > low_w:
                v = v / rs["factor"]
            elif wl >= high_w:
                s = (orig / wl - rs["low_freq_factor"]) / (
                    rs["high_freq_factor"] - rs["low_freq_factor"])
                v = (1 - s) * v / rs["factor"] + s * v
            out.append(v)
        inv = out
    elif kind not in (None, "default"):
        sys.exit(f"rope_scaling {kind} is not implemented in the peer")
    return inv, dh


class Model:
    """A Llama-family decoder in eager PyTorch (what transformers'
    LlamaForCausalLM computes, without its bookkeeping)."""

    def __init__(self, cfg, w, torch):
        self.torch = torch
        self.cfg = cfg
        self.w = w
        self.L = cfg["num_hidden_layers"]
        self.nh = cfg["num_attention_heads"]
        self.nkv = cfg["num_key_value_heads"]
        inv, self.dh = rope_inv_freq(cfg)
        self.inv_freq = torch.tensor(inv, dtype=torch.float64)
        self.eps = cfg["rms_norm_eps"]
        self.head = w["model.embed_tokens.weight"] if cfg.get(
            "tie_word_embeddings") else w["lm_head.weight"]
        self.kv = {}  # layer -> (k_down, k_up, v_down, v_up) when converted

    def rms(self, x, weight):
        t = self.torch
        return x * t.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def rope(self, x, seq):
        # x: [B, H, T, dh]; half-split pairs (i, i + dim/2), Llama's layout
        t = self.torch
        pos = t.arange(seq, dtype=t.float64)
        ang = t.outer(pos, self.inv_freq)  # [T, dim/2]
        cos, sin = ang.cos().float(), ang.sin().float()
        half = self.inv_freq.numel()
        a, b = x[..., :half], x[..., half:2 * half]
        rot = t.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
        if 2 * half < x.shape[-1]:
            rot = t.cat([rot, x[..., 2 * half:]], dim=-1)
        return rot

    def layer(self, l, h, on_kv_input=None):
        t = self.torch
        F = t.nn.functional
        p = f"model.layers.{l}."
        w = self.w
        B, T, D = h.shape
        x = self.rms(h, w[p + "input_layernorm.weight"])
        if on_kv_input is not None:
            on_kv_input(l, x)
        q = F.linear(x, w[p + "self_attn.q_proj.weight"])
        if l in self.kv:
            kd, ku, vd, vu = self.kv[l]
            k = F.linear(F.linear(x, kd), ku)
            v = F.linear(F.linear(x, vd), vu)
        else:
            k = F.linear(x, w[p + "self_attn.k_proj.weight"])
            v = F.linear(x, w[p + "self_attn.v_proj.weight"])
        q = q.view(B, T, self.nh, self.dh).transpose(1, 2)
        k = k.view(B, T, self.nkv, self.dh).transpose(1, 2)
        v = v.view(B, T, self.nkv, self.dh).transpose(1, 2)
        q, k = self.rope(q, T), self.rope(k, T)
        rep = self.nh // self.nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = t.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
        mask = t.full((T, T), float("-inf")).triu(1)
        a = t.matmul(t.softmax(s + mask, dim=-1), v)
        a = a.transpose(1, 2).reshape(B, T, self.nh * self.dh)
        h = h + F.linear(a, w[p + "self_attn.o_proj.weight"])
        x = self.rms(h, w[p + "post_attention_layernorm.weight"])
        g = F.linear(x, w[p + "mlp.gate_proj.weight"])
        u = F.linear(x, w[p + "mlp.up_proj.weight"])
        return h + F.linear(F.silu(g) * u, w[p + "mlp.down_proj.weight"])

    def hidden(self, ids, on_kv_input=None):
        h = self.torch.nn.functional.embedding(
            ids, self.w["model.embed_tokens.weight"])
        for l in range(self.L):
            h = self.layer(l, h, on_kv_input)
        return h

    def nll(self, ids, targets):
        """Sum and count of the NLL of `targets` (full log-softmax, the
        way an eager script scores)."""
        t = self.torch
        h = self.rms(self.hidden(ids), self.w["model.norm.weight"])
        logits = t.nn.functional.linear(h, self.head)  # [B, T, V]
        logp = t.log_softmax(logits, dim=-1)
        picked = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return -picked.double().sum().item(), targets.numel()


# ---------------------------------------------------------------- peer


def run_peer(args):
    try:
        import torch
    except ImportError:
        print("care_peer: python3-torch is not installed; skipping "
              "(apt-get install python3-torch libopenblas0-pthread)")
        return None
    torch.set_num_threads(args.threads)
    times = {}
    t0 = time.perf_counter()
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    if cfg["model_type"] not in ("llama", "mistral"):
        sys.exit(f"the peer implements llama/mistral, not {cfg['model_type']}")
    stream = read_ids(args.data)
    weights = read_safetensors(args.model, torch)
    model = Model(cfg, weights, torch)
    ids = torch.from_numpy(stream)
    calib, evals = plan_windows(len(stream), args.calib_samples,
                                args.calib_seq_len, args.seed,
                                args.eval_seq_len, args.eval_windows)
    T = args.calib_seq_len
    calib_ids = torch.stack([ids[s:s + T] for s in calib])  # [N, T]
    times["load"] = time.perf_counter() - t0

    # ---- calibration: hooks on the k/v input, covariance per layer
    L, D = model.L, cfg["hidden_size"]
    kvw = model.nkv * model.dh
    budget = math.floor((1 - args.kv_save) * L * 2 * kvw)
    rank = budget // (2 * L)
    covs = {}

    def collect(l, x):
        x = x.reshape(-1, D)  # [N*T, D]
        c = torch.zeros(D, D, dtype=torch.float64)
        for r0 in range(0, x.shape[0], 256):
            xb = x[r0:r0 + 256]
            c += torch.matmul(xb.t(), xb).double()  # 256-row fp32 blocks
        covs[l] = c / x.shape[0]

    t1 = time.perf_counter()
    with torch.no_grad():
        model.hidden(calib_ids, collect)
    times["calibrate_forward"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    factors = {}
    for l in range(L):
        c = covs.pop(l)
        c = c + args.damping * c.diagonal().mean() * torch.eye(
            D, dtype=torch.float64)
        s = torch.linalg.cholesky(c).t()  # S = L^T, S^T S = C
        out = []
        for name in ("k_proj", "v_proj"):
            w = weights[f"model.layers.{l}.self_attn.{name}.weight"]
            wd = w.t().double()  # [D, out]
            _, _, vh = torch.linalg.svd(s @ wd, full_matrices=False)
            vr = vh[:rank].t()  # [out, r]
            out += [(wd @ vr).t().float().contiguous(),  # down as [r, D]
                    vr.float().contiguous()]  # up as [out, r]
        factors[l] = tuple(out)
    times["decompose"] = time.perf_counter() - t2

    # ---- evaluation: original, then converted, same windows
    E = args.eval_seq_len
    ev = torch.stack([ids[s:s + E] for s in evals])  # [W, E]
    inputs, targets = ev[:, :-1], ev[:, 1:]
    t3 = time.perf_counter()
    with torch.no_grad():
        s0, n0 = model.nll(inputs, targets)
        model.kv = factors
        s1, n1 = model.nll(inputs, targets)
    times["evaluate"] = time.perf_counter() - t3

    # ---- write: source tensors (BF16 again) + factors, one safetensors
    t4 = time.perf_counter()
    tensors = {}
    for k, v in weights.items():
        if ".k_proj." in k or ".v_proj." in k:
            continue
        tensors[k] = v.to(torch.bfloat16)
    for l, (kd, ku, vd, vu) in factors.items():
        p = f"model.layers.{l}.self_attn."
        tensors.update({p + "k_down.weight": kd, p + "k_up.weight": ku,
                        p + "v_down.weight": vd, p + "v_up.weight": vu})
    write_safetensors(os.path.join(args.peer_out, "model.safetensors"),
                      tensors, torch)
    times["write"] = time.perf_counter() - t4
    times["total"] = time.perf_counter() - t0
    return {"times": times, "rank": rank,
            "original_nll": s0 / n0, "converted_nll": s1 / n1,
            "original_ppl": math.exp(s0 / n0),
            "converted_ppl": math.exp(s1 / n1), "predictions": n0}


def write_safetensors(path, tensors, torch):
    names = {torch.bfloat16: "BF16", torch.float32: "F32"}
    header, offset, blobs = {}, 0, []
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == \
            torch.bfloat16 else t.numpy().tobytes()
        header[k] = {"dtype": names[t.dtype], "shape": list(t.shape),
                     "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- driver


def timed_child(cmd, env=None):
    """Runs cmd; wall seconds, CPU seconds, peak RSS (GiB) of that child
    alone (wait4), and its stdout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with {p.returncode}")
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
            "rss_gib": ru.ru_maxrss / 2**20}, out


def care_stages(report):
    return dict(report["timings_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help=".u16/.u32 token ids")
    ap.add_argument("--care-worker", default="build/worker/cli/care-worker")
    ap.add_argument("--care-args", default="",
                    help="extra care-worker convert flags")
    ap.add_argument("--kv-save", type=float, default=0.75)
    ap.add_argument("--calib-samples", type=int, default=256)
    ap.add_argument("--calib-seq-len", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--damping", type=float, default=0.01)
    ap.add_argument("--eval-seq-len", type=int, default=512)
    ap.add_argument("--eval-windows", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--work", default=None, help="scratch dir (outputs)")
    ap.add_argument("--peer-only", action="store_true")
    ap.add_argument("--peer-out", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    if args.peer_only:
        r = run_peer(args)
        print(json.dumps(r))
        return
    # Only look torch up here, never import it: Linux reports a child's peak
    # RSS as at least this process's own peak at the fork (the maxrss of the
    # mm that exec replaces is kept), so a driver holding torch (~0.22 GiB)
    # would put that floor under every care-worker figure.
    if importlib.util.find_spec("torch") is None:
        print("care_peer: python3-torch is not installed; skipping "
              "(apt-get install python3-torch libopenblas0-pthread)")
        return
    work = args.work or tempfile.mkdtemp(prefix="care_peer_")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads))
    coretype = openblas_coretype()
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
        print(f"peer: OpenBLAS does not know this CPU and chose its generic "
              f"Prescott (SSE3) kernels; the peer runs with "
              f"OPENBLAS_CORETYPE={coretype}, what the CPU flags allow",
              flush=True)
    peer_cmd = [sys.executable, os.path.abspath(__file__), "--peer-only",
                "--model", args.model, "--data", args.data,
                "--kv-save", str(args.kv_save),
                "--calib-samples", str(args.calib_samples),
                "--calib-seq-len", str(args.calib_seq_len),
                "--seed", str(args.seed), "--damping", str(args.damping),
                "--eval-seq-len", str(args.eval_seq_len),
                "--eval-windows", str(args.eval_windows),
                "--threads", str(args.threads),
                "--peer-out", os.path.join(work, "peer_out")]
    report_path = os.path.join(work, "care_report.json")
    care_cmd = [args.care_worker, "convert", "--model", args.model,
                "--out", os.path.join(work, "care_out"), "--overwrite",
                "--kv-save", str(args.kv_save), "--method", "care",
                "--allocation", "uniform", "--calib", args.data,
                "--calib-samples", str(args.calib_samples),
                "--calib-seq-len", str(args.calib_seq_len),
                "--seed", str(args.seed), "--damping", str(args.damping),
                "--eval", args.data, "--eval-seq-len", str(args.eval_seq_len),
                "--eval-windows", str(args.eval_windows),
                "--threads", str(args.threads), "--report", report_path,
                "--quiet"] + args.care_args.split()
    runs = {"peer": [], "care": []}
    for i in range(args.rounds):
        for side in ("peer", "care"):
            load = os.getloadavg()[0]
            if side == "peer":
                m, out = timed_child(peer_cmd, env)
                r = json.loads(out.decode().strip().splitlines()[-1])
                m["stages"] = r["times"]
                m["nll"] = (r["original_nll"], r["converted_nll"])
                m["ppl"] = (r["original_ppl"], r["converted_ppl"])
            else:
                m, _ = timed_child(care_cmd, env)
                with open(report_path) as f:
                    rep = json.load(f)
                st = care_stages(rep)
                m["stages"] = st
                m["nll"] = (rep["original"]["mean_nll"],
                            rep["converted"]["mean_nll"])
                m["ppl"] = (rep["original"]["ppl"], rep["converted"]["ppl"])
            m["load_avg_before"] = load
            runs[side].append(m)
            print(f"round {i + 1} {side}: wall {m['wall']:.2f} s, cpu "
                  f"{m['cpu']:.2f} s, peak RSS {m['rss_gib']:.2f} GiB, "
                  f"ppl {m['ppl'][0]:.4f} -> {m['ppl'][1]:.4f} "
                  f"(load avg {load:.2f})", flush=True)
    summarize(runs, args)


def openblas_coretype():
    """OPENBLAS_CORETYPE for the peer, or None to leave OpenBLAS's choice.

    Debian's OpenBLAS 0.3.21 picks its kernels from the CPU model and falls
    back to SSE3 "Prescott" kernels on models it does not know (e.g. a
    2-vCPU Xeon with family 6 model 207): ~24 instead of ~116 GFLOP per
    CPU-second there. That would flatter care-worker, so the peer then runs
    with the kernels the CPU's flags allow, as a newer OpenBLAS would pick.
    Asked in a child process so that this driver never maps OpenBLAS.
    """
    if "OPENBLAS_CORETYPE" in os.environ:
        return None
    probe = ("import ctypes, ctypes.util\n"
             "for name in ('openblas', 'blas'):\n"
             "    p = ctypes.util.find_library(name)\n"
             "    if not p: continue\n"
             "    lib = ctypes.CDLL(p)\n"
             "    if hasattr(lib, 'openblas_get_corename'):\n"
             "        lib.openblas_get_corename.restype = ctypes.c_char_p\n"
             "        print(lib.openblas_get_corename().decode()); break\n")
    try:
        core = subprocess.run([sys.executable, "-c", probe], check=True,
                              capture_output=True, text=True).stdout.strip()
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f
                          if ln.startswith("flags")), [])
    except (OSError, subprocess.CalledProcessError):
        return None
    if core.lower() != "prescott":
        return None
    if "avx512f" in flags:
        return "SkylakeX"
    if "avx2" in flags:
        return "Haswell"
    return None


def med(xs):
    return statistics.median(xs)


def summarize(runs, args):
    p, c = runs["peer"], runs["care"]
    # Stage rows: (label, peer stage keys, care stage keys)
    rows = [("load", ["load"], ["load"]),
            ("calibration forward", ["calibrate_forward"], None),
            ("decomposition", ["decompose"], ["decompose"]),
            ("held-out / allocate", [], ["allocate"]),
            ("evaluation (orig + conv)", ["evaluate"], ["evaluate"]),
            ("write", ["write"], ["write"])]

    def stage(m, keys, side):
        st = m["stages"]
        if side == "care" and keys is None:  # calibrate includes decompose
            return st.get("calibrate", 0) - st.get("decompose", 0)
        return sum(st.get(k, 0) for k in keys)

    loads = [m["load_avg_before"] for m in p + c]
    # Every child's peak RSS is reported as at least the driver's own.
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\ndriver peak RSS {floor:.3f} GiB (a floor under both sides' "
          f"figures)")
    print(f"\nmedian of {len(p)} alternating rounds, {args.threads} threads, "
          f"1-min load average before the runs {min(loads):.2f}-"
          f"{max(loads):.2f}")
    print(f"{'stage':28s} {'peer s':>9s} {'care s':>9s} {'care/peer':>9s}")
    for label, pk, ck in rows:
        a = med([stage(m, pk, "peer") for m in p])
        b = med([stage(m, ck, "care") for m in c])
        ratio = f"{b / a:9.2f}" if a > 0 else f"{'-':>9s}"
        print(f"{label:28s} {a:9.2f} {b:9.2f} {ratio}")
    for key, label in (("wall", "total wall"), ("cpu", "total CPU s"),
                       ("rss_gib", "peak RSS GiB")):
        a, b = med([m[key] for m in p]), med([m[key] for m in c])
        print(f"{label:28s} {a:9.2f} {b:9.2f} {b / a:9.2f}")
    ok = True
    for i, what in enumerate(("original", "converted")):
        a, b = p[-1]["nll"][i], c[-1]["nll"][i]
        agree = abs(a - b) <= TOLERANCE_NLL
        ok &= agree
        print(f"{what} mean NLL: peer {a:.6f}, care {b:.6f}, |diff| "
              f"{abs(a - b):.2e} ({'agree' if agree else 'DISAGREE'}, "
              f"tolerance {TOLERANCE_NLL:g})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    if not ok:
        sys.exit("perplexities disagree: the comparison is not of the same "
                 "math")


if __name__ == "__main__":
    main()
