#include "models/size_shorthand.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <vector>

namespace p3d {
namespace {

constexpr int64_t kVocab = 32000;
constexpr int64_t kHeadDim = 128;
constexpr double kAspect = 128.0;  // H / L, as Llama-2-7B (4096/32) and 13B (5120/40).

double Multiplier(char suffix) {
  switch (std::tolower(static_cast<unsigned char>(suffix))) {
    case 'k':
      return 1e3;
    case 'm':
      return 1e6;
    case 'b':
      return 1e9;
    case 't':
      return 1e12;
  }
  return 0;
}

// H for which an untied-embedding model at aspect ratio kAspect with about
// 12*H^2 parameters per layer totals `params`: 2*V*H + 12*H^3/kAspect = params.
double IdealHidden(double params) {
  double lo = 1, hi = 1e7;
  for (int i = 0; i < 200; ++i) {
    double mid = (lo + hi) / 2;
    (2.0 * kVocab * mid + 12.0 * mid * mid * mid / kAspect < params ? lo : hi) = mid;
  }
  return lo;
}

int64_t HeadStep(double heads) { return heads >= 32 ? 8 : heads >= 8 ? 4 : 1; }

ModelSpec ShapeWithHeads(int64_t heads, int64_t params, const std::string& name) {
  ModelSpec m;
  m.name = name;
  m.arch = Arch::kLlama;
  m.heads = heads;
  m.hidden = kHeadDim * heads;
  m.kv_heads = heads >= 32 ? 8 : heads;
  m.ffn = std::max<int64_t>(256, std::llround(8.0 * m.hidden / 3.0 / 256.0) * 256);
  m.vocab = kVocab;
  m.max_positions = 4096;
  m.layers = 1;
  int64_t fixed = m.TotalParams() - m.LayerParams(LayerKind{});
  m.layers = std::max<int64_t>(1, std::llround(static_cast<double>(params - fixed) /
                                               static_cast<double>(m.LayerParams(LayerKind{}))));
  return m;
}

double RelativeError(const ModelSpec& m, int64_t params) {
  return std::fabs(static_cast<double>(m.TotalParams()) / static_cast<double>(params) - 1.0);
}

}  // namespace

bool LooksLikeSize(const std::string& arg) {
  if (arg.size() < 2 || Multiplier(arg.back()) == 0) return false;
  char c = arg.front();
  return std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '+' || c == '.';
}

StatusOr<int64_t> ParseSize(const std::string& arg) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument(fmt::format(
        "bad model size '{}': {} (write a positive count with a k/M/B/T suffix, e.g. 7B, 500M, 2T)",
        arg, why));
  };
  if (arg.size() < 2 || Multiplier(arg.back()) == 0) return bad("no k/M/B/T suffix");
  std::string number = arg.substr(0, arg.size() - 1);
  char* end = nullptr;
  double value = std::strtod(number.c_str(), &end);
  if (end == number.c_str() || *end != '\0')
    return bad(fmt::format("'{}' is not a number", number));
  if (!std::isfinite(value)) return bad("not a finite number");
  double params = value * Multiplier(arg.back());
  if (params < 1) return bad("the size must be positive");
  if (params > static_cast<double>(kMaxGeneratedParams))
    return bad(fmt::format("larger than the supported maximum of {:.0f}T parameters",
                           kMaxGeneratedParams / 1e12));
  return static_cast<int64_t>(std::llround(params));
}

StatusOr<ModelSpec> GenerateLlamaStyle(int64_t params, const std::string& name) {
  if (params < kMinGeneratedParams || params > kMaxGeneratedParams)
    return Status::InvalidArgument(fmt::format(
        "{} parameters is outside the {:.0f}M to {:.0f}T range of generated Llama-style shapes; "
        "use a zoo model (--list-models) or a model file",
        params, kMinGeneratedParams / 1e6, kMaxGeneratedParams / 1e12));
  double ideal_heads = IdealHidden(static_cast<double>(params)) / kHeadDim;
  int64_t step = HeadStep(ideal_heads);
  int64_t heads = std::max<int64_t>(step, std::llround(ideal_heads / step) * step);
  std::vector<ModelSpec> candidates = {ShapeWithHeads(heads, params, name)};
  if (RelativeError(candidates[0], params) > 0.01) {
    if (heads > step) candidates.push_back(ShapeWithHeads(heads - step, params, name));
    candidates.push_back(ShapeWithHeads(heads + step, params, name));
  }
  const ModelSpec* best = &candidates[0];
  for (const ModelSpec& c : candidates)
    if (RelativeError(c, params) < RelativeError(*best, params)) best = &c;
  return *best;
}

}  // namespace p3d
