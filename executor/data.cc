#include "executor/data.h"

#include <fmt/format.h>

#include <fstream>

#include "common/input_file.h"
#include "executor/rng.h"

namespace p3d {
namespace {

class SyntheticSource final : public TokenSource {
 public:
  SyntheticSource(uint64_t seed, int64_t vocab, BatchShape shape)
      : seed_(seed), vocab_(vocab), shape_(shape) {}

  Status Batch(int64_t step, int64_t micro, std::vector<int32_t>* tokens,
               std::vector<int32_t>* targets) const override {
    const int64_t B = shape_.micro_batch, S = shape_.seq;
    tokens->resize(B * S);
    targets->resize(B * S);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t w = (step * shape_.grad_accum + micro) * B + b;
      const uint64_t base = static_cast<uint64_t>(w) * static_cast<uint64_t>(S + 1);
      for (int64_t s = 0; s < S; ++s) {
        (*tokens)[b * S + s] = Token(base + s);
        (*targets)[b * S + s] = Token(base + s + 1);
      }
    }
    return Status::Ok();
  }

  std::string Describe() const override {
    return fmt::format("synthetic uniform tokens (seed {}, vocab {})", seed_, vocab_);
  }

 private:
  int32_t Token(uint64_t i) const {
    return static_cast<int32_t>(RandomBits(seed_, 1, i) % static_cast<uint64_t>(vocab_));
  }
  uint64_t seed_;
  int64_t vocab_;
  BatchShape shape_;
};

class FileSource final : public TokenSource {
 public:
  FileSource(std::string path, std::vector<int32_t> data, BatchShape shape)
      : path_(std::move(path)), data_(std::move(data)), shape_(shape) {}

  Status Batch(int64_t step, int64_t micro, std::vector<int32_t>* tokens,
               std::vector<int32_t>* targets) const override {
    const int64_t B = shape_.micro_batch, S = shape_.seq;
    const int64_t n = static_cast<int64_t>(data_.size());
    tokens->resize(B * S);
    targets->resize(B * S);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t w = (step * shape_.grad_accum + micro) * B + b;
      const int64_t start = (w * S) % (n - S);
      for (int64_t s = 0; s < S; ++s) {
        (*tokens)[b * S + s] = data_[start + s];
        (*targets)[b * S + s] = data_[start + s + 1];
      }
    }
    return Status::Ok();
  }

  std::string Describe() const override {
    return fmt::format("token file {} ({} tokens)", path_, data_.size());
  }

 private:
  std::string path_;
  std::vector<int32_t> data_;
  BatchShape shape_;
};

Status CheckShape(const BatchShape& s) {
  if (s.micro_batch < 1 || s.seq < 1 || s.grad_accum < 1)
    return Status::InvalidArgument(
        fmt::format("data: micro_batch = {}, seq = {}, grad_accum = {} must all be positive",
                    s.micro_batch, s.seq, s.grad_accum));
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<TokenSource>> MakeSyntheticSource(uint64_t seed, int64_t vocab,
                                                           const BatchShape& shape) {
  P3D_RETURN_IF_ERROR(CheckShape(shape));
  if (vocab < 1 || vocab > INT32_MAX)
    return Status::InvalidArgument(fmt::format("data: vocab = {} out of range", vocab));
  return std::unique_ptr<TokenSource>(new SyntheticSource(seed, vocab, shape));
}

StatusOr<TokenDType> ParseTokenDType(const std::string& name) {
  if (name == "uint16") return TokenDType::kUint16;
  if (name == "uint32") return TokenDType::kUint32;
  return Status::InvalidArgument(
      fmt::format("data dtype '{}' is not one of: uint16, uint32", name));
}

StatusOr<std::unique_ptr<TokenSource>> MakeFileSource(const std::string& path, TokenDType dtype,
                                                      int64_t vocab, const BatchShape& shape) {
  P3D_RETURN_IF_ERROR(CheckShape(shape));
  // Held in host memory as int32 (2x a uint16 file): 16 GiB of tokens at most.
  P3D_RETURN_IF_ERROR(CheckInputFile(path, "data file", int64_t{16} << 30).status());
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(fmt::format("data file '{}' cannot be opened", path));
  std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t width = dtype == TokenDType::kUint16 ? 2 : 4;
  if (raw.size() % width != 0)
    return Status::InvalidArgument(
        fmt::format("data file '{}': {} bytes is not a whole number of {}-byte tokens", path,
                    raw.size(), width));
  const int64_t n = static_cast<int64_t>(raw.size() / width);
  if (n < shape.seq + 1)
    return Status::InvalidArgument(
        fmt::format("data file '{}' holds {} tokens; a sequence of {} needs at least {}", path, n,
                    shape.seq, shape.seq + 1));
  std::vector<int32_t> data(n);
  for (int64_t i = 0; i < n; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(raw.data()) + i * width;
    uint32_t v = p[0] | (uint32_t{p[1]} << 8);
    if (width == 4) v |= (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
    if (v >= static_cast<uint64_t>(vocab))
      return Status::InvalidArgument(fmt::format(
          "data file '{}': token {} at offset {} is outside the model's vocabulary [0, {})", path,
          v, i, vocab));
    data[i] = static_cast<int32_t>(v);
  }
  return std::unique_ptr<TokenSource>(new FileSource(path, std::move(data), shape));
}

std::vector<uint16_t> ByteTokens(const std::string& text) {
  std::vector<uint16_t> t(text.size());
  for (size_t i = 0; i < text.size(); ++i) t[i] = static_cast<unsigned char>(text[i]);
  return t;
}

}  // namespace p3d
