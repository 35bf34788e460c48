#include "executor/checkpoint.h"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/input_file.h"
#include "models/model_json.h"

namespace p3d {
namespace {

constexpr char kMagic[8] = {'P', '3', 'D', 'C', 'K', 'P', 'T', '1'};

struct BufferSpec {
  ParamBuffer which;
  int64_t element_bytes;
};
constexpr BufferSpec kBuffers[] = {{ParamBuffer::kWeights, 2},
                                   {ParamBuffer::kMaster, 4},
                                   {ParamBuffer::kAdamM, 4},
                                   {ParamBuffer::kAdamV, 4}};

}  // namespace

Status SaveCheckpoint(const std::string& path, const Model& model, const CheckpointInfo& info) {
  nlohmann::json header = {{"model", ModelToJson(model.config().spec)},
                           {"param_elements", model.params().total},
                           {"step", info.step},
                           {"seed", info.seed},
                           {"adam_steps", info.adam_steps}};
  const std::string text = header.dump();
  // Written beside the old checkpoint and renamed over it only when complete.
  const std::string tmp = TempPathFor(path);
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) return Status::IoError(fmt::format("checkpoint '{}' cannot be created", path));
  const uint64_t len = text.size();
  out.write(kMagic, sizeof(kMagic));
  out.write(reinterpret_cast<const char*>(&len), sizeof(len));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  std::vector<char> buf;
  for (const BufferSpec& b : kBuffers) {
    buf.resize(model.params().total * b.element_bytes);
    Status copied = model.CopyOut(b.which, buf.data());
    if (!copied.ok()) {
      out.close();
      (void)CommitTempFile(tmp, path, false, "checkpoint");
      return copied;
    }
    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
  }
  out.close();
  return CommitTempFile(tmp, path, static_cast<bool>(out), "checkpoint");
}

StatusOr<CheckpointInfo> LoadCheckpoint(const std::string& path, Model& model) {
  P3D_RETURN_IF_ERROR(CheckInputFile(path, "checkpoint", int64_t{1} << 50).status());
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IoError(fmt::format("checkpoint '{}' cannot be opened", path));
  char magic[8] = {};
  uint64_t len = 0;
  in.read(magic, sizeof(magic));
  in.read(reinterpret_cast<char*>(&len), sizeof(len));
  if (!in || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0 || len > (1u << 24))
    return Status::InvalidArgument(fmt::format("'{}' is not a p3d checkpoint", path));
  std::string text(len, '\0');
  in.read(text.data(), static_cast<std::streamsize>(len));
  nlohmann::json header = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!in || header.is_discarded() || !header.is_object())
    return Status::InvalidArgument(fmt::format("checkpoint '{}': unreadable header", path));
  const nlohmann::json expected = ModelToJson(model.config().spec);
  if (header.value("model", nlohmann::json()) != expected)
    return Status::InvalidArgument(
        fmt::format("checkpoint '{}' holds model {} but the run is configured for {}", path,
                    header.value("model", nlohmann::json()).dump(), expected.dump()));
  if (header.value("param_elements", int64_t{-1}) != model.params().total)
    return Status::InvalidArgument(
        fmt::format("checkpoint '{}': parameter layout has {} elements, this build lays out {}",
                    path, header.value("param_elements", int64_t{-1}), model.params().total));
  CheckpointInfo info;
  info.step = header.value("step", int64_t{0});
  info.adam_steps = header.value("adam_steps", int64_t{0});
  info.seed = header.value("seed", uint64_t{0});
  std::vector<char> buf;
  for (const BufferSpec& b : kBuffers) {
    buf.resize(model.params().total * b.element_bytes);
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (!in) return Status::InvalidArgument(fmt::format("checkpoint '{}' is truncated", path));
    P3D_RETURN_IF_ERROR(model.CopyIn(b.which, buf.data()));
  }
  P3D_RETURN_IF_ERROR(model.ZeroGrads());
  return info;
}

}  // namespace p3d
