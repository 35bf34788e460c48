// Fused softmax cross-entropy: loss and dlogits of a chunk of tokens in one pass
// over the logits, so only one chunk of logits ever exists (the caller loops
// over chunks; see executor/model.h for the chunk size and its memory).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

struct CrossEntropyArgs {
  const float* logits = nullptr;     // [rows, ld], columns [0, vocab) used
  const int32_t* targets = nullptr;  // [rows], each in [0, vocab)
  bf16* dlogits = nullptr;           // [rows, ld]: (softmax - onehot) * grad_scale
  float* losses = nullptr;           // [rows]: logsumexp - logit[target]
  int64_t rows = 0, vocab = 0, ld = 0;
  float grad_scale = 1.0f;  // 1 / (tokens in the global batch) for a mean loss
};
Status CrossEntropyForwardBackward(const CrossEntropyArgs& a, cudaStream_t stream);

// *total += sum of losses[0..n), summed by one block in a fixed order (deterministic).
Status AccumulateLossSum(const float* losses, int64_t n, float* total, cudaStream_t stream);

}  // namespace p3d
