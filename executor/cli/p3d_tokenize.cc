// p3d-tokenize: turn any file into byte-level tokens (vocabulary 256) for
// p3d-run --data, as a flat little-endian uint16 file.
//
//   p3d-tokenize bench/data/corpus.txt /tmp/corpus.u16
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <iterator>

#include "executor/data.h"

int main(int argc, char** argv) {
  std::string in_path, out_path;
  CLI::App app{"p3d-tokenize: bytes of a file -> uint16 token ids (vocab 256) for p3d-run --data"};
  app.add_option("input", in_path, "any file (text)")->required();
  app.add_option("output", out_path, "token file to write")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  std::ifstream in(in_path, std::ios::binary);
  if (!in) {
    std::cerr << "p3d-tokenize: cannot open '" << in_path << "'\n";
    return 2;
  }
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<uint16_t> tokens = p3d::ByteTokens(text);
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  // Little-endian on every platform p3d builds for (x86-64, aarch64).
  out.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size() * sizeof(uint16_t)));
  out.close();
  if (!out) {
    std::cerr << "p3d-tokenize: cannot write '" << out_path << "'\n";
    return 2;
  }
  std::cout << tokens.size() << " tokens written to " << out_path << " (vocab 256)\n";
  return 0;
}
