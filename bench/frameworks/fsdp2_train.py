#!/usr/bin/env python3
"""Trains a Llama- or GPT-shaped decoder with PyTorch FSDP2, the way torchtitan
does (docs/frameworks/torchtitan.md), and prints its median step time and peak
memory as JSON: the measurement beside which scripts/gpu_check.sh (section
fsdp2) prints p3d-plan's prediction for the same layout: the pytorch-fsdp2
profile (eager, the default) or the torchtitan profile (--compile).

  torchrun --nproc-per-node 1 bench/frameworks/fsdp2_train.py --config model.json \\
      --micro-batch 2 --grad-accum 2 --seq 2048 --ac none
  python3 bench/frameworks/fsdp2_train.py ...      # one GPU without torchrun
  ... --compile                                    # torch.compile each block (torchtitan's compile on)

What it runs, as torchtitan does (simulator/frameworks/torchtitan.json):
  - fully_shard on every block and on the whole model (the root), with
    MixedPrecisionPolicy(param_dtype=bfloat16, reduce_dtype=float32) over fp32
    parameters; reshard after forward (no pipeline here);
  - attention by torch.nn.functional.scaled_dot_product_attention (causal),
    backends cuDNN > Flash > memory-efficient > math as torchtitan orders them;
  - the loss on the whole micro-batch's logits cast to fp32;
  - AdamW (fused), gradient clipping at 1.0;
  - activation checkpointing: none; full (every block); selective (per op:
    the outputs of attention and of every other matmul are saved, the rest is
    recomputed: torchtitan's "op" policy);
  - eager PyTorch by default (simulator/frameworks/pytorch-fsdp2.json prices
    its separate elementwise kernels); --compile wraps each block, after its
    activation checkpointing and before fully_shard, in torch.compile, as
    torchtitan's apply_compile does with compile.enable (parallelize.py:
    per TransformerBlock, fullgraph=True), leaving the loss and FSDP2's
    gathers, casts and reduces eager (the torchtitan profile).
--config is a Hugging Face style config.json (the file p3d-plan --model reads):
model_type "llama" (RMSNorm, rotary, SwiGLU, GQA, no biases) or "gpt2"
(LayerNorm, learned positions, GELU, biases, tied embeddings).
Time: CUDA events around each optimizer step (all micro-batches), median of
--steps after --warmup. Memory: torch.cuda.max_memory_allocated and
max_memory_reserved over the timed steps (the CUDA context is in neither).
--kernels PATH: one more step under torch.profiler, its CUDA kernels by
total time (not part of the figures above).
"""
import argparse
import json
import math
import os
import statistics

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

try:  # torch >= 2.6
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
except ImportError:  # torch 2.4-2.5
    from torch.distributed._composable.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.attention import SDPBackend, sdpa_kernel

SDPA_ORDER = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
              SDPBackend.MATH]


class Shape:
    """The model shape of a config.json, in p3d's vocabulary (L, H, NH, KV, F, V)."""

    def __init__(self, cfg):
        self.llama = cfg.get("model_type", "llama") != "gpt2"
        if self.llama:
            self.layers, self.hidden = cfg["num_hidden_layers"], cfg["hidden_size"]
            self.heads = cfg["num_attention_heads"]
            self.kv_heads = cfg.get("num_key_value_heads") or self.heads
            self.ffn, self.vocab = cfg["intermediate_size"], cfg["vocab_size"]
            self.positions = cfg.get("max_position_embeddings", 0)
            self.tied = cfg.get("tie_word_embeddings", False)
        else:
            self.layers, self.hidden, self.heads = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
            self.kv_heads = self.heads
            self.ffn, self.vocab = cfg.get("n_inner") or 4 * self.hidden, cfg["vocab_size"]
            self.positions = cfg["n_positions"]
            self.tied = True
        self.head_dim = self.hidden // self.heads


def rotary_tables(seq, head_dim, device):
    inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(seq, device=device, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()  # [S, HD/2] each


def rotate(x, cos, sin):
    # x: [B, S, heads, HD], rotated in (even, odd) pairs.
    even, odd = x[..., 0::2].float(), x[..., 1::2].float()
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((even * c - odd * s, even * s + odd * c), dim=-1).flatten(-2).type_as(x)


class Block(nn.Module):
    def __init__(self, sh):
        super().__init__()
        self.sh = sh
        h, bias = sh.hidden, not sh.llama
        norm = (lambda: nn.RMSNorm(h, eps=1e-5)) if sh.llama else (lambda: nn.LayerNorm(h, eps=1e-5))
        self.norm1, self.norm2 = norm(), norm()
        self.qkv = nn.Linear(h, (sh.heads + 2 * sh.kv_heads) * sh.head_dim, bias=bias)
        self.out = nn.Linear(sh.heads * sh.head_dim, h, bias=bias)
        self.up = nn.Linear(h, (2 if sh.llama else 1) * sh.ffn, bias=bias)
        self.down = nn.Linear(sh.ffn, h, bias=bias)

    def forward(self, x, cos, sin):
        sh = self.sh
        b, s, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(
            [sh.heads * sh.head_dim, sh.kv_heads * sh.head_dim, sh.kv_heads * sh.head_dim], dim=-1)
        q = q.view(b, s, sh.heads, sh.head_dim)
        k = k.view(b, s, sh.kv_heads, sh.head_dim)
        v = v.view(b, s, sh.kv_heads, sh.head_dim)
        if sh.llama:
            q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        with attention_backends():
            a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True, enable_gqa=sh.kv_heads != sh.heads)
        x = x + self.out(a.transpose(1, 2).reshape(b, s, -1))
        u = self.up(self.norm2(x))
        if sh.llama:
            gate, up = u.chunk(2, dim=-1)
            u = F.silu(gate) * up
        else:
            u = F.gelu(u, approximate="tanh")
        return x + self.down(u)


MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default}
ATTENTION = {torch.ops.aten._scaled_dot_product_cudnn_attention.default,
             torch.ops.aten._scaled_dot_product_flash_attention.default,
             torch.ops.aten._scaled_dot_product_efficient_attention.default}


def op_level_contexts():
    """torchtitan's "op" selective checkpointing, as docs/frameworks/torchtitan.md
    states it: keep the outputs of attention and of every other matmul, recompute
    everything else (norms, pointwise ops, the other matmuls). One count per
    block call, shared by its forward and its recompute so both pick the same
    matmuls."""
    counts = {"forward": 0, "recompute": 0}

    def policy(ctx, op, *args, **kwargs):
        phase = "recompute" if ctx.is_recompute else "forward"
        if op in MATMULS:
            counts[phase] += 1
            keep = counts[phase] % 2 == 1  # 1st, 3rd, ... matmul kept; 2nd, 4th, ... recomputed
        else:
            keep = op in ATTENTION
        return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def attention_backends():
    """SDPA backends in torchtitan's priority order (set_priority needs torch >= 2.6)."""
    try:
        return sdpa_kernel(SDPA_ORDER, set_priority=True)
    except TypeError:
        return sdpa_kernel(SDPA_ORDER)


class Checkpointed(nn.Module):
    """A block under --ac's activation checkpointing, one module as torchtitan's
    apply_ac makes it (checkpoint_wrapper per block), so that --compile compiles
    the checkpointed block whole, recompute included."""

    def __init__(self, block, ac):
        super().__init__()
        self.block, self.ac = block, ac

    def forward(self, x, cos, sin):
        if self.ac == "full":
            return checkpoint(self.block, x, cos, sin, use_reentrant=False)
        if self.ac == "selective":
            return checkpoint(self.block, x, cos, sin, use_reentrant=False, context_fn=op_level_contexts)
        return self.block(x, cos, sin)


class Model(nn.Module):
    def __init__(self, sh, ac):
        super().__init__()
        self.sh = sh
        self.embed = nn.Embedding(sh.vocab, sh.hidden)
        self.positions = None if sh.llama else nn.Embedding(sh.positions, sh.hidden)
        self.blocks = nn.ModuleList(Checkpointed(Block(sh), ac) for _ in range(sh.layers))
        self.norm = nn.RMSNorm(sh.hidden, eps=1e-5) if sh.llama else nn.LayerNorm(sh.hidden, eps=1e-5)
        self.head = nn.Linear(sh.hidden, sh.vocab, bias=False)
        if sh.tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens, cos, sin):
        x = self.embed(tokens)
        if self.positions is not None:
            x = x + self.positions(torch.arange(tokens.shape[1], device=tokens.device))[None]
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.norm(x))


def init_distributed():
    # One GPU without torchrun: a world of one rank.
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1"),
                       ("MASTER_PORT", "29517")):
        os.environ.setdefault(key, value)
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl", device_id=torch.device("cuda", local))
    return dist.get_rank(), dist.get_world_size()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config.json (Hugging Face style, model_type llama or gpt2)")
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per micro-batch per rank")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--ac", choices=["none", "full", "selective"], default="none")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile each block (fullgraph), as torchtitan with compile.enable")
    p.add_argument("--steps", type=int, default=8, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--kernels", help="after the timed steps, profile one more step (torch.profiler, CUDA) and "
                   "write its kernels by total CUDA time here: what the eager step spends beyond p3d's prediction")
    a = p.parse_args()

    rank, world = init_distributed()
    sh = Shape(json.load(open(a.config)))
    torch.manual_seed(0)
    model = Model(sh, a.ac).cuda()  # fp32 parameters, as torchtitan keeps them
    params = sum(t.numel() for t in model.parameters())
    if a.compile:  # torchtitan's apply_compile: after activation checkpointing, before fully_shard
        for i, block in enumerate(model.blocks):
            model.blocks[i] = torch.compile(block, fullgraph=True)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mp_policy=mp, reshard_after_forward=True)
    fully_shard(model, mp_policy=mp)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    cos, sin = rotary_tables(a.seq, sh.head_dim, "cuda")
    gen = torch.Generator(device="cuda").manual_seed(1 + rank)

    def step():
        for _ in range(a.grad_accum):
            tokens = torch.randint(0, sh.vocab, (a.micro_batch, a.seq + 1), device="cuda", generator=gen)
            logits = model(tokens[:, :-1], cos, sin)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
            (loss / a.grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times, loss = [], None
    for _ in range(a.steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    median = statistics.median(times)
    allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    if a.kernels:  # every rank steps (the collectives need all); rank 0 writes
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        if rank == 0:
            averages = prof.key_averages()
            try:  # torch >= 2.4 names it device time; older, cuda time
                table = averages.table(sort_by="device_time_total", row_limit=60)
            except (AttributeError, KeyError):
                table = averages.table(sort_by="cuda_time_total", row_limit=60)
            with open(a.kernels, "w") as f:
                f.write(table + "\n")
    result = {
        "framework": f"fsdp2 (torch {torch.__version__})",
        "device": torch.cuda.get_device_name(),
        "config": a.config,
        "arch": "llama" if sh.llama else "gpt2",
        "params": params,
        "world_size": world,
        "micro_batch": a.micro_batch,
        "grad_accum": a.grad_accum,
        "seq": a.seq,
        "ac": a.ac,
        "compile": a.compile,
        "step_time_s": {"median": median, "all": times},
        "tokens_per_s": world * a.micro_batch * a.grad_accum * a.seq / median,
        "max_memory_allocated_bytes": allocated,
        "max_memory_reserved_bytes": reserved,
        "loss": float(loss),
    }
    if rank == 0:
        text = json.dumps(result, indent=2)
        print(text)
        if a.json:
            with open(a.json, "w") as f:
                f.write(text + "\n")
    assert math.isfinite(result["loss"]), "loss is not finite"
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
