// Bounded reads of user-supplied files, and atomic writes of files a user keeps.
//
// Every file p3d reads comes from a user (model config, hardware JSON, profile,
// saved plan, run results, token data): the reader refuses anything that is not
// a regular file (a directory, /dev/zero, a FIFO) and anything larger than the
// stated limit *before* reading, so no input can make a tool grow without bound
// or hang. Messages name the file and what it was meant to be.
//
// Writes go to "<path>.tmp-<pid>" and are renamed over <path> only once
// complete, so a failed write never destroys the file a user asked to keep.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace p3d {

// Size limits (bytes) by kind of input. A JSON description of a model, a
// cluster, a plan or a run is kilobytes; the limits leave two orders of
// magnitude of room and stop a mistaken path (a dataset, a device) early.
inline constexpr int64_t kMaxJsonInputBytes = int64_t{16} << 20;  // 16 MiB

// Reads the whole of `path`, a regular file of at most `max_bytes`.
// `what` names the input in messages ("hardware file", "saved plan").
StatusOr<std::string> ReadInputFile(const std::string& path, const std::string& what,
                                    int64_t max_bytes = kMaxJsonInputBytes);

// Checks that `path` is an existing regular file of at most `max_bytes` and
// returns its size; for readers that stream large files themselves.
StatusOr<int64_t> CheckInputFile(const std::string& path, const std::string& what,
                                 int64_t max_bytes);

// Writes `text` to `path` atomically (temporary file, then rename).
Status WriteFileAtomic(const std::string& path, const std::string& text, const std::string& what);

// For writers that stream: write to TempPathFor(path), then CommitTempFile
// renames it over `path` (or removes it and reports when `ok` is false).
std::string TempPathFor(const std::string& path);
Status CommitTempFile(const std::string& tmp, const std::string& path, bool ok, const std::string& what);

}  // namespace p3d
