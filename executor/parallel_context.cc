#include "executor/parallel_context.h"

#include <fmt/format.h>

#include <algorithm>

namespace p3d {

ParallelContext SingleGpuContext(const ModelSpec& model) {
  ParallelContext ctx;
  ctx.layers = model.layers;
  return ctx;
}

StatusOr<LocalShape> ShardShape(const ModelSpec& m, const ParallelContext& c) {
  P3D_RETURN_IF_ERROR(Validate(m));
  if (c.tp < 1 || c.pp < 1 || c.tp_rank < 0 || c.tp_rank >= c.tp || c.pp_rank < 0 ||
      c.pp_rank >= c.pp)
    return Status::InvalidArgument(fmt::format(
        "parallel context: tp={} tp_rank={} pp={} pp_rank={}", c.tp, c.tp_rank, c.pp, c.pp_rank));
  auto divides = [&](const char* rule, int64_t value) -> Status {
    if (value % c.tp != 0)
      return Status::Infeasible(
          fmt::format("rule {}: {} is not divisible by tp={}", rule, value, c.tp));
    return Status::Ok();
  };
  P3D_RETURN_IF_ERROR(divides("heads % tp", m.heads));
  P3D_RETURN_IF_ERROR(divides("kv_heads % tp", m.kv_heads));
  P3D_RETURN_IF_ERROR(divides("ffn % tp", m.ffn));
  if (c.vpp < 1 || c.layers % c.vpp != 0 || (c.vpp > 1 && c.layers * c.pp != m.layers))
    return Status::InvalidArgument(fmt::format(
        "rule layer range: {} layers in vpp={} chunks on pp={} stages must split L = {} evenly",
        c.layers, c.vpp, c.pp, m.layers));
  if (c.first_layer < 0 || c.layers < 1 || c.GlobalLayer(c.layers - 1) >= m.layers)
    return Status::InvalidArgument(
        fmt::format("rule layer range: stage holds layers [{}, {}) outside the model's [0, {})",
                    c.first_layer, c.first_layer + c.layers, m.layers));
  LocalShape s;
  s.layers = c.layers;
  s.hidden = m.hidden;
  s.heads = m.heads / c.tp;
  s.kv_heads = m.kv_heads / c.tp;
  s.head_dim = m.head_dim();
  s.ffn = m.ffn / c.tp;
  const int64_t align = kVocabShardAlign * c.tp;
  const int64_t rows = (m.vocab + align - 1) / align * align / c.tp;
  s.vocab_begin = c.tp_rank * rows;
  s.vocab = std::min(rows, m.vocab - s.vocab_begin);
  if (s.vocab < 1)
    return Status::Infeasible(
        fmt::format("rule vocab rows: tp rank {} of {} owns vocabulary rows [{}, {}) beyond V = {}",
                    c.tp_rank, c.tp, s.vocab_begin, s.vocab_begin + rows, m.vocab));
  return s;
}

}  // namespace p3d
