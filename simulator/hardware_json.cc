// Custom hardware as JSON (schema: docs/hardware.md). Field names are the
// GpuSpec / NodeSpec / LinkSpec member names; sizes are bytes, rates bytes/s
// or FLOP/s, latencies seconds, as everywhere in p3d.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/input_file.h"
#include "common/json_fields.h"
#include "simulator/hardware.h"

namespace p3d {
namespace {

using nlohmann::json;

// Reads fields of one JSON object; every message names the full field path.
class Reader {
 public:
  Reader(const json& j, std::string path) : j_(j), path_(std::move(path)) {}

  // The object at `key`, read with its path.
  StatusOr<Reader> Child(const char* key) const {
    P3D_ASSIGN_OR_RETURN(const json* v, Find(key));
    if (!v->is_object()) return IllTyped(key, "an object");
    return Reader(*v, Path(key));
  }
  const json& object() const { return j_; }
  Status String(const char* key, std::string* out) const {
    P3D_ASSIGN_OR_RETURN(const json* v, Find(key));
    if (!v->is_string() || v->get<std::string>().empty())
      return IllTyped(key, "a non-empty string");
    *out = v->get<std::string>();
    return Status::Ok();
  }
  Status Bool(const char* key, bool* out) const {
    P3D_ASSIGN_OR_RETURN(const json* v, Find(key));
    if (!v->is_boolean()) return IllTyped(key, "true or false");
    *out = v->get<bool>();
    return Status::Ok();
  }
  // A finite number in (0, max].
  Status Positive(const char* key, double max, double* out) const {
    return Number(key, {0, true, max, false}, "", out);
  }
  // A finite number in [min, max]: a physical rate or size whose plausible
  // range catches unit slips (GB/s typed where bytes/s is asked).
  Status Plausible(const char* key, double min, double max, const char* unit, double* out) const {
    return Number(key, {min, false, max, false}, unit, out);
  }
  // Every key must be one of `known` (a misspelled key is an error, not ignored).
  Status OnlyKeys(std::initializer_list<std::string_view> known) const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
      std::string hint = ClosestMatch(it.key(), known);
      return Status::InvalidArgument(
          fmt::format("hardware field '{}' is not a known field{}", Path(it.key().c_str()),
                      hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
    }
    return Status::Ok();
  }
  // A finite number in [0, max].
  Status NonNegative(const char* key, double max, double* out) const {
    return Number(key, {0, false, max, false}, "", out);
  }
  // A finite number in [0, 1) (fractions that may be zero).
  Status Fraction(const char* key, double* out) const {
    return Number(key, {0, false, 1, true}, "", out);
  }
  bool Has(const char* key) const { return j_.contains(key); }
  std::string Path(const char* key) const { return path_.empty() ? key : path_ + "." + key; }

 private:
  // The interval [lo, hi], each end open where said: "(0, 1]".
  struct Range {
    double lo;
    bool lo_open;
    double hi;
    bool hi_open;
    bool Contains(double v) const {
      return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    }
  };
  // A finite number in `range`; a message names the range and its `unit`.
  Status Number(const char* key, const Range& range, std::string_view unit, double* out) const {
    P3D_ASSIGN_OR_RETURN(const json* j, Find(key));
    if (!j->is_number()) return IllTyped(key, "a number");
    const double v = j->get<double>();
    if (!std::isfinite(v) || !range.Contains(v))
      return Status::InvalidArgument(
          fmt::format("hardware field '{}' must be in {}{:g}, {:g}{}{}{}, got {}", Path(key),
                      range.lo_open ? '(' : '[', range.lo, range.hi, range.hi_open ? ')' : ']',
                      unit.empty() ? "" : " ", unit, j->dump()));
    *out = v;
    return Status::Ok();
  }
  StatusOr<const json*> Find(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end()) return Missing(key);
    return &*it;
  }
  Status Missing(const char* key) const {
    return Status::InvalidArgument(fmt::format("hardware field '{}' is missing", Path(key)));
  }
  Status IllTyped(const char* key, const char* want) const {
    return Status::InvalidArgument(
        fmt::format("hardware field '{}' must be {}, got {}", Path(key), want, j_.at(key).dump()));
  }
  const json& j_;
  std::string path_;
};

constexpr double kMaxBytes = 1e15;   // 1 PB: anything larger is a typo
constexpr double kMaxRate = 1e18;    // bytes/s or FLOP/s
constexpr double kMaxLatency = 1.0;  // seconds
// Plausible physical ranges (docs/hardware.md): a value outside is a unit slip.
constexpr double kMinLinkRate = 1e8;      // bytes/s: 0.1 GB/s, below 1 Gb Ethernet
constexpr double kMinHbmRate = 1e10;      // bytes/s: 10 GB/s
constexpr double kMinPeakFlops = 1e12;    // FLOP/s: 1 TFLOP/s
constexpr double kMinMemoryBytes = 1e9;   // bytes: 1 GB of GPU or host memory

// A link's fields of the object `r` (a node link or a network tier).
Status ReadLinkFields(const Reader& r, LinkSpec* link) {
  P3D_RETURN_IF_ERROR(r.String("name", &link->name));
  P3D_RETURN_IF_ERROR(r.Plausible("bytes_per_s", kMinLinkRate, kMaxRate, "bytes/s", &link->bytes_per_s));
  P3D_RETURN_IF_ERROR(r.Positive("efficiency", 1.0, &link->efficiency));
  return r.Positive("latency_s", kMaxLatency, &link->latency_s);
}

Status ReadLink(const Reader& parent, const char* key, LinkSpec* link) {
  P3D_ASSIGN_OR_RETURN(Reader r, parent.Child(key));
  P3D_RETURN_IF_ERROR(r.OnlyKeys({"name", "bytes_per_s", "efficiency", "latency_s"}));
  return ReadLinkFields(r, link);
}

// Calls read(reader, item path) for every element of the array parent[key];
// each must be an object. Messages name the element ("gpu.key[3]").
template <typename Read>
Status ReadObjectArray(const Reader& parent_reader, const json& parent, const char* key, bool non_empty,
                       Read&& read) {
  const std::string path = parent_reader.Path(key);
  const json& table = parent.at(key);
  if (!table.is_array() || (non_empty && table.empty()))
    return Status::InvalidArgument(fmt::format("hardware field '{}' must be a {}array", path,
                                               non_empty ? "non-empty " : ""));
  for (size_t i = 0; i < table.size(); ++i) {
    std::string item = fmt::format("{}[{}]", path, i);
    if (!table[i].is_object())
      return Status::InvalidArgument(fmt::format("hardware field '{}' must be an object", item));
    P3D_RETURN_IF_ERROR(read(Reader(table[i], item), item));
  }
  return Status::Ok();
}

// A number of a calibrated point type T: read in (0, max] (absent allowed
// where optional) and written, both by one table of the type's fields.
template <typename T>
struct PointField {
  const char* key;
  double T::*member;
  double max;
  bool optional = false;
};

// {x, efficiency} points: GEMM FLOPs ("flops") or HBM bytes ("bytes").
constexpr std::array<PointField<GemmEfficiencyPoint>, 2> EfficiencyFields(const char* x_key,
                                                                          double x_max) {
  return {{{x_key, &GemmEfficiencyPoint::flops, x_max},
           {"efficiency", &GemmEfficiencyPoint::efficiency, 1.0}}};
}
constexpr auto kGemmEfficiencyFields = EfficiencyFields("flops", kMaxRate);
constexpr auto kHbmEfficiencyFields = EfficiencyFields("bytes", kMaxBytes);
constexpr PointField<GemmShapeTime> kGemmShapeFields[] = {
    {"m", &GemmShapeTime::m, 1e9},
    {"n", &GemmShapeTime::n, 1e9},
    {"k", &GemmShapeTime::k, 1e9},
    {"fwd_s", &GemmShapeTime::fwd_s, kMaxLatency * 1e3},
    {"dx_s", &GemmShapeTime::dx_s, kMaxLatency * 1e3},
    {"dw_s", &GemmShapeTime::dw_s, kMaxLatency * 1e3}};
constexpr PointField<AttentionEfficiencyPoint> kAttentionFields[] = {
    {"head_dim", &AttentionEfficiencyPoint::head_dim, 1e6},
    {"seq", &AttentionEfficiencyPoint::seq, 1e9, /*optional=*/true},
    {"flops", &AttentionEfficiencyPoint::flops, kMaxRate},
    {"forward", &AttentionEfficiencyPoint::forward, 1.0},
    {"probs", &AttentionEfficiencyPoint::probs, 1.0},
    {"backward", &AttentionEfficiencyPoint::backward, 1.0}};

template <typename T, typename Fields>
Status ReadPoint(const Reader& r, const Fields& fields, T* out) {
  for (const PointField<T>& f : fields)
    if (!f.optional || r.Has(f.key))
      P3D_RETURN_IF_ERROR(r.Positive(f.key, f.max, &(out->*f.member)));
  return Status::Ok();
}

// The array gpu[key] of points of T, each read by `fields`; with `increasing`,
// the first field must increase along the array.
template <typename T, typename Fields>
Status ReadPoints(const Reader& gpu_reader, const json& gpu, const char* key, const Fields& fields,
                  bool non_empty, bool increasing, std::vector<T>* out) {
  return ReadObjectArray(
      gpu_reader, gpu, key, non_empty, [&](const Reader& r, const std::string& item) -> Status {
        T p;
        P3D_RETURN_IF_ERROR(ReadPoint(r, fields, &p));
        const double T::*x = fields[0].member;
        if (increasing && !out->empty() && p.*x <= out->back().*x)
          return Status::InvalidArgument(fmt::format(
              "hardware field '{}.{}' must increase along the table", item, fields[0].key));
        out->push_back(p);
        return Status::Ok();
      });
}

// gpu[key] = the points of T written by `fields`, unless there are none.
template <typename T, typename Fields>
void WritePoints(json& gpu, const char* key, const std::vector<T>& points, const Fields& fields) {
  if (points.empty()) return;
  json list = json::array();
  for (const T& p : points) {
    json j;
    for (const PointField<T>& f : fields) j[f.key] = p.*f.member;
    list.push_back(j);
  }
  gpu[key] = list;
}

// Optional calibrated figures (absent: the catalog's behaviour).
Status ReadGpuCalibrated(const Reader& r, const json& gpu, GpuSpec* g) {
  if (r.Has("hbm_efficiency_by_bytes"))
    P3D_RETURN_IF_ERROR(ReadPoints(r, gpu, "hbm_efficiency_by_bytes", kHbmEfficiencyFields,
                                   /*non_empty=*/false, /*increasing=*/true,
                                   &g->hbm_efficiency_by_bytes));
  if (r.Has("gemm_shapes"))
    P3D_RETURN_IF_ERROR(ReadPoints(r, gpu, "gemm_shapes", kGemmShapeFields, /*non_empty=*/false,
                                   /*increasing=*/false, &g->gemm_shapes));
  if (r.Has("attention_efficiency"))
    P3D_RETURN_IF_ERROR(ReadPoints(r, gpu, "attention_efficiency", kAttentionFields,
                                   /*non_empty=*/false, /*increasing=*/false,
                                   &g->attention_efficiency));
  if (r.Has("optimizer_efficiency"))
    P3D_RETURN_IF_ERROR(r.Positive("optimizer_efficiency", 1.0, &g->optimizer_efficiency));
  if (r.Has("overlap_slowdown_gemm"))
    P3D_RETURN_IF_ERROR(r.Fraction("overlap_slowdown_gemm", &g->overlap_slowdown_gemm));
  if (r.Has("overlap_slowdown_memory"))
    P3D_RETURN_IF_ERROR(r.Fraction("overlap_slowdown_memory", &g->overlap_slowdown_memory));
  return Status::Ok();
}

// FP8 tensor cores (GpuSpec::fp8_*): absent = none. A peak without a table
// takes the catalog's table of the same GPU name.
Status ReadGpuFp8(const Reader& r, GpuSpec* g) {
  if (r.Has("fp8_tn_only")) P3D_RETURN_IF_ERROR(r.Bool("fp8_tn_only", &g->fp8_tn_only));
  if (r.Has("mxfp8")) P3D_RETURN_IF_ERROR(r.Bool("mxfp8", &g->mxfp8));
  if (!r.Has("fp8_peak_flops")) {
    if (r.Has("fp8_gemm_efficiency"))
      return Status::InvalidArgument(
          "hardware field 'gpu.fp8_gemm_efficiency' needs 'gpu.fp8_peak_flops' (the peak it is a fraction of)");
    return Status::Ok();
  }
  P3D_RETURN_IF_ERROR(r.Plausible("fp8_peak_flops", kMinPeakFlops, kMaxRate, "FLOP/s", &g->fp8_peak_flops));
  if (r.Has("fp8_gemm_efficiency"))
    return ReadPoints(r, r.object(), "fp8_gemm_efficiency", kGemmEfficiencyFields,
                      /*non_empty=*/true, /*increasing=*/true, &g->fp8_gemm_efficiency);
  GpuSpec catalog;
  if (!CopyCatalogFp8(g->name, &catalog))
    return Status::InvalidArgument(fmt::format(
        "hardware field 'gpu.fp8_gemm_efficiency' is missing and GPU '{}' has no catalog FP8 GEMM curve; "
        "give the table (docs/hardware.md) or use a catalog name (--list-gpus)", g->name));
  g->fp8_gemm_efficiency = catalog.fp8_gemm_efficiency;
  return Status::Ok();
}

Status ReadGpu(const Reader& root, GpuSpec* g) {
  P3D_ASSIGN_OR_RETURN(Reader r, root.Child("gpu"));
  P3D_RETURN_IF_ERROR(r.OnlyKeys({"name", "description", "memory_bytes", "hbm_bytes_per_s", "hbm_efficiency",
                                  "peak_flops", "plan_only", "runtime", "gemm_efficiency", "hbm_efficiency_by_bytes",
                                  "gemm_shapes", "attention_efficiency", "optimizer_efficiency",
                                  "overlap_slowdown_gemm", "overlap_slowdown_memory", "fp8_peak_flops",
                                  "fp8_gemm_efficiency", "fp8_tn_only", "mxfp8"}));
  P3D_RETURN_IF_ERROR(r.String("name", &g->name));
  g->description = g->name;
  if (r.Has("description")) P3D_RETURN_IF_ERROR(r.String("description", &g->description));
  P3D_RETURN_IF_ERROR(r.Plausible("memory_bytes", kMinMemoryBytes, kMaxBytes, "bytes", &g->memory_bytes));
  P3D_RETURN_IF_ERROR(r.Plausible("hbm_bytes_per_s", kMinHbmRate, kMaxRate, "bytes/s", &g->hbm_bytes_per_s));
  P3D_RETURN_IF_ERROR(r.Positive("hbm_efficiency", 1.0, &g->hbm_efficiency));
  P3D_RETURN_IF_ERROR(r.Plausible("peak_flops", kMinPeakFlops, kMaxRate, "FLOP/s", &g->peak_flops));
  if (r.Has("plan_only")) P3D_RETURN_IF_ERROR(r.Bool("plan_only", &g->plan_only));
  g->runtime = DefaultRuntimeMemory();
  if (r.Has("runtime")) {
    P3D_ASSIGN_OR_RETURN(Reader rr, r.Child("runtime"));
    P3D_RETURN_IF_ERROR(rr.OnlyKeys({"cuda_context_bytes", "nccl_per_comm_bytes", "allocator_fraction",
                                     "nccl_first_comm_bytes", "nccl_p2p_bytes"}));
    P3D_RETURN_IF_ERROR(
        rr.Positive("cuda_context_bytes", kMaxBytes, &g->runtime.cuda_context_bytes));
    P3D_RETURN_IF_ERROR(
        rr.NonNegative("nccl_per_comm_bytes", kMaxBytes, &g->runtime.nccl_per_comm_bytes));
    P3D_RETURN_IF_ERROR(rr.Fraction("allocator_fraction", &g->runtime.allocator_fraction));
    if (rr.Has("nccl_first_comm_bytes"))
      P3D_RETURN_IF_ERROR(
          rr.Positive("nccl_first_comm_bytes", kMaxBytes, &g->runtime.nccl_first_comm_bytes));
    if (rr.Has("nccl_p2p_bytes"))
      P3D_RETURN_IF_ERROR(rr.Positive("nccl_p2p_bytes", kMaxBytes, &g->runtime.nccl_p2p_bytes));
  }
  P3D_RETURN_IF_ERROR(ReadGpuCalibrated(r, r.object(), g));
  P3D_RETURN_IF_ERROR(ReadGpuFp8(r, g));
  if (r.Has("gemm_efficiency"))
    return ReadPoints(r, r.object(), "gemm_efficiency", kGemmEfficiencyFields,
                      /*non_empty=*/true, /*increasing=*/true, &g->gemm_efficiency);
  g->gemm_efficiency = DefaultGemmEfficiency(g->name);
  if (g->gemm_efficiency.empty())
    return Status::InvalidArgument(fmt::format(
        "hardware field 'gpu.gemm_efficiency' is missing and GPU '{}' has no catalog GEMM efficiency curve; "
        "give the table (docs/hardware.md) or use a catalog name (--list-gpus)", g->name));
  return Status::Ok();
}

// A positive integer no larger than `max`.
Status Count(const Reader& r, const char* key, double max, int* out) {
  double v = 0;
  P3D_RETURN_IF_ERROR(r.Positive(key, max, &v));
  if (v != std::floor(v))
    return Status::InvalidArgument(fmt::format("hardware field '{}' must be an integer, got {}", r.Path(key), v));
  *out = static_cast<int>(v);
  return Status::Ok();
}

// The top-level "network": tiers innermost first, each a link plus "gpus"
// (GPUs per domain), the outermost without it (network.h).
Status ReadNetwork(const Reader& root, Network* network) {
  P3D_RETURN_IF_ERROR(ReadObjectArray(
      root, root.object(), "network", /*non_empty=*/true, [&](const Reader& r, const std::string&) -> Status {
        P3D_RETURN_IF_ERROR(r.OnlyKeys({"name", "gpus", "bytes_per_s", "efficiency", "latency_s"}));
        NetworkTier tier;
        if (r.Has("gpus")) P3D_RETURN_IF_ERROR(Count(r, "gpus", 1 << 24, &tier.gpus));
        P3D_RETURN_IF_ERROR(ReadLinkFields(r, &tier.link));
        network->push_back(std::move(tier));
        return Status::Ok();
      }));
  return ValidateNetwork(*network, "hardware field ");
}

// The node, and the network: the top-level "network", or (files before
// network tiers) the node's "intra" and "inter" links, the two-tier network
// of nodes of gpus_per_node GPUs (NodeNetwork).
Status ReadNode(const Reader& root, NodeSpec* n, Network* network) {
  P3D_ASSIGN_OR_RETURN(Reader r, root.Child("node"));
  P3D_RETURN_IF_ERROR(r.OnlyKeys({"gpus_per_node", "intra", "inter", "host_memory_bytes", "cpu_adam_params_per_s",
                                  "pcie_bytes_per_s"}));
  P3D_RETURN_IF_ERROR(Count(r, "gpus_per_node", 1024, &n->gpus_per_node));
  const bool two_tier = r.Has("intra") || r.Has("inter");
  if (two_tier && root.Has("network"))
    return Status::InvalidArgument(
        "hardware field 'network' and 'node.intra'/'node.inter' both describe the network: give one");
  if (two_tier) {
    LinkSpec intra, inter;
    P3D_RETURN_IF_ERROR(ReadLink(r, "intra", &intra));
    P3D_RETURN_IF_ERROR(ReadLink(r, "inter", &inter));
    *network = NodeNetwork(n->gpus_per_node, std::move(intra), std::move(inter));
  } else if (!root.Has("network")) {
    return Status::InvalidArgument(
        "hardware field 'network' is missing (the network tiers, innermost first; or, two tiers, "
        "'node.intra' and 'node.inter')");
  } else {
    P3D_RETURN_IF_ERROR(ReadNetwork(root, network));
  }
  P3D_RETURN_IF_ERROR(r.Plausible("host_memory_bytes", kMinMemoryBytes, kMaxBytes, "bytes", &n->host_memory_bytes));
  if (r.Has("cpu_adam_params_per_s"))
    P3D_RETURN_IF_ERROR(r.Positive("cpu_adam_params_per_s", kMaxRate, &n->cpu_adam_params_per_s));
  return r.Plausible("pcie_bytes_per_s", kMinLinkRate, kMaxRate, "bytes/s", &n->pcie_bytes_per_s);
}

json LinkToJson(const LinkSpec& l) {
  return {{"name", l.name},
          {"bytes_per_s", l.bytes_per_s},
          {"efficiency", l.efficiency},
          {"latency_s", l.latency_s}};
}

}  // namespace

StatusOr<ClusterSpec> ParseClusterJson(const std::string& text, const std::string& origin) {
  P3D_ASSIGN_OR_RETURN(json j, ParseJson(text, fmt::format("hardware file {}", origin)));
  if (!j.is_object())
    return Status::InvalidArgument(
        fmt::format("hardware file {}: top level must be an object", origin));
  Reader root(j, "");
  ClusterSpec c;
  // A profile is this hardware document plus "schema" and "calibration".
  Status s = root.OnlyKeys({"gpu", "node", "network", "schema", "calibration"});
  if (s.ok()) s = ReadGpu(root, &c.gpu);
  if (s.ok()) s = ReadNode(root, &c.node, &c.network);
  if (!s.ok())
    return Status::InvalidArgument(fmt::format("hardware file {}: {}", origin, s.message()));
  c.source = fmt::format("file {}", origin);
  return c;
}

StatusOr<ClusterSpec> LoadClusterJson(const std::string& path) {
  P3D_ASSIGN_OR_RETURN(std::string text, ReadInputFile(path, "hardware file"));
  return ParseClusterJson(text, path);
}

std::string ClusterToJson(const ClusterSpec& c) {
  const GpuSpec& g = c.gpu;
  json gpu = {{"name", g.name},
              {"description", g.description},
              {"memory_bytes", g.memory_bytes},
              {"hbm_bytes_per_s", g.hbm_bytes_per_s},
              {"hbm_efficiency", g.hbm_efficiency},
              {"peak_flops", g.peak_flops},
              {"plan_only", g.plan_only},
              {"runtime",
               {{"cuda_context_bytes", g.runtime.cuda_context_bytes},
                {"nccl_per_comm_bytes", g.runtime.nccl_per_comm_bytes},
                {"allocator_fraction", g.runtime.allocator_fraction}}}};
  WritePoints(gpu, "gemm_efficiency", g.gemm_efficiency, kGemmEfficiencyFields);
  if (g.runtime.nccl_first_comm_bytes > 0)
    gpu["runtime"]["nccl_first_comm_bytes"] = g.runtime.nccl_first_comm_bytes;
  if (g.runtime.nccl_p2p_bytes > 0) gpu["runtime"]["nccl_p2p_bytes"] = g.runtime.nccl_p2p_bytes;
  WritePoints(gpu, "hbm_efficiency_by_bytes", g.hbm_efficiency_by_bytes, kHbmEfficiencyFields);
  WritePoints(gpu, "gemm_shapes", g.gemm_shapes, kGemmShapeFields);
  WritePoints(gpu, "attention_efficiency", g.attention_efficiency, kAttentionFields);
  if (g.optimizer_efficiency > 0) gpu["optimizer_efficiency"] = g.optimizer_efficiency;
  if (g.overlap_slowdown_gemm > 0) gpu["overlap_slowdown_gemm"] = g.overlap_slowdown_gemm;
  if (g.overlap_slowdown_memory > 0) gpu["overlap_slowdown_memory"] = g.overlap_slowdown_memory;
  if (g.fp8_peak_flops > 0) {
    gpu["fp8_peak_flops"] = g.fp8_peak_flops;
    WritePoints(gpu, "fp8_gemm_efficiency", g.fp8_gemm_efficiency, kGemmEfficiencyFields);
  }
  if (g.fp8_tn_only) gpu["fp8_tn_only"] = true;
  if (g.mxfp8) gpu["mxfp8"] = true;
  json node = {{"gpus_per_node", c.node.gpus_per_node},
               {"host_memory_bytes", c.node.host_memory_bytes},
               {"pcie_bytes_per_s", c.node.pcie_bytes_per_s}};
  if (c.node.cpu_adam_params_per_s > 0) node["cpu_adam_params_per_s"] = c.node.cpu_adam_params_per_s;
  json network = json::array();
  for (const NetworkTier& t : c.network) {
    json tier = LinkToJson(t.link);
    if (t.gpus > 0) tier["gpus"] = t.gpus;
    network.push_back(tier);
  }
  return json{{"gpu", gpu}, {"node", node}, {"network", network}}.dump(2);
}

}  // namespace p3d
