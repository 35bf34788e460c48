// The hardware catalog: GPUs under stable names, each in the node type it
// usually sits in. docs/hardware.md lists every figure with its source; the
// comments here name the assumption where a figure is not a datasheet value.
#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "common/units.h"
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

// Link classes (bytes_per_s is per GPU and per direction). Efficiencies are
// large-message achievable fractions; latencies are per collective step
// including the kernel launch. See docs/hardware.md for the sources.
LinkSpec NvLink2() { return {"nvlink2", 150 * kGBps, 0.8, 8 * kUs}; }
LinkSpec NvLink3() { return {"nvlink3", 300 * kGBps, 0.8, 8 * kUs}; }
// Measured H100 unidirectional ~376-380 of 450 GB/s (published.md sec. 5).
LinkSpec NvLink4() { return {"nvlink4", 450 * kGBps, 0.84, 8 * kUs}; }
LinkSpec NvLink5() { return {"nvlink5", 900 * kGBps, 0.8, 8 * kUs}; }
LinkSpec InfinityFabric() { return {"infinity-fabric", 448 * kGBps, 0.7, 10 * kUs}; }
// PCIe x16 per direction (128b/130b): Gen3 15.75, Gen4 31.5, Gen5 63 GB/s.
LinkSpec Pcie(const char* name, double gbps, double efficiency) {
  return {name, gbps * kGBps, efficiency, 10 * kUs};
}
// Node network, per-GPU share: HDR 200 Gb/s and NDR 400 Gb/s per GPU (one
// NIC per GPU in DGX A100/H100/H200/B200); EDR in DGX-1 is 4 x 100 Gb/s per
// 8 GPUs. PCIe servers: assumed 2 x 200 Gb/s per 8-GPU node (L40S, H100
// PCIe) or 1 x 100 Gb/s Ethernet per 8-GPU node (GeForce cards).
LinkSpec Net(const char* name, double node_gbit_per_s, int gpus, double efficiency,
             double latency_us) {
  return {name, node_gbit_per_s / 8 * kGBps / gpus, efficiency, latency_us * kUs};
}

struct CatalogEntry {
  GpuSpec gpu;
  NodeSpec node;
  const char* node_name;
};

GpuSpec Gpu(const char* name, const char* description, double mib, double hbm_gbps, double tflops,
            bool plan_only = false) {
  GpuSpec g;
  g.name = name;
  g.description = description;
  g.memory_bytes = mib * kMiB;
  g.hbm_bytes_per_s = hbm_gbps * kGBps;
  g.peak_flops = tflops * kTFLOP;
  g.plan_only = plan_only;
  g.runtime = kDefaultRuntime;
  return g;
}

NodeSpec Node(int gpus, LinkSpec intra, LinkSpec inter, double host_gib, double pcie_gbps) {
  return {gpus, std::move(intra), std::move(inter), host_gib * kGiB, pcie_gbps * kGBps};
}

// memory: the total the driver reports (nvidia-smi "MiB"), where known;
// otherwise the marketed GB taken as GiB (noted).
const std::vector<CatalogEntry>& Catalog() {
  static const std::vector<CatalogEntry> catalog = [] {
    const LinkSpec hdr = Net("ib-hdr", 8 * 200, 8, 0.9, 15);
    const LinkSpec ndr = Net("ib-ndr", 8 * 400, 8, 0.9, 15);
    const LinkSpec pcie4 = Pcie("pcie4", 31.5, 0.8);
    const LinkSpec pcie5 = Pcie("pcie5", 63, 0.8);
    // GeForce cards have no PCIe peer-to-peer: NCCL stages through host memory.
    const LinkSpec pcie4_shm = Pcie("pcie4-shm", 31.5, 0.6);
    std::vector<CatalogEntry> c;
    c.push_back({Gpu("a100-40gb", "NVIDIA A100 SXM4 40GB", 40960, 1555, 312),
                 Node(8, NvLink3(), hdr, 1024, 31.5), "dgx-a100"});
    c.push_back({Gpu("a100-80gb", "NVIDIA A100 SXM4 80GB", 81920, 2039, 312),
                 Node(8, NvLink3(), hdr, 2048, 31.5), "dgx-a100"});
    c.push_back({Gpu("h100-sxm", "NVIDIA H100 SXM5 80GB", 81559, 3350, 989),
                 Node(8, NvLink4(), ndr, 2048, 63), "dgx-h100"});
    c.push_back({Gpu("h100-pcie", "NVIDIA H100 PCIe 80GB", 81559, 2000, 756),
                 Node(8, pcie5, Net("ib-hdr-2x", 2 * 200, 8, 0.9, 15), 1024, 63), "pcie5-server"});
    c.push_back({Gpu("h200", "NVIDIA H200 SXM 141GB", 143771, 4800, 989),
                 Node(8, NvLink4(), ndr, 2048, 63), "dgx-h200"});
    // B200: driver total 183359 MiB (179 GiB) for the marketed 180 GB.
    c.push_back({Gpu("b200", "NVIDIA B200 180GB", 183359, 8000, 2250),
                 Node(8, NvLink5(), ndr, 2048, 63), "dgx-b200"});
    // V100 has no bf16: peak is fp16 tensor cores.
    c.push_back({Gpu("v100-32gb", "NVIDIA V100 SXM2 32GB", 32510, 900, 125),
                 Node(8, NvLink2(), Net("ib-edr-4x", 4 * 100, 8, 0.9, 15), 512, 15.75), "dgx-1v"});
    c.push_back({Gpu("v100-16gb", "NVIDIA V100 SXM2 16GB", 16160, 900, 125),
                 Node(8, NvLink2(), Net("ib-edr-4x", 4 * 100, 8, 0.9, 15), 512, 15.75), "dgx-1v"});
    c.push_back({Gpu("l40s", "NVIDIA L40S 48GB", 46068, 864, 362),
                 Node(8, pcie4, Net("ib-hdr-2x", 2 * 200, 8, 0.9, 15), 1024, 31.5),
                 "pcie4-server"});
    c.push_back({Gpu("rtx4090", "NVIDIA GeForce RTX 4090 24GB", 24564, 1008, 165),
                 Node(8, pcie4_shm, Net("eth-100g", 100, 8, 0.8, 25), 256, 31.5),
                 "pcie4-workstation"});
    c.push_back({Gpu("rtx3090", "NVIDIA GeForce RTX 3090 24GB", 24576, 936, 71),
                 Node(8, pcie4_shm, Net("eth-100g", 100, 8, 0.8, 25), 256, 31.5),
                 "pcie4-workstation"});
    // MI300X: marketed 192 GB taken as GiB; RCCL, no executor support.
    c.push_back({Gpu("mi300x", "AMD Instinct MI300X 192GB", 192 * 1024, 5300, 1307, true),
                 Node(8, InfinityFabric(), ndr, 2048, 63), "mi300x-oam"});
    for (auto& e : c) e.gpu.gemm_efficiency = DefaultGemmEfficiency(e.gpu.name);
    return c;
  }();
  return catalog;
}

// Marketed capacity (GB) -> catalog GPU a user most likely means.
struct MemoryDefault {
  double gb;
  const char* gpu;
};
constexpr MemoryDefault kMemoryDefaults[] = {
    {16, "v100-16gb"}, {24, "rtx4090"}, {32, "v100-32gb"}, {40, "a100-40gb"}, {48, "l40s"},
    {80, "h100-sxm"},  {141, "h200"},   {180, "b200"},     {192, "mi300x"},
};
// A --mem value matches a capacity within 7% (so 79.6, 81.5 and the
// driver-reported 79.6 GiB of an H100 all mean 80; 45 GiB of an L40S means 48).
constexpr double kMemoryTolerance = 0.07;

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
  for (const auto& e : Catalog()) {
    if (e.gpu.name != gpu_name) continue;
    ClusterSpec c;
    c.gpu = e.gpu;
    c.node = e.node;
    c.source = fmt::format("catalog {} in {}", e.gpu.name, e.node_name);
    return c;
  }
  return Status::NotFound(fmt::format("gpu '{}' is not in the catalog (known: {})", gpu_name,
                                      fmt::join(CatalogGpuNames(), ", ")));
}

StatusOr<std::string> DefaultGpuForMemory(double gb) {
  if (!(gb > 0) || !std::isfinite(gb))
    return Status::InvalidArgument(
        fmt::format("mem: GPU memory must be a positive number of GB, got {}", gb));
  const MemoryDefault* best = nullptr;
  double best_distance = std::numeric_limits<double>::infinity();
  for (const auto& d : kMemoryDefaults) {
    double distance = std::abs(gb - d.gb);
    if (distance <= kMemoryTolerance * d.gb && distance < best_distance) {
      best = &d;
      best_distance = distance;
    }
  }
  if (best == nullptr) {
    std::vector<double> known;
    for (const auto& d : kMemoryDefaults) known.push_back(d.gb);
    return Status::NotFound(
        fmt::format("mem: no catalog GPU has {} GB (known capacities: {} GB); pass --gpu NAME or a "
                    "hardware JSON file",
                    gb, fmt::join(known, ", ")));
  }
  return std::string(best->gpu);
}

}  // namespace p3d
