// The model zoo (models/zoo.json, compiled into the library) and the one entry
// point front ends use to turn a --model argument into a ModelSpec.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/model_spec.h"

namespace p3d {

struct ZooEntry {
  ModelSpec model;                      // model.name is the zoo id
  std::string source;                   // where the shape comes from
  std::vector<std::string> shorthands;  // sizes resolving to this entry, e.g. "7B"
};

// The zoo in file order. The embedded JSON is parsed once, on first use; a
// malformed zoo is a build defect and yields an empty zoo (tests catch it) and
// ZooStatus() says why.
const std::vector<ZooEntry>& Zoo();
Status ZooStatus();

// Zoo ids (lowercase) in file order.
const std::vector<std::string>& ZooNames();

// The zoo entry `name` (case-insensitive). NotFound lists close matches.
StatusOr<ModelSpec> ZooModel(const std::string& name);

// Resolves a --model argument, trying in order:
//   1. a path: an argument ending in ".json" or containing '/' is a model file
//      (HF config.json or p3d format, models/model_file.h);
//   2. a zoo id, case-insensitive ("Llama-2-7B");
//   3. a size shorthand ("7B", "500M", "2T"): a zoo entry's shorthand when the
//      parameter count matches one exactly (7B -> llama-2-7b), otherwise a
//      generated Llama-style shape named "llama-style-<arg lowercase>";
//   4. an existing file with any name.
// Errors name the argument; unknown names list close zoo ids and point to
// --list-models.
StatusOr<ModelSpec> ResolveModel(const std::string& arg);

}  // namespace p3d
