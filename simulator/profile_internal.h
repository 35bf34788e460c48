// Internal to simulator/: the field reader shared by the profile code
// (profile.cc, profile_kernels.cc) and the appliers of the kernel-level
// calibration objects. Every message names the profile file and the full
// field path. docs/calibration.md documents each object.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "common/status.h"
#include "simulator/hardware.h"

namespace p3d::profile_internal {

using nlohmann::json;

inline constexpr double kMaxProbeSeconds = 3600;  // one probe kernel or collective
inline constexpr double kMaxProbeValue = 1e18;    // bytes, FLOPs, counts, rates

class Fields {
 public:
  Fields(const json& j, std::string path, std::string origin)
      : j_(j), path_(std::move(path)), origin_(std::move(origin)) {}
  // The element or member at `path` (e.g. "calibration.gemm[3]").
  StatusOr<Fields> Child(const json& j, std::string path) const {
    if (!j.is_object())
      return Status::InvalidArgument(
          fmt::format("profile {}: field '{}' must be an object", origin_, path));
    return Fields(j, std::move(path), origin_);
  }

  bool Has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  std::string Path(const char* key) const { return path_ + "." + key; }

  // A finite number > 0, at most kMaxProbeValue; a duration (a key named
  // "seconds" or ending in "_s") at most kMaxProbeSeconds: larger is a unit
  // slip that would overflow step times (a 1e308 s GEMM ranked NaN plans first).
  Status Positive(const char* key, double* out) const {
    if (!Has(key)) return Error(key, "is missing");
    const json& v = j_.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0)
      return Error(key, fmt::format("must be a positive number, got {}", v.dump()));
    const std::string k = key;
    const bool duration = k == "seconds" || (k.size() > 2 && k.ends_with("_s"));
    const double max = duration ? kMaxProbeSeconds : kMaxProbeValue;
    if (v.get<double>() > max) return Error(key, fmt::format("must be at most {:g}, got {}", max, v.dump()));
    *out = v.get<double>();
    return Status::Ok();
  }
  // Positive() of each {key, out} in turn, up to the first error.
  Status Positives(std::initializer_list<std::pair<const char*, double*>> fields) const {
    for (const auto& [key, out] : fields) P3D_RETURN_IF_ERROR(Positive(key, out));
    return Status::Ok();
  }
  // A finite number >= 0.
  Status NonNegative(const char* key, double* out) const {
    if (!Has(key)) return Error(key, "is missing");
    const json& v = j_.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
      return Error(key, fmt::format("must be a number >= 0, got {}", v.dump()));
    *out = v.get<double>();
    return Status::Ok();
  }
  Status String(const char* key, std::string* out) const {
    if (!Has(key)) return Error(key, "is missing");
    const json& v = j_.at(key);
    if (!v.is_string() || v.get<std::string>().empty())
      return Error(key, fmt::format("must be a non-empty string, got {}", v.dump()));
    *out = v.get<std::string>();
    return Status::Ok();
  }
  Status Array(const char* key, const json** out) const {
    if (!Has(key)) return Error(key, "is missing");
    if (!j_.at(key).is_array()) return Error(key, "must be an array");
    *out = &j_.at(key);
    return Status::Ok();
  }
  Status Object(const char* key, const json** out) const {
    if (!Has(key)) return Error(key, "is missing");
    if (!j_.at(key).is_object()) return Error(key, "must be an object");
    *out = &j_.at(key);
    return Status::Ok();
  }
  // visit(element) for each element of the array at `key`, each an object
  // read with its path ("calibration.gemm[3]"), up to the first error.
  template <typename Visit>
  Status ForEachObject(const char* key, Visit&& visit) const {
    const json* list = nullptr;
    P3D_RETURN_IF_ERROR(Array(key, &list));
    for (size_t i = 0; i < list->size(); ++i) {
      P3D_ASSIGN_OR_RETURN(Fields item, Child((*list)[i], fmt::format("{}[{}]", Path(key), i)));
      P3D_RETURN_IF_ERROR(visit(item));
    }
    return Status::Ok();
  }
  // The object at `key`, read with its path (e.g. "calibration.hbm").
  StatusOr<Fields> ObjectAt(const char* key) const {
    const json* obj = nullptr;
    P3D_RETURN_IF_ERROR(Object(key, &obj));
    return Child(*obj, Path(key));
  }
  Status Error(const char* key, const std::string& what) const {
    return Status::InvalidArgument(
        fmt::format("profile {}: field '{}' {}", origin_, Path(key), what));
  }

 private:
  const json& j_;
  std::string path_;
  std::string origin_;
};

// "attention": the executor's attention core per measured shape ->
// gpu.attention_efficiency (hardware.h AttentionEfficiencyPoint).
Status ApplyAttention(const Fields& cal, ClusterSpec* c);
// "optimizer": gradient norm + AdamW over `params` -> gpu.optimizer_efficiency.
Status ApplyOptimizer(const Fields& cal, ClusterSpec* c);
// "interference": GEMM and memory-bound loops alone and under a concurrent
// all-reduce -> gpu.overlap_slowdown_gemm / _memory.
Status ApplyInterference(const Fields& cal, ClusterSpec* c);

// "offload_step": the executor's offloaded optimizer step -> the node's CPU
// AdamW rate as it runs under the step's copies (node.cpu_adam_params_per_s).
Status ApplyOffloadStep(const Fields& cal, ClusterSpec* c);

}  // namespace p3d::profile_internal
