#include "bench/fuzz/fuzz_targets.h"

#include <cmath>
#include <filesystem>
#include <sstream>
#include <vector>

#include "common/input_file.h"
#include "common/json_fields.h"
#include "models/hf_config.h"
#include "models/model_json.h"
#include "models/zoo.h"
#include "planner/compare.h"
#include "planner/plan_cli.h"
#include "planner/plan_flags.h"
#include "planner/plan_json.h"
#include "planner/search.h"
#include "simulator/framework_profile.h"
#include "simulator/hardware.h"
#include "simulator/profile.h"

namespace p3d::fuzz {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> FilesUnder(const std::string& dir, const std::string& ext) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file() || it->path().extension() != ext) continue;
    StatusOr<std::string> text = ReadInputFile(it->path().string(), "seed");
    if (text.ok()) out.push_back(*text);
  }
  return out;
}

bool Finite(double x) { return std::isfinite(x); }

// The model parser, then the planner on the accepted model (its counts feed
// every formula: overflow here printed negative parameter counts).
Target ModelTarget(const std::string& root) {
  Target t{"model", FilesUnder(root + "/tests/models/data", ".json"), nullptr};
  for (const std::string& name : ZooNames()) t.seeds.push_back(ModelToJson(*ZooModel(name)).dump(1));
  t.run = [](const std::string& in, std::string* why) {
    StatusOr<json> doc = ParseJson(in, "fuzz");
    if (!doc.ok()) return true;
    StatusOr<ModelSpec> m = doc->is_object() && doc->contains("model_type") && !doc->contains("p3d_model")
                                ? ParseHfConfig(*doc, "fuzz")
                                : ModelFromJson(*doc, "fuzz", "fuzz");
    if (!m.ok()) return true;
    if (m->TotalParams() <= 0 || m->ActiveParams() <= 0 || m->ActiveParams() > m->TotalParams()) {
      *why = "accepted model with parameter count " + std::to_string(m->TotalParams());
      return false;
    }
    PlanRequest r;
    r.model = *m;
    r.cluster = *CatalogCluster("h100-sxm");
    r.cluster.num_gpus = 8;
    SearchOptions o;
    o.top_k = 1;
    StatusOr<SearchResult> s = SearchPlans(r, o);
    if (s.ok() && !s->plans.empty() && s->plans[0].fits && !(s->plans[0].time.step_s > 0 && Finite(s->plans[0].time.step_s))) {
      *why = "fitting plan with step time " + std::to_string(s->plans[0].time.step_s);
      return false;
    }
    return true;
  };
  return t;
}

bool SaneCluster(const ClusterSpec& c, std::string* why) {
  std::vector<double> v = {c.gpu.memory_bytes, c.gpu.hbm_bytes_per_s, c.gpu.peak_flops, c.node.pcie_bytes_per_s,
                           c.node.host_memory_bytes};
  for (const NetworkTier& t : c.network) v.push_back(t.link.bytes_per_s);
  for (double x : v)
    if (!(x > 0 && Finite(x))) {
      *why = "accepted hardware with a non-positive or non-finite figure";
      return false;
    }
  if (!ValidateNetwork(c.network, "").ok()) {
    *why = "accepted hardware whose network tiers break a rule";
    return false;
  }
  if (c.gpu.gemm_efficiency.empty()) {
    *why = "accepted hardware without a GEMM efficiency curve";
    return false;
  }
  return true;
}

Target HardwareTarget(const std::string& root) {
  Target t{"hardware", FilesUnder(root + "/bench/results", ".json"), nullptr};
  for (const std::string& gpu : CatalogGpuNames()) t.seeds.push_back(ClusterToJson(*CatalogCluster(gpu)));
  t.run = [](const std::string& in, std::string* why) {
    StatusOr<ClusterSpec> c = ParseClusterJson(in, "fuzz");
    return !c.ok() || SaneCluster(*c, why);
  };
  return t;
}

Target ProfileTarget(const std::string& root) {
  Target t{"profile", FilesUnder(root + "/bench/results", ".json"), nullptr};
  t.run = [](const std::string& in, std::string* why) {
    StatusOr<json> doc = ParseJson(in, "fuzz");
    if (!doc.ok() || !doc->is_object() || !doc->contains("calibration")) return true;
    const json& cal = (*doc)["calibration"];
    std::string gpu = "h100-sxm";
    if (cal.is_object() && cal.contains("catalog_gpu") && cal["catalog_gpu"].is_string() &&
        CatalogCluster(cal["catalog_gpu"].get<std::string>()).ok())
      gpu = cal["catalog_gpu"].get<std::string>();
    StatusOr<ClusterSpec> c = ApplyCalibration(*CatalogCluster(gpu), cal, "fuzz");
    if (!c.ok()) return true;
    if (!SaneCluster(*c, why)) return false;
    // The applied profile must plan: a step time that is a number.
    PlanRequest r;
    r.model = *ZooModel("gpt-1.3b");
    r.cluster = *c;
    r.cluster.num_gpus = 2;
    SearchOptions o;
    o.top_k = 1;
    StatusOr<SearchResult> s = SearchPlans(r, o);
    if (s.ok() && !s->plans.empty() && !(s->plans[0].time.step_s > 0 && Finite(s->plans[0].time.step_s))) {
      *why = "applied profile gave step time " + std::to_string(s->plans[0].time.step_s);
      return false;
    }
    return true;
  };
  return t;
}

// Framework profiles (simulator/frameworks/*.json): an accepted profile
// writes back to a document that parses to the same profile, and its
// bucket is positive (the time model divides by it).
Target FrameworkTarget(const std::string& root) {
  Target t{"framework", FilesUnder(root + "/simulator/frameworks", ".json"), nullptr};
  t.run = [](const std::string& in, std::string* why) {
    StatusOr<json> doc = ParseJson(in, "fuzz");
    if (!doc.ok()) return true;
    StatusOr<FrameworkProfile> p = ParseFrameworkProfile(*doc, "fuzz");
    if (!p.ok()) return true;
    if (!(p->framework.GradBucketElements(1) > 0)) {
      *why = "accepted a profile with a non-positive bucket";
      return false;
    }
    StatusOr<FrameworkProfile> again = ParseFrameworkProfile(FrameworkProfileToJson(*p), "fuzz round trip");
    if (!again.ok() || FrameworkProfileToJson(*again) != FrameworkProfileToJson(*p)) {
      *why = "an accepted profile does not survive its own JSON";
      return false;
    }
    return true;
  };
  return t;
}

// Saved plans of a few requests, generated through the CLI's own writer.
std::vector<std::string> SavedPlanSeeds() {
  std::vector<std::string> out;
  const std::pair<const char*, int> requests[] = {{"gpt-1.3b", 1}, {"llama-2-7b", 8}, {"llama-2-70b", 64}};
  for (const auto& [model, gpus] : requests) {
    PlanRequest r;
    r.model = *ZooModel(model);
    r.cluster = *CatalogCluster("h100-sxm");
    r.cluster.num_gpus = gpus;
    SearchOptions o;
    o.top_k = 2;
    StatusOr<SearchResult> s = SearchPlans(r, o);
    if (!s.ok()) continue;
    for (const EvaluatedPlan& e : s->plans) out.push_back(SavedPlanToJson(r, e).dump(1));
  }
  return out;
}

Target SavedPlanTarget() {
  Target t{"saved_plan", SavedPlanSeeds(), nullptr};
  t.run = [](const std::string& in, std::string* why) {
    StatusOr<json> doc = ParseJson(in, "fuzz");
    if (!doc.ok()) return true;
    StatusOr<SavedPlan> p = ParseSavedPlan(*doc, "fuzz");
    if (p.ok() && p->plan.global_batch() <= 0) {
      *why = "accepted a saved plan with a non-positive batch";
      return false;
    }
    return true;
  };
  return t;
}

// p3d-run's --json for the first gpt-1.3b saved plan (schema of executor/run_report.cc).
const char* kRunSeed = R"({
  "device": {"name": "NVIDIA H100 80GB HBM3", "catalog_gpu": "h100-sxm", "peak_flops": 9.89e14},
  "run": {"model": {"name": "gpt-1.3b"}, "micro_batch": 1, "grad_accum": 512, "global_batch": 512,
          "seq": 2048, "steps": 10, "warmup": 2, "recompute": "none", "dp": 1, "tp": 1, "pp": 1, "vpp": 1, "zero": 0},
  "steps": [{"step": 1, "loss": 5.5, "seconds": 0.2}],
  "summary": {"step_time_s": {"median": 0.215}, "tokens_per_s": 38100, "mfu": 0.344},
  "memory": {"arena_bytes": 52000000000,
             "terms_bytes": {"weights": 2630000000, "gradients": 5260000000, "optimizer": 15780000000,
                             "activations": 27000000000, "buffers": 1330000000},
             "device_used_peak_bytes": 53000000000, "device_total_bytes": 84929216512, "regions": []},
  "profile": {"step_seconds": 0.216, "phase_seconds": {"gemm": 0.15, "attention": 0.03, "other": 0.025,
                                                       "optimizer": 0.008, "idle": 0.003}},
  "timeline": [{"rank": 0, "kind": "forward", "start_s": 0, "end_s": 0.1, "microbatch": 0, "chunk": 0}]})";

Target RunTarget() {
  std::vector<std::string> plans = SavedPlanSeeds();
  Target t{"run", {kRunSeed}, nullptr};
  json plan = plans.empty() ? json() : json::parse(plans[0]);
  t.run = [plan](const std::string& in, std::string* why) {
    StatusOr<json> run = ParseJson(in, "fuzz");
    if (!run.ok() || !run->is_object()) return true;
    StatusOr<Comparison> c = CompareRun(plan, "plan.json", *run, "fuzz");
    if (c.ok()) {
      (void)FormatComparison(*c);
      (void)ComparisonToJson(*c).dump();
      const ComparedFigure* step = c->Find("time.step_s");
      if (!step || !step->measured || !(*step->measured > 0)) {
        *why = "compared a run without a positive step time";
        return false;
      }
    }
    (void)RenderComparisonSvg(plan, "plan.json", *run, "fuzz");
    return true;
  };
  return t;
}

// p3d-plan's command line, whitespace-split; file-writing flags are dropped
// so the fuzzer never writes where a mutated path points.
Target CliTarget() {
  Target t{"cli",
           {"--model 70B --gpus 64 --mem 80",
            "--model 13B --gpus 8 --gpu rtx3090 --top 5",
            "--model 7B --gpus 8 --mem 80 --export megatron --zero 1 --vpp 1",
            "--model 7B --gpus 8 --mem 80 --export deepspeed --zero 1 --vpp 1 --pp 2",
            "--model 70B --gpus 16 --gpu a100-80gb --sp --recompute full --explain",
            "--model gpt-1.3b --gpus 1 --gpu h100-sxm --dp 1 --tp 1 --pp 1 --zero 0 --micro-batch 4 --global-batch 4 "
            "--seq 2048 --recompute none --json",
            "--model 175B --gpus 1024 --mem 80 --global-batch 1536 --grad-dtype bf16 --claim-step 10",
            "--model mixtral-8x7b --gpus 32 --mem 80 --offload optimizer --zero 2 --gpus-per-node 4",
            "--model 1T --gpus 3072 --mem 80 --seq 4096 --pick 3 --top 4 --explain",
            "--model 70B --gpus 64 --mem 80 --framework deepspeed --pp 8 --zero 1",
            "--model 8B --gpus 16 --mem 80 --framework torchtitan --recompute selective --json"},
           nullptr};
  t.run = [](const std::string& in, std::string* why) {
    std::vector<std::string> words;
    std::istringstream split(in);
    for (std::string w; split >> w;) {
      if (w == "--save-plan" || w == "--report" || w.starts_with("--save-plan=") || w.starts_with("--report=")) {
        if (!(split >> w)) break;  // and its value
        continue;
      }
      words.push_back(w);
    }
    std::vector<const char*> argv = {"p3d-plan"};
    for (const std::string& w : words) argv.push_back(w.c_str());
    StatusOr<PlanCliOptions> o = ParsePlanFlags(static_cast<int>(argv.size()), argv.data());
    if (!o.ok()) return true;
    if (!o->save_plan.empty() || !o->report.empty()) return true;  // never write files
    std::ostringstream out, err;
    Status s = RunPlanCli(*o, out, err);
    if (!s.ok() && s.message().empty()) {
      *why = "error without a message";
      return false;
    }
    if (s.ok() && out.str().empty() && !o->list_gpus && !o->list_models) {
      *why = "success without output";
      return false;
    }
    return true;
  };
  return t;
}

}  // namespace

std::vector<Target> AllTargets(const std::string& root) {
  return {ModelTarget(root), HardwareTarget(root), ProfileTarget(root), FrameworkTarget(root), SavedPlanTarget(),
          RunTarget(),      CliTarget()};
}

}  // namespace p3d::fuzz
