// Framework profiles as data: one JSON file per implementation
// (simulator/frameworks/<name>.json, compiled in like the hardware catalog),
// every field a {"value", "source"} pair citing the framework source file or
// flag it comes from. Schema and the meaning of each field:
// docs/frameworks.md. A profile sets the mechanisms the simulator reads
// (common/framework.h), the framework's support rules, and its default
// training recipe (attention core, causal blocking, dropout, loss chunking,
// precision); command-line flags override the recipe.
//
// Loading refuses unknown keys (with a "did you mean" hint), a field without
// a source, values out of range and contradictory settings, naming the file
// and the field.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/plan.h"
#include "common/status.h"
#include "simulator/executor_support.h"

namespace p3d {

struct FrameworkProfile {
  Framework framework;        // mechanisms and rules (framework.name = the profile's name)
  std::string description;    // one line: what implementation this is
  std::string version;        // the framework version the facts were read from
  // The recipe the framework runs by default.
  AttentionImpl attention = AttentionImpl::kFused;
  int64_t attention_blocks = 0;     // TrainingSpec::attention_blocks
  bool dropout = false;             // TrainingSpec::dropout
  int64_t logits_chunk_tokens = 0;  // TrainingSpec::logits_chunk_tokens
  Precision precision;              // activation_bytes stays 2 (bf16)
  // Field name -> its source citation; rule id -> why the framework has it.
  std::map<std::string, std::string> sources;
  std::map<std::string, std::string> rule_sources;
};

// Names of the built-in profiles, sorted ("deepspeed", ..., "p3d", ...).
const std::vector<std::string>& BuiltinFrameworkNames();
// A built-in profile by name, or a profile file when `name_or_path` ends in
// .json or contains '/'. Unknown names are NotFound listing the known ones.
StatusOr<FrameworkProfile> LoadFrameworkProfile(const std::string& name_or_path);
// p3d's executor: the built-in "p3d" profile (its rules are what p3d-run runs).
const FrameworkProfile& P3dFrameworkProfile();
// Parses one profile document; `origin` names it in errors.
StatusOr<FrameworkProfile> ParseFrameworkProfile(const nlohmann::json& doc, const std::string& origin);
// The document ParseFrameworkProfile reads (saved plans carry it whole).
nlohmann::json FrameworkProfileToJson(const FrameworkProfile& profile);

// Sets `training`'s framework and recipe fields from `profile` (precision
// and dropout included: flags that override them apply afterwards).
void ApplyFrameworkProfile(const FrameworkProfile& profile, TrainingSpec* training);

// Two-line summary for the table header and the report: the name and
// description, then the mechanisms and rules, e.g. "megatron-core: ...\n
// attention fused; TP overlap userbuffers; DP reduce overlapped in
// max(40M, 1M x DP) buckets (stage 0 only with PP), ...".
std::string FrameworkSummary(const FrameworkProfile& profile);

// OK when the framework runs `plan` as far as its rules of `kind` go; else
// Infeasible "<name>: rule <id>: <breach>; ... (<the rule's source>)".
Status CheckFrameworkRule(const FrameworkProfile& profile, RuleKind kind, const Plan& plan);

// p3d-run is p3d's executor: OK when a saved plan's prediction used the p3d
// profile, else InvalidArgument "rule framework=p3d" (a plan predicted with
// another framework's mechanisms would be measured against the wrong figures),
// and InvalidArgument "rule fp8-recipe" for an FP8 recipe (p3d-run's GEMMs
// are bf16: it would measure a bf16 run against an FP8 prediction).
Status CheckPlannedForExecutor(const FrameworkProfile& planned, Fp8Recipe fp8 = Fp8Recipe::kOff);

// OK when every built-in profile parses (tests, --list-frameworks).
Status BuiltinFrameworksStatus();

}  // namespace p3d
