// MLP activations, forward and backward, elementwise over bf16 tensors.
//   GELU (tanh approximation, as GPT-2 and PyTorch gelu(approximate='tanh')):
//     y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
//   SwiGLU (Llama): gu [T, 2F] holds gate (columns [0,F)) then up ([F,2F));
//     h [T, F] = silu(gate) * up,  silu(g) = g * sigmoid(g)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "executor/dtype.h"

namespace p3d {

// y = gelu(x); n % 8 == 0. y may alias x.
Status GeluForward(const bf16* x, bf16* y, int64_t n, cudaStream_t stream);
// dx = dy * gelu'(x); dx may alias dy.
Status GeluBackward(const bf16* dy, const bf16* x, bf16* dx, int64_t n, cudaStream_t stream);

// h = silu(gate) * up; F % 8 == 0.
Status SwiGluForward(const bf16* gu, bf16* h, int64_t rows, int64_t ffn, cudaStream_t stream);
// dgu [T, 2F] = (dh * up * silu'(gate), dh * silu(gate)).
Status SwiGluBackward(const bf16* dh, const bf16* gu, bf16* dgu, int64_t rows, int64_t ffn,
                      cudaStream_t stream);

}  // namespace p3d
