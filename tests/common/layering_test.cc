// The layers point down only (docs/architecture.md, shared architecture):
//   common -> models -> simulator -> planner | executor
// Every source file may include headers of its own layer and the layers below;
// planner and executor sit side by side and include neither each other. This
// test reads every file under those folders and fails on any include that
// points up or sideways, naming the file, the line and the header.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

namespace {

namespace fs = std::filesystem;

// The folders each layer may include from (its own first).
const std::map<std::string, std::set<std::string>>& Allowed() {
  static const std::map<std::string, std::set<std::string>> allowed = {
      {"common", {"common"}},
      {"models", {"models", "common"}},
      {"simulator", {"simulator", "models", "common"}},
      {"planner", {"planner", "simulator", "models", "common"}},
      {"executor", {"executor", "simulator", "models", "common"}},
  };
  return allowed;
}

TEST(Layering, EveryIncludePointsDown) {
  const std::regex include(R"(^\s*#\s*include\s*"([a-z_]+)/[^"]+")");
  int files = 0;
  std::string violations;
  for (const auto& [layer, ok] : Allowed()) {
    ASSERT_TRUE(fs::is_directory(layer)) << "run from the source root: no folder " << layer;
    for (const auto& entry : fs::recursive_directory_iterator(layer)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() || (ext != ".h" && ext != ".cc" && ext != ".cu" && ext != ".cuh" && ext != ".in"))
        continue;
      ++files;
      std::ifstream in(entry.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        std::smatch m;
        if (std::regex_search(line, m, include) && !ok.count(m[1].str()))
          violations += entry.path().string() + ":" + std::to_string(n) + ": " + line + "\n";
      }
    }
  }
  EXPECT_GT(files, 100);
  EXPECT_EQ(violations, "") << "includes that point up or sideways:\n" << violations;
}

}  // namespace
