// Calibrated hardware profiles: what p3d-calibrate measured on the GPUs at
// hand, and how those measurements replace catalog figures in a ClusterSpec.
// docs/calibration.md documents the file (schema "p3d-profile/1") and every
// derivation below.
//
// A profile file is a hardware file (docs/hardware.md: "gpu", "node") plus a
// "calibration" object holding the raw measurements. The raw measurements
// are the truth; the hardware part is what ApplyCalibration derives from them
// on the catalog entry of the measured card, so `--hardware profile.json`
// and `--profile profile.json` plan alike. What a calibration replaces:
//   gpu.gemm_efficiency   one point per measured GEMM shape (forward, input-
//                         gradient and weight-gradient layouts of a linear
//                         layer share its FLOPs; their times are summed, so
//                         the point's efficiency is 3F / (peak * (t_fwd +
//                         t_dx + t_dw))); shapes the plans use win inside
//                         their FLOPs range, the size sweep extends it
//   gpu.hbm_efficiency    elementwise-kernel bytes/s / datasheet hbm_bytes_per_s
//   gpu.memory_bytes      the card's total as nvidia-smi reports it
//   gpu.runtime           context (memory_bytes - free after CUDA context +
//                         cuBLASLt + first GEMM), NCCL bytes per communicator,
//                         allocator overhead fraction of one arena allocation
//   network[0] (node.intra in two-tier files)
//                         efficiency and latency from one weighted least-
//                         squares fit of every measured intra-node collective
//                         to the comm model's own formula (comm_model.h)
// Datasheet figures (peak_flops, hbm_bytes_per_s, link bytes_per_s) and the
// outer network tiers are never changed: one host cannot measure a network.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/model_spec.h"
#include "simulator/hardware.h"

namespace p3d {

inline constexpr char kProfileSchema[] = "p3d-profile/1";

// One linear-layer GEMM shape as the executor runs it (executor/model.cu):
//   forward  y[m,n]  = x[m,k] @ W[n,k]^T      (bf16 out)
//   dx       dx[m,k] = dy[m,n] @ W[n,k]        (bf16 out)
//   dw       dW[n,k] += dy[m,n]^T @ x[m,k]     (fp32 accumulate, beta = 1)
// All three have 2*m*n*k FLOPs.
struct LinearGemmShape {
  std::string label;  // e.g. "gpt-1.3b B=4 qkv"
  int64_t m = 0;      // tokens (B*S, or the loss chunk for the LM head)
  int64_t n = 0;      // output features
  int64_t k = 0;      // input features
  double flops() const { return 2.0 * static_cast<double>(m) * n * k; }
};

// The linear GEMMs of one micro-batch of `model` with B*S = tokens on one GPU
// of a TP group (q/k/v and fc column-parallel, out-proj and fc2 row-parallel),
// and the LM head in chunks of `logits_chunk` tokens (0: all tokens at once)
// over `vocab_rows` output rows split by TP (0: the model's V; p3d-run pads V,
// executor/param_layout.h PaddedVocab). Duplicate shapes are listed once.
std::vector<LinearGemmShape> LinearGemmShapes(const ModelSpec& model, int64_t tokens, int tp,
                                              int64_t logits_chunk, int64_t vocab_rows = 0);

// t = alpha + bytes * factor / bus_bytes_per_s fitted to measured times.
struct LinkFit {
  double alpha_s = 0;          // per collective step (comm_model.h's latency_s)
  double bus_bytes_per_s = 0;  // comm_model.h's link bytes_per_s * efficiency
  double max_rel_error = 0;    // max over the points of |fit - measured| / measured
  int points = 0;
};

// One measured collective: times of one operation at one group size.
struct CollectiveSample {
  std::string op;  // "all-reduce" | "reduce-scatter" | "all-gather" | "send-recv"
  int group_size = 2;
  double bytes = 0;  // the full buffer (comm_model.h's convention)
  double seconds = 0;
};

// Fits the comm model's formula (steps * alpha + factor * bytes / bw, steps and
// factor per op and group size as in comm_model.h) to all samples at once,
// weighting each by 1/seconds so that every size counts by its relative
// error. Errors: fewer than 2 samples, unknown op, a fit with bw <= 0.
StatusOr<LinkFit> FitCollectives(const std::vector<CollectiveSample>& samples);

// Applies a "calibration" object (docs/calibration.md) to `base`. `origin`
// names the file in messages. Errors name the field, e.g. "profile p.json:
// field 'calibration.gemm[3].dw_s' must be a positive number".
StatusOr<ClusterSpec> ApplyCalibration(const ClusterSpec& base, const nlohmann::json& calibration,
                                       const std::string& origin);

// Reads a profile file and applies its calibration to `base`; the result's
// source is "profile <path>". Errors name the file and the field; a profile
// measured on another card than base.gpu (calibration.catalog_gpu) is an
// error that names both.
StatusOr<ClusterSpec> ApplyProfile(const ClusterSpec& base, const std::string& path);

// The whole profile document: ClusterToJson(applied) + schema + calibration.
std::string ProfileToJson(const ClusterSpec& applied, const nlohmann::json& calibration);

}  // namespace p3d
