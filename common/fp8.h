// FP8 training recipes, as Transformer Engine runs them (the recipe is part
// of the training recipe, TrainingSpec::fp8; docs/time-model.md "FP8" and
// docs/memory-model.md "FP8" derive what it changes). Names are Megatron-Core's
// --fp8-recipe choices (megatron/training/arguments.py
// _add_transformer_engine_args: tensorwise, delayed, mxfp8, blockwise), each
// one TE recipe class (transformer_engine/common/recipe/__init__.py):
//   off         bf16 GEMMs (p3d's default)
//   delayed     DelayedScaling: one scale per tensor from an amax history of
//               the last amax_history_len (default 1024) steps; the amax is
//               computed inside the cast kernel of this step for the next one
//   tensorwise  Float8CurrentScaling: one scale per tensor from this tensor's
//               own amax, so an amax pass over the input precedes its cast
//   blockwise   Float8BlockScaling (DeepSeek-V3's recipe): fp32 scales per
//               1x128 block of activations and gradients, per 128x128 block
//               of weights
//   mxfp8       MXFP8BlockScaling: an E8M0 scale per 32 consecutive values,
//               block-scaled FP8 tensor cores (Blackwell only)
// With each, the linear layers' GEMMs (q/k/v, attention out-projection, MLP)
// run in FP8 (E4M3 forward; Megatron's "hybrid" format: E5M2 gradients); the
// attention core, norms, softmax, embedding and LM head stay bf16 (TE's
// default: fp8_dpa = False, and Megatron keeps the output layer out of
// fp8_autocast).
#pragma once

#include <cstdint>
#include <string_view>

namespace p3d {

enum class Fp8Recipe : uint8_t { kOff, kDelayed, kTensorwise, kBlockwise, kMxfp8 };
inline constexpr int kFp8RecipeCount = 5;
const char* Fp8RecipeName(Fp8Recipe r);  // "off" | "delayed" | "tensorwise" | "blockwise" | "mxfp8"
// Inverse of Fp8RecipeName; false when `name` is none of them.
bool ParseFp8Recipe(std::string_view name, Fp8Recipe* out);
// All recipe names, "off|delayed|..." (for messages and --help).
const char* Fp8RecipeNames();

// A set of recipes, bit i = Fp8Recipe(i) (what a framework runs).
using Fp8Recipes = uint8_t;
inline constexpr Fp8Recipes Fp8Bit(Fp8Recipe r) { return Fp8Recipes(1u << static_cast<int>(r)); }

// Bytes of scaling state per quantized element, beside the 1-byte FP8 value:
//   delayed / tensorwise  a few fp32 scalars per tensor (0 per element; the
//                         amax history is counted per tensor, Fp8ScalarBytes)
//   blockwise             one fp32 scale per 128 values (1x128 activation and
//                         gradient blocks) or per 128x128 (weights)
//   mxfp8                 one 1-byte E8M0 scale per 32 values, both ways
// Weights: per element of a weight copy; activations: per element of a
// quantized activation or gradient.
double Fp8WeightScaleBytes(Fp8Recipe r);
double Fp8ActivationScaleBytes(Fp8Recipe r);

// Per-tensor scaling state of one quantized GEMM operand, bytes: delayed
// scaling keeps an fp32 amax history of amax_history_len (TE default 1024)
// plus scale and scale_inv; current scaling keeps amax, scale, scale_inv.
double Fp8ScalarBytesPerTensor(Fp8Recipe r);
inline constexpr int kFp8AmaxHistoryLen = 1024;  // TE DelayedScaling.amax_history_len default

// Whether the recipe computes each tensor's amax in its own pass over the
// input before casting it (current scaling: Float8CurrentScaling).
inline bool Fp8AmaxPass(Fp8Recipe r) { return r == Fp8Recipe::kTensorwise; }

}  // namespace p3d
