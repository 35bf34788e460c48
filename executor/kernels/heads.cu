#include <cmath>

#include "executor/check.h"
#include "executor/kernels/common.cuh"
#include "executor/kernels/heads.h"
#include "executor/kernels/launch.h"

namespace p3d {
namespace {

// A thread's pair (i, i + HD/2) of one head slot of one token: its index in
// [tokens, slots, HD/2] split into its coordinates.
struct HeadPair {
  int64_t token, slot, i;
};
__device__ inline HeadPair SplitHeadPair(int64_t idx, int64_t slots, int64_t half) {
  const int64_t rest = idx / half;
  return {rest / slots, rest % slots, idx % half};
}

// Rotary rotation of the pair (x0, x1) by the angle of (c, sn) into *lo, *hi.
__device__ inline void RotatePair(float x0, float x1, float c, float sn, bf16* lo, bf16* hi) {
  *lo = __float2bfloat16(x0 * c - x1 * sn);
  *hi = __float2bfloat16(x1 * c + x0 * sn);
}

// The buffers of QkvHeadsKernel: the forward reads qkv and writes q, k, v;
// the backward reads dq, dk, dv and writes dqkv.
struct QkvHeadsBuffers {
  const bf16* qkv = nullptr;
  bf16* dqkv = nullptr;
  bf16 *q = nullptr, *k = nullptr, *v = nullptr;
  const bf16 *dq = nullptr, *dk = nullptr, *dv = nullptr;
};

// Thread = one (b, s, head slot, i < HD/2) pair; head slot in [0, NH + 2*KV).
template <bool kBackward>
__global__ void QkvHeadsKernel(QkvHeadsBuffers buf, HeadShape sh, const float* cos_t,
                               const float* sin_t) {
  const int64_t half = sh.head_dim / 2;
  const int64_t slots = sh.heads + 2 * sh.kv_heads;
  for (int64_t idx : kernels::GridStride(sh.batch * sh.seq * slots * half)) {
    const auto [token, slot, i] = SplitHeadPair(idx, slots, half);
    const int64_t s = token % sh.seq, b = token / sh.seq;
    // Tokens-major offset of this (b, s, slot) head.
    const int64_t tok = (token * slots + slot) * sh.head_dim;
    // Heads-major tensor and offset.
    int64_t head, count;
    bf16* fwd_out;
    const bf16* bwd_in;
    if (slot < sh.heads) {
      head = slot;
      count = sh.heads;
      fwd_out = buf.q;
      bwd_in = buf.dq;
    } else if (slot < sh.heads + sh.kv_heads) {
      head = slot - sh.heads;
      count = sh.kv_heads;
      fwd_out = buf.k;
      bwd_in = buf.dk;
    } else {
      head = slot - sh.heads - sh.kv_heads;
      count = sh.kv_heads;
      fwd_out = buf.v;
      bwd_in = buf.dv;
    }
    // k, v: [B, KV, S, HD]; q: [B, KV, S, G, HD] with head = g*G + j.
    const int64_t groups = sh.heads / sh.kv_heads;
    const int64_t hm =
        slot < sh.heads
            ? (((b * sh.kv_heads + head / groups) * sh.seq + s) * groups + head % groups) *
                  sh.head_dim
            : ((b * count + head) * sh.seq + s) * sh.head_dim;
    const bool rotate = cos_t != nullptr && slot < sh.heads + sh.kv_heads;
    float c = 1.0f, sn = 0.0f;
    if (rotate) {
      c = cos_t[s * half + i];
      sn = sin_t[s * half + i];
    }
    if (!kBackward) {
      RotatePair(__bfloat162float(buf.qkv[tok + i]), __bfloat162float(buf.qkv[tok + i + half]), c,
                 sn, &fwd_out[hm + i], &fwd_out[hm + i + half]);
    } else {
      const float g0 = __bfloat162float(bwd_in[hm + i]),
                  g1 = __bfloat162float(bwd_in[hm + i + half]);
      buf.dqkv[tok + i] = __float2bfloat16(g0 * c + g1 * sn);
      buf.dqkv[tok + i + half] = __float2bfloat16(g1 * c - g0 * sn);
    }
  }
}

// Thread = one (b, s, q or k head slot, i < HD/2) pair of the tokens-major buffer.
__global__ void RotateQkvKernel(bf16* qkv, HeadShape sh, const float* cos_t, const float* sin_t,
                                float sign) {
  const int64_t half = sh.head_dim / 2;
  const int64_t rotated = sh.heads + sh.kv_heads, slots = sh.heads + 2 * sh.kv_heads;
  for (int64_t idx : kernels::GridStride(sh.batch * sh.seq * rotated * half)) {
    const auto [token, slot, i] = SplitHeadPair(idx, rotated, half);
    const int64_t s = token % sh.seq;
    bf16* x = qkv + (token * slots + slot) * sh.head_dim;
    RotatePair(__bfloat162float(x[i]), __bfloat162float(x[i + half]), cos_t[s * half + i],
               sign * sin_t[s * half + i], &x[i], &x[i + half]);
  }
}

__global__ void SwapAxes12Kernel(const bf16* in, bf16* out, int64_t nb, int64_t na, int64_t nc,
                                 int64_t nd) {
  const int64_t dp = nd / 8;
  const int64_t n = nb * na * nc * dp;
  for (int64_t idx : kernels::GridStride(n)) {
    // idx enumerates the OUTPUT [B, C, A, D/8] so that stores are coalesced.
    const int64_t p = idx % dp;
    int64_t rest = idx / dp;
    const int64_t a = rest % na;
    rest /= na;
    const int64_t c = rest % nc, b = rest / nc;
    const int64_t src = ((b * na + a) * nc + c) * nd + p * 8;
    kernels::StorePack(out + idx * 8, kernels::LoadPack(in + src));
  }
}

Status CheckShape(const char* kernel, const HeadShape& sh) {
  P3D_RETURN_IF_ERROR(RequirePositive(kernel, "batch", sh.batch));
  P3D_RETURN_IF_ERROR(RequirePositive(kernel, "seq", sh.seq));
  P3D_RETURN_IF_ERROR(RequirePositive(kernel, "heads", sh.heads));
  P3D_RETURN_IF_ERROR(RequirePositive(kernel, "kv_heads", sh.kv_heads));
  P3D_RETURN_IF_ERROR(RequireMultiple(kernel, "heads", sh.heads, sh.kv_heads));
  return RequireMultiple(kernel, "head_dim", sh.head_dim, 2);
}

// Checks `sh` (errors name `kernel`) and runs QkvHeadsKernel over all of it.
template <bool kBackward>
Status LaunchQkvHeads(const char* kernel, const QkvHeadsBuffers& buf, const HeadShape& sh,
                      const float* cos_table, const float* sin_table, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckShape(kernel, sh));
  const int64_t n = sh.batch * sh.seq * (sh.heads + 2 * sh.kv_heads) * (sh.head_dim / 2);
  QkvHeadsKernel<kBackward>
      <<<kernels::GridFor(n, 256), 256, 0, stream>>>(buf, sh, cos_table, sin_table);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace

void BuildRotaryTables(int64_t seq, int64_t head_dim, double theta, std::vector<float>* cos_table,
                       std::vector<float>* sin_table) {
  const int64_t half = head_dim / 2;
  cos_table->resize(seq * half);
  sin_table->resize(seq * half);
  for (int64_t s = 0; s < seq; ++s) {
    for (int64_t i = 0; i < half; ++i) {
      double angle = static_cast<double>(s) *
                     std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      (*cos_table)[s * half + i] = static_cast<float>(std::cos(angle));
      (*sin_table)[s * half + i] = static_cast<float>(std::sin(angle));
    }
  }
}

Status SplitQkvHeads(const bf16* qkv, bf16* q, bf16* k, bf16* v, const HeadShape& sh,
                     const float* cos_table, const float* sin_table, cudaStream_t stream) {
  return LaunchQkvHeads<false>("SplitQkvHeads", {.qkv = qkv, .q = q, .k = k, .v = v}, sh, cos_table,
                               sin_table, stream);
}

Status MergeQkvHeadsGrad(const bf16* dq, const bf16* dk, const bf16* dv, bf16* dqkv,
                         const HeadShape& sh, const float* cos_table, const float* sin_table,
                         cudaStream_t stream) {
  return LaunchQkvHeads<true>("MergeQkvHeadsGrad", {.dqkv = dqkv, .dq = dq, .dk = dk, .dv = dv}, sh,
                              cos_table, sin_table, stream);
}

Status RotateQkvInPlace(bf16* qkv, const HeadShape& sh, const float* cos_table,
                        const float* sin_table, bool inverse, cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckShape("RotateQkvInPlace", sh));
  const int64_t n = sh.batch * sh.seq * (sh.heads + sh.kv_heads) * (sh.head_dim / 2);
  RotateQkvKernel<<<kernels::GridFor(n, 256), 256, 0, stream>>>(qkv, sh, cos_table, sin_table,
                                                                 inverse ? -1.0f : 1.0f);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

Status SwapAxes12(const bf16* in, bf16* out, int64_t b, int64_t a, int64_t c, int64_t d,
                  cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(RequireMultiple("SwapAxes12", "d", d, 8));
  P3D_RETURN_IF_ERROR(RequirePositive("SwapAxes12", "b*a*c", b * a * c));
  const int64_t n = b * a * c * (d / 8);
  SwapAxes12Kernel<<<kernels::GridFor(n, 256), 256, 0, stream>>>(in, out, b, a, c, d);
  CUDA_CHECK_LAUNCH();
  return Status::Ok();
}

}  // namespace p3d
