// FusedAttention (fused_attention.h): the cuDNN flash-attention graphs.
#include "executor/fused_attention.h"

#include <cudnn.h>

#include <array>
#include <cmath>
#include <limits>

#include "executor/check.h"
#include "executor/str_cat.h"

namespace p3d {
namespace {

constexpr int64_t kAlign = 256;
int64_t AlignUp(int64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

// Strides of a head-split view [B, heads, S, HD] of a tokens-major [B*S, row] buffer.
Dims4 TokensMajor(int64_t S, int64_t HD, int64_t row) { return {S * row, HD, row, 1}; }
// The same view with the last two axes swapped: [B, heads, HD, S].
Dims4 TokensMajorT(int64_t S, int64_t HD, int64_t row) { return {S * row, HD, 1, row}; }

// Head-split views [B, heads, S, HD] of the q, k and v column blocks of a
// tokens-major [B*S, (NH + 2 KV) * HD] buffer (qkv or dqkv); k and v read as
// [B, KV, HD, S] where `k_transposed` / `v_transposed`.
StatusOr<std::array<GraphTensor, 3>> QkvViews(GraphBuilder& g, const AttentionCoreShape& s,
                                              bool k_transposed, bool v_transposed) {
  const int64_t B = s.batch, S = s.seq, NH = s.heads, KV = s.kv_heads, HD = s.head_dim;
  const int64_t W = (NH + 2 * KV) * HD;
  auto kv_view = [&](bool transposed) {
    return transposed ? g.Tensor(CUDNN_DATA_BFLOAT16, {B, KV, HD, S}, TokensMajorT(S, HD, W))
                      : g.Tensor(CUDNN_DATA_BFLOAT16, {B, KV, S, HD}, TokensMajor(S, HD, W));
  };
  P3D_ASSIGN_OR_RETURN(GraphTensor q,
                       g.Tensor(CUDNN_DATA_BFLOAT16, {B, NH, S, HD}, TokensMajor(S, HD, W)));
  P3D_ASSIGN_OR_RETURN(GraphTensor k, kv_view(k_transposed));
  P3D_ASSIGN_OR_RETURN(GraphTensor v, kv_view(v_transposed));
  return std::array<GraphTensor, 3>{q, k, v};
}

// The head-split view [B, NH, S, HD] of a tokens-major [B*S, NH*HD] buffer (O, dO).
StatusOr<GraphTensor> HeadsView(GraphBuilder& g, const AttentionCoreShape& s) {
  return g.Tensor(CUDNN_DATA_BFLOAT16, {s.batch, s.heads, s.seq, s.head_dim},
                  TokensMajor(s.seq, s.head_dim, s.heads * s.head_dim));
}

// The forward's fp32 row statistics (log-sum-exp) [B, NH, S, 1].
StatusOr<GraphTensor> RowStats(GraphBuilder& g, const AttentionCoreShape& s) {
  return g.Tensor(CUDNN_DATA_FLOAT, {s.batch, s.heads, s.seq, 1}, {s.heads * s.seq, s.seq, 1, 1});
}

// The causal mask: y = row >= col ? x : -inf on [B, NH, S, S].
StatusOr<GraphTensor> CausalMask(GraphBuilder& g, const GraphTensor& x,
                                 const GraphTensor& neg_inf) {
  P3D_ASSIGN_OR_RETURN(GraphTensor row, g.Virtual(CUDNN_DATA_INT32, x.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor col, g.Virtual(CUDNN_DATA_INT32, x.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor keep, g.Virtual(CUDNN_DATA_BOOLEAN, x.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor y, g.Virtual(CUDNN_DATA_FLOAT, x.dims));
  P3D_RETURN_IF_ERROR(g.Pointwise(CUDNN_POINTWISE_GEN_INDEX, x, nullptr, nullptr, row,
                                  CUDNN_DATA_FLOAT, /*axis=*/2));
  P3D_RETURN_IF_ERROR(g.Pointwise(CUDNN_POINTWISE_GEN_INDEX, x, nullptr, nullptr, col,
                                  CUDNN_DATA_FLOAT, /*axis=*/3));
  P3D_RETURN_IF_ERROR(
      g.Pointwise(CUDNN_POINTWISE_CMP_GE, row, &col, nullptr, keep, CUDNN_DATA_BOOLEAN));
  P3D_RETURN_IF_ERROR(g.Pointwise(CUDNN_POINTWISE_BINARY_SELECT, x, &neg_inf, &keep, y));
  return y;
}

// The masked scores mask(Q K^T * scale) [B, NH, S, S], less `shift` when set
// (the backward subtracts the forward's row statistics before masking).
StatusOr<GraphTensor> MaskedScores(GraphBuilder& g, const GraphTensor& q, const GraphTensor& kt,
                                   const GraphTensor& scale, const GraphTensor& neg_inf,
                                   const GraphTensor* shift) {
  P3D_ASSIGN_OR_RETURN(GraphTensor s, g.VirtualMatmul(q, kt));
  P3D_ASSIGN_OR_RETURN(s, g.VirtualPointwise(CUDNN_POINTWISE_MUL, s, &scale, s.dims));
  if (shift != nullptr) {
    P3D_ASSIGN_OR_RETURN(s, g.VirtualPointwise(CUDNN_POINTWISE_SUB, s, shift, s.dims));
  }
  return CausalMask(g, s, neg_inf);
}

// out = a b summed over the query heads of each KV head: [B, NH, S, HD] ->
// out [B, KV, S, HD] (a plain matmul when NH == KV).
Status MatmulToKvHeads(GraphBuilder& g, const GraphTensor& a, const GraphTensor& b,
                       const GraphTensor& out) {
  if (a.dims[1] == out.dims[1]) return g.Matmul(a, b, out);
  P3D_ASSIGN_OR_RETURN(GraphTensor all, g.VirtualMatmul(a, b, CUDNN_DATA_BFLOAT16));
  return g.Reduction(CUDNN_REDUCE_TENSOR_ADD, all, out);
}

// Pointers to the q, k and v column blocks of row 0 of a tokens-major qkv buffer.
std::array<void*, 3> QkvPointers(const bf16* qkv, const AttentionCoreShape& s) {
  auto* base = const_cast<bf16*>(qkv);
  return {base, base + s.heads * s.head_dim, base + (s.heads + s.kv_heads) * s.head_dim};
}

Status CheckAligned(const char* what, const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
    return Status::InvalidArgument(StrCat("FusedAttention: ", what, " must be 16-byte aligned"));
  return Status::Ok();
}

}  // namespace

Status FusedAttention::CheckShape(const AttentionCoreShape& s) {
  if (s.batch <= 0 || s.seq <= 0 || s.heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0)
    return Status::InvalidArgument("FusedAttention: B, S, NH, KV, HD must be positive");
  if (s.heads % s.kv_heads != 0)
    return Status::InvalidArgument(
        StrCat("FusedAttention: NH = ", s.heads, " must be a multiple of KV = ", s.kv_heads));
  if (s.head_dim % 8 != 0 || s.head_dim > 128)
    return Status::InvalidArgument(StrCat("FusedAttention: head_dim = ", s.head_dim,
                                          " must be a multiple of 8 and at most 128"));
  const int64_t seq_rule = cudnnGetVersion() <= 91500 ? 128 : 64;
  if (s.seq % seq_rule != 0)
    return Status::InvalidArgument(
        StrCat("FusedAttention: seq = ", s.seq, " must be a multiple of ", seq_rule, " (cuDNN ",
               cudnnGetVersion(),
               seq_rule == 128 ? ": its backward needs a padding mask otherwise)" : ")"));
  return Status::Ok();
}

int64_t FusedAttention::BackwardScratchBytes(const AttentionCoreShape& s) {
  const int64_t rows = s.batch * s.heads * s.seq;
  return AlignUp(rows * 4) + AlignUp(rows * s.head_dim * 4);
}

StatusOr<std::unique_ptr<FusedAttention>> FusedAttention::Create(const AttentionCoreShape& shape,
                                                                 cudaStream_t stream) {
  P3D_RETURN_IF_ERROR(CheckShape(shape));
  std::unique_ptr<FusedAttention> a(new FusedAttention(shape, stream));
  a->scale_ = 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  a->neg_inf_ = -std::numeric_limits<float>::infinity();
  CUDNN_CHECK(cudnnCreate(&a->handle_));
  CUDNN_CHECK(cudnnSetStream(a->handle_, stream));
  P3D_RETURN_IF_ERROR(a->BuildForward());
  P3D_RETURN_IF_ERROR(a->BuildBackward());
  return a;
}

FusedAttention::~FusedAttention() {
  if (handle_ != nullptr) cudnnDestroy(handle_);
}

int64_t FusedAttention::workspace_bytes() const {
  const int64_t bwd = AlignUp(bwd_.workspace_bytes()) + BackwardScratchBytes(shape_);
  return std::max(AlignUp(fwd_.workspace_bytes()), bwd);
}

std::string FusedAttention::Describe() const {
  return StrCat("cuDNN ", cudnnGetVersion(), "; forward: ", fwd_.engine(), ", engine workspace ",
                fwd_.workspace_bytes(), " B; backward: ", bwd_.engine(), ", engine workspace ",
                bwd_.workspace_bytes(), " B; total workspace ", workspace_bytes(), " B");
}

Status FusedAttention::BuildForward() {
  GraphBuilder g;
  P3D_ASSIGN_OR_RETURN(auto qkv,
                       QkvViews(g, shape_, /*k_transposed=*/true, /*v_transposed=*/false));
  const auto& [q, kt, v] = qkv;
  P3D_ASSIGN_OR_RETURN(GraphTensor o, HeadsView(g, shape_));
  P3D_ASSIGN_OR_RETURN(GraphTensor stats, RowStats(g, shape_));
  P3D_ASSIGN_OR_RETURN(GraphTensor scale, g.Scalar(CUDNN_DATA_FLOAT));
  P3D_ASSIGN_OR_RETURN(GraphTensor neg_inf, g.Scalar(CUDNN_DATA_FLOAT));
  const Dims4 rows = stats.dims;

  // stats = max + log(sum(e)), e = exp(s - max), s = mask(Q K^T * scale); O = (e / sum) V.
  P3D_ASSIGN_OR_RETURN(GraphTensor s, MaskedScores(g, q, kt, scale, neg_inf, nullptr));
  P3D_ASSIGN_OR_RETURN(GraphTensor max, g.VirtualReduction(CUDNN_REDUCE_TENSOR_MAX, s, rows));
  P3D_ASSIGN_OR_RETURN(GraphTensor shifted,
                       g.VirtualPointwise(CUDNN_POINTWISE_SUB, s, &max, s.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor e,
                       g.VirtualPointwise(CUDNN_POINTWISE_EXP, shifted, nullptr, s.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor sum, g.VirtualReduction(CUDNN_REDUCE_TENSOR_ADD, e, rows));
  P3D_ASSIGN_OR_RETURN(GraphTensor log_sum,
                       g.VirtualPointwise(CUDNN_POINTWISE_LOG, sum, nullptr, rows));
  P3D_RETURN_IF_ERROR(g.Pointwise(CUDNN_POINTWISE_ADD, max, &log_sum, nullptr, stats));
  P3D_ASSIGN_OR_RETURN(
      GraphTensor p, g.VirtualPointwise(CUDNN_POINTWISE_DIV, e, &sum, s.dims, CUDNN_DATA_BFLOAT16));
  P3D_RETURN_IF_ERROR(g.Matmul(p, v, o));

  P3D_ASSIGN_OR_RETURN(fwd_, g.Build(handle_));
  fu_ = {q.uid, kt.uid, v.uid, o.uid, stats.uid, scale.uid, neg_inf.uid};
  return Status::Ok();
}

Status FusedAttention::BuildBackward() {
  GraphBuilder g;
  P3D_ASSIGN_OR_RETURN(auto qkv, QkvViews(g, shape_, /*k_transposed=*/true, /*v_transposed=*/true));
  const auto& [q, kt, vt] = qkv;
  P3D_ASSIGN_OR_RETURN(GraphTensor o, HeadsView(g, shape_));
  P3D_ASSIGN_OR_RETURN(GraphTensor d_o, HeadsView(g, shape_));
  P3D_ASSIGN_OR_RETURN(GraphTensor stats, RowStats(g, shape_));
  P3D_ASSIGN_OR_RETURN(auto dqkv,
                       QkvViews(g, shape_, /*k_transposed=*/false, /*v_transposed=*/false));
  const auto& [dq, dk, dv] = dqkv;
  P3D_ASSIGN_OR_RETURN(GraphTensor scale, g.Scalar(CUDNN_DATA_FLOAT));
  P3D_ASSIGN_OR_RETURN(GraphTensor neg_inf, g.Scalar(CUDNN_DATA_FLOAT));
  P3D_ASSIGN_OR_RETURN(GraphTensor one, g.Scalar(CUDNN_DATA_FLOAT));
  const Dims4 rows = stats.dims, heads = o.dims;
  const int64_t S = shape_.seq;
  const Dims4 transposed{shape_.heads * S * S, S * S, 1, S};  // [B, NH, S, S] read as its transpose

  // D = rowsum(dO * O), kept in the workspace (softmax_sum).
  P3D_ASSIGN_OR_RETURN(GraphTensor dot, g.VirtualPointwise(CUDNN_POINTWISE_MUL, d_o, &o, heads));
  P3D_ASSIGN_OR_RETURN(GraphTensor dot_sum, g.VirtualReduction(CUDNN_REDUCE_TENSOR_ADD, dot, rows));
  P3D_ASSIGN_OR_RETURN(GraphTensor softmax_sum,
                       g.Tensor(CUDNN_DATA_FLOAT, rows, PackedStrides(rows)));
  P3D_RETURN_IF_ERROR(g.Pointwise(CUDNN_POINTWISE_MUL, dot_sum, &one, nullptr, softmax_sum));

  // P = exp(mask(Q K^T * scale - stats)); dV = P^T dO.
  P3D_ASSIGN_OR_RETURN(GraphTensor s, MaskedScores(g, q, kt, scale, neg_inf, &stats));
  P3D_ASSIGN_OR_RETURN(GraphTensor p, g.VirtualPointwise(CUDNN_POINTWISE_EXP, s, nullptr, s.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor pt, g.Tensor(CUDNN_DATA_BFLOAT16, s.dims, transposed, true));
  P3D_RETURN_IF_ERROR(g.Reshape(p, pt));
  P3D_RETURN_IF_ERROR(MatmulToKvHeads(g, pt, d_o, dv));

  // dS = P * (dO V^T - D) * scale; dK = dS^T Q.
  P3D_ASSIGN_OR_RETURN(GraphTensor dp, g.VirtualMatmul(d_o, vt));
  P3D_ASSIGN_OR_RETURN(GraphTensor d1,
                       g.VirtualPointwise(CUDNN_POINTWISE_SUB, dp, &softmax_sum, s.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor d2, g.VirtualPointwise(CUDNN_POINTWISE_MUL, d1, &p, s.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor ds, g.VirtualPointwise(CUDNN_POINTWISE_MUL, d2, &scale, s.dims));
  P3D_ASSIGN_OR_RETURN(GraphTensor dst, g.Tensor(CUDNN_DATA_BFLOAT16, s.dims, transposed, true));
  P3D_RETURN_IF_ERROR(g.Reshape(ds, dst));
  P3D_RETURN_IF_ERROR(MatmulToKvHeads(g, dst, q, dk));

  // dQ = dS K, accumulated in fp32 in the workspace.
  P3D_ASSIGN_OR_RETURN(GraphTensor k, g.Tensor(CUDNN_DATA_BFLOAT16, dk.dims, dk.strides, true));
  P3D_RETURN_IF_ERROR(g.Reshape(kt, k));
  P3D_ASSIGN_OR_RETURN(GraphTensor dq_accum,
                       g.Tensor(CUDNN_DATA_FLOAT, heads, PackedStrides(heads)));
  P3D_RETURN_IF_ERROR(g.Matmul(ds, k, dq_accum));
  P3D_RETURN_IF_ERROR(g.Pointwise(CUDNN_POINTWISE_IDENTITY, dq_accum, nullptr, nullptr, dq));

  P3D_ASSIGN_OR_RETURN(bwd_, g.Build(handle_));
  bu_ = {q.uid,  kt.uid, vt.uid,    o.uid,       d_o.uid, stats.uid,       dq.uid,
         dk.uid, dv.uid, scale.uid, neg_inf.uid, one.uid, softmax_sum.uid, dq_accum.uid};
  return Status::Ok();
}

Status FusedAttention::Forward(const bf16* qkv, bf16* out, float* stats, void* workspace) const {
  P3D_RETURN_IF_ERROR(CheckAligned("qkv", qkv));
  P3D_RETURN_IF_ERROR(CheckAligned("out", out));
  const auto [q, k, v] = QkvPointers(qkv, shape_);
  const std::vector<int64_t> uids{fu_.q, fu_.k, fu_.v, fu_.o, fu_.stats, fu_.scale, fu_.neg_inf};
  const std::vector<void*> ptrs{
      q, k, v, out, stats, const_cast<float*>(&scale_), const_cast<float*>(&neg_inf_)};
  return fwd_.Execute(handle_, uids, ptrs, workspace);
}

Status FusedAttention::Backward(const bf16* qkv, const bf16* out, const bf16* d_out,
                                const float* stats, bf16* dqkv, void* workspace) const {
  P3D_RETURN_IF_ERROR(CheckAligned("qkv", qkv));
  P3D_RETURN_IF_ERROR(CheckAligned("dqkv", dqkv));
  P3D_RETURN_IF_ERROR(CheckAligned("d_out", d_out));
  P3D_RETURN_IF_ERROR(CheckAligned("workspace", workspace));
  const int64_t rows = shape_.batch * shape_.heads * shape_.seq;
  char* ws = static_cast<char*>(workspace);
  char* softmax_sum = ws + AlignUp(bwd_.workspace_bytes());
  char* dq_accum = softmax_sum + AlignUp(rows * 4);
  // The dQ accumulator is zeroed here rather than trusting every cuDNN 9
  // release to do it (the frontend zeroed it itself before 9.6).
  CUDA_CHECK(cudaMemsetAsync(dq_accum, 0, rows * shape_.head_dim * 4, stream_));
  const auto [q, k, v] = QkvPointers(qkv, shape_);
  const auto [dq, dk, dv] = QkvPointers(dqkv, shape_);
  const std::vector<int64_t> uids{bu_.q,       bu_.k,   bu_.v,           bu_.o,       bu_.d_o,
                                  bu_.stats,   bu_.dq,  bu_.dk,          bu_.dv,      bu_.scale,
                                  bu_.neg_inf, bu_.one, bu_.softmax_sum, bu_.dq_accum};
  const std::vector<void*> ptrs{q,
                                k,
                                v,
                                const_cast<bf16*>(out),
                                const_cast<bf16*>(d_out),
                                const_cast<float*>(stats),
                                dq,
                                dk,
                                dv,
                                const_cast<float*>(&scale_),
                                const_cast<float*>(&neg_inf_),
                                const_cast<float*>(&one_),
                                softmax_sum,
                                dq_accum};
  return bwd_.Execute(handle_, uids, ptrs, workspace);
}

}  // namespace p3d
