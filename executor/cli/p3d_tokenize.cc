// p3d-tokenize: turn any file into byte-level tokens (vocabulary 256) for
// p3d-run --data, as a flat little-endian uint16 file.
//
//   p3d-tokenize bench/data/corpus.txt /tmp/corpus.u16
#include <CLI/CLI.hpp>
#include <iostream>

#include "common/input_file.h"
#include "common/tool_main.h"
#include "executor/data.h"

namespace {

// Token files are uint16 per byte: inputs up to 4 GiB give 8 GiB of tokens.
constexpr int64_t kMaxTokenizeInputBytes = int64_t{4} << 30;

int Tokenize(int argc, char** argv) {
  std::string in_path, out_path;
  CLI::App app{"p3d-tokenize: bytes of a file -> uint16 token ids (vocab 256) for p3d-run --data"};
  app.add_option("input", in_path, "any file (text)")->required();
  app.add_option("output", out_path, "token file to write")->required();
  if (int code = p3d::ParseFlags(app, argc, argv); code >= 0) return code;
  p3d::StatusOr<std::string> text = p3d::ReadInputFile(in_path, "input", kMaxTokenizeInputBytes);
  if (!text.ok()) {
    std::cerr << "p3d-tokenize: " << text.status().ToString() << "\n";
    return p3d::kExitBadInput;
  }
  const std::vector<uint16_t> tokens = p3d::ByteTokens(*text);
  // Little-endian on every platform p3d builds for (x86-64, aarch64).
  const std::string bytes(reinterpret_cast<const char*>(tokens.data()), tokens.size() * sizeof(uint16_t));
  p3d::Status s = p3d::WriteFileAtomic(out_path, bytes, "token");
  if (!s.ok()) {
    std::cerr << "p3d-tokenize: " << s.ToString() << "\n";
    return p3d::kExitBadInput;
  }
  std::cout << tokens.size() << " tokens written to " << out_path << " (vocab 256)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return p3d::GuardedMain("p3d-tokenize", p3d::kExitBadInput, [&] { return Tokenize(argc, argv); });
}
