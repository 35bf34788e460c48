// LayerNorm (GPT-2) and RMSNorm (Llama), forward and backward, over rows of
// length H (x [rows, H], H % 8 == 0). Statistics are fp32, one per row.
//   LayerNorm: y = (x - mean) * rstd * w + b,  rstd = 1/sqrt(var + eps)
//   RMSNorm:   y = x * rstd * w,               rstd = 1/sqrt(mean(x^2) + eps)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

enum class NormKind { kLayerNorm, kRmsNorm };

struct NormForwardArgs {
  NormKind kind = NormKind::kLayerNorm;
  const bf16* x = nullptr;
  const bf16* weight = nullptr;  // [H]
  const bf16* bias = nullptr;    // [H], LayerNorm only
  bf16* y = nullptr;
  float* mean = nullptr;  // [rows], LayerNorm only (saved for backward)
  float* rstd = nullptr;  // [rows]
  int64_t rows = 0, hidden = 0;
  float eps = 1e-5f;
};
Status NormForward(const NormForwardArgs& a, cudaStream_t stream);

// dx = dresidual + d(norm)/dx^T dy  (dresidual may be null or alias dx: the
// residual-stream gradient is added in the same pass);
// dweight += sum_r dy * xhat, dbias += sum_r dy (LayerNorm), deterministically
// through `partials` (fp32 scratch of 2 * ColumnPartialsFloats(H)).
struct NormBackwardArgs {
  NormKind kind = NormKind::kLayerNorm;
  const bf16* dy = nullptr;
  const bf16* x = nullptr;
  const bf16* weight = nullptr;
  const float* mean = nullptr;
  const float* rstd = nullptr;
  const bf16* dresidual = nullptr;
  bf16* dx = nullptr;
  float* dweight = nullptr;
  float* dbias = nullptr;  // LayerNorm only
  float* partials = nullptr;
  int64_t rows = 0, hidden = 0;
};
Status NormBackward(const NormBackwardArgs& a, cudaStream_t stream);

}  // namespace p3d
