// The plan report page: request, ranked plans, and the chosen plan's memory,
// time and timeline figures, in one self-contained HTML file.
#include <fmt/format.h>

#include "common/units.h"
#include "planner/report.h"
#include "planner/report_svg.h"
#include "simulator/framework_profile.h"

namespace p3d {
namespace {

// Page layout only; every figure carries its own <style> (planner/report_svg.h).
constexpr const char* kStyle = R"(
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
p.note { color: #555; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td.plan, th.plan, td.key, table.request td { text-align: left; }
tr.chosen td { background: #fff4d6; font-weight: 600; }
td.no { color: #b00; }
svg { display: block; margin: 12px 0; }
)";

std::string Row(const std::string& key, const std::string& value) {
  return fmt::format("<tr><td class=\"key\">{}</td><td>{}</td></tr>\n", HtmlEscape(key),
                     HtmlEscape(value));
}

std::string RequestTable(const PlanRequest& r) {
  const ModelSpec& m = r.model;
  const ClusterSpec& c = r.cluster;
  const Precision& p = r.training.precision;
  std::string t = "<table class=\"request\">\n";
  t += Row("model", fmt::format("{} ({})", m.name, ArchName(m.arch)));
  t += Row("parameters", fmt::format("{:.3f} B", static_cast<double>(m.TotalParams()) / 1e9));
  t += Row("shape", fmt::format("L={} H={} NH={} KV={} F={} V={}", m.layers, m.hidden, m.heads,
                                m.kv_heads, m.ffn, m.vocab));
  t += Row("GPUs", fmt::format("{} x {} ({} node(s) x {} per node)", c.num_gpus, c.gpu.description,
                               c.nodes(), c.node.gpus_per_node));
  t += Row("GPU memory", fmt::format("{:.2f} GiB", ToGiB(c.gpu.memory_bytes)));
  if (!c.source.empty()) t += Row("hardware figures", c.source);
  t += Row("batch", fmt::format("{} sequences x {} tokens per step", r.training.global_batch,
                                r.training.seq));
  t += Row("precision",
           fmt::format("{} bytes/param of model states (weights {}, gradients {}, master {}, "
                       "Adam {}); activations {} bytes",
                       r.training.StateBytesPerParam(), r.training.StoredParamBytes(), p.grad_bytes,
                       p.master_bytes,
                       p.optimizer_bytes, p.activation_bytes));
  t += Row("FP8 recipe", r.training.fp8 == Fp8Recipe::kOff
                             ? std::string("off (bf16 GEMMs)")
                             : fmt::format("{}: linear-layer GEMMs in FP8, attention core, norms, embedding "
                                           "and LM head in bf16",
                                           Fp8RecipeName(r.training.fp8)));
  t += Row("framework", FrameworkSummary(r.framework));
  return t + "</table>\n";
}

std::string RankedTable(const std::vector<EvaluatedPlan>& ranked, int chosen) {
  std::string t =
      "<table class=\"ranked\">\n<tr><th>#</th><th class=\"plan\">plan</th><th>fits</th><th>peak "
      "memory "
      "(GiB)</th><th>step (s)</th><th>tokens/s</th><th>TFLOP/s per GPU</th><th>MFU</th></tr>\n";
  for (size_t i = 0; i < ranked.size(); ++i) {
    const EvaluatedPlan& e = ranked[i];
    t += fmt::format(
        "<tr{}><td>{}</td><td "
        "class=\"plan\">{}</td><td{}>{}</td><td>{:.2f}</td><td>{:.3f}</td><td>{:.0f}</td>"
        "<td>{:.1f}</td><td>{:.1f}%</td></tr>\n",
        static_cast<int>(i) == chosen ? " class=\"chosen\"" : "", i + 1,
        HtmlEscape(PlanSummary(e.plan)), e.fits ? "" : " class=\"no\"", e.fits ? "yes" : "no",
        ToGiB(e.memory.peak().total()), e.time.step_s, e.tokens_per_s, e.tflops_per_gpu,
        100.0 * e.mfu);
  }
  return t + "</table>\n";
}

std::string ChosenSection(const PlanRequest& request, const EvaluatedPlan& e, int chosen) {
  std::string s = fmt::format("<section id=\"chosen\">\n<h2>Chosen plan #{}: {}</h2>\n", chosen + 1,
                              HtmlEscape(PlanSummary(e.plan)));
  s += fmt::format(
      "<p>Predicted: step {:.3f} s, {:.0f} tokens/s, MFU {:.1f}%, peak memory {:.2f} GiB of {:.2f} "
      "GiB "
      "(stage {}){}.</p>\n",
      e.time.step_s, e.tokens_per_s, 100.0 * e.mfu, ToGiB(e.memory.peak().total()),
      ToGiB(request.cluster.gpu.memory_bytes), e.memory.peak_stage,
      e.fits ? "" : " &mdash; does not fit");
  s += RenderMemorySvg(e.memory, request.cluster.gpu.memory_bytes);
  s += RenderTimeSvg(e.time);
  if (e.timeline.empty()) {
    s += "<p class=\"note\">No pipeline timeline: the plan was evaluated without one.</p>\n";
  } else {
    TimelineStyle style;
    style.title = "Pipeline timeline of one step";
    s += RenderTimelineSvg(e.timeline, style);
  }
  return s + "</section>\n";
}

}  // namespace

StatusOr<std::string> RenderReportHtml(const PlanRequest& request,
                                       const std::vector<EvaluatedPlan>& ranked, int chosen) {
  if (ranked.empty()) return Status::InvalidArgument("report: no ranked plans to show");
  if (chosen < 0 || chosen >= static_cast<int>(ranked.size())) {
    return Status::InvalidArgument(
        fmt::format("report: chosen plan {} is outside the {} ranked plans (--pick is 1-based)",
                    chosen + 1, ranked.size()));
  }
  const std::string title =
      fmt::format("p3d plan report: {} on {} GPUs", request.model.name, request.cluster.num_gpus);
  std::string html = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  html +=
      "<title>" + HtmlEscape(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n";
  html += "<h1>" + HtmlEscape(title) + "</h1>\n";
  html +=
      "<p class=\"note\">Every figure on this page is a prediction of p3d's simulator, not a "
      "measurement. "
      "docs/metrics.md defines each one.</p>\n";
  html += "<section id=\"request\">\n<h2>Request</h2>\n" + RequestTable(request) + "</section>\n";
  html += "<section id=\"ranked\">\n<h2>Ranked plans (predicted)</h2>\n" +
          RankedTable(ranked, chosen) + "</section>\n";
  html += ChosenSection(request, ranked[chosen], chosen);
  html += "</body>\n</html>\n";
  return html;
}

}  // namespace p3d
