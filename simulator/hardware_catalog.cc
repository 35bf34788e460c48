// The hardware catalog: GPUs under stable names, each in the node type it
// usually sits in, read from simulator/catalog.json (data compiled in, like the
// model zoo). docs/hardware.md lists every figure with its source.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include <algorithm>

#include "common/json_fields.h"
#include "common/units.h"
#include "simulator/catalog_data.h"
#include "simulator/hardware.h"

namespace p3d {
namespace {

constexpr double kGBps = 1e9;  // datasheet GB/s (10^9 bytes per second)
constexpr double kUs = 1e-6;

// Runtime memory defaults, same for every catalog GPU until calibrated.
// cuda_context: measured on H200 (driver 580.159, CUDA 13.0): the driver
// reserves 616 MiB of the nvidia-smi total (cudaMemGetInfo total 143155 vs
// 143771 MiB), the context takes 526 MiB and a cuBLAS handle + first GEMM
// 68 MiB more: 1210 MiB of memory_bytes that no tensor can use.
// NCCL: 0.25 GiB per communicator (4 MiB NCCL_BUFFSIZE x up to 32 channels x
// 2 ring peers, plus LL/LL128 buffers; published.md sec. 6 reports up to
// ~0.5 GB in the worst case). Allocator: 8% of the memory allocated and freed
// during a step (activations + buffers), for caching-allocator fragmentation.
constexpr RuntimeMemory kDefaultRuntime{.cuda_context_bytes = 1210 * kMiB,
                                        .nccl_per_comm_bytes = 0.25 * kGiB,
                                        .allocator_fraction = 0.08};

struct CatalogEntry {
  GpuSpec gpu;
  NodeSpec node;
  Network network;
  std::string node_name;
  double marketed_gb = 0;  // > 0: what --mem GB picks (kMemoryTolerance)
  std::vector<std::string> device_names;
};

// A --mem value matches a capacity within 7% (so 79.6, 81.5 and the
// driver-reported 79.6 GiB of an H100 all mean 80; 45 GiB of an L40S means 48).
constexpr double kMemoryTolerance = 0.07;

using nlohmann::json;

StatusOr<LinkSpec> ReadLink(const json& links, const std::string& name) {
  auto it = links.find(name);
  if (it == links.end() || !it->is_object())
    return Status::InvalidArgument(fmt::format("catalog: link '{}' is not defined under 'links'", name));
  JsonFields f(*it, "catalog link " + name);
  P3D_RETURN_IF_ERROR(f.OnlyKeys({"gb_per_s", "efficiency", "latency_us"}));
  LinkSpec l;
  l.name = name;
  P3D_ASSIGN_OR_RETURN(double gbps, f.Number("gb_per_s", 0.1, 1e6));
  P3D_ASSIGN_OR_RETURN(l.efficiency, f.Number("efficiency", 0.01, 1));
  P3D_ASSIGN_OR_RETURN(double us, f.Number("latency_us", 0.01, 1e6));
  l.bytes_per_s = gbps * kGBps;
  l.latency_s = us * kUs;
  return l;
}

// A node's "network": tiers innermost first, each {"link": a name under
// "links", "gpus": GPUs per domain}, the outermost without "gpus".
StatusOr<Network> ReadNetwork(const json& doc, const JsonFields& node) {
  const json& tiers = node.object().contains("network") ? node.object()["network"] : json();
  if (!tiers.is_array()) return node.Error("network", "must be an array of tiers, innermost first");
  Network network;
  for (size_t i = 0; i < tiers.size(); ++i) {
    if (!tiers[i].is_object()) return node.Error("network", fmt::format("tier {} must be an object", i));
    JsonFields t(tiers[i], fmt::format("{}: network[{}]", node.where(), i));
    P3D_RETURN_IF_ERROR(t.OnlyKeys({"link", "gpus"}));
    NetworkTier tier;
    P3D_ASSIGN_OR_RETURN(std::string link, t.String("link"));
    P3D_ASSIGN_OR_RETURN(tier.link, ReadLink(doc["links"], link));
    if (t.Has("gpus")) {
      P3D_ASSIGN_OR_RETURN(int64_t gpus, t.IntInRange("gpus", 1, 1 << 24));
      tier.gpus = static_cast<int>(gpus);
    }
    network.push_back(std::move(tier));
  }
  P3D_RETURN_IF_ERROR(ValidateNetwork(network, node.where() + ": field "));
  return network;
}

struct CatalogNode {
  NodeSpec node;
  Network network;
  std::string name;
};

StatusOr<CatalogNode> ReadNode(const json& doc, const std::string& id) {
  auto it = doc["nodes"].find(id);
  if (it == doc["nodes"].end() || !it->is_object())
    return Status::InvalidArgument(fmt::format("catalog: node '{}' is not defined under 'nodes'", id));
  JsonFields f(*it, "catalog node " + id);
  P3D_RETURN_IF_ERROR(f.OnlyKeys({"name", "gpus_per_node", "network", "host_memory_gib", "pcie_gb_per_s"}));
  CatalogNode out;
  NodeSpec& n = out.node;
  P3D_ASSIGN_OR_RETURN(int64_t gpus, f.IntInRange("gpus_per_node", 1, 4096));
  n.gpus_per_node = static_cast<int>(gpus);
  P3D_ASSIGN_OR_RETURN(out.network, ReadNetwork(doc, f));
  P3D_ASSIGN_OR_RETURN(double host_gib, f.Number("host_memory_gib", 1, 1e6));
  P3D_ASSIGN_OR_RETURN(double pcie, f.Number("pcie_gb_per_s", 0.1, 1e6));
  n.host_memory_bytes = host_gib * kGiB;
  n.pcie_bytes_per_s = pcie * kGBps;
  out.name = id;
  if (f.Has("name")) {
    P3D_ASSIGN_OR_RETURN(out.name, f.String("name"));
  }
  return out;
}

StatusOr<CatalogEntry> ReadGpu(const json& doc, const json& g, size_t i) {
  if (!g.is_object()) return Status::InvalidArgument(fmt::format("catalog: gpus[{}] must be an object", i));
  JsonFields f(g, fmt::format("catalog gpus[{}]", i));
  P3D_RETURN_IF_ERROR(f.OnlyKeys({"name", "description", "memory_mib", "hbm_gb_per_s", "peak_tflops", "gemm_plateau",
                                  "overlap_slowdown_gemm", "overlap_slowdown_memory", "node", "marketed_gb", "plan_only",
                                  "device_names", "fp8_peak_tflops", "fp8_gemm_plateau", "fp8_tn_only", "mxfp8"}));
  CatalogEntry e;
  GpuSpec& gpu = e.gpu;
  P3D_ASSIGN_OR_RETURN(gpu.name, f.String("name"));
  P3D_ASSIGN_OR_RETURN(gpu.description, f.String("description"));
  P3D_ASSIGN_OR_RETURN(double mib, f.Number("memory_mib", 1024, 1e9));
  P3D_ASSIGN_OR_RETURN(double hbm, f.Number("hbm_gb_per_s", 10, 1e6));
  P3D_ASSIGN_OR_RETURN(double tflops, f.Number("peak_tflops", 1, 1e6));
  // A GPU without a curve would be timed at 100% GEMM efficiency: required.
  P3D_ASSIGN_OR_RETURN(double plateau, f.Number("gemm_plateau", 0.05, 1));
  // Compute lost per second of collective running under it (GpuSpec); 0 = not modelled.
  P3D_ASSIGN_OR_RETURN(gpu.overlap_slowdown_gemm, f.NumberOr("overlap_slowdown_gemm", 0, 0.99, 0));
  P3D_ASSIGN_OR_RETURN(gpu.overlap_slowdown_memory, f.NumberOr("overlap_slowdown_memory", 0, 0.99, 0));
  P3D_ASSIGN_OR_RETURN(gpu.plan_only, f.BoolOr("plan_only", false));
  P3D_ASSIGN_OR_RETURN(e.marketed_gb, f.NumberOr("marketed_gb", 1, 1e6, 0));
  gpu.memory_bytes = mib * kMiB;
  gpu.hbm_bytes_per_s = hbm * kGBps;
  gpu.peak_flops = tflops * kTFLOP;
  gpu.runtime = kDefaultRuntime;
  gpu.gemm_efficiency = GemmEfficiencyCurve(tflops, plateau);
  // FP8 tensor cores: a peak and its plateau together, or neither.
  P3D_ASSIGN_OR_RETURN(double fp8_tflops, f.NumberOr("fp8_peak_tflops", 1, 1e6, 0));
  P3D_ASSIGN_OR_RETURN(double fp8_plateau, f.NumberOr("fp8_gemm_plateau", 0.05, 1, 0));
  if ((fp8_tflops > 0) != (fp8_plateau > 0))
    return f.Error(fp8_tflops > 0 ? "fp8_gemm_plateau" : "fp8_peak_tflops",
                   "fp8_peak_tflops and fp8_gemm_plateau come together");
  if (fp8_tflops > 0) {
    gpu.fp8_peak_flops = fp8_tflops * kTFLOP;
    gpu.fp8_gemm_efficiency = GemmEfficiencyCurve(fp8_tflops, fp8_plateau);
  }
  P3D_ASSIGN_OR_RETURN(gpu.fp8_tn_only, f.BoolOr("fp8_tn_only", false));
  P3D_ASSIGN_OR_RETURN(gpu.mxfp8, f.BoolOr("mxfp8", false));
  P3D_ASSIGN_OR_RETURN(std::string node, f.String("node"));
  P3D_ASSIGN_OR_RETURN(CatalogNode catalog_node, ReadNode(doc, node));
  e.node = catalog_node.node;
  e.network = std::move(catalog_node.network);
  e.node_name = std::move(catalog_node.name);
  if (!g.contains("device_names") || !g["device_names"].is_array())
    return f.Error("device_names", "must be an array of the driver's device names");
  for (const json& d : g["device_names"]) {
    if (!d.is_string()) return f.Error("device_names", "must hold strings");
    e.device_names.push_back(d.get<std::string>());
  }
  return e;
}

StatusOr<std::vector<CatalogEntry>> ParseCatalog() {
  P3D_ASSIGN_OR_RETURN(json doc, ParseJson(CatalogJsonText(), "simulator/catalog.json"));
  JsonFields top(doc, "simulator/catalog.json");
  P3D_RETURN_IF_ERROR(top.OnlyKeys({"comment", "links", "nodes", "gpus"}));
  for (const char* k : {"links", "nodes"})
    if (!doc.contains(k) || !doc[k].is_object()) return top.Error(k, "must be an object");
  if (!doc.contains("gpus") || !doc["gpus"].is_array()) return top.Error("gpus", "must be an array");
  std::vector<CatalogEntry> out;
  for (size_t i = 0; i < doc["gpus"].size(); ++i) {
    P3D_ASSIGN_OR_RETURN(CatalogEntry e, ReadGpu(doc, doc["gpus"][i], i));
    out.push_back(std::move(e));
  }
  return out;
}

const StatusOr<std::vector<CatalogEntry>>& ParsedCatalog() {
  static const StatusOr<std::vector<CatalogEntry>> catalog = ParseCatalog();
  return catalog;
}

const std::vector<CatalogEntry>& Catalog() {
  static const std::vector<CatalogEntry> empty;
  return ParsedCatalog().ok() ? *ParsedCatalog() : empty;
}

}  // namespace

RuntimeMemory DefaultRuntimeMemory() { return kDefaultRuntime; }

double NcclBytes(const RuntimeMemory& rt, int communicators, bool pipeline) {
  if (communicators <= 0) return 0;
  const double first = rt.nccl_first_comm_bytes > 0 ? rt.nccl_first_comm_bytes : rt.nccl_per_comm_bytes;
  return first + (communicators - 1) * rt.nccl_per_comm_bytes + (pipeline ? rt.nccl_p2p_bytes : 0);
}

// A vectorised multi-threaded fp32 AdamW is memory-bound: it reads gradient,
// master, m, v (16 bytes), writes master, m, v and the bf16 copy (14 bytes)
// and reads the gradient once more for the clipping norm: 34 bytes/param.
// A two-socket server sustains ~100 GB/s of that mixed traffic (about half
// its STREAM bandwidth): 3e9 params/s per node. bench/results/cpu-adam.md
// has the measured per-core rate behind this; p3d-calibrate replaces it.
double DefaultCpuAdamParamsPerS() { return 3e9; }

double CpuAdamParamsPerS(const NodeSpec& node) {
  return node.cpu_adam_params_per_s > 0 ? node.cpu_adam_params_per_s : DefaultCpuAdamParamsPerS();
}

const std::vector<std::string>& CatalogGpuNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& e : Catalog()) n.push_back(e.gpu.name);
    return n;
  }();
  return names;
}

StatusOr<ClusterSpec> CatalogCluster(const std::string& gpu_name) {
  P3D_RETURN_IF_ERROR(CatalogStatus());
  for (const auto& e : Catalog()) {
    if (e.gpu.name != gpu_name) continue;
    ClusterSpec c;
    c.gpu = e.gpu;
    c.node = e.node;
    c.network = e.network;
    c.source = fmt::format("catalog {} in {}", e.gpu.name, e.node_name);
    return c;
  }
  return Status::NotFound(fmt::format("gpu '{}' is not in the catalog (known: {})", gpu_name,
                                      fmt::join(CatalogGpuNames(), ", ")));
}

StatusOr<std::string> DefaultGpuForMemory(double gb) {
  P3D_RETURN_IF_ERROR(CatalogStatus());
  if (!(gb > 0) || !std::isfinite(gb))
    return Status::InvalidArgument(
        fmt::format("mem: GPU memory must be a positive number of GB, got {}", gb));
  const CatalogEntry* best = nullptr;
  double best_distance = std::numeric_limits<double>::infinity();
  std::vector<double> known;
  for (const CatalogEntry& e : Catalog()) {
    if (e.marketed_gb <= 0) continue;
    known.push_back(e.marketed_gb);
    double distance = std::abs(gb - e.marketed_gb);
    if (distance <= kMemoryTolerance * e.marketed_gb && distance < best_distance) {
      best = &e;
      best_distance = distance;
    }
  }
  if (best == nullptr) {
    std::sort(known.begin(), known.end());
    return Status::NotFound(
        fmt::format("mem: no catalog GPU has {} GB (known capacities: {} GB); pass --gpu NAME or a "
                    "hardware JSON file",
                    gb, fmt::join(known, ", ")));
  }
  return best->gpu.name;
}

StatusOr<std::string> CatalogGpuForDevice(const std::string& device_name) {
  P3D_RETURN_IF_ERROR(CatalogStatus());
  for (const CatalogEntry& e : Catalog())
    for (const std::string& d : e.device_names)
      if (d == device_name) return e.gpu.name;
  return Status::NotFound(fmt::format(
      "GPU '{}' is not among the catalog's device names (simulator/catalog.json); its datasheet peak is "
      "unknown, so no MFU is reported",
      device_name));
}

std::vector<GemmEfficiencyPoint> DefaultGemmEfficiency(const std::string& gpu_name) {
  for (const CatalogEntry& e : Catalog())
    if (e.gpu.name == gpu_name) return e.gpu.gemm_efficiency;
  return {};
}

bool CopyCatalogFp8(const std::string& gpu_name, GpuSpec* gpu) {
  for (const CatalogEntry& e : Catalog()) {
    if (e.gpu.name != gpu_name || e.gpu.fp8_peak_flops <= 0) continue;
    gpu->fp8_peak_flops = e.gpu.fp8_peak_flops;
    gpu->fp8_gemm_efficiency = e.gpu.fp8_gemm_efficiency;
    gpu->fp8_tn_only = e.gpu.fp8_tn_only;
    gpu->mxfp8 = e.gpu.mxfp8;
    return true;
  }
  return false;
}

Status CatalogStatus() { return ParsedCatalog().status(); }

}  // namespace p3d
