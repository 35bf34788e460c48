"""FP8 vs bf16 GEMM throughput through PyTorch (torch._scaled_mm -> cuBLASLt FP8),
the measurement behind the catalog's FP8 GEMM curve (bench/results/fp8-gemm.md).

  python3 bench/fp8/gemm_sweep.py

PyTorch is the reference instrument here, never part of p3d (p3d-calibrate's
fp8 probe measures the same thing through executor/fp8_matmul.h).
fp8 = split (promoted) accumulation, TE's dgrad/wgrad setting; fp8fast =
CUBLASLT_MATMUL_DESC_FAST_ACCUM, TE's fprop setting under current scaling.
Shapes: the bf16 curve's points (simulator/gemm_efficiency.cc) and Llama
linear-layer shapes. Operands E4M3 x E4M3 -> bf16, per-tensor scales, A row-major
[M,K], B column-major [K,N] (the TN layout Hopper's FP8 tensor cores take).
"""
import torch

torch.manual_seed(0)
print(torch.cuda.get_device_name(), torch.__version__, torch.version.cuda)
shapes = [(1024, 1024, 1024), (4096, 1024, 1024), (2048, 2048, 2048), (4096, 4096, 4096),
          (8192, 8192, 8192), (4096, 28672, 8192), (8192, 8192, 28672), (16384, 10240, 8192),
          (8192, 1280, 8192), (2048, 512, 512)]


def bench(fn, flops):
    for _ in range(3):
        fn()
    reps = max(3, min(200, int(0.05 / (flops / 8e14))))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(3):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3 / reps)
    return flops / best / 1e12


print(f"{'M':>6} {'N':>6} {'K':>6} {'flops':>9} {'bf16':>6} {'fp8':>6} {'fp8fast':>7} {'ratio':>5}")
for m, n, k in shapes:
    a = torch.randn(m, k, device="cuda")
    b = torch.randn(n, k, device="cuda")
    flops = 2.0 * m * n * k
    a16, b16 = a.bfloat16(), b.bfloat16()
    bf = bench(lambda: a16 @ b16.t(), flops)
    a8 = a.to(torch.float8_e4m3fn)
    b8 = b.to(torch.float8_e4m3fn)  # [N,K] row-major = [K,N] column-major via .t()
    one = torch.ones((), device="cuda")
    f8 = bench(lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16), flops)
    fa = bench(lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                        use_fast_accum=True), flops)
    print(f"{m:6} {n:6} {k:6} {flops:9.3g} {bf:6.0f} {f8:6.0f} {fa:7.0f} {f8 / bf:5.2f}")
