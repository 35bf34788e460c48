// Calibrated profiles (profile.h; derivations in docs/calibration.md).
#include "simulator/profile.h"
#include "simulator/profile_cpu_adam.h"
#include "simulator/profile_internal.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "common/json_fields.h"
#include "simulator/collectives.h"

namespace p3d {
namespace {

using nlohmann::json;
using profile_internal::Fields;

// The slowest measurements a profile may hold: anything slower is no
// measurement of this GPU (a unit slip) and would make step times meaningless.
constexpr double kMinHbmEfficiency = 0.01;   // of the datasheet bandwidth
constexpr double kMinGemmEfficiency = 1e-4;  // of the dense peak (1e8-FLOP GEMMs reach ~4e-2)

// comm_model.h: ring steps and bytes-per-bus-byte factor of one collective.
Status StepsAndFactor(const std::string& op, int n, double* steps, double* factor) {
  if (n < 2) return Status::InvalidArgument(fmt::format("group size {} < 2", n));
  Collective c;
  if (!ParseCollective(op, &c))
    return Status::InvalidArgument(fmt::format("unknown collective '{}' ({})", op, CollectiveNames()));
  *steps = RingSteps(c, n);
  *factor = BusFactor(c, n);
  return Status::Ok();
}

struct GemmPoint {
  double flops = 0;    // summed over the shapes merged into the point
  double seconds = 0;  // fwd + dx + dw, summed likewise
  bool plan = false;
  int shapes = 1;
};

// The efficiency table of the GEMM array `key` ("gemm", "fp8_gemm") against
// `peak` (the GPU's dense bf16 or FP8 peak), and its plan shapes as measured.
Status GemmTable(const Fields& cal, const char* key, double peak, const std::string& gpu_name,
                 std::vector<GemmShapeTime>* shapes, std::vector<GemmEfficiencyPoint>* table) {
  std::vector<GemmPoint> points;
  P3D_RETURN_IF_ERROR(cal.ForEachObject(key, [&](const Fields& g) -> Status {
    double m, n, k, fwd, dx, dw;
    std::string source;
    P3D_RETURN_IF_ERROR(g.Positives(
        {{"m", &m}, {"n", &n}, {"k", &k}, {"fwd_s", &fwd}, {"dx_s", &dx}, {"dw_s", &dw}}));
    P3D_RETURN_IF_ERROR(g.String("source", &source));
    if (source != "plan" && source != "sweep")
      return g.Error("source", fmt::format("must be \"plan\" or \"sweep\", got \"{}\"", source));
    GemmPoint p{2 * m * n * k, fwd + dx + dw, source == "plan", 1};
    if (p.plan) shapes->push_back({m, n, k, fwd, dx, dw});
    if (3 * p.flops / p.seconds < kMinGemmEfficiency * peak)
      return g.Error("fwd_s", fmt::format("gives {:.3g} TFLOP/s, below {:g}% of the {:.0f} TFLOP/s peak of '{}'",
                                          3 * p.flops / p.seconds / 1e12, 100 * kMinGemmEfficiency,
                                          peak / 1e12, gpu_name));
    if (3 * p.flops / p.seconds > peak)
      return g.Error("fwd_s", fmt::format("gives {:.0f} TFLOP/s, above the {:.0f} TFLOP/s peak of "
                                          "'{}': the profile is not of this GPU",
                                          3 * p.flops / p.seconds / 1e12, peak / 1e12, gpu_name));
    points.push_back(p);
    return Status::Ok();
  }));
  if (points.empty()) return cal.Error(key, "must not be empty");
  double lo = INFINITY, hi = 0;
  for (const GemmPoint& p : points)
    if (p.plan) lo = std::min(lo, p.flops), hi = std::max(hi, p.flops);
  // Plan shapes define the table inside their FLOPs range; the sweep extends it.
  std::erase_if(points,
                [&](const GemmPoint& p) { return !p.plan && p.flops >= lo && p.flops <= hi; });
  std::sort(points.begin(), points.end(),
            [](const GemmPoint& a, const GemmPoint& b) { return a.flops < b.flops; });
  // Shapes within 1% of the first FLOPs of a group become one point at the
  // group's mean FLOPs; its efficiency is summed FLOPs over summed time, so
  // the point predicts the group's total time.
  std::vector<GemmPoint> merged;
  double group_start = 0;
  for (const GemmPoint& p : points) {
    if (!merged.empty() && p.flops <= group_start * 1.01) {
      merged.back().flops += p.flops;
      merged.back().seconds += p.seconds;
      merged.back().shapes += 1;
    } else {
      merged.push_back(p);
      group_start = p.flops;
    }
  }
  table->clear();
  for (const GemmPoint& p : merged)
    table->push_back({p.flops / p.shapes, 3 * p.flops / p.seconds / peak});
  return Status::Ok();
}

Status ApplyGemm(const Fields& cal, ClusterSpec* c) {
  std::vector<GemmShapeTime> shapes;  // the plan shapes, timed as measured
  P3D_RETURN_IF_ERROR(GemmTable(cal, "gemm", c->gpu.peak_flops, c->gpu.name, &shapes, &c->gpu.gemm_efficiency));
  c->gpu.gemm_shapes = std::move(shapes);
  return Status::Ok();
}

// FP8 GEMMs (p3d-calibrate's fp8 probe): the FP8 efficiency table, of the
// GPU's FP8 peak (the compute model times FP8 GEMMs from the table alone).
Status ApplyFp8Gemm(const Fields& cal, ClusterSpec* c) {
  if (c->gpu.fp8_peak_flops <= 0)
    return cal.Error("fp8_gemm", fmt::format("'{}' has no FP8 peak (gpu.fp8_peak_flops) to measure FP8 GEMMs "
                                             "against", c->gpu.name));
  std::vector<GemmShapeTime> unused;
  return GemmTable(cal, "fp8_gemm", c->gpu.fp8_peak_flops, c->gpu.name, &unused, &c->gpu.fp8_gemm_efficiency);
}

Status ApplyHbm(const Fields& cal, ClusterSpec* c) {
  P3D_ASSIGN_OR_RETURN(Fields h, cal.ObjectAt("hbm"));
  double bytes, seconds;
  P3D_RETURN_IF_ERROR(h.Positives({{"elementwise_bytes", &bytes}, {"elementwise_s", &seconds}}));
  const double eff = bytes / seconds / c->gpu.hbm_bytes_per_s;
  // Below 1% of the datasheet is no bandwidth measurement of this GPU (found by
  // p3d-fuzz: 1e-300 bytes made every memory-bound time infinite, step NaN).
  if (eff < kMinHbmEfficiency)
    return h.Error("elementwise_bytes",
                   fmt::format("gives {:.3g} GB/s, below {:.0f}% of the {:.0f} GB/s datasheet bandwidth of '{}'",
                               bytes / seconds / 1e9, 100 * kMinHbmEfficiency, c->gpu.hbm_bytes_per_s / 1e9,
                               c->gpu.name));
  if (eff > 1)
    return h.Error(
        "elementwise_s",
        fmt::format("gives {:.0f} GB/s, above the {:.0f} GB/s datasheet bandwidth of '{}'",
                    bytes / seconds / 1e9, c->gpu.hbm_bytes_per_s / 1e9, c->gpu.name));
  c->gpu.hbm_efficiency = eff;
  // Per-size points of the same kernel (optional): the efficiency by bytes
  // moved, with the large measurement as its top.
  c->gpu.hbm_efficiency_by_bytes.clear();
  if (h.Has("elementwise_sizes")) {
    std::vector<GemmEfficiencyPoint> t;
    P3D_RETURN_IF_ERROR(h.ForEachObject("elementwise_sizes", [&](const Fields& e) -> Status {
      double b = 0, sec = 0;
      P3D_RETURN_IF_ERROR(e.Positives({{"bytes", &b}, {"seconds", &sec}}));
      if (b / sec > c->gpu.hbm_bytes_per_s)
        return e.Error("seconds", "gives a bandwidth above the datasheet's");
      if (b / sec < kMinHbmEfficiency * c->gpu.hbm_bytes_per_s)
        return e.Error("bytes", fmt::format("gives a bandwidth below {:.0f}% of the datasheet's", 100 * kMinHbmEfficiency));
      t.push_back({b, b / sec / c->gpu.hbm_bytes_per_s});
      return Status::Ok();
    }));
    t.push_back({bytes, eff});
    std::sort(t.begin(), t.end(), [](const auto& x, const auto& y) { return x.flops < y.flops; });
    t.erase(std::unique(t.begin(), t.end(),
                        [](const auto& x, const auto& y) { return x.flops == y.flops; }),
            t.end());
    c->gpu.hbm_efficiency_by_bytes = std::move(t);
  }
  return Status::Ok();
}

Status ApplyRuntime(const Fields& cal, ClusterSpec* c) {
  P3D_ASSIGN_OR_RETURN(Fields r, cal.ObjectAt("runtime"));
  if (r.Has("device_total_bytes"))
    P3D_RETURN_IF_ERROR(r.Positive("device_total_bytes", &c->gpu.memory_bytes));
  double free_after = 0;
  P3D_RETURN_IF_ERROR(r.Positive("free_after_context_bytes", &free_after));
  if (free_after >= c->gpu.memory_bytes)
    return r.Error("free_after_context_bytes",
                   fmt::format("({:.0f}) must be below the card's memory_bytes ({:.0f})",
                               free_after, c->gpu.memory_bytes));
  c->gpu.runtime.cuda_context_bytes = c->gpu.memory_bytes - free_after;
  if (r.Has("nccl_first_bytes")) {
    // Measured step by step (docs/calibration.md): the first communicator with
    // NCCL's setup, one more communicator, the send/recv connections.
    RuntimeMemory& rt = c->gpu.runtime;
    P3D_RETURN_IF_ERROR(r.Positive("nccl_first_bytes", &rt.nccl_first_comm_bytes));
    P3D_RETURN_IF_ERROR(r.NonNegative("nccl_split_bytes", &rt.nccl_per_comm_bytes));
    P3D_RETURN_IF_ERROR(r.NonNegative("nccl_p2p_bytes", &rt.nccl_p2p_bytes));
  } else if (r.Has("nccl_bytes")) {  // older profiles: one total over the communicators
    double bytes = 0, comms = 0;
    P3D_RETURN_IF_ERROR(r.Positives({{"nccl_bytes", &bytes}, {"nccl_communicators", &comms}}));
    c->gpu.runtime.nccl_per_comm_bytes = bytes / comms;
  }
  if (r.Has("arena_request_bytes")) {
    double request = 0, overhead = 0;
    P3D_RETURN_IF_ERROR(r.Positive("arena_request_bytes", &request));
    P3D_RETURN_IF_ERROR(r.NonNegative("arena_overhead_bytes", &overhead));
    if (overhead >= request)
      return r.Error("arena_overhead_bytes", "must be below arena_request_bytes");
    c->gpu.runtime.allocator_fraction = overhead / request;
  }
  return Status::Ok();
}

Status ApplyCollectives(const Fields& cal, ClusterSpec* c) {
  std::vector<CollectiveSample> samples;
  P3D_RETURN_IF_ERROR(cal.ForEachObject("collectives", [&](const Fields& f) -> Status {
    CollectiveSample s;
    std::string link;
    double n = 0;
    P3D_RETURN_IF_ERROR(f.String("op", &s.op));
    P3D_RETURN_IF_ERROR(f.String("link", &link));
    if (link != "intra")
      return f.Error("link", fmt::format("must be \"intra\" (one host measures no network), got "
                                         "\"{}\"",
                                         link));
    P3D_RETURN_IF_ERROR(
        f.Positives({{"group_size", &n}, {"bytes", &s.bytes}, {"seconds", &s.seconds}}));
    s.group_size = static_cast<int>(n);
    double steps, factor;
    Status known = StepsAndFactor(s.op, s.group_size, &steps, &factor);
    if (!known.ok()) return f.Error("op", known.message());
    samples.push_back(s);
    return Status::Ok();
  }));
  if (samples.empty()) return Status::Ok();  // one GPU: nothing to fit
  StatusOr<LinkFit> fit = FitCollectives(samples);
  if (!fit.ok()) return cal.Error("collectives", fit.status().message());
  LinkSpec& l = c->network.front().link;  // the innermost tier: what one host measures
  l.latency_s = fit->alpha_s;
  l.efficiency = fit->bus_bytes_per_s / l.bytes_per_s;
  if (l.efficiency > 1)
    return cal.Error("collectives",
                     fmt::format("fit a bus bandwidth of {:.0f} GB/s, above the {:.0f} GB/s "
                                 "datasheet link '{}'",
                                 fit->bus_bytes_per_s / 1e9, l.bytes_per_s / 1e9, l.name));
  return Status::Ok();
}

}  // namespace

std::vector<LinearGemmShape> LinearGemmShapes(const ModelSpec& model, int64_t tokens, int tp,
                                              int64_t logits_chunk, int64_t vocab_rows) {
  const int64_t H = model.hidden, HD = model.head_dim();
  const int64_t q = model.heads * HD / tp, kv = model.KvHeadsPerTpRank(tp) * HD;
  const int64_t f = model.ffn / tp, fc = (model.arch == Arch::kLlama ? 2 : 1) * f;
  const int64_t chunk = logits_chunk > 0 ? std::min(logits_chunk, tokens) : tokens;
  const std::string who = model.name;
  std::vector<LinearGemmShape> shapes = {
      {who + " qkv", tokens, q + 2 * kv, H},
      {who + " out", tokens, H, q},
      {who + " fc", tokens, fc, H},
      {who + " fc2", tokens, H, f},
      {who + " head", chunk, (vocab_rows > 0 ? vocab_rows : model.vocab) / tp, H}};
  std::vector<LinearGemmShape> unique;
  for (const LinearGemmShape& s : shapes) {
    bool seen = std::any_of(unique.begin(), unique.end(), [&](const LinearGemmShape& u) {
      return u.m == s.m && u.n == s.n && u.k == s.k;
    });
    if (!seen) unique.push_back(s);
  }
  return unique;
}

StatusOr<LinkFit> FitCollectives(const std::vector<CollectiveSample>& samples) {
  if (samples.size() < 2)
    return Status::InvalidArgument(
        fmt::format("a fit needs at least 2 samples, got {}", samples.size()));
  // Weighted least squares on t = steps*alpha + (factor*bytes)*beta, weight
  // 1/t: minimise sum ((steps*alpha + x*beta) / t - 1)^2.
  double saa = 0, sab = 0, sbb = 0, sa = 0, sb = 0;
  for (const CollectiveSample& s : samples) {
    double steps, factor;
    P3D_RETURN_IF_ERROR(StepsAndFactor(s.op, s.group_size, &steps, &factor));
    const double a = steps / s.seconds, b = factor * s.bytes / s.seconds;
    saa += a * a, sab += a * b, sbb += b * b, sa += a, sb += b;
  }
  const double det = saa * sbb - sab * sab;
  if (!(std::fabs(det) > 0))
    return Status::InvalidArgument("samples do not determine a fit (one size only?)");
  double alpha = (sa * sbb - sb * sab) / det, beta = (saa * sb - sab * sa) / det;
  if (alpha <= 0) {  // latency not resolvable: fit bandwidth alone, keep a 1 ns floor
    alpha = 1e-9;
    double num = 0, den = 0;
    for (const CollectiveSample& s : samples) {
      double steps, factor;
      StepsAndFactor(s.op, s.group_size, &steps, &factor);
      const double b = factor * s.bytes / s.seconds;
      num += b * (1 - steps * alpha / s.seconds), den += b * b;
    }
    beta = num / den;
  }
  if (!(beta > 0)) return Status::InvalidArgument("fit gives a non-positive bandwidth");
  LinkFit fit{alpha, 1 / beta, 0, static_cast<int>(samples.size())};
  for (const CollectiveSample& s : samples) {
    double steps, factor;
    StepsAndFactor(s.op, s.group_size, &steps, &factor);
    const double t = steps * alpha + factor * s.bytes * beta;
    fit.max_rel_error = std::max(fit.max_rel_error, std::fabs(t - s.seconds) / s.seconds);
  }
  return fit;
}

StatusOr<ClusterSpec> ApplyCalibration(const ClusterSpec& base, const json& calibration,
                                       const std::string& origin) {
  if (!calibration.is_object())
    return Status::InvalidArgument(
        fmt::format("profile {}: field 'calibration' must be an object", origin));
  Fields cal(calibration, "calibration", origin);
  std::string card;
  P3D_RETURN_IF_ERROR(cal.String("card", &card));
  if (cal.Has("catalog_gpu")) {
    std::string measured;
    P3D_RETURN_IF_ERROR(cal.String("catalog_gpu", &measured));
    if (measured != base.gpu.name)
      return cal.Error("catalog_gpu",
                       fmt::format("is '{}' ({}), but the plan is for '{}': pass --gpu {} or "
                                   "calibrate on the GPU you plan for",
                                   measured, card, base.gpu.name, measured));
  }
  ClusterSpec c = base;
  if (cal.Has("gemm")) P3D_RETURN_IF_ERROR(ApplyGemm(cal, &c));
  if (cal.Has("fp8_gemm")) P3D_RETURN_IF_ERROR(ApplyFp8Gemm(cal, &c));
  if (cal.Has("hbm")) P3D_RETURN_IF_ERROR(ApplyHbm(cal, &c));
  if (cal.Has("runtime")) P3D_RETURN_IF_ERROR(ApplyRuntime(cal, &c));
  if (cal.Has("collectives")) P3D_RETURN_IF_ERROR(ApplyCollectives(cal, &c));
  if (cal.Has("attention")) P3D_RETURN_IF_ERROR(profile_internal::ApplyAttention(cal, &c));
  if (cal.Has("optimizer")) P3D_RETURN_IF_ERROR(profile_internal::ApplyOptimizer(cal, &c));
  if (cal.Has("interference")) P3D_RETURN_IF_ERROR(profile_internal::ApplyInterference(cal, &c));
  if (cal.Has("cpu_adam")) {
    P3D_ASSIGN_OR_RETURN(c.node.cpu_adam_params_per_s,
                         CalibratedCpuAdamParamsPerS(calibration.at("cpu_adam"), origin));
  }
  // The CPU update's rate inside a real offloaded step (pinned copies share
  // host memory bandwidth with it) supersedes the CPU-only figure.
  if (cal.Has("offload_step")) P3D_RETURN_IF_ERROR(profile_internal::ApplyOffloadStep(cal, &c));
  c.gpu.description = card;
  c.source = fmt::format("profile {}", origin);
  return c;
}

StatusOr<ClusterSpec> ApplyProfile(const ClusterSpec& base, const std::string& path) {
  P3D_ASSIGN_OR_RETURN(json doc, ReadJsonFile(path, "profile"));
  if (!doc.is_object()) return Status::InvalidArgument(fmt::format("profile {}: not a JSON object", path));
  auto schema = doc.find("schema");
  if (schema == doc.end() || !schema->is_string() || *schema != kProfileSchema)
    return Status::InvalidArgument(
        fmt::format("profile {}: field 'schema' must be \"{}\"", path, kProfileSchema));
  if (!doc.contains("calibration"))
    return Status::InvalidArgument(fmt::format("profile {}: field 'calibration' is missing", path));
  return ApplyCalibration(base, doc["calibration"], path);
}

std::string ProfileToJson(const ClusterSpec& applied, const json& calibration) {
  json doc = json::parse(ClusterToJson(applied));
  json out = {{"schema", kProfileSchema}};
  out["gpu"] = doc["gpu"];
  out["node"] = doc["node"];
  out["network"] = doc["network"];
  out["calibration"] = calibration;
  return out.dump(2);
}

}  // namespace p3d
