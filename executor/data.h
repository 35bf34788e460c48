// Training data: where the token ids of each micro-batch come from.
//
// Every source is STATELESS in the step: the micro-batch of (step, micro) is a
// pure function of the source and those two numbers, so a run resumed from a
// checkpoint at step k sees exactly the batches a run that never stopped saw.
// A micro-batch is B sequences; sequence b is window w = (step * grad_accum +
// micro) * B + b of the source; tokens[b*S + s] is its s-th token and
// targets[b*S + s] the next one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace p3d {

struct BatchShape {
  int64_t micro_batch = 1;  // B
  int64_t seq = 0;          // S
  int64_t grad_accum = 1;
};

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // Fills tokens and targets ([B*S] each) for micro-batch `micro` of `step`.
  virtual Status Batch(int64_t step, int64_t micro, std::vector<int32_t>* tokens,
                       std::vector<int32_t>* targets) const = 0;
  virtual std::string Describe() const = 0;
};

// Uniform random tokens: the stream's token i is RandomBits(seed, 1, i) % vocab
// (executor/rng.h); window w covers stream positions [w*(S+1), (w+1)*(S+1)).
// For timing; its loss stays at ln(vocab).
StatusOr<std::unique_ptr<TokenSource>> MakeSyntheticSource(uint64_t seed, int64_t vocab,
                                                           const BatchShape& shape);

enum class TokenDType { kUint16, kUint32 };
StatusOr<TokenDType> ParseTokenDType(const std::string& name);  // "uint16" | "uint32"

// A flat binary file of little-endian token ids (no header). Window w starts at
// token (w * S) mod (N - S), N = tokens in the file; needs N >= S + 1. Every id
// must be < vocab (checked on load; the error names the first offending offset).
StatusOr<std::unique_ptr<TokenSource>> MakeFileSource(const std::string& path, TokenDType dtype,
                                                      int64_t vocab, const BatchShape& shape);

// Byte-level tokenizer: token = byte value (vocabulary 256).
std::vector<uint16_t> ByteTokens(const std::string& text);

}  // namespace p3d
