#!/usr/bin/env python3
"""Times torch's scaled_dot_product_attention (bf16, is_causal=True) forward and
forward+backward with each backend (cuDNN, FlashAttention-2, memory-efficient)
on one shape: the comparison of p3d's fused attention (issue 14, bench/results/
fused-attention.md). Two layouts: "bhsd", q, k, v as separate contiguous
[B, heads, S, HD] leaves (the usual benchmark, torch's best case), and "packed",
views of one tokens-major [B, S, (NH + 2 KV) * HD] buffer as p3d's executor has
them (autograd then also assembles the packed gradient). Median of --reps
CUDA-event timings after --warmup; TFLOP/s counts the
causal half (forward 4 B NH S^2 HD / 2, backward 2.5x that), as
p3d-attention-bench does.

  python3 bench/frameworks/sdpa_torch.py --batch 4 --heads 16 --seq 2048 --head-dim 128
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=0, help="0: same as --heads")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args()
    B, NH, S, HD = a.batch, a.heads, a.seq, a.head_dim
    KV = a.kv_heads or NH
    torch.manual_seed(0)
    qkv = (torch.rand(B, S, NH + 2 * KV, HD, device="cuda") * 3 - 1.5).to(torch.bfloat16)
    dout = (torch.rand(B, NH, S, HD, device="cuda") * 2 - 1).to(torch.bfloat16)
    leaves = [qkv[:, :, lo:hi].transpose(1, 2).contiguous().requires_grad_(True)
              for lo, hi in ((0, NH), (NH, NH + KV), (NH + KV, NH + 2 * KV))]
    qkv.requires_grad_(True)

    def inputs(layout):
        if layout == "bhsd":
            return leaves
        return (qkv[:, :, :NH].transpose(1, 2), qkv[:, :, NH:NH + KV].transpose(1, 2),
                qkv[:, :, NH + KV:].transpose(1, 2))

    def clear():
        qkv.grad = None
        for t in leaves:
            t.grad = None

    fwd_flop = 4.0 * B * NH * S * S * HD / 2
    bwd_flop = 2.5 * fwd_flop
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, "
          f"{torch.cuda.get_device_name()}")
    print(f"shape B{B} NH{NH} KV{KV} S{S} HD{HD} causal, bf16")
    print(f"{'backend':<10} {'layout':<7} {'fwd ms':>9} {'bwd ms':>9} {'f+b ms':>9} "
          f"{'fwd TF/s':>9} {'f+b TF/s':>9}")
    ref = None
    for layout in ("bhsd", "packed"):
        for name, backend in [("cudnn", SDPBackend.CUDNN_ATTENTION),
                              ("flash", SDPBackend.FLASH_ATTENTION),
                              ("efficient", SDPBackend.EFFICIENT_ATTENTION)]:
            try:
                with sdpa_kernel([backend]):
                    gqa = KV != NH

                    def fwd():
                        q, k, v = inputs(layout)
                        return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                              enable_gqa=gqa)

                    def fwd_bwd():
                        clear()
                        fwd().backward(dout)

                    out = fwd().float()
                    if ref is None:
                        ref = out
                    diff = ((out - ref).norm() / ref.norm()).item()
                    f = median_ms(fwd, a.warmup, a.reps)
                    fb = median_ms(fwd_bwd, a.warmup, a.reps)
                print(f"{name:<10} {layout:<7} {f:>9.3f} {fb - f:>9.3f} {fb:>9.3f} "
                      f"{fwd_flop / f * 1e-9:>9.0f} {(fwd_flop + bwd_flop) / fb * 1e-9:>9.0f}"
                      f"   (out rel diff to the first: {diff:.1e})")
            except Exception as e:  # a backend that refuses the shape is reported, not fatal
                print(f"{name:<10} {layout:<7} unavailable: {str(e).splitlines()[0][:150]}")

if __name__ == "__main__":
    main()
