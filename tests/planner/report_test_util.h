// Helpers for the report tests: a tiny tag-balance checker, substring
// counting and a synthetic 1F1B timeline.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "simulator/estimate.h"

namespace p3d::testing {

inline int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos;
       at = text.find(needle, at + needle.size()))
    ++n;
  return n;
}

// True when every opening tag is closed in order (void elements and
// self-closing tags excepted); `error` says where it fails. Not a full HTML
// parser: enough for p3d's generated markup, which never puts '<' in text.
inline bool TagsBalanced(const std::string& html, std::string* error) {
  static const std::vector<std::string> kVoid = {"meta", "br", "hr", "img", "link", "input"};
  std::vector<std::string> open;
  for (size_t at = html.find('<'); at != std::string::npos; at = html.find('<', at + 1)) {
    const size_t end = html.find('>', at);
    if (end == std::string::npos) {
      *error = "unterminated tag at " + std::to_string(at);
      return false;
    }
    std::string tag = html.substr(at + 1, end - at - 1);
    if (tag.empty() || tag[0] == '!') continue;  // <!DOCTYPE>
    const bool closing = tag[0] == '/';
    const bool self_closing = tag.back() == '/';
    std::string name = tag.substr(closing ? 1 : 0);
    name = name.substr(0, name.find_first_of(" \n/"));
    if (closing) {
      if (open.empty() || open.back() != name) {
        *error = "</" + name + "> closes <" +
                 (open.empty() ? std::string("nothing") : open.back()) + "> at " +
                 std::to_string(at);
        return false;
      }
      open.pop_back();
    } else if (!self_closing && std::find(kVoid.begin(), kVoid.end(), name) == kVoid.end()) {
      open.push_back(name);
    }
  }
  if (!open.empty()) {
    *error = "<" + open.back() + "> never closed";
    return false;
  }
  return true;
}

// Non-interleaved 1F1B over `pp` ranks and `m` micro-batches with forward
// time `tf` and backward time `tb` per stage (no communication time): the
// textbook schedule, so bubbles appear as kIdle events.
inline std::vector<TimelineEvent> OneFOneBTimeline(int pp, int m, double tf, double tb) {
  std::vector<TimelineEvent> events;
  std::vector<double> fwd_end(static_cast<size_t>(pp * m)), bwd_end(static_cast<size_t>(pp * m));
  auto idx = [&](int r, int mb) { return static_cast<size_t>(r * m + mb); };
  // Time the programs in dependency order: forward (r, mb) after forward
  // (r-1, mb); backward (r, mb) after backward (r+1, mb) and forward (r, mb).
  std::vector<double> rank_clock(static_cast<size_t>(pp), 0.0);
  std::vector<size_t> pc(static_cast<size_t>(pp), 0);
  // Program of rank r: warm-up forwards, steady 1F1B, cool-down backwards.
  std::vector<std::vector<std::pair<bool, int>>> programs(static_cast<size_t>(pp));
  for (int r = 0; r < pp; ++r) {
    const int warm = std::min(pp - r - 1, m);
    int f = 0, b = 0;
    auto& prog = programs[static_cast<size_t>(r)];
    for (; f < warm; ++f) prog.push_back({true, f});
    while (b < m) {
      if (f < m) prog.push_back({true, f++});
      prog.push_back({false, b++});
    }
  }
  std::fill(fwd_end.begin(), fwd_end.end(), -1.0);
  std::fill(bwd_end.begin(), bwd_end.end(), -1.0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < pp; ++r) {
      auto& prog = programs[static_cast<size_t>(r)];
      size_t& i = pc[static_cast<size_t>(r)];
      if (i == prog.size()) continue;
      const auto [is_fwd, mb] = prog[i];
      double ready;
      if (is_fwd) {
        ready = r == 0 ? 0.0 : fwd_end[idx(r - 1, mb)];
      } else {
        ready = r == pp - 1 ? fwd_end[idx(r, mb)] : bwd_end[idx(r + 1, mb)];
      }
      if (ready < 0) continue;
      double& clock = rank_clock[static_cast<size_t>(r)];
      const double start = std::max(clock, ready);
      if (start > clock) events.push_back({r, TimelineKind::kIdle, -1, 0, clock, start});
      const double end = start + (is_fwd ? tf : tb);
      events.push_back(
          {r, is_fwd ? TimelineKind::kForward : TimelineKind::kBackward, mb, 0, start, end});
      (is_fwd ? fwd_end : bwd_end)[idx(r, mb)] = end;
      clock = end;
      ++i;
      progress = true;
    }
  }
  return events;
}

}  // namespace p3d::testing
