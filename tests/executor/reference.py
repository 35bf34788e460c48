#!/usr/bin/env python3
"""Independent PyTorch reference for p3d-run (the numerical check of issue 4).

p3d-run --dump DIR writes the initial bf16 weights, every step's tokens, the
first micro-batch's logits, the first step's gradients and the losses of all
steps. This script rebuilds the same model in PyTorch (its own code, fp32 with
TF32 off), starting from the same weights (the bf16 values, read as fp32),
feeds the same batches and compares:

  what                      measure                               tolerance
  logits (step 0, micro 0)  ||p3d - ref|| / ||ref||               2e-2
  loss, step 0              |p3d - ref|                           1e-2
  every parameter gradient  ||p3d - ref|| / ||ref|| per tensor    5e-2
  loss, every AdamW step    |p3d - ref|                           2e-2
  grad norm, step 0         relative                              5e-2
  grad norm, later steps    relative                              reported, not gated

Why these: p3d keeps activations in bf16 (8 mantissa bits: 2^-9 = 2e-3 per
rounding), the reference does not; errors of a few 1e-3 per op compound over
4 layers and the backward pass. llm.c's equivalent GPT-2 bf16 test bounds the
loss of each of 10 steps by 1e-2 absolute; the losses here are compared
after AdamW steps taken from slightly different gradients, hence 2e-2. A
wrong gradient (missing term, wrong transpose, wrong scale) is off by O(1).
The gradient norm is gated only at step 0, where both sides hold the same
weights: later both trajectories differ by bf16 rounding, and in a gradient
spike (the first GPU run saw one at step 7 of tiny-gpt2-bytes, norm 29.8 vs
27.9, both clipped to 1.0) the norm amplifies that difference while the loss
still agrees to 7e-3; the loss is the gated trajectory check.

Usage: reference.py DUMP_DIR [--json out.json]; exit status 1 if any check fails.
"""
import argparse
import json
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

TOL = {"logits": 2e-2, "loss0": 1e-2, "grad": 5e-2, "loss": 2e-2, "grad_norm": 5e-2}


def bf16_bits_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load(dump, dev):
    meta = json.load(open(f"{dump}/meta.json"))
    w = bf16_bits_to_f32(np.fromfile(f"{dump}/weights.bin", dtype=np.uint16))
    params = {}
    for t in meta["tensors"]:
        n = t["rows"] * max(t["cols"], 1)
        shape = (t["rows"], t["cols"]) if t["cols"] else (t["rows"],)
        arr = w[t["offset"]:t["offset"] + n].reshape(shape)
        params[t["name"]] = torch.tensor(arr, device=dev, requires_grad=True)
    return meta, params


def rope(x, theta):
    # x [B, heads, S, HD]; rotate-half convention (HF transformers).
    S, HD = x.shape[2], x.shape[3]
    half = HD // 2
    pos = torch.arange(S, dtype=torch.float64, device=x.device)[:, None]
    inv = theta ** (-2.0 * torch.arange(half, dtype=torch.float64, device=x.device) / HD)
    ang = pos * inv[None, :]
    c, s = torch.cos(ang).float(), torch.sin(ang).float()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def norm(x, P, name, gpt2, eps):
    w = P[name + ".weight"]
    if gpt2:
        return F.layer_norm(x, (x.shape[-1],), w, P[name + ".bias"], eps)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(P, meta, tokens):
    m = meta["model"]
    gpt2 = m["arch"] == "gpt2"
    H, NH, KV, L, Fd = m["hidden"], m["heads"], m["kv_heads"], m["layers"], m["ffn"]
    HD = H // NH
    eps, theta = meta["norm_eps"], meta["rope_theta"]
    B, S = tokens.shape
    x = P["wte.weight"][tokens]
    if gpt2:
        x = x + P["wpe.weight"][:S]
    mask = torch.ones(S, S, dtype=torch.bool, device=x.device).tril()
    for l in range(L):
        p = f"layers.{l}."
        h = norm(x, P, p + "norm1", gpt2, eps)
        qkv = h @ P[p + "qkv.weight"].T
        if p + "qkv.bias" in P:
            qkv = qkv + P[p + "qkv.bias"]
        q = qkv[..., :NH * HD].view(B, S, NH, HD).transpose(1, 2)
        k = qkv[..., NH * HD:(NH + KV) * HD].view(B, S, KV, HD).transpose(1, 2)
        v = qkv[..., (NH + KV) * HD:].view(B, S, KV, HD).transpose(1, 2)
        if not gpt2:
            q, k = rope(q, theta), rope(k, theta)
        k = k.repeat_interleave(NH // KV, dim=1)  # query head h reads kv head h // (NH/KV)
        v = v.repeat_interleave(NH // KV, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HD)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, S, NH * HD)
        y = y @ P[p + "out.weight"].T
        if gpt2:
            y = y + P[p + "out.bias"]
        x = x + y
        h = norm(x, P, p + "norm2", gpt2, eps)
        if gpt2:
            u = F.gelu(h @ P[p + "fc.weight"].T + P[p + "fc.bias"], approximate="tanh")
            x = x + u @ P[p + "proj.weight"].T + P[p + "proj.bias"]
        else:
            gu = h @ P[p + "gate_up.weight"].T
            u = F.silu(gu[..., :Fd]) * gu[..., Fd:]
            x = x + u @ P[p + "down.weight"].T
    xf = norm(x, P, "final_norm", gpt2, eps)
    head = P["head.weight"] if "head.weight" in P else P["wte.weight"]
    return xf @ head.T


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    meta, P = load(args.dump, dev)
    B, S, ga, steps = meta["micro_batch"], meta["seq"], meta["grad_accum"], meta["steps"]
    T, V = B * S, meta["model"]["vocab"]
    toks = np.fromfile(f"{args.dump}/tokens.bin", dtype=np.int32).reshape(steps, ga, 2, B, S)
    toks = torch.tensor(toks, dtype=torch.long, device=dev)
    p3d_logits = np.fromfile(f"{args.dump}/logits.bin", dtype=np.float32).reshape(T, V)
    p3d_grads = np.fromfile(f"{args.dump}/grads.bin", dtype=np.float32)

    decay = [P[t["name"]] for t in meta["tensors"] if t["decay"]]
    no_decay = [P[t["name"]] for t in meta["tensors"] if not t["decay"]]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": meta["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=meta["lr"], betas=(meta["beta1"], meta["beta2"]), eps=meta["eps"])

    rows, ok = [], True

    def check(what, value, tol):
        nonlocal ok
        passed = bool(value <= tol)
        ok &= passed
        rows.append({"check": what, "value": value, "tolerance": tol, "pass": passed})

    ref_losses, ref_norms = [], []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(ga):
            logits = forward(P, meta, toks[step, micro, 0])
            loss = F.cross_entropy(logits.reshape(-1, V), toks[step, micro, 1].reshape(-1)) / ga
            loss.backward()
            total += loss.item()
            if step == 0 and micro == 0:
                check("logits rel-L2 (step 0)", rel(p3d_logits, logits.detach().reshape(T, V).cpu()),
                      TOL["logits"])
        if step == 0:
            check("loss |diff| (step 0)", abs(meta["losses"][0] - total), TOL["loss0"])
            worst = ("", 0.0)
            for t in meta["tensors"]:
                n = t["rows"] * max(t["cols"], 1)
                e = rel(p3d_grads[t["offset"]:t["offset"] + n], P[t["name"]].grad.detach().cpu().ravel())
                check(f"grad rel-L2 {t['name']}", e, TOL["grad"])
                worst = max(worst, (t["name"], e), key=lambda w: w[1])
            rows.append({"check": "worst gradient", "value": worst[1], "tensor": worst[0]})
        clip = meta["max_grad_norm"]
        norm_total = torch.nn.utils.clip_grad_norm_(list(P.values()), clip if clip > 0 else float("inf"))
        opt.step()
        ref_losses.append(total)
        ref_norms.append(norm_total.item())
        check(f"loss |diff| step {step}", abs(meta["losses"][step] - total), TOL["loss"])
        if step == 0:
            check("grad-norm rel (step 0)", abs(meta["grad_norms"][0] - ref_norms[0]) / ref_norms[0],
                  TOL["grad_norm"])

    print(f"{'check':<44} {'value':>10} {'tol':>8}  result")
    for r in rows:
        if "tolerance" in r:
            print(f"{r['check']:<44} {r['value']:10.3e} {r['tolerance']:8.0e}  {'ok' if r['pass'] else 'FAIL'}")
        else:
            print(f"{r['check']:<44} {r['value']:10.3e}  ({r['tensor']})")
    print("step  p3d loss   ref loss   p3d gnorm  ref gnorm")
    for i in range(steps):
        print(f"{i:4d}  {meta['losses'][i]:9.5f}  {ref_losses[i]:9.5f}  {meta['grad_norms'][i]:9.4f}  {ref_norms[i]:9.4f}")
    print("REFERENCE CHECK", "PASSED" if ok else "FAILED", f"({meta['model']['name']}, device {dev})")
    if args.json:
        json.dump({"model": meta["model"]["name"], "passed": ok, "checks": rows,
                   "p3d_losses": meta["losses"], "ref_losses": ref_losses,
                   "p3d_grad_norms": meta["grad_norms"], "ref_grad_norms": ref_norms},
                  open(args.json, "w"), indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
