// Framework profiles: parsing, validation and the built-in set
// (simulator/frameworks/*.json). docs/frameworks.md documents every field.
#include "simulator/framework_profile.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "common/json_fields.h"
#include "common/named_rule.h"
#include "simulator/framework_data.h"

namespace p3d {

using nlohmann::json;

namespace {

constexpr const char* kSchema = "p3d-framework/1";

// Every key of a profile document; each mechanism key holds {"value", "source"}.
const std::initializer_list<std::string_view> kTopKeys = {
    "schema", "name", "description", "version", "rules", "attention", "attention_blocks", "attention_kernel", "dropout",
    "logits_chunk_tokens", "precision", "tp_overlap", "grad_reduce_overlap", "grad_reduce_overlap_with_pp",
    "grad_bucket_elements", "grad_bucket_elements_per_dp", "contiguous_grad_buffer", "sharded_grad_reduce_bytes",
    "zero_reduce_scatter",
    "param_gather_overlap", "reshard_after_forward", "master_is_param", "param_grads_kept",
    "grad_accumulation_bytes", "selective_recompute",
    "tp_overlap_buffers", "fused_cross_entropy",
    "gelu_in_gemm_epilogue", "bias_grad_in_gemm_epilogue", "fp8", "fp8_param_gather", "placements",
    // Optional (absent: p3d's executor): eager PyTorch and FSDP2's copies.
    "elementwise_bytes", "loss_fp32_tensors", "swiglu_saves_silu", "fsdp_copy_bytes", "grads_set_to_none"};

// One {"value", "source"} field: its value (null allowed only where noted) and
// its source, which must say where the fact comes from.
class Field {
 public:
  static StatusOr<Field> Read(const json& doc, const std::string& origin, const char* key,
                              std::map<std::string, std::string>* sources) {
    JsonFields top(doc, origin);
    if (!doc.contains(key)) return top.Error(key, "is missing (required: {\"value\", \"source\"})");
    const json& f = doc.at(key);
    if (!f.is_object()) return top.Error(key, "must be an object {\"value\", \"source\"}");
    JsonFields fields(f, fmt::format("{}: field '{}'", origin, key));
    P3D_RETURN_IF_ERROR(fields.OnlyKeys({"value", "source"}));
    if (!f.contains("value")) return fields.Error("value", "is missing (required)");
    P3D_ASSIGN_OR_RETURN(std::string source, fields.String("source"));
    if (source.find_first_not_of(" \t") == std::string::npos)
      return fields.Error("source", "is empty: every profile field cites the framework file or flag it comes from");
    (*sources)[key] = source;
    return Field(f, std::move(fields));
  }
  const json& value() const { return object_->at("value"); }
  JsonFields& fields() { return fields_; }

 private:
  Field(const json& f, JsonFields fields) : object_(&f), fields_(std::move(fields)) {}
  const json* object_;
  JsonFields fields_;
};

StatusOr<bool> ReadBool(const json& doc, const std::string& origin, const char* key,
                        std::map<std::string, std::string>* sources) {
  P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, key, sources));
  if (!f.value().is_boolean()) return f.fields().Error("value", fmt::format("must be true or false, got {}", f.value().dump()));
  return f.value().get<bool>();
}

StatusOr<double> ReadNumber(const json& doc, const std::string& origin, const char* key, double min, double max,
                            std::map<std::string, std::string>* sources) {
  P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, key, sources));
  return f.fields().Number("value", min, max);
}

StatusOr<std::string> ReadName(const json& doc, const std::string& origin, const char* key,
                               std::map<std::string, std::string>* sources) {
  P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, key, sources));
  return f.fields().String("value");
}

// "fp8": {"value": {"runs": [recipe, ...], "gaps": [recipe, ...]}, "source"}:
// the FP8 recipes (common/fp8.h) the framework runs, and those it is
// predicted for but does not run yet; every other recipe is a limit.
Status ReadFp8(const json& doc, const std::string& origin, FrameworkProfile* p) {
  P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, "fp8", &p->sources));
  if (!f.value().is_object()) return f.fields().Error("value", "must be {\"runs\": [...], \"gaps\": [...]}");
  JsonFields v(f.value(), origin + ": field 'fp8' value");
  P3D_RETURN_IF_ERROR(v.OnlyKeys({"runs", "gaps"}));
  Framework& fw = p->framework;
  fw.fp8_recipes = fw.fp8_gaps = 0;
  for (const char* key : {"runs", "gaps"}) {
    if (!f.value().contains(key) || !f.value().at(key).is_array())
      return v.Error(key, "must be a list of FP8 recipe names (may be empty)");
    for (const json& name : f.value().at(key)) {
      Fp8Recipe r;
      if (!name.is_string() || !ParseFp8Recipe(name.get<std::string>(), &r) || r == Fp8Recipe::kOff)
        return v.Error(key, fmt::format("{} is not an FP8 recipe (delayed, tensorwise, blockwise, mxfp8)", name.dump()));
      Fp8Recipes& set = std::string_view(key) == "runs" ? fw.fp8_recipes : fw.fp8_gaps;
      set |= Fp8Bit(r);
    }
  }
  if (fw.fp8_recipes & fw.fp8_gaps) return v.Error("gaps", "names a recipe that 'runs' lists too");
  // "fp8_param_gather": {"value": [recipe, ...], "source"}: FP8 primary weights.
  P3D_ASSIGN_OR_RETURN(Field g, Field::Read(doc, origin, "fp8_param_gather", &p->sources));
  if (!g.value().is_array()) return g.fields().Error("value", "must be a list of FP8 recipe names (may be empty)");
  fw.fp8_param_gather = 0;
  for (const json& name : g.value()) {
    Fp8Recipe r;
    if (!name.is_string() || !ParseFp8Recipe(name.get<std::string>(), &r) || r == Fp8Recipe::kOff)
      return g.fields().Error("value", fmt::format("{} is not an FP8 recipe", name.dump()));
    if (!((fw.fp8_recipes | fw.fp8_gaps) & Fp8Bit(r)))
      return g.fields().Error("value", fmt::format("names {}, which 'fp8' does not list", name.dump()));
    fw.fp8_param_gather |= Fp8Bit(r);
  }
  return Status::Ok();
}

// The names of the recipes in `set`.
json Fp8Names(Fp8Recipes set) {
  json names = json::array();
  for (int i = 1; i < kFp8RecipeCount; ++i)
    if (set & Fp8Bit(static_cast<Fp8Recipe>(i))) names.push_back(Fp8RecipeName(static_cast<Fp8Recipe>(i)));
  return names;
}

Status ReadRules(const json& doc, const std::string& origin, FrameworkProfile* p) {
  JsonFields top(doc, origin);
  if (!doc.contains("rules") || !doc.at("rules").is_array())
    return top.Error("rules", "must be a list of {\"id\", \"kind\", \"source\"} (empty when the framework runs every plan)");
  std::vector<std::string_view> ids;
  for (int i = 0; i < kSupportRuleCount; ++i) ids.push_back(SupportRuleId(static_cast<SupportRule>(i)));
  for (size_t i = 0; i < doc.at("rules").size(); ++i) {
    const json& r = doc.at("rules")[i];
    const std::string where = fmt::format("{}: rules[{}]", origin, i);
    if (!r.is_object()) return Status::InvalidArgument(where + ": must be an object {\"id\", \"kind\", \"source\"}");
    JsonFields f(r, where);
    P3D_RETURN_IF_ERROR(f.OnlyKeys({"id", "kind", "source"}));
    P3D_ASSIGN_OR_RETURN(std::string id, f.String("id"));
    P3D_ASSIGN_OR_RETURN(std::string kind, f.String("kind"));
    P3D_ASSIGN_OR_RETURN(std::string source, f.String("source"));
    SupportRule rule;
    if (ParseSupportRule(id, &rule) && rule == SupportRule::kPpBeforeDp)
      return f.Error("id", fmt::format("'{}' is not listed: it follows from 'placements' (absent: the default "
                                       "order alone)", id));
    if (!ParseSupportRule(id, &rule)) {
      const std::string hint = ClosestMatch(id, ids);
      std::string known_list;
      for (std::string_view k : ids) known_list += (known_list.empty() ? "" : ", ") + std::string(k);
      return f.Error("id", fmt::format("'{}' is not a support rule{} (known: {})", id,
                                       hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint), known_list));
    }
    if (kind != "limit" && kind != "gap") return f.Error("kind", fmt::format("must be limit or gap, got '{}'", kind));
    if (source.find_first_not_of(" \t") == std::string::npos) return f.Error("source", "is empty");
    Framework& fw = p->framework;
    if ((fw.limits | fw.gaps) & RuleBit(rule)) return f.Error("id", fmt::format("'{}' is listed twice", id));
    (kind == "limit" ? fw.limits : fw.gaps) |= RuleBit(rule);
    p->rule_sources[id] = source;
  }
  return Status::Ok();
}

// "placements" (optional {"value", "source"}): the rank orders the framework
// builds (Plan::placement), Megatron's default among them; absent: the
// default alone. A framework without tp-pp-dp gets the limit no-tp-pp-dp.
Status ReadPlacements(const json& doc, const std::string& origin, FrameworkProfile* p) {
  Framework& fw = p->framework;
  fw.limits |= RuleBit(SupportRule::kPpBeforeDp);
  if (!doc.contains("placements")) return Status::Ok();
  P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, "placements", &p->sources));
  bool has_default = false;
  if (!f.value().is_array()) return f.fields().Error("value", "must be a list of placements");
  for (const json& v : f.value()) {
    Placement placement;
    if (!v.is_string() || !ParsePlacement(v.get<std::string>(), &placement))
      return f.fields().Error("value", fmt::format("must list tp-cp-ep-dp-pp or tp-pp-dp, got {}", v.dump()));
    has_default |= placement == Placement::kDpBeforePp;
    if (placement == Placement::kPpBeforeDp) fw.limits &= ~RuleBit(SupportRule::kPpBeforeDp);
  }
  if (!has_default)
    return f.fields().Error("value", "must include tp-cp-ep-dp-pp (Megatron's default order)");
  return Status::Ok();
}

Status ReadPrecision(const json& doc, const std::string& origin, FrameworkProfile* p) {
  P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, "precision", &p->sources));
  if (!f.value().is_object()) return f.fields().Error("value", "must be an object of byte counts");
  JsonFields v(f.value(), origin + ": field 'precision.value'");
  P3D_RETURN_IF_ERROR(v.OnlyKeys({"param_bytes", "grad_bytes", "master_bytes", "optimizer_bytes"}));
  P3D_ASSIGN_OR_RETURN(int64_t param, v.IntInRange("param_bytes", 1, 8));
  P3D_ASSIGN_OR_RETURN(int64_t grad, v.IntInRange("grad_bytes", 1, 8));
  P3D_ASSIGN_OR_RETURN(int64_t master, v.IntInRange("master_bytes", 0, 8));
  P3D_ASSIGN_OR_RETURN(int64_t adam, v.IntInRange("optimizer_bytes", 0, 16));
  p->precision.param_bytes = static_cast<int>(param);
  p->precision.grad_bytes = static_cast<int>(grad);
  p->precision.master_bytes = static_cast<int>(master);
  p->precision.optimizer_bytes = static_cast<int>(adam);
  return Status::Ok();
}

// An optional field whose value is an object of the keys `keys`: its value,
// or null when the profile does not set it.
StatusOr<const json*> ReadOptionalObject(const json& doc, const std::string& origin, const char* key,
                                         std::initializer_list<std::string_view> keys, FrameworkProfile* p) {
  if (!doc.contains(key)) return static_cast<const json*>(nullptr);
  P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, key, &p->sources));
  if (!f.value().is_object()) return f.fields().Error("value", "must be an object");
  P3D_RETURN_IF_ERROR(JsonFields(f.value(), fmt::format("{}: field '{}.value'", origin, key)).OnlyKeys(keys));
  return &f.value();
}

// "elementwise_bytes" (optional): {"rotary": [forward, backward], "swiglu":
// [...], "qkv_split": [...], "loss": [...]}, bytes per element of each op
// run as eager PyTorch kernels (ElementwiseBytes); absent: the fused table.
Status ReadElementwise(const json& doc, const std::string& origin, FrameworkProfile* p) {
  P3D_ASSIGN_OR_RETURN(const json* value,
                       ReadOptionalObject(doc, origin, "elementwise_bytes", {"rotary", "swiglu", "qkv_split", "loss"}, p));
  if (!value) return Status::Ok();
  JsonFields v(*value, origin + ": field 'elementwise_bytes.value'");
  ElementwiseBytes e;
  for (auto [key, op] : {std::pair{"rotary", &e.rotary}, std::pair{"swiglu", &e.swiglu},
                         std::pair{"qkv_split", &e.qkv_split}, std::pair{"loss", &e.loss}}) {
    const json* pair = value->contains(key) ? &value->at(key) : nullptr;
    if (!pair || !pair->is_array() || pair->size() != 2 || !(*pair)[0].is_number() || !(*pair)[1].is_number() ||
        (*pair)[0].get<double>() < 0 || (*pair)[1].get<double>() < 0 || (*pair)[0].get<double>() > 1024 ||
        (*pair)[1].get<double>() > 1024)
      return v.Error(key, "must be [forward, backward]: bytes per element, 0-1024 each");
    *op = OpBytes{(*pair)[0].get<double>(), (*pair)[1].get<double>()};
  }
  p->framework.elementwise = e;
  return Status::Ok();
}

// "fsdp_copy_bytes" (optional): FSDP2's copies around its collectives,
// bytes per parameter (FsdpCopyBytes); absent: none.
Status ReadFsdpCopies(const json& doc, const std::string& origin, FrameworkProfile* p) {
  P3D_ASSIGN_OR_RETURN(const json* value,
                       ReadOptionalObject(doc, origin, "fsdp_copy_bytes",
                                          {"gather_shard", "gather_out", "reduce", "local_reduce", "accumulate"}, p));
  if (!value) return Status::Ok();
  JsonFields v(*value, origin + ": field 'fsdp_copy_bytes.value'");
  FsdpCopyBytes c;
  P3D_ASSIGN_OR_RETURN(c.gather_shard, v.Number("gather_shard", 0, 64));
  P3D_ASSIGN_OR_RETURN(c.gather_out, v.Number("gather_out", 0, 64));
  P3D_ASSIGN_OR_RETURN(c.reduce, v.Number("reduce", 0, 64));
  P3D_ASSIGN_OR_RETURN(c.local_reduce, v.Number("local_reduce", 0, 64));
  P3D_ASSIGN_OR_RETURN(c.accumulate, v.Number("accumulate", 0, 64));
  p->framework.fsdp_copies = c;
  return Status::Ok();
}

// The eager-PyTorch fields beside the two objects above: each optional, its
// absence p3d's executor's value (Framework{}).
Status ReadEager(const json& doc, const std::string& origin, FrameworkProfile* p) {
  P3D_RETURN_IF_ERROR(ReadElementwise(doc, origin, p));
  P3D_RETURN_IF_ERROR(ReadFsdpCopies(doc, origin, p));
  Framework& fw = p->framework;
  if (doc.contains("loss_fp32_tensors")) {
    P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, "loss_fp32_tensors", &p->sources));
    P3D_ASSIGN_OR_RETURN(int64_t n, f.fields().IntInRange("value", 1, 8));
    fw.loss_fp32_tensors = static_cast<int>(n);
  }
  if (doc.contains("swiglu_saves_silu")) {
    P3D_ASSIGN_OR_RETURN(fw.swiglu_saves_silu, ReadBool(doc, origin, "swiglu_saves_silu", &p->sources));
  }
  if (doc.contains("grads_set_to_none")) {
    P3D_ASSIGN_OR_RETURN(fw.grads_set_to_none, ReadBool(doc, origin, "grads_set_to_none", &p->sources));
  }
  return Status::Ok();
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '-'; });
}

}  // namespace

StatusOr<FrameworkProfile> ParseFrameworkProfile(const json& doc, const std::string& origin) {
  if (!doc.is_object()) return Status::InvalidArgument(origin + ": a framework profile must be a JSON object");
  JsonFields top(doc, origin);
  P3D_RETURN_IF_ERROR(top.OnlyKeys(kTopKeys));
  P3D_ASSIGN_OR_RETURN(std::string schema, top.String("schema"));
  if (schema != kSchema) return top.Error("schema", fmt::format("is '{}', expected '{}'", schema, kSchema));
  FrameworkProfile p;
  Framework& fw = p.framework;
  fw.limits = fw.gaps = 0;
  P3D_ASSIGN_OR_RETURN(fw.name, top.String("name"));
  if (!ValidName(fw.name)) return top.Error("name", fmt::format("'{}' must be 1-64 characters of a-z, 0-9 and '-'", fw.name));
  P3D_ASSIGN_OR_RETURN(p.description, top.String("description"));
  P3D_ASSIGN_OR_RETURN(p.version, top.String("version"));
  P3D_RETURN_IF_ERROR(ReadRules(doc, origin, &p));
  P3D_RETURN_IF_ERROR(ReadPlacements(doc, origin, &p));

  auto& src = p.sources;
  P3D_ASSIGN_OR_RETURN(std::string attention, ReadName(doc, origin, "attention", &src));
  if (!ParseAttentionImpl(attention, &p.attention))
    return top.Error("attention", fmt::format("value must be fused or unfused, got '{}'", attention));
  P3D_ASSIGN_OR_RETURN(double blocks, ReadNumber(doc, origin, "attention_blocks", 0, 64, &src));
  p.attention_blocks = static_cast<int64_t>(blocks);
  if (blocks != static_cast<double>(p.attention_blocks))
    return top.Error("attention_blocks", "value must be an integer (0 = p3d's blocking rule, 1 = the full S x S square)");
  P3D_ASSIGN_OR_RETURN(std::string kernel, ReadName(doc, origin, "attention_kernel", &src));
  if (!ParseAttentionKernel(kernel, &fw.attention_kernel))
    return top.Error("attention_kernel",
                     fmt::format("value must be cudnn, flash-attn-2 or flash-attn-3, got '{}'", kernel));
  P3D_ASSIGN_OR_RETURN(p.dropout, ReadBool(doc, origin, "dropout", &src));
  P3D_ASSIGN_OR_RETURN(double chunk, ReadNumber(doc, origin, "logits_chunk_tokens", 0, 1 << 24, &src));
  p.logits_chunk_tokens = static_cast<int64_t>(chunk);
  P3D_RETURN_IF_ERROR(ReadPrecision(doc, origin, &p));

  P3D_ASSIGN_OR_RETURN(std::string tp_overlap, ReadName(doc, origin, "tp_overlap", &src));
  if (!ParseTpOverlap(tp_overlap, &fw.tp_overlap))
    return top.Error("tp_overlap", fmt::format("value must be none, async-grad or userbuffers, got '{}'", tp_overlap));
  P3D_ASSIGN_OR_RETURN(fw.grad_reduce_overlap, ReadBool(doc, origin, "grad_reduce_overlap", &src));
  P3D_ASSIGN_OR_RETURN(std::string with_pp, ReadName(doc, origin, "grad_reduce_overlap_with_pp", &src));
  if (!ParsePpGradOverlap(with_pp, &fw.grad_reduce_overlap_with_pp))
    return top.Error("grad_reduce_overlap_with_pp",
                     fmt::format("value must be all, first-stage or none, got '{}'", with_pp));
  P3D_ASSIGN_OR_RETURN(fw.grad_bucket_elements, ReadNumber(doc, origin, "grad_bucket_elements", 1e3, 1e12, &src));
  P3D_ASSIGN_OR_RETURN(fw.grad_bucket_elements_per_dp,
                       ReadNumber(doc, origin, "grad_bucket_elements_per_dp", 0, 1e12, &src));
  P3D_ASSIGN_OR_RETURN(fw.contiguous_grad_buffer, ReadBool(doc, origin, "contiguous_grad_buffer", &src));
  {
    P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, "sharded_grad_reduce_bytes", &src));
    P3D_ASSIGN_OR_RETURN(int64_t bytes, f.fields().IntInRange("value", 0, 8));
    fw.sharded_grad_reduce_bytes = static_cast<int>(bytes);
  }
  P3D_ASSIGN_OR_RETURN(fw.zero_reduce_scatter, ReadBool(doc, origin, "zero_reduce_scatter", &src));
  P3D_ASSIGN_OR_RETURN(fw.param_gather_overlap, ReadBool(doc, origin, "param_gather_overlap", &src));
  P3D_ASSIGN_OR_RETURN(std::string reshard, ReadName(doc, origin, "reshard_after_forward", &src));
  if (!ParseReshard(reshard, &fw.reshard_after_forward))
    return top.Error("reshard_after_forward", fmt::format("value must be always, never or not-with-pp, got '{}'", reshard));
  P3D_ASSIGN_OR_RETURN(fw.master_is_param, ReadBool(doc, origin, "master_is_param", &src));
  P3D_ASSIGN_OR_RETURN(fw.param_grads_kept, ReadBool(doc, origin, "param_grads_kept", &src));
  {
    P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, "grad_accumulation_bytes", &src));
    P3D_ASSIGN_OR_RETURN(int64_t bytes, f.fields().IntInRange("value", 0, 64));
    fw.grad_accumulation_bytes = static_cast<int>(bytes);
  }
  P3D_ASSIGN_OR_RETURN(fw.fused_cross_entropy, ReadBool(doc, origin, "fused_cross_entropy", &src));
  P3D_ASSIGN_OR_RETURN(fw.gelu_in_gemm_epilogue, ReadBool(doc, origin, "gelu_in_gemm_epilogue", &src));
  P3D_ASSIGN_OR_RETURN(fw.bias_grad_in_gemm_epilogue,
                       ReadBool(doc, origin, "bias_grad_in_gemm_epilogue", &src));
  P3D_ASSIGN_OR_RETURN(std::string selective, ReadName(doc, origin, "selective_recompute", &src));
  if (!ParseSelectiveRecompute(selective, &fw.selective))
    return top.Error("selective_recompute",
                     fmt::format("value must be scores, core-attention or op-level, got '{}'", selective));
  {
    P3D_ASSIGN_OR_RETURN(Field f, Field::Read(doc, origin, "tp_overlap_buffers", &src));
    P3D_ASSIGN_OR_RETURN(int64_t buffers, f.fields().IntInRange("value", 0, 64));
    fw.tp_overlap_buffers = static_cast<int>(buffers);
  }
  P3D_RETURN_IF_ERROR(ReadFp8(doc, origin, &p));
  P3D_RETURN_IF_ERROR(ReadEager(doc, origin, &p));
  // Settings that contradict each other.
  if (fw.grad_reduce_overlap_with_pp != PpGradOverlap::kNone && !fw.grad_reduce_overlap)
    return top.Error("grad_reduce_overlap_with_pp", "must be none while grad_reduce_overlap is false");
  if (fw.param_gather_overlap && !fw.zero_reduce_scatter)
    return top.Error("param_gather_overlap",
                     "is true while zero_reduce_scatter is false: the parameter gather overlaps only a sharded "
                     "optimizer's reduce-scatter scheme (Megatron's --overlap-param-gather needs the distributed "
                     "optimizer)");
  if ((fw.tp_overlap == TpOverlap::kUserBuffers) != (fw.tp_overlap_buffers > 0))
    return top.Error("tp_overlap_buffers", "must be > 0 exactly when tp_overlap is userbuffers");
  if (fw.master_is_param && p.precision.master_bytes == 0)
    return top.Error("master_is_param", "is true but precision.master_bytes is 0 (no high-precision copy)");
  if (fw.fused_cross_entropy && (doc.contains("loss_fp32_tensors") || fw.elementwise))
    return top.Error(doc.contains("loss_fp32_tensors") ? "loss_fp32_tensors" : "elementwise_bytes",
                     "prices the unfused cross-entropy, but fused_cross_entropy is true");
  return p;
}

json FrameworkProfileToJson(const FrameworkProfile& p) {
  const Framework& fw = p.framework;
  auto field = [&](const char* key, json value) {
    auto it = p.sources.find(key);
    return json{{"value", std::move(value)}, {"source", it == p.sources.end() ? "" : it->second}};
  };
  json rules = json::array();
  for (int i = 0; i < kSupportRuleCount; ++i) {
    const SupportRule r = static_cast<SupportRule>(i);
    if (r == SupportRule::kPpBeforeDp || !((fw.limits | fw.gaps) & RuleBit(r))) continue;
    auto it = p.rule_sources.find(SupportRuleId(r));
    rules.push_back(json{{"id", SupportRuleId(r)},
                         {"kind", fw.limits & RuleBit(r) ? "limit" : "gap"},
                         {"source", it == p.rule_sources.end() ? "" : it->second}});
  }
  const Precision& pr = p.precision;
  json doc = json{{"schema", kSchema},
              {"name", fw.name},
              {"description", p.description},
              {"version", p.version},
              {"rules", rules},
              {"attention", field("attention", AttentionImplName(p.attention))},
              {"attention_blocks", field("attention_blocks", p.attention_blocks)},
              {"attention_kernel", field("attention_kernel", AttentionKernelName(fw.attention_kernel))},
              {"dropout", field("dropout", p.dropout)},
              {"logits_chunk_tokens", field("logits_chunk_tokens", p.logits_chunk_tokens)},
              {"precision", field("precision", json{{"param_bytes", pr.param_bytes},
                                                    {"grad_bytes", pr.grad_bytes},
                                                    {"master_bytes", pr.master_bytes},
                                                    {"optimizer_bytes", pr.optimizer_bytes}})},
              {"tp_overlap", field("tp_overlap", TpOverlapName(fw.tp_overlap))},
              {"grad_reduce_overlap", field("grad_reduce_overlap", fw.grad_reduce_overlap)},
              {"grad_reduce_overlap_with_pp",
               field("grad_reduce_overlap_with_pp", PpGradOverlapName(fw.grad_reduce_overlap_with_pp))},
              {"grad_bucket_elements", field("grad_bucket_elements", fw.grad_bucket_elements)},
              {"grad_bucket_elements_per_dp", field("grad_bucket_elements_per_dp", fw.grad_bucket_elements_per_dp)},
              {"contiguous_grad_buffer", field("contiguous_grad_buffer", fw.contiguous_grad_buffer)},
              {"sharded_grad_reduce_bytes", field("sharded_grad_reduce_bytes", fw.sharded_grad_reduce_bytes)},
              {"zero_reduce_scatter", field("zero_reduce_scatter", fw.zero_reduce_scatter)},
              {"param_gather_overlap", field("param_gather_overlap", fw.param_gather_overlap)},
              {"reshard_after_forward", field("reshard_after_forward", ReshardName(fw.reshard_after_forward))},
              {"master_is_param", field("master_is_param", fw.master_is_param)},
              {"param_grads_kept", field("param_grads_kept", fw.param_grads_kept)},
              {"grad_accumulation_bytes", field("grad_accumulation_bytes", fw.grad_accumulation_bytes)},
              {"selective_recompute", field("selective_recompute", SelectiveRecomputeName(fw.selective))},
              {"tp_overlap_buffers", field("tp_overlap_buffers", fw.tp_overlap_buffers)},
              {"fused_cross_entropy", field("fused_cross_entropy", fw.fused_cross_entropy)},
              {"gelu_in_gemm_epilogue", field("gelu_in_gemm_epilogue", fw.gelu_in_gemm_epilogue)},
              {"bias_grad_in_gemm_epilogue",
               field("bias_grad_in_gemm_epilogue", fw.bias_grad_in_gemm_epilogue)},
              {"fp8", field("fp8", json{{"runs", Fp8Names(fw.fp8_recipes)}, {"gaps", Fp8Names(fw.fp8_gaps)}})},
              {"fp8_param_gather", field("fp8_param_gather", Fp8Names(fw.fp8_param_gather))}};
  if (!(fw.limits & RuleBit(SupportRule::kPpBeforeDp)))
    doc["placements"] = field("placements", json::array({PlacementName(Placement::kDpBeforePp),
                                                         PlacementName(Placement::kPpBeforeDp)}));
  // The optional eager-PyTorch fields, where the profile sets them.
  if (const auto& e = fw.elementwise) {
    auto pair = [](const OpBytes& b) { return json::array({b.forward, b.backward}); };
    doc["elementwise_bytes"] = field("elementwise_bytes", json{{"rotary", pair(e->rotary)},
                                                               {"swiglu", pair(e->swiglu)},
                                                               {"qkv_split", pair(e->qkv_split)},
                                                               {"loss", pair(e->loss)}});
  }
  if (const auto& c = fw.fsdp_copies)
    doc["fsdp_copy_bytes"] = field("fsdp_copy_bytes", json{{"gather_shard", c->gather_shard},
                                                           {"gather_out", c->gather_out},
                                                           {"reduce", c->reduce},
                                                           {"local_reduce", c->local_reduce},
                                                           {"accumulate", c->accumulate}});
  if (p.sources.count("loss_fp32_tensors")) doc["loss_fp32_tensors"] = field("loss_fp32_tensors", fw.loss_fp32_tensors);
  if (p.sources.count("swiglu_saves_silu")) doc["swiglu_saves_silu"] = field("swiglu_saves_silu", fw.swiglu_saves_silu);
  if (p.sources.count("grads_set_to_none")) doc["grads_set_to_none"] = field("grads_set_to_none", fw.grads_set_to_none);
  return doc;
}

namespace {

struct Builtins {
  std::vector<std::string> names;
  std::vector<FrameworkProfile> profiles;
  Status status;
};

const Builtins& LoadBuiltins() {
  static const Builtins builtins = [] {
    Builtins b;
    for (const BuiltinFrameworkText& t : BuiltinFrameworkTexts()) {
      const std::string origin = fmt::format("framework profile simulator/frameworks/{}.json", t.name);
      StatusOr<json> doc = ParseJson(t.json, origin);
      StatusOr<FrameworkProfile> p = doc.ok() ? ParseFrameworkProfile(*doc, origin) : StatusOr<FrameworkProfile>(doc.status());
      if (p.ok() && p->framework.name != t.name)
        p = Status::InvalidArgument(fmt::format("{}: field 'name' is '{}', not the file's name", origin, p->framework.name));
      if (!p.ok()) {
        if (b.status.ok()) b.status = p.status();
        continue;
      }
      b.names.emplace_back(t.name);
      b.profiles.push_back(std::move(p).value());
    }
    return b;
  }();
  return builtins;
}

}  // namespace

const std::vector<std::string>& BuiltinFrameworkNames() { return LoadBuiltins().names; }

Status BuiltinFrameworksStatus() { return LoadBuiltins().status; }

StatusOr<FrameworkProfile> LoadFrameworkProfile(const std::string& name_or_path) {
  if (name_or_path.find(".json") != std::string::npos || name_or_path.find('/') != std::string::npos) {
    P3D_ASSIGN_OR_RETURN(json doc, ReadJsonFile(name_or_path, "framework profile"));
    return ParseFrameworkProfile(doc, fmt::format("framework profile '{}'", name_or_path));
  }
  const Builtins& b = LoadBuiltins();
  P3D_RETURN_IF_ERROR(b.status);
  for (size_t i = 0; i < b.names.size(); ++i)
    if (b.names[i] == name_or_path) return b.profiles[i];
  std::string known;
  for (const std::string& n : b.names) known += (known.empty() ? "" : ", ") + n;
  return Status::NotFound(
      fmt::format("--framework: no profile '{}' (known: {}; or a profile file, docs/frameworks.md)", name_or_path, known));
}

const FrameworkProfile& P3dFrameworkProfile() {
  static const FrameworkProfile p3d = [] {
    StatusOr<FrameworkProfile> p = LoadFrameworkProfile("p3d");
    // A broken built-in profile is a build defect that BuiltinFrameworksStatus
    // reports (and tests fail on); p3d's defaults (Framework{}) stand in.
    return p.ok() ? *p : FrameworkProfile{};
  }();
  return p3d;
}

void ApplyFrameworkProfile(const FrameworkProfile& p, TrainingSpec* t) {
  t->framework = p.framework;
  t->attention_blocks = p.attention_blocks;
  t->dropout = p.dropout;
  t->logits_chunk_tokens = p.logits_chunk_tokens;
  const int activation = t->precision.activation_bytes;
  t->precision = p.precision;
  t->precision.activation_bytes = activation;
}

std::string FrameworkSummary(const FrameworkProfile& p) {
  const Framework& f = p.framework;
  const std::string bucket =
      f.grad_bucket_elements_per_dp > 0
          ? fmt::format("max({:.0f}M, {:.0f}M x DP)", f.grad_bucket_elements / 1e6, f.grad_bucket_elements_per_dp / 1e6)
          : fmt::format("{:.0f}M", f.grad_bucket_elements / 1e6);
  // The rules a profile lists ("no-tp-pp-dp" follows from its placements,
  // named only where the framework builds tp-pp-dp too).
  std::string rules;
  for (int i = 0; i < kSupportRuleCount; ++i) {
    const SupportRule r = static_cast<SupportRule>(i);
    if (r != SupportRule::kPpBeforeDp && ((f.limits | f.gaps) & RuleBit(r)))
      rules += (rules.empty() ? "" : ", ") + std::string(SupportRuleId(r));
  }
  if (!(f.limits & RuleBit(SupportRule::kPpBeforeDp)))
    rules += fmt::format("{}placements {}, {}", rules.empty() ? "" : "; ", PlacementName(Placement::kDpBeforePp),
                         PlacementName(Placement::kPpBeforeDp));
  std::string dp = f.grad_reduce_overlap ? fmt::format("overlapped in {} buckets", bucket) : "after the backward";
  if (f.grad_reduce_overlap && f.grad_reduce_overlap_with_pp != PpGradOverlap::kAll)
    dp += fmt::format(" ({} with PP)", f.grad_reduce_overlap_with_pp == PpGradOverlap::kNone ? "none" : "stage 0 only");
  return fmt::format(
      "{}: {}\n          attention {}{}; TP overlap {}; DP reduce {}{}{}; ZeRO-3 reshard {}; selective = {}; "
      "{} loss{}{}{}; rules: {}",
      f.name, p.description, AttentionImplName(p.attention),
      p.attention == AttentionImpl::kFused ? fmt::format(" ({})", AttentionKernelName(f.attention_kernel)) : "",
      TpOverlapName(f.tp_overlap), dp,
      f.zero_reduce_scatter ? ", ZeRO-1 reduce-scatter" : "", f.param_gather_overlap ? ", param gather overlapped" : "",
      ReshardName(f.reshard_after_forward), SelectiveRecomputeName(f.selective),
      f.fused_cross_entropy ? "fused" : "fp32",
      p.logits_chunk_tokens > 0 ? fmt::format(" in {}-token chunks", p.logits_chunk_tokens) : "",
      f.elementwise ? "; eager elementwise kernels" : "", f.fsdp_copies ? "; FSDP2 casts and copies" : "",
      rules.empty() ? "none" : rules);
}

Status CheckFrameworkRule(const FrameworkProfile& profile, RuleKind kind, const Plan& plan) {
  std::string detail;
  const char* rule = FrameworkRuleBroken(profile.framework, kind, plan, &detail);
  if (!rule) return Status::Ok();
  auto source = profile.rule_sources.find(rule);
  return Status::Infeasible(source == profile.rule_sources.end() ? detail
                                                                : fmt::format("{} ({})", detail, source->second));
}

Status CheckExecutorSupports(const Plan& p) {
  std::string detail;
  const char* sane = nullptr;
  if (p.dp < 1) sane = RuleFailed(&detail, "dp>=1", [&] { return fmt::format("--dp {}", p.dp); });
  else if (p.zero < 0 || p.zero > 3)
    sane = RuleFailed(&detail, "zero in 0..3", [&] { return fmt::format("--zero {}", p.zero); });
  else if (p.tp < 1 || p.cp < 1 || p.pp < 1 || p.vpp < 1)
    sane = RuleFailed(&detail, "tp,cp,pp,vpp>=1", [&] {
      return fmt::format("--tp {} --cp {} --pp {} --vpp {}", p.tp, p.cp, p.pp, p.vpp);
    });
  else if (p.vpp > 1 && p.pp < 2)
    sane = RuleFailed(&detail, "vpp needs pp>1", [&] { return fmt::format("--vpp {} with --pp {}", p.vpp, p.pp); });
  else if (p.sequence_parallel && p.tp < 2)
    sane = RuleFailed(&detail, "sp=>tp>1",
                      [&] { return fmt::format("--sp splits the residual stream over TP, but --tp {}", p.tp); });
  if (sane) return Status::InvalidArgument(fmt::format("rule {}: {}", sane, detail));
  for (RuleKind kind : {RuleKind::kLimit, RuleKind::kGap}) {
    const Status s = CheckFrameworkRule(P3dFrameworkProfile(), kind, p);
    if (!s.ok()) return Status::InvalidArgument(s.message());
  }
  return Status::Ok();
}

Status CheckPlannedForExecutor(const FrameworkProfile& planned, Fp8Recipe fp8) {
  const std::string& p3d = P3dFrameworkProfile().framework.name;
  std::string detail;
  if (Fp8RuleBroken(P3dFrameworkProfile().framework, RuleKind::kGap, fp8, &detail))
    return Status::InvalidArgument(detail + "; p3d-run trains in bf16 (plan with --fp8 off to run it)");
  if (planned.framework.name == p3d) return Status::Ok();
  return Status::InvalidArgument(fmt::format(
      "rule framework={}: the plan was predicted for '{}'; p3d-run runs p3d's executor (plan it with "
      "p3d-plan --framework {}, the default)",
      p3d, planned.framework.name, p3d));
}

}  // namespace p3d
