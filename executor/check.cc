#include "executor/check.h"

#include <fmt/format.h>
#include <unistd.h>

namespace p3d {

std::string GpuErrorMessage(const char* file, int line, const char* expr, const std::string& what) {
  char host[256] = "unknown-host";
  gethostname(host, sizeof(host) - 1);
  return fmt::format("{} {}:{}: {} failed: {}", host, file, line, expr, what);
}

std::string CublasStatusString(cublasStatus_t status) {
  return fmt::format("{} ({})", cublasLtGetStatusName(status), cublasLtGetStatusString(status));
}

}  // namespace p3d
