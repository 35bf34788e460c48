#include "executor/parallel_context.h"

#include <fmt/format.h>

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
  P3D_RETURN_IF_ERROR(divides("vocab % tp", m.vocab));
  if (c.first_layer < 0 || c.layers < 1 || c.first_layer + c.layers > m.layers)
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
  s.vocab = m.vocab / c.tp;
  return s;
}

}  // namespace p3d
