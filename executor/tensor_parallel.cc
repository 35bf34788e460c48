#include "executor/tensor_parallel.h"

#include <fmt/format.h>

#include <map>
#include <string_view>

#include "executor/check.h"
#include "executor/comm/communicator.h"

namespace p3d {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Tensors split over TP (everything else is replicated on every TP rank).
bool IsTensorParallelSplit(std::string_view name) {
  for (std::string_view s :
       {"qkv.weight", "qkv.bias", "out.weight", "fc.weight", "fc.bias", "gate_up.weight",
        "proj.weight", "down.weight", "wte.weight", "head.weight"})
    if (EndsWith(name, s)) return true;
  return false;
}

// The norms' weights and biases (replicated; token-sliced under sequence parallelism).
bool IsNormTensor(std::string_view name) {
  for (std::string_view s : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
                             "final_norm.weight", "final_norm.bias"})
    if (EndsWith(name, s)) return true;
  return false;
}

}  // namespace

StatusOr<std::vector<TensorSource>> MapShardToFull(const ModelSpec& m, const ParallelContext& ctx,
                                                   const LocalShape& s, const ParamLayout& params,
                                                   const ParamLayout& full) {
  std::map<std::string, int> by_name;
  for (size_t j = 0; j < full.tensors.size(); ++j)
    by_name[full.tensors[j].name] = static_cast<int>(j);
  const int64_t t = ctx.tp_rank, HD = m.head_dim();
  const int64_t full_q = m.heads * HD, full_kv = m.kv_heads * HD;
  std::vector<TensorSource> out;
  for (size_t i = 0; i < params.tensors.size(); ++i) {
    const ParamTensor& lt = params.tensors[i];
    const std::string name =
        params.head_is_tied_copy && lt.name == "head.weight" ? "wte.weight" : lt.name;
    auto it = by_name.find(name);
    if (it == by_name.end())
      return Status::Internal(
          fmt::format("tensor parallel init: local tensor '{}' has no single-GPU tensor", lt.name));
    const ParamTensor& ft = full.tensors[it->second];
    TensorSource src;
    src.local_index = static_cast<int>(i);
    src.full_index = it->second;
    src.full_cols = ft.cols == 0 ? 1 : ft.cols;
    const int64_t cols = lt.cols == 0 ? 1 : lt.cols;
    auto rows_block = [&](int64_t src_row, int64_t dst_row, int64_t rows) {
      src.blocks.push_back({src_row, 0, dst_row, 0, rows, cols});
    };
    if (EndsWith(name, "qkv.weight") || EndsWith(name, "qkv.bias")) {
      rows_block(t * s.q_dim(), 0, s.q_dim());
      rows_block(full_q + t * s.kv_dim(), s.q_dim(), s.kv_dim());
      rows_block(full_q + full_kv + t * s.kv_dim(), s.q_dim() + s.kv_dim(), s.kv_dim());
    } else if (EndsWith(name, "out.weight") || EndsWith(name, "proj.weight") ||
               EndsWith(name, "down.weight")) {
      src.blocks.push_back({0, t * cols, 0, 0, lt.rows, cols});
    } else if (EndsWith(name, "fc.weight") || EndsWith(name, "fc.bias")) {
      rows_block(t * s.ffn, 0, s.ffn);
    } else if (EndsWith(name, "gate_up.weight")) {
      rows_block(t * s.ffn, 0, s.ffn);
      rows_block(m.ffn + t * s.ffn, s.ffn, s.ffn);
    } else if (name == "wte.weight" || name == "head.weight") {
      rows_block(s.vocab_begin, 0, s.vocab);
    } else {
      rows_block(0, 0, lt.rows);
    }
    for (const ShardBlock& b : src.blocks)
      if (b.src_row + b.rows > ft.rows || b.src_col + b.cols > src.full_cols ||
          b.dst_row + b.rows > lt.rows || b.dst_col + b.cols > cols)
        return Status::Internal(fmt::format(
            "tensor parallel init: slice rows [{}, {}) cols [{}, {}) of '{}' [{}, {}] does not "
            "fit local [{}, {}]",
            b.src_row, b.src_row + b.rows, b.src_col, b.src_col + b.cols, name, ft.rows,
            src.full_cols, lt.rows, cols));
    out.push_back(std::move(src));
  }
  return out;
}

std::vector<NormScale> NormScales(const ParamLayout& params, int tp) {
  std::vector<NormScale> out;
  for (const ParamTensor& t : params.tensors) {
    float scale = 1.0f;
    if (params.head_is_tied_copy && t.offset == params.head)
      scale = 0.0f;
    else if (tp > 1 && !IsTensorParallelSplit(t.name))
      scale = 1.0f / static_cast<float>(tp);
    if (scale != 1.0f) out.push_back({t.offset, t.offset + t.size(), scale});
  }
  return out;
}

StatusOr<SequenceSlice> SequenceShard(int64_t tokens, int tp, int tp_rank) {
  if (tp < 1 || tp_rank < 0 || tp_rank >= tp || tokens < 1)
    return Status::InvalidArgument(
        fmt::format("sequence parallel: tp rank {} of {} with {} tokens", tp_rank, tp, tokens));
  if (tokens % tp != 0)
    return Status::InvalidArgument(fmt::format(
        "rule tokens % tp: sequence parallelism splits the B*S = {} tokens of a micro-batch into "
        "tp = {} equal slices",
        tokens, tp));
  const int64_t rows = tokens / tp;
  return SequenceSlice{tp_rank * rows, rows};
}

std::vector<ElementRange> SequenceParallelGradRanges(const ParamLayout& params) {
  std::vector<ElementRange> out;
  bool previous_norm = false;
  for (const ParamTensor& t : params.tensors) {
    const bool norm = IsNormTensor(t.name);
    if (norm && previous_norm)
      out.back().end = t.offset + t.size();
    else if (norm)
      out.push_back({t.offset, t.offset + t.size()});
    previous_norm = norm;
  }
  return out;
}

TokenBuckets LocalVocabBuckets(const TokenBuckets& all, int64_t vocab_begin, int64_t rows) {
  TokenBuckets b;
  b.offset.push_back(0);
  for (size_t u = 0; u < all.token.size(); ++u) {
    const int64_t local = all.token[u] - vocab_begin;
    if (local < 0 || local >= rows) continue;
    b.token.push_back(static_cast<int32_t>(local));
    b.positions.insert(b.positions.end(), all.positions.begin() + all.offset[u],
                       all.positions.begin() + all.offset[u + 1]);
    b.offset.push_back(static_cast<int32_t>(b.positions.size()));
  }
  return b;
}

Status TensorParallel::AllReduceSum(bf16* data, int64_t count, cudaStream_t stream) {
  if (!comm_) return Status::Ok();
  return comm_->AllReduce(data, data, static_cast<size_t>(count), ncclBfloat16, ncclSum, stream);
}

Status TensorParallel::AllReduceSumF32(float* data, int64_t count, cudaStream_t stream) {
  if (!comm_) return Status::Ok();
  return comm_->AllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclSum, stream);
}

Status TensorParallel::AllReduceMaxF32(float* data, int64_t count, cudaStream_t stream) {
  if (!comm_) return Status::Ok();
  return comm_->AllReduce(data, data, static_cast<size_t>(count), ncclFloat32, ncclMax, stream);
}

Status TensorParallel::ReduceScatterSum(const bf16* full, bf16* slice, int64_t slice_count,
                                        cudaStream_t stream) {
  if (!comm_) {
    if (full == slice) return Status::Ok();
    CUDA_CHECK(
        cudaMemcpyAsync(slice, full, slice_count * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
    return Status::Ok();
  }
  return comm_->ReduceScatter(full, slice, static_cast<size_t>(slice_count), ncclBfloat16, ncclSum,
                              stream);
}

Status TensorParallel::AllGather(const bf16* slice, bf16* full, int64_t slice_count,
                                 cudaStream_t stream) {
  if (!comm_) {
    if (full == slice) return Status::Ok();
    CUDA_CHECK(
        cudaMemcpyAsync(full, slice, slice_count * sizeof(bf16), cudaMemcpyDeviceToDevice, stream));
    return Status::Ok();
  }
  return comm_->AllGather(slice, full, static_cast<size_t>(slice_count), ncclBfloat16, stream);
}

}  // namespace p3d
