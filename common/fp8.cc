#include "common/fp8.h"

#include "common/enum_names.h"

namespace p3d {
namespace {

constexpr EnumEntry<Fp8Recipe> kFp8RecipeNames[] = {{Fp8Recipe::kOff, "off"},
                                                    {Fp8Recipe::kDelayed, "delayed"},
                                                    {Fp8Recipe::kTensorwise, "tensorwise"},
                                                    {Fp8Recipe::kBlockwise, "blockwise"},
                                                    {Fp8Recipe::kMxfp8, "mxfp8"}};

}  // namespace

const char* Fp8RecipeName(Fp8Recipe r) { return EnumName(kFp8RecipeNames, r); }

bool ParseFp8Recipe(std::string_view name, Fp8Recipe* out) {
  return ParseEnum(kFp8RecipeNames, name, out);
}

const char* Fp8RecipeNames() { return "off|delayed|tensorwise|blockwise|mxfp8"; }

// TE Float8BlockScaling: fp32 scales, 1x128 blocks for activations and
// gradients, 128x128 for weights (transformer_engine/common/recipe/__init__.py);
// MXFP8BlockScaling: E8M0 (1 byte) per 32 values.
double Fp8WeightScaleBytes(Fp8Recipe r) {
  switch (r) {
    case Fp8Recipe::kBlockwise:
      return 4.0 / (128 * 128);
    case Fp8Recipe::kMxfp8:
      return 1.0 / 32;
    default:
      return 0;
  }
}

double Fp8ActivationScaleBytes(Fp8Recipe r) {
  switch (r) {
    case Fp8Recipe::kBlockwise:
      return 4.0 / 128;
    case Fp8Recipe::kMxfp8:
      return 1.0 / 32;
    default:
      return 0;
  }
}

double Fp8ScalarBytesPerTensor(Fp8Recipe r) {
  switch (r) {
    case Fp8Recipe::kDelayed:
      return 4.0 * (kFp8AmaxHistoryLen + 2);
    case Fp8Recipe::kTensorwise:
      return 4.0 * 3;
    default:
      return 0;
  }
}

}  // namespace p3d
