#!/usr/bin/python3
"""Independent reference for care/eval: a float64 numpy Llama forward of a
Hugging Face checkpoint (safetensors, F32/BF16) that scores the same
multiple-choice requests and rolling windows as the C++ code.

Input (JSON file, argv[1]): token ids come from the test, so the tokenizer is
not in question here. "mc" and "rolling" may also be lists of such cases.
  {"model": DIR,
   "mc": {"max_length": W, "items": [{"requests": [{"context": [...],
          "continuation": [...]}], "choice_lengths": [...], "label": k}]},
   "rolling": {"max_length": W, "stride": S, "prefix": id or null,
               "documents": [[ids...]], "words": N, "bytes": N}}
Output (JSON on stdout): per-request log-likelihoods, acc/acc_norm with
standard errors, and the rolling totals. The windowing follows
lm-evaluation-harness (get_rolling_token_windows + make_disjoint_window) when
a prefix is given and transformers' "perplexity of fixed-length models"
stride loop when not; acc/acc_norm as lm-eval's process_results.
"""
import json
import math
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        raw = data[a:b]
        if meta["dtype"] == "F32":
            arr = np.frombuffer(raw, dtype="<f4")
        elif meta["dtype"] == "BF16":
            u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            raise ValueError(f"{name}: dtype {meta['dtype']}")
        out[name] = arr.reshape(meta["shape"]).astype(np.float64)
    return out


class Llama:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            c = json.load(f)
        self.c = c
        self.w = load_safetensors(f"{model_dir}/model.safetensors")
        self.L = c["num_hidden_layers"]
        self.H = c["num_attention_heads"]
        self.G = c["num_key_value_heads"]
        self.D = c["hidden_size"]
        self.dh = c.get("head_dim") or self.D // self.H
        self.eps = c["rms_norm_eps"]
        self.theta = c.get("rope_theta", 10000.0)
        self.head = (self.w["model.embed_tokens.weight"]
                     if c.get("tie_word_embeddings") else
                     self.w["lm_head.weight"])

    def norm(self, x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) +
                           self.eps) * g

    def rope(self, x, T):
        # x [T, heads, dh]; rotate_half convention.
        half = self.dh // 2
        inv = 1.0 / self.theta ** (np.arange(half) * 2.0 / self.dh)
        ang = np.arange(T)[:, None] * inv[None, :]  # [T, half]
        cos = np.cos(ang)[:, None, :]
        sin = np.sin(ang)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    def logprobs(self, ids):
        """log-softmax of every position: [T, V]."""
        w = self.w
        T = len(ids)
        h = w["model.embed_tokens.weight"][np.array(ids)]  # [T, D]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for l in range(self.L):
            p = f"model.layers.{l}."
            x = self.norm(h, w[p + "input_layernorm.weight"])
            q = (x @ w[p + "self_attn.q_proj.weight"].T).reshape(T, self.H,
                                                                 self.dh)
            k = (x @ w[p + "self_attn.k_proj.weight"].T).reshape(T, self.G,
                                                                 self.dh)
            v = (x @ w[p + "self_attn.v_proj.weight"].T).reshape(T, self.G,
                                                                 self.dh)
            q, k = self.rope(q, T), self.rope(k, T)
            rep = self.H // self.G
            k = np.repeat(k, rep, axis=1)
            v = np.repeat(v, rep, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / math.sqrt(self.dh) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            o = np.einsum("hts,shd->thd", s, v).reshape(T, self.H * self.dh)
            h = h + o @ w[p + "self_attn.o_proj.weight"].T
            x = self.norm(h, w[p + "post_attention_layernorm.weight"])
            g = x @ w[p + "mlp.gate_proj.weight"].T
            u = x @ w[p + "mlp.up_proj.weight"].T
            h = h + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
        z = self.norm(h, w["model.norm.weight"]) @ self.head.T
        m = z.max(-1, keepdims=True)
        return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def loglikelihood(model, context, continuation, max_length):
    # lm-eval _loglikelihood_tokens: the last max_length+1 tokens, the model
    # reads all but the last, the continuation's positions are scored.
    full = (context + continuation)[-(max_length + 1):]
    inp = full[:-1]
    lp = model.logprobs(inp)
    n = len(continuation)
    rows = lp[len(inp) - n:]
    return float(sum(rows[i, continuation[i]] for i in range(n)))


def stderr(xs):
    n = len(xs)
    if n < 2:
        return 0.0
    mu = sum(xs) / n
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (n - 1)) / math.sqrt(n)


def score_mc(model, mc):
    lls, acc, acc_norm = [], [], []
    for item in mc["items"]:
        ll = [loglikelihood(model, r["context"], r["continuation"],
                            mc["max_length"]) for r in item["requests"]]
        lens = np.array(item["choice_lengths"], dtype=np.float64)
        acc.append(1.0 if int(np.argmax(ll)) == item["label"] else 0.0)
        acc_norm.append(
            1.0 if int(np.argmax(np.array(ll) / lens)) == item["label"] else 0.0)
        lls.append(ll)
    n = len(acc)
    return {"loglikelihoods": lls, "acc": sum(acc) / n,
            "acc_stderr": stderr(acc), "acc_norm": sum(acc_norm) / n,
            "acc_norm_stderr": stderr(acc_norm)}


def lm_eval_windows(tokens, prefix, max_seq_len, context_len):
    # lm-eval utils.get_rolling_token_windows, then make_disjoint_window.
    pred_len = max_seq_len - context_len + 1
    predicted = 0
    first = min(max_seq_len, len(tokens))
    yield [prefix] + tokens[:first - 1], tokens[:first]
    predicted += first
    while predicted < len(tokens):
        wlen = min(len(tokens) - predicted, pred_len)
        end = predicted + wlen
        ctx = tokens[end - max_seq_len - 1:end - 1]
        yield ctx, tokens[end - wlen:end]
        predicted += wlen


def rolling_lm_eval(model, doc, r):
    total, count, windows = 0.0, 0, 0
    W = r["max_length"]
    context_len = W - r["stride"] + 1
    for inp, pred in lm_eval_windows(doc, r["prefix"], W, context_len):
        ctx = inp[:len(inp) - (len(pred) - 1)]  # make_disjoint_window
        total += loglikelihood(model, ctx, pred, W)
        count += len(pred)
        windows += 1
    return total, count, windows


def rolling_transformers(model, doc, r):
    # max_length of transformers' loop = W + 1 (it reads W+1 tokens and
    # scores W predictions at most).
    max_len, stride, n = r["max_length"] + 1, r["stride"], len(doc)
    total, count, windows, prev_end = 0.0, 0, 0, 0
    for begin in range(0, n, stride):
        end = min(begin + max_len, n)
        trg = end - prev_end
        ids = doc[begin:end]
        lp = model.logprobs(ids[:-1])
        # Labels ids[1:], of which the last `trg` (minus the unshiftable
        # first position of the first window) are scored.
        first = max(1, len(ids) - trg)
        for t in range(first, len(ids)):
            total += lp[t - 1, ids[t]]
            count += 1
        windows += 1
        prev_end = end
        if end == n:
            break
    return total, count, windows


def score_rolling(model, r):
    total, count, windows = 0.0, 0, 0
    for doc in r["documents"]:
        f = rolling_lm_eval if r["prefix"] is not None else rolling_transformers
        t, c, w = f(model, doc, r)
        total, count, windows = total + t, count + c, windows + w
    out = {"loglikelihood": total, "predictions": count, "windows": windows,
           "token_perplexity": math.exp(-total / count)}
    if r.get("bytes"):
        out["word_perplexity"] = math.exp(-total / r["words"])
        out["byte_perplexity"] = math.exp(-total / r["bytes"])
        out["bits_per_byte"] = -total / r["bytes"] / math.log(2)
    return out


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    model = Llama(spec["model"])
    # "mc" and "rolling" are one case or a list of cases (one model load).
    out = {}
    for key, fn in (("mc", score_mc), ("rolling", score_rolling)):
        if key in spec:
            cases = spec[key]
            out[key] = ([fn(model, c) for c in cases]
                        if isinstance(cases, list) else fn(model, cases))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
