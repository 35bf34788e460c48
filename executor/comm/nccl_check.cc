#include "executor/comm/nccl_check.h"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <climits>

#include "common/enum_names.h"

namespace p3d {
namespace {

std::atomic<int> g_log_rank{-1};

std::string HostName() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

constexpr EnumEntry<ncclResult_t> kNcclResultNames[] = {
    {ncclSuccess, "ncclSuccess"},
    {ncclUnhandledCudaError, "ncclUnhandledCudaError"},
    {ncclSystemError, "ncclSystemError"},
    {ncclInternalError, "ncclInternalError"},
    {ncclInvalidArgument, "ncclInvalidArgument"},
    {ncclInvalidUsage, "ncclInvalidUsage"},
    {ncclRemoteError, "ncclRemoteError"},
    {ncclInProgress, "ncclInProgress"}};

}  // namespace

void SetCommLogRank(int rank) { g_log_rank.store(rank); }

std::string CommLogPrefix() {
  const int rank = g_log_rank.load();
  return fmt::format("{} rank {}", HostName(), rank < 0 ? std::string("?") : std::to_string(rank));
}

std::string CommErrorMessage(const char* file, int line, const char* expr,
                             const std::string& what) {
  return fmt::format("{} {}:{}: {} failed: {}", CommLogPrefix(), file, line, expr, what);
}

std::string NcclResultString(ncclResult_t result) {
  const char* last = ncclGetLastError(nullptr);
  std::string out = fmt::format("{} ({})", EnumName(kNcclResultNames, result, "ncclResult"),
                                ncclGetErrorString(result));
  if (last != nullptr && last[0] != '\0') out += fmt::format("; NCCL: {}", last);
  return out;
}

}  // namespace p3d
