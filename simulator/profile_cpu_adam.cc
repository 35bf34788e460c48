#include "simulator/profile_cpu_adam.h"

#include <fmt/format.h>

#include <cmath>

namespace p3d {
namespace {

constexpr char kPath[] = "calibration.cpu_adam";

Status FieldError(const std::string& origin, const char* key, const std::string& what) {
  return Status::InvalidArgument(
      fmt::format("profile {}: field '{}.{}' {}", origin, kPath, key, what));
}

// A finite number > 0 (integer: also a whole number).
Status Positive(const nlohmann::json& j, const std::string& origin, const char* key, bool integer,
                double* out) {
  if (!j.contains(key) || j.at(key).is_null()) return FieldError(origin, key, "is missing");
  const nlohmann::json& v = j.at(key);
  const bool number = v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0;
  if (!number || (integer && v.get<double>() != std::floor(v.get<double>())))
    return FieldError(
        origin, key,
        fmt::format("must be a positive {}, got {}", integer ? "integer" : "number", v.dump()));
  *out = v.get<double>();
  return Status::Ok();
}

}  // namespace

StatusOr<double> CalibratedCpuAdamParamsPerS(const nlohmann::json& cpu_adam,
                                             const std::string& origin) {
  if (!cpu_adam.is_object())
    return Status::InvalidArgument(
        fmt::format("profile {}: field '{}' must be an object", origin, kPath));
  double params, threads, seconds, rate;
  P3D_RETURN_IF_ERROR(Positive(cpu_adam, origin, "params", true, &params));
  P3D_RETURN_IF_ERROR(Positive(cpu_adam, origin, "threads", true, &threads));
  P3D_RETURN_IF_ERROR(Positive(cpu_adam, origin, "seconds_per_step", false, &seconds));
  P3D_RETURN_IF_ERROR(Positive(cpu_adam, origin, "params_per_s", false, &rate));
  if (std::fabs(rate * seconds - params) > 1e-6 * params)
    return FieldError(origin, "params_per_s",
                      fmt::format("must equal params / seconds_per_step = {:.6g}, got {:.6g}",
                                  params / seconds, rate));
  return rate;
}

}  // namespace p3d
