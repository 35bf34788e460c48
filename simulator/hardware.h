// Hardware description: a GPU, the node (host) it sits in, the network
// (simulator/network.h: tiers of GPU domains) and the cluster.
//
// Figures come from the catalog (vendor datasheets, published.md section 5),
// from a user's JSON file, or from a profile measured by p3d-calibrate. All
// rates are in bytes/s or FLOP/s; all sizes in bytes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "simulator/network.h"

namespace p3d {

// Efficiency of a bf16 GEMM as a function of its size: the fraction of the
// dense datasheet peak a GEMM of `flops` floating-point operations reaches.
// Interpolated log-linearly in flops between points; clamped at the ends.
// This is a data table (catalog default or calibrated), not code constants.
struct GemmEfficiencyPoint {
  double flops = 0;       // 2*M*N*K of one GEMM
  double efficiency = 0;  // achieved / peak, in (0, 1]
};

// A linear-layer GEMM measured by p3d-calibrate at one shape (profile.h
// LinearGemmShape): forward y[m,n] = x[m,k] W[n,k]^T, input gradient and
// weight gradient. The compute model times a GEMM of this m and k and an n
// within 1% (vocabulary padding) from these, scaled by n, and uses the
// efficiency table for every other shape.
struct GemmShapeTime {
  double m = 0, n = 0, k = 0;
  double fwd_s = 0, dx_s = 0, dw_s = 0;
};

// Memory the runtime holds outside the model: not visible to a model-states
// estimator, but it is what makes "fits" plans go out of memory.
// NCCL's share, per GPU with c communicators (c >= 1):
//   nccl_first_comm_bytes + (c - 1) * nccl_per_comm_bytes + (PP > 1 ? nccl_p2p_bytes : 0)
// The first communicator carries NCCL's one-time setup; each further one its
// own connections; point-to-point (pipeline send/recv) connects extra
// buffers. Catalog: first = per-comm, p2p = 0 (docs/memory-model.md).
struct RuntimeMemory {
  double cuda_context_bytes = 0;      // CUDA context + cuBLAS workspace, per GPU
  double nccl_per_comm_bytes = 0;     // NCCL buffers of each communicator after the first
  double nccl_first_comm_bytes = 0;   // the first communicator incl. NCCL setup; 0 = per-comm
  double nccl_p2p_bytes = 0;          // send/recv connections of a pipeline rank
  double allocator_fraction = 0;      // caching-allocator fragmentation, fraction of the rest
};

// RuntimeMemory's NCCL formula for a rank in `communicators` communicators.
double NcclBytes(const RuntimeMemory& rt, int communicators, bool pipeline);

// Measured attention core (p3d-calibrate times executor/attention_core.h on
// the shapes plans use): efficiency = the part's FLOPs / (peak * seconds),
// where forward FLOPs F = 4 * B * NH/TP * S^2 * HD * (n+1)/(2n) for n causal
// query blocks, the probabilities part (scores GEMMs + softmax, what selective
// recompute re-runs) F/2 and the backward 2F. The times include the core's
// softmax and head-layout kernels, so a calibrated core replaces both the
// GEMM-table and the HBM estimate of those. Interpolated log-linearly in F
// among the points of the same head_dim and sequence length (F alone does not
// fix the shape: B = 16 at S = 1024 has the F of B = 4 at S = 2048 but runs
// slower per FLOP), else among all points of that head_dim.
struct AttentionEfficiencyPoint {
  double head_dim = 0;
  double seq = 0;       // S (0: not recorded)
  double flops = 0;     // forward F of one micro-batch on one rank
  double forward = 0;   // efficiencies in (0, 1]
  double probs = 0;
  double backward = 0;
};

struct GpuSpec {
  std::string name;            // stable catalog id, e.g. "h100-sxm"
  std::string description;     // e.g. "NVIDIA H100 SXM5 80GB"
  double memory_bytes = 0;     // device memory (marketed GB taken as GiB) 
  double hbm_bytes_per_s = 0;  // memory bandwidth, datasheet
  double hbm_efficiency = 0.8; // achievable fraction for memory-bound kernels
  // Calibrated: the efficiency of one memory-bound kernel by the bytes it
  // moves (small kernels do not reach the bandwidth: launch and tail), as
  // {bytes, efficiency} points interpolated log-linearly, clamped at the ends.
  // Empty: hbm_efficiency for every size.
  std::vector<GemmEfficiencyPoint> hbm_efficiency_by_bytes;
  double peak_flops = 0;       // dense bf16 (fp16 where no bf16) tensor FLOP/s, fp32 accumulate
  // FP8 tensor cores (E4M3/E5M2 inputs, fp32 accumulate; common/fp8.h):
  // dense datasheet FLOP/s, 0 = none (A100, V100: rule fp8=>fp8_tensor_cores),
  // and the efficiency table of an FP8 GEMM (as gemm_efficiency, of this peak).
  double fp8_peak_flops = 0;
  std::vector<GemmEfficiencyPoint> fp8_gemm_efficiency;
  // FP8 GEMMs take only the "TN" layout (both operands K-major: Hopper, Ada),
  // so an operand used both ways needs a transposed FP8 copy (Transformer
  // Engine keeps one); false: any layout (Blackwell).
  bool fp8_tn_only = false;
  // Block-scaled FP8 (MXFP8, an E8M0 scale per 32 values) in the tensor cores
  // (Blackwell; rule mxfp8=>block_scaled_tensor_cores).
  bool mxfp8 = false;
  bool plan_only = false;      // no executor support (e.g. ROCm)
  std::vector<GemmEfficiencyPoint> gemm_efficiency;
  std::vector<GemmShapeTime> gemm_shapes;  // measured plan shapes (calibrated profiles)
  // Empty: the attention core is timed as GEMMs (gemm_efficiency) plus its
  // score-matrix traffic at hbm_efficiency.
  std::vector<AttentionEfficiencyPoint> attention_efficiency;
  // Fraction of hbm_bytes_per_s the gradient-norm + AdamW step reaches; 0 = hbm_efficiency.
  double optimizer_efficiency = 0;
  // Compute seconds lost per second of NCCL communication running under it
  // (SMs and HBM the collective's kernels take); 0 = not modelled.
  // gemm: while GEMMs run; memory: while memory-bound kernels run.
  double overlap_slowdown_gemm = 0;
  double overlap_slowdown_memory = 0;
  RuntimeMemory runtime;
};

// One host: the GPUs one machine (and one launcher process set) holds, and
// what they share. How GPUs talk to each other is the Network's.
struct NodeSpec {
  int gpus_per_node = 8;
  double host_memory_bytes = 0;     // CPU memory per node
  double pcie_bytes_per_s = 0;      // host<->GPU per GPU, one direction
  // CPU AdamW throughput of the whole node (all cores, shared by its GPUs):
  // fp32 parameters updated per second (p3d's executor computes the clip
  // norm on the GPU; the catalog default includes a CPU norm pass). 0 means
  // DefaultCpuAdamParamsPerS(); p3d-calibrate measures it ("cpu_adam").
  double cpu_adam_params_per_s = 0;
};

// Offload defaults (docs/offload.md states the assumptions):
// pinned host<->GPU copies reach this fraction of pcie_bytes_per_s, per GPU
// and direction, with every GPU of a node copying at once (each GPU has its
// own x16 link; switches shared by two GPUs are not modelled).
inline constexpr double kHostLinkEfficiency = 0.8;
// Node CPU AdamW throughput assumed for server CPUs (two sockets,
// memory-bound at ~30 bytes per parameter).
double DefaultCpuAdamParamsPerS();
// node.cpu_adam_params_per_s, or the default when it is 0.
double CpuAdamParamsPerS(const NodeSpec& node);

struct ClusterSpec {
  GpuSpec gpu;
  NodeSpec node;
  Network network;  // innermost tier first (simulator/network.h)
  int num_gpus = 0;
  int nodes() const { return (num_gpus + node.gpus_per_node - 1) / node.gpus_per_node; }
  // Where the hardware figures came from ("catalog h100-sxm", "profile file.json", ...).
  std::string source;
};

// Sets node.gpus_per_node (--gpus-per-node); a network whose innermost tier
// is the node (tier 0 holds the old gpus_per_node GPUs: the two-tier case)
// keeps it so. Error (rule tiers-nest) when the tiers no longer nest.
Status SetGpusPerNode(ClusterSpec* cluster, int gpus);

// Catalog access (simulator/hardware_catalog.cc).
const std::vector<std::string>& CatalogGpuNames();
StatusOr<ClusterSpec> CatalogCluster(const std::string& gpu_name);  // num_gpus left 0
// Picks the catalog GPU a user most likely means by "--mem GB" (e.g. 80 -> h100-sxm,
// 40 -> a100-40gb, 24 -> rtx4090). Error when nothing in the catalog has that capacity.
StatusOr<std::string> DefaultGpuForMemory(double gb);
// Reads a custom hardware JSON file (schema in docs/hardware.md); missing fields
// are an error naming the field.
StatusOr<ClusterSpec> LoadClusterJson(const std::string& path);
// The same from JSON text; `origin` names the input in messages and `source`.
StatusOr<ClusterSpec> ParseClusterJson(const std::string& text, const std::string& origin);
// Writes the schema LoadClusterJson reads (num_gpus and source are not part of it).
std::string ClusterToJson(const ClusterSpec& cluster);
// Runtime memory the catalog assumes for every GPU (docs/hardware.md), also
// used when a hardware JSON file omits "runtime".
RuntimeMemory DefaultRuntimeMemory();

// Interpolated GEMM efficiency (see GemmEfficiencyPoint).
double GemmEfficiency(const GpuSpec& gpu, double flops);
// The same for an FP8 GEMM, of fp8_peak_flops (1 when the table is empty).
double Fp8GemmEfficiency(const GpuSpec& gpu, double flops);
// HBM efficiency of one memory-bound kernel moving `bytes` (see
// GpuSpec::hbm_efficiency_by_bytes).
double HbmEfficiency(const GpuSpec& gpu, double bytes);

// The measured shape GemmShapeTime describes for (m, n, k), with its times
// scaled to n; false when none matches.
bool MeasuredGemm(const GpuSpec& gpu, double m, double n, double k, GemmShapeTime* out);

// The calibrated attention-core efficiencies at forward FLOPs `flops` for
// `head_dim` and sequence `seq` (see AttentionEfficiencyPoint; clamped at the
// ends); false when the GPU has no point of that head_dim.
bool AttentionEfficiency(const GpuSpec& gpu, double head_dim, double seq, double flops,
                         AttentionEfficiencyPoint* out);

// The catalog's default GEMM efficiency table for a catalog GPU name (sorted
// by flops); empty when none is known (simulator/hardware_catalog.cc).
std::vector<GemmEfficiencyPoint> DefaultGemmEfficiency(const std::string& gpu_name);
// The catalog's FP8 figures of a catalog GPU (fp8_peak_flops, its table,
// fp8_tn_only, mxfp8) copied onto *gpu; false (gpu untouched) when the
// catalog has no FP8 figures for that name.
bool CopyCatalogFp8(const std::string& gpu_name, GpuSpec* gpu);

// The uncalibrated GEMM efficiency curve of a GPU with this dense peak and
// large-GEMM plateau (simulator/gemm_efficiency.cc explains its shape).
std::vector<GemmEfficiencyPoint> GemmEfficiencyCurve(double peak_tflops, double plateau);

// The catalog GPU whose datasheet figures a device has, by the exact name the
// driver reports ("NVIDIA H100 80GB HBM3" -> "h100-sxm"); NotFound for
// variants the catalog does not list (no guessed peak, so no MFU).
StatusOr<std::string> CatalogGpuForDevice(const std::string& device_name);

// OK when simulator/catalog.json parsed; else the error naming the field.
Status CatalogStatus();

}  // namespace p3d
