// Attention-core probe (probes.h): executor/attention_core.h at each plan
// shape, timed as a training step runs it (forward, the probabilities part
// alone, backward), with the last query's output and the last key's value
// gradient checked against a float64 CPU computation.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "executor/attention_core.h"
#include "executor/calibrate/probes.h"
#include "executor/kernels/elementwise.h"

namespace p3d {
namespace {

// Tolerance on |got - want| relative to the largest |want| of the vector:
// bf16 inputs, probabilities and outputs (2^-9 relative each) with fp32
// accumulation over up to S keys.
constexpr double kTolerance = 0.03;

// Device buffers of one shape (bf16 elements), freed on destruction.
struct CoreBuffers {
  std::vector<bf16*> all;
  bf16 *qkv, *q, *k, *v, *probs, *o_heads, *att_out, *d_att, *d_o, *dprobs, *dqkv_heads, *dqkv;
  ~CoreBuffers() {
    for (bf16* p : all) cudaFree(p);
  }
  Status Alloc(bf16** p, int64_t elems) {
    P3D_CAL_CUDA(cudaMalloc(p, elems * sizeof(bf16)));
    all.push_back(*p);
    return Status::Ok();
  }
};

StatusOr<std::vector<float>> Fetch(const bf16* d, int64_t offset, int64_t n) {
  std::vector<bf16> raw(n);
  P3D_CAL_CUDA(cudaMemcpy(raw.data(), d + offset, n * sizeof(bf16), cudaMemcpyDeviceToHost));
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = __bfloat162float(raw[i]);
  return out;
}

Status RandomBf16(bf16* out, int64_t n, uint64_t stream_id, cudaStream_t stream) {
  float* tmp = nullptr;
  P3D_CAL_CUDA(cudaMalloc(&tmp, n * sizeof(float)));
  Status s = InitNormal(tmp, n, 1.0f, 29, stream_id, stream);
  if (s.ok()) s = CastToBf16(tmp, out, n, stream);
  cudaStreamSynchronize(stream);
  cudaFree(tmp);
  return s;
}

double WorstError(const std::vector<double>& want, const std::vector<float>& got) {
  double scale = 1e-30, worst = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]));
  return worst / scale;
}

// Batch entry (b = 0, kv head 0), group head 0: the last query position
// attends to every key. Checks att_out at that position, and (backward) the
// value gradient of the last key, which only the last position's G heads
// reach: dv[S-1] = sum_g P_g[S-1, S-1] dO_g[S-1].
Status CheckCore(const AttentionCoreShape& sh, const CoreBuffers& b, double* worst) {
  const int64_t S = sh.seq, HD = sh.head_dim, G = sh.heads / sh.kv_heads, T = sh.batch * S;
  P3D_ASSIGN_OR_RETURN(std::vector<float> keys, Fetch(b.k, 0, S * HD));
  P3D_ASSIGN_OR_RETURN(std::vector<float> vals, Fetch(b.v, 0, S * HD));
  // q heads-major [B, KV, S, G, HD]: position S-1, heads 0..G-1.
  P3D_ASSIGN_OR_RETURN(std::vector<float> qs, Fetch(b.q, (S - 1) * G * HD, G * HD));
  const double scale = 1.0 / std::sqrt(static_cast<double>(HD));
  std::vector<double> dv(HD, 0.0);
  for (int64_t g = 0; g < G; ++g) {
    std::vector<double> p(S);
    double mx = -1e300, sum = 0;
    for (int64_t j = 0; j < S; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < HD; ++d) dot += static_cast<double>(qs[g * HD + d]) * keys[j * HD + d];
      p[j] = dot * scale;
      mx = std::max(mx, p[j]);
    }
    for (double& x : p) sum += (x = std::exp(x - mx));
    std::vector<double> want(HD, 0.0);
    for (int64_t j = 0; j < S; ++j)
      for (int64_t d = 0; d < HD; ++d) want[d] += p[j] / sum * vals[j * HD + d];
    // att_out tokens-major [B, S, NH*HD]; head g of kv head 0 is head g.
    P3D_ASSIGN_OR_RETURN(std::vector<float> got, Fetch(b.att_out, (S - 1) * sh.heads * HD + g * HD, HD));
    *worst = std::max(*worst, WorstError(want, got));
    P3D_ASSIGN_OR_RETURN(std::vector<float> dout,
                         Fetch(b.d_att, (S - 1) * sh.heads * HD + g * HD, HD));
    for (int64_t d = 0; d < HD; ++d) dv[d] += p[S - 1] / sum * dout[d];
  }
  // dv heads-major [B, KV, S, HD] after dq [T*NH*HD] and dk [T*KV*HD].
  const int64_t dv_offset = T * sh.heads * HD + T * sh.kv_heads * HD + (S - 1) * HD;
  P3D_ASSIGN_OR_RETURN(std::vector<float> got_dv, Fetch(b.dqkv_heads, dv_offset, HD));
  *worst = std::max(*worst, WorstError(dv, got_dv));
  return Status::Ok();
}

}  // namespace

StatusOr<nlohmann::json> ProbeAttention(const std::vector<AttentionShapeToMeasure>& shapes,
                                        const Progress& progress, cudaStream_t stream,
                                        int* skipped) {
  void* ws = nullptr;
  P3D_CAL_CUDA(cudaMalloc(&ws, Matmul::kWorkspaceBytes));
  std::unique_ptr<void, decltype(&cudaFree)> ws_guard(ws, cudaFree);
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<Matmul> mm, Matmul::Create(ws, Matmul::kWorkspaceBytes));
  nlohmann::json out = nlohmann::json::array();
  *skipped = 0;
  for (const AttentionShapeToMeasure& m : shapes) {
    if (progress.out_of_time()) {
      ++*skipped;
      continue;
    }
    const AttentionCoreShape& sh = m.shape;
    const int64_t T = sh.batch * sh.seq, HD = sh.head_dim;
    const int64_t q = T * sh.heads * HD, kv = T * sh.kv_heads * HD;
    const int64_t scores = sh.batch * sh.heads * sh.seq * sh.seq;
    CoreBuffers b;
    for (auto [p, n] : {std::pair{&b.qkv, q + 2 * kv},
                        {&b.q, q},
                        {&b.k, kv},
                        {&b.v, kv},
                        {&b.probs, scores},
                        {&b.o_heads, q},
                        {&b.att_out, q},
                        {&b.d_att, q},
                        {&b.d_o, q},
                        {&b.dprobs, scores},
                        {&b.dqkv_heads, q + 2 * kv},
                        {&b.dqkv, q + 2 * kv}}) {
      Status s = b.Alloc(p, n);
      if (!s.ok()) return s;
    }
    P3D_RETURN_IF_ERROR(RandomBf16(b.qkv, q + 2 * kv, 1, stream));
    P3D_RETURN_IF_ERROR(RandomBf16(b.d_att, q, 2, stream));
    // GPT-2 style (no rotary): the rotation is a few per-element multiplies
    // inside the head split, immaterial next to the S x S work.
    const AttentionCore core(mm.get(), sh, nullptr, nullptr, stream);
    const AttentionCoreScratch scratch{b.d_o, b.dprobs, b.dqkv_heads};
    auto forward = [&]() { return core.Forward(b.qkv, b.q, b.k, b.v, b.probs, b.o_heads, b.att_out); };
    auto backward = [&]() {
      return core.Backward(b.d_att, b.q, b.k, b.v, b.probs, scratch, b.dqkv);
    };
    P3D_RETURN_IF_ERROR(forward());
    P3D_RETURN_IF_ERROR(backward());
    P3D_CAL_CUDA(cudaStreamSynchronize(stream));
    double worst = 0;
    P3D_RETURN_IF_ERROR(CheckCore(sh, b, &worst));
    if (worst > kTolerance)
      return Status::Internal(fmt::format(
          "attention core {} wrong: relative error {:.3g} > {} against the CPU", m.label, worst,
          kTolerance));
    P3D_ASSIGN_OR_RETURN(double fwd_s, TimeLaunches(forward, 1, 5, stream));
    P3D_ASSIGN_OR_RETURN(double probs_s, TimeLaunches([&]() { return core.Probs(b.q, b.k, b.probs); },
                                                      1, 5, stream));
    // Probs rewrote the probabilities in place with the same values.
    P3D_ASSIGN_OR_RETURN(double bwd_s, TimeLaunches(backward, 1, 5, stream));
    const double flops = 4.0 * sh.batch * sh.heads * sh.seq * sh.seq * HD * (sh.blocks + 1) /
                         (2.0 * sh.blocks);
    progress.Say(fmt::format(
        "attention {:<28} fwd {:7.3f} ms ({:5.1f} TFLOP/s) probs {:7.3f} ms bwd {:7.3f} ms "
        "({:5.1f} TFLOP/s)  (checked, err {:.1e})",
        m.label, fwd_s * 1e3, flops / fwd_s / 1e12, probs_s * 1e3, bwd_s * 1e3,
        2 * flops / bwd_s / 1e12, worst));
    out.push_back({{"label", m.label},
                   {"batch", sh.batch},
                   {"seq", sh.seq},
                   {"heads", sh.heads},
                   {"kv_heads", sh.kv_heads},
                   {"head_dim", sh.head_dim},
                   {"blocks", sh.blocks},
                   {"forward_s", fwd_s},
                   {"probs_s", probs_s},
                   {"backward_s", bwd_s},
                   {"max_rel_error", worst}});
  }
  return out;
}

}  // namespace p3d
