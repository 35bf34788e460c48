// AttentionCore (attention_core.h): the causal attention GEMMs, softmax and head layouts.
#include <cmath>

#include "executor/attention_core.h"
#include "executor/kernels/heads.h"

namespace p3d {

// Per batch entry (b, kv head) the query side is [S*G, .] (row s*G + j:
// position s, head j of the group) and the key side [S, HD]; block i holds
// query rows [i*Sb*G, (i+1)*Sb*G) and needs keys [0, (i+1)*Sb) only.
Status AttentionCore::CausalGemm(Gemm kind, const bf16* a, const bf16* b, bf16* d,
                                 float alpha) const {
  const int64_t S = shape_.seq, HD = shape_.head_dim, G = shape_.heads / shape_.kv_heads;
  const int64_t Sb = S / shape_.blocks;
  for (int64_t i = 0; i < shape_.blocks; ++i) {
    MatmulParams p;
    p.alpha = alpha;
    p.batch = static_cast<int>(shape_.batch * shape_.kv_heads);
    switch (kind) {
      case Gemm::kScores:  // d[block rows, 0:(i+1)Sb] = a[block rows, HD] b[0:(i+1)Sb, HD]^T
        p.m = Sb * G;
        p.n = (i + 1) * Sb;
        p.k = HD;
        p.a = a + i * Sb * G * HD;
        p.b = b;
        p.trans_b = true;
        p.d = d + i * Sb * G * S;
        p.ldd = S;
        p.stride_a = S * G * HD;
        p.stride_b = S * HD;
        p.stride_d = S * G * S;
        break;
      case Gemm::kValues:  // d[block rows, HD] = a[block rows, 0:(i+1)Sb] b[0:(i+1)Sb, HD]
        p.m = Sb * G;
        p.n = HD;
        p.k = (i + 1) * Sb;
        p.a = a + i * Sb * G * S;
        p.lda = S;
        p.b = b;
        p.d = d + i * Sb * G * HD;
        p.stride_a = S * G * S;
        p.stride_b = S * HD;
        p.stride_d = S * G * HD;
        break;
      case Gemm::kKeys:  // d[key block i, HD] = a[rows >= i Sb G, key block i]^T b[those rows, HD]
        p.m = Sb;
        p.n = HD;
        p.k = (S - i * Sb) * G;
        p.a = a + i * Sb * G * S + i * Sb;
        p.trans_a = true;
        p.lda = S;
        p.b = b + i * Sb * G * HD;
        p.d = d + i * Sb * HD;
        p.stride_a = S * G * S;
        p.stride_b = S * G * HD;
        p.stride_d = S * HD;
        break;
    }
    P3D_RETURN_IF_ERROR(matmul_->Run(p, stream_));
  }
  return Status::Ok();
}

SoftmaxShape AttentionCore::ScoresShape() const {
  const int64_t S = shape_.seq;
  return {shape_.batch * shape_.heads * S, S, shape_.heads / shape_.kv_heads, S / shape_.blocks};
}

Status AttentionCore::Probs(const bf16* q, const bf16* k, bf16* probs) const {
  const float scale = 1.0f / std::sqrt(static_cast<float>(shape_.head_dim));
  P3D_RETURN_IF_ERROR(CausalGemm(Gemm::kScores, q, k, probs, scale));
  return CausalSoftmaxForward(probs, probs, ScoresShape(), stream_);
}

Status AttentionCore::Forward(const bf16* qkv, bf16* q, bf16* k, bf16* v, bf16* probs,
                              bf16* o_heads, bf16* att_out) const {
  const HeadShape hs{shape_.batch, shape_.seq, shape_.heads, shape_.kv_heads, shape_.head_dim};
  P3D_RETURN_IF_ERROR(SplitQkvHeads(qkv, q, k, v, hs, cos_, sin_, stream_));
  P3D_RETURN_IF_ERROR(Probs(q, k, probs));
  P3D_RETURN_IF_ERROR(CausalGemm(Gemm::kValues, probs, v, o_heads, 1.0f));
  // [B, KV, S, G*HD] -> tokens-major [B, S, KV, G*HD] = [B, S, NH*HD].
  const int64_t G = shape_.heads / shape_.kv_heads;
  return SwapAxes12(o_heads, att_out, shape_.batch, shape_.kv_heads, shape_.seq,
                    G * shape_.head_dim, stream_);
}

// dP = dO v^T; dS = softmax backward; dq = scale dS k; dk = scale dS^T q; dv = P^T dO.
Status AttentionCore::Backward(const bf16* d_att_out, const bf16* q, const bf16* k, const bf16* v,
                               const bf16* probs, const AttentionCoreScratch& scratch,
                               bf16* dqkv) const {
  const int64_t B = shape_.batch, S = shape_.seq, HD = shape_.head_dim;
  const int64_t G = shape_.heads / shape_.kv_heads, T = B * S;
  bf16* d_o = scratch.d_o;  // dO heads-major [B, KV, S, G*HD]
  P3D_RETURN_IF_ERROR(SwapAxes12(d_att_out, d_o, B, S, shape_.kv_heads, G * HD, stream_));
  bf16* dprobs = scratch.dprobs;
  bf16* dq = scratch.dqkv_heads;
  bf16* dk = dq + T * shape_.heads * HD;
  bf16* dv = dk + T * shape_.kv_heads * HD;
  const float scale = 1.0f / std::sqrt(static_cast<float>(HD));
  P3D_RETURN_IF_ERROR(CausalGemm(Gemm::kScores, d_o, v, dprobs, 1.0f));
  P3D_RETURN_IF_ERROR(CausalSoftmaxBackward(probs, dprobs, dprobs, ScoresShape(), stream_));
  P3D_RETURN_IF_ERROR(CausalGemm(Gemm::kValues, dprobs, k, dq, scale));
  P3D_RETURN_IF_ERROR(CausalGemm(Gemm::kKeys, dprobs, q, dk, scale));
  P3D_RETURN_IF_ERROR(CausalGemm(Gemm::kKeys, probs, d_o, dv, 1.0f));
  const HeadShape hs{B, S, shape_.heads, shape_.kv_heads, HD};
  return MergeQkvHeadsGrad(dq, dk, dv, dqkv, hs, cos_, sin_, stream_);
}

}  // namespace p3d
