// Kernel-level calibration objects (profile_internal.h; docs/calibration.md):
// the attention core, the optimizer step, compute slowed by collectives and
// the offloaded optimizer step.
#include <algorithm>
#include <vector>

#include "simulator/profile_internal.h"

namespace p3d::profile_internal {
namespace {

// Measured seconds of one attention-core shape, with its forward FLOPs.
struct CoreSample {
  double head_dim = 0, seq = 0, flops = 0;
  double forward_s = 0, probs_s = 0, backward_s = 0;
};

// A measured efficiency must not exceed 1: a faster time means the profile
// is of another GPU (or a broken timer).
Status CheckBelowPeak(const Fields& f, const char* key, double flops, double seconds,
                      const GpuSpec& gpu) {
  if (flops / seconds > gpu.peak_flops)
    return f.Error(key, fmt::format("gives {:.0f} TFLOP/s, above the {:.0f} TFLOP/s peak of '{}': "
                                    "the profile is not of this GPU",
                                    flops / seconds / 1e12, gpu.peak_flops / 1e12, gpu.name));
  return Status::Ok();
}

}  // namespace

Status ApplyAttention(const Fields& cal, ClusterSpec* c) {
  std::vector<CoreSample> samples;
  P3D_RETURN_IF_ERROR(cal.ForEachObject("attention", [&](const Fields& a) -> Status {
    double b, s, heads, kv, hd, blocks;
    CoreSample cs;
    P3D_RETURN_IF_ERROR(a.Positives({{"batch", &b},
                                     {"seq", &s},
                                     {"heads", &heads},
                                     {"kv_heads", &kv},
                                     {"head_dim", &hd},
                                     {"blocks", &blocks},
                                     {"forward_s", &cs.forward_s},
                                     {"probs_s", &cs.probs_s},
                                     {"backward_s", &cs.backward_s}}));
    cs.head_dim = hd;
    cs.seq = s;
    cs.flops = 4 * b * heads * s * s * hd * (blocks + 1) / (2 * blocks);
    P3D_RETURN_IF_ERROR(CheckBelowPeak(a, "forward_s", cs.flops, cs.forward_s, c->gpu));
    P3D_RETURN_IF_ERROR(CheckBelowPeak(a, "probs_s", cs.flops / 2, cs.probs_s, c->gpu));
    P3D_RETURN_IF_ERROR(CheckBelowPeak(a, "backward_s", 2 * cs.flops, cs.backward_s, c->gpu));
    samples.push_back(cs);
    return Status::Ok();
  }));
  // Shapes of one head_dim and seq within 1% of a group's first FLOPs become
  // one point at the group's mean FLOPs, efficiency = summed FLOPs / summed time.
  std::sort(samples.begin(), samples.end(), [](const CoreSample& x, const CoreSample& y) {
    if (x.head_dim != y.head_dim) return x.head_dim < y.head_dim;
    return x.seq != y.seq ? x.seq < y.seq : x.flops < y.flops;
  });
  std::vector<std::pair<CoreSample, int>> groups;
  double group_start = 0;
  for (const CoreSample& cs : samples) {
    if (!groups.empty() && groups.back().first.head_dim == cs.head_dim &&
        groups.back().first.seq == cs.seq && cs.flops <= group_start * 1.01) {
      CoreSample& g = groups.back().first;
      g.flops += cs.flops, g.forward_s += cs.forward_s, g.probs_s += cs.probs_s;
      g.backward_s += cs.backward_s;
      groups.back().second += 1;
    } else {
      groups.push_back({cs, 1});
      group_start = cs.flops;
    }
  }
  const double peak = c->gpu.peak_flops;
  c->gpu.attention_efficiency.clear();
  for (const auto& [g, n] : groups)
    c->gpu.attention_efficiency.push_back({g.head_dim, g.seq, g.flops / n,
                                           g.flops / (peak * g.forward_s),
                                           g.flops / 2 / (peak * g.probs_s),
                                           2 * g.flops / (peak * g.backward_s)});
  return Status::Ok();
}

Status ApplyOptimizer(const Fields& cal, ClusterSpec* c) {
  P3D_ASSIGN_OR_RETURN(Fields o, cal.ObjectAt("optimizer"));
  double params, bytes_per_param, seconds;
  P3D_RETURN_IF_ERROR(o.Positives(
      {{"params", &params}, {"bytes_per_param", &bytes_per_param}, {"seconds", &seconds}}));
  const double rate = params * bytes_per_param / seconds;
  if (rate > c->gpu.hbm_bytes_per_s)
    return o.Error("seconds", fmt::format("gives {:.0f} GB/s, above the {:.0f} GB/s datasheet "
                                          "bandwidth of '{}'",
                                          rate / 1e9, c->gpu.hbm_bytes_per_s / 1e9, c->gpu.name));
  c->gpu.optimizer_efficiency = rate / c->gpu.hbm_bytes_per_s;
  return Status::Ok();
}

Status ApplyInterference(const Fields& cal, ClusterSpec* c) {
  P3D_ASSIGN_OR_RETURN(Fields f, cal.ObjectAt("interference"));
  double comm, gemm, gemm_with, mem, mem_with;
  P3D_RETURN_IF_ERROR(f.Positives({{"comm_alone_s", &comm},
                                   {"gemm_alone_s", &gemm},
                                   {"gemm_with_comm_s", &gemm_with},
                                   {"memory_alone_s", &mem},
                                   {"memory_with_comm_s", &mem_with}}));
  // The compute loop must outlast the collectives, or the difference would
  // include collective time that was not under compute.
  if (gemm <= comm)
    return f.Error("gemm_alone_s", "must exceed comm_alone_s (the collectives must run under it)");
  if (mem <= comm)
    return f.Error("memory_alone_s",
                   "must exceed comm_alone_s (the collectives must run under it)");
  // Compute seconds lost per second of collective; below 1 by construction
  // unless the two serialise completely (then the overlap model is moot).
  c->gpu.overlap_slowdown_gemm = std::clamp((gemm_with - gemm) / comm, 0.0, 0.99);
  c->gpu.overlap_slowdown_memory = std::clamp((mem_with - mem) / comm, 0.0, 0.99);
  return Status::Ok();
}

Status ApplyOffloadStep(const Fields& cal, ClusterSpec* c) {
  P3D_ASSIGN_OR_RETURN(Fields f, cal.ObjectAt("offload_step"));
  double params, cpu_s;
  P3D_RETURN_IF_ERROR(f.Positives({{"params", &params}, {"cpu_adam_s", &cpu_s}}));
  c->node.cpu_adam_params_per_s = params / cpu_s;
  return Status::Ok();
}

}  // namespace p3d::profile_internal
