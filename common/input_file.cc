#include "common/input_file.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

namespace p3d {

StatusOr<int64_t> CheckInputFile(const std::string& path, const std::string& what,
                                 int64_t max_bytes) {
  if (path.empty()) return Status::InvalidArgument(fmt::format("{}: empty file name", what));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return Status::InvalidArgument(fmt::format("{} '{}': cannot open ({})", what, path, std::strerror(errno)));
  if (S_ISDIR(st.st_mode))
    return Status::InvalidArgument(fmt::format("{} '{}' is a directory; give a file", what, path));
  if (!S_ISREG(st.st_mode))
    return Status::InvalidArgument(
        fmt::format("{} '{}' is not a regular file (a device, pipe or socket); give a file", what, path));
  if (st.st_size > max_bytes)
    return Status::InvalidArgument(fmt::format("{} '{}' is {} bytes, over the limit of {} bytes for this input",
                                               what, path, static_cast<int64_t>(st.st_size), max_bytes));
  return static_cast<int64_t>(st.st_size);
}

StatusOr<std::string> ReadInputFile(const std::string& path, const std::string& what,
                                    int64_t max_bytes) {
  P3D_ASSIGN_OR_RETURN(int64_t size, CheckInputFile(path, what, max_bytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument(fmt::format("{} '{}': cannot open (permissions?)", what, path));
  // Read at most max_bytes + 1: a file that grew since stat() is still bounded.
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), size);
  if (in.gcount() != size) return Status::IoError(fmt::format("{} '{}': short read", what, path));
  if (in.peek() != std::char_traits<char>::eof())
    return Status::IoError(fmt::format("{} '{}' changed while being read", what, path));
  return text;
}

std::string TempPathFor(const std::string& path) { return fmt::format("{}.tmp-{}", path, ::getpid()); }

Status CommitTempFile(const std::string& tmp, const std::string& path, bool ok, const std::string& what) {
  if (!ok) {
    std::remove(tmp.c_str());
    return Status::IoError(fmt::format("failed writing {} file '{}' (the previous file is unchanged)", what, path));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    return Status::IoError(fmt::format("cannot replace {} file '{}' ({})", what, path, std::strerror(e)));
  }
  return Status::Ok();
}

Status WriteFileAtomic(const std::string& path, const std::string& text, const std::string& what) {
  if (path.empty()) return Status::InvalidArgument(fmt::format("{}: empty file name", what));
  const std::string tmp = TempPathFor(path);
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) return Status::IoError(fmt::format("cannot open {} file '{}' for writing", what, path));
  f << text;
  f.close();
  return CommitTempFile(tmp, path, static_cast<bool>(f), what);
}

}  // namespace p3d
