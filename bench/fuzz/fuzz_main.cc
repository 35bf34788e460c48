// p3d-fuzz: feeds every parser deterministic mutations of a corpus of real
// inputs (docs/fuzz.md). Fails (exit 1) on an accepted input with nonsense
// numbers or an input that takes longer than --limit-s; crashes and sanitizer
// reports end the process. Input k of a target is the same on every machine:
//   p3d-fuzz --target model --start 123456 --inputs 1   reproduces one input.
//
//   p3d-fuzz --inputs 1000000 --corpus .      the recorded long run
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "bench/fuzz/fuzz_mutator.h"
#include "bench/fuzz/fuzz_targets.h"
#include "common/tool_main.h"

namespace {

volatile std::sig_atomic_t g_index = 0;
const char* g_target = "";

void OnAlarm(int) {
  char buf[160];
  int n = std::snprintf(buf, sizeof buf, "p3d-fuzz: HANG: target %s input %ld exceeded the time limit\n", g_target,
                        static_cast<long>(g_index));
  (void)!write(2, buf, n > 0 ? n : 0);
  _exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t inputs = 10000, start = 0;
  uint64_t seed = 1;
  unsigned limit_s = 30;
  std::string corpus = ".", only;
  bool dump = false;
  CLI::App app{"p3d-fuzz: deterministic mutation fuzzing of p3d's parsers"};
  app.add_option("--inputs", inputs, "inputs per target");
  app.add_option("--start", start, "first input index (reproduce one input with --inputs 1)");
  app.add_option("--seed", seed, "generator seed");
  app.add_option("--limit-s", limit_s, "seconds one input may take before it counts as a hang");
  app.add_option("--corpus", corpus, "repository root holding the seed files");
  app.add_flag("--dump", dump, "print each input before running it (to see a reproduced failure)");
  app.add_option("--target", only, "run one target: model, hardware, profile, saved_plan, run, cli");
  if (int code = p3d::ParseFlags(app, argc, argv); code >= 0) return code;
  std::signal(SIGALRM, OnAlarm);

  int failures = 0;
  std::printf("%-11s %9s %7s %12s %12s %s\n", "target", "inputs", "seeds", "inputs/s", "slowest ms", "result");
  for (const p3d::fuzz::Target& t : p3d::fuzz::AllTargets(corpus)) {
    if (!only.empty() && t.name != only) continue;
    if (t.seeds.empty()) {
      std::fprintf(stderr, "p3d-fuzz: target %s has no seeds under '%s'\n", t.name.c_str(), corpus.c_str());
      return 2;
    }
    g_target = t.name.c_str();
    p3d::fuzz::Rng rng(seed * 0x100000001B3ull + std::hash<std::string>{}(t.name));
    for (int64_t i = 0; i < start; ++i)  // the same draws as the loop below
      if (i % 16 != 0) (void)p3d::fuzz::Mutate(t.seeds, rng);
    double slowest = 0;
    std::string bad;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = start; i < start + inputs && bad.empty(); ++i) {
      // Every 16th input is a seed itself, so the accepting paths keep being run.
      const std::string input = i % 16 == 0 ? t.seeds[i / 16 % t.seeds.size()] : p3d::fuzz::Mutate(t.seeds, rng);
      g_index = static_cast<long>(i);
      if (dump) std::fprintf(stderr, "--- %s input %lld ---\n%s\n---\n", t.name.c_str(), static_cast<long long>(i),
                             input.c_str());
      alarm(limit_s);
      const auto a = std::chrono::steady_clock::now();
      std::string why;
      if (!t.run(input, &why)) bad = fmt::format("input {}: {}", i, why);
      slowest = std::max(slowest, std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
      alarm(0);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-11s %9lld %7zu %12.0f %12.1f %s\n", t.name.c_str(), static_cast<long long>(inputs), t.seeds.size(),
                inputs / secs, slowest * 1e3, bad.empty() ? "ok" : ("FAIL " + bad).c_str());
    std::fflush(stdout);
    failures += !bad.empty();
  }
  return failures ? 1 : 0;
}
