// Round trip for the launch exporters: the torchrun line and the Slurm
// script are parsed back and their node/GPU counts checked against the plan.
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <vector>

#include "planner/export.h"
#include "tests/planner/export_test_plans.h"

namespace p3d {
namespace {

using testing::Evaluated;
using testing::MakePlan;
using testing::RequestFor;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// "torchrun --a=1 --b=x cmd args" -> options {--a: 1, --b: x}; the rest of
// the line after the last option is the command.
struct Torchrun {
  std::map<std::string, std::string> options;
  std::string command;
};

Torchrun ParseTorchrun(const std::string& line) {
  Torchrun t;
  std::istringstream in(line);
  std::string token;
  in >> token;
  EXPECT_EQ(token, "torchrun");
  while (in >> token) {
    if (token.rfind("--", 0) != 0) {
      std::string rest;
      std::getline(in, rest);
      t.command = token + rest;
      break;
    }
    const size_t eq = token.find('=');
    EXPECT_NE(eq, std::string::npos) << token;
    t.options[token.substr(0, eq)] = token.substr(eq + 1);
  }
  return t;
}

// Undoes POSIX single quoting: 'a'\''b' -> a'b.
std::string ShellUnquote(const std::string& s) {
  std::string out;
  bool quoted = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\'') {
      quoted = !quoted;
    } else if (!quoted && s[i] == '\\' && i + 1 < s.size()) {
      out += s[++i];
    } else {
      out += s[i];
    }
  }
  EXPECT_FALSE(quoted) << "unbalanced quotes in " << s;
  return out;
}

struct LaunchCase {
  int gpus;
  int gpus_per_node;
  int expected_nodes;  // ceil(gpus / gpus_per_node)
  int expected_nproc;  // GPUs per node torchrun starts
};

class LaunchRoundTrip : public ::testing::TestWithParam<LaunchCase> {};

TEST_P(LaunchRoundTrip, TorchrunAndSlurmCoverEveryGpuOnce) {
  const LaunchCase& c = GetParam();
  ASSERT_EQ(c.gpus % 4, 0);
  Plan plan = MakePlan(c.gpus / 4, 4, 1, 1, 1, 1, 8);
  PlanRequest request = RequestFor(testing::Llama2_7B(), plan, 2048, c.gpus_per_node);
  LaunchOptions launch;
  launch.command = "p3d-run --plan plan.json --name 'it''s'";
  launch.master_port = 29611;

  auto torchrun = ExportTorchrun(request, Evaluated(plan), launch);
  ASSERT_TRUE(torchrun.ok()) << torchrun.status().ToString();
  std::string line;
  for (const std::string& l : Lines(torchrun->text)) {
    if (l.rfind("torchrun ", 0) == 0) line = l;
  }
  ASSERT_FALSE(line.empty()) << torchrun->text;
  Torchrun t = ParseTorchrun(line);
  EXPECT_EQ(std::stoi(t.options["--nnodes"]), c.expected_nodes);
  EXPECT_EQ(std::stoi(t.options["--nproc-per-node"]), c.expected_nproc);
  EXPECT_EQ(std::stoi(t.options["--nnodes"]) * std::stoi(t.options["--nproc-per-node"]),
            plan.gpus());
  EXPECT_EQ(t.options["--node-rank"], "${NODE_RANK:?}");
  EXPECT_EQ(t.options["--master-addr"], "${MASTER_ADDR:?}");
  EXPECT_EQ(t.options["--master-port"], "${MASTER_PORT:-29611}");
  EXPECT_EQ(t.options.size(), 5u);
  EXPECT_EQ(t.command, launch.command);

  auto slurm = ExportSlurm(request, Evaluated(plan), launch);
  ASSERT_TRUE(slurm.ok()) << slurm.status().ToString();
  std::vector<std::string> lines = Lines(slurm->text);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "#!/bin/bash");
  std::map<std::string, std::string> sbatch;
  std::string srun, master_addr, master_port;
  for (const std::string& l : lines) {
    if (l.rfind("#SBATCH ", 0) == 0) {
      const std::string opt = l.substr(8);
      const size_t eq = opt.find('=');
      sbatch[opt.substr(0, eq)] = eq == std::string::npos ? "" : opt.substr(eq + 1);
    }
    if (l.rfind("srun ", 0) == 0) srun = l;
    if (l.rfind("export MASTER_ADDR=", 0) == 0) master_addr = l;
    if (l.rfind("export MASTER_PORT=", 0) == 0) master_port = l;
  }
  EXPECT_EQ(std::stoi(sbatch["--nodes"]), c.expected_nodes);
  EXPECT_EQ(std::stoi(sbatch["--ntasks-per-node"]), 1);
  EXPECT_EQ(std::stoi(sbatch["--gpus-per-node"]), c.expected_nproc);
  EXPECT_EQ(sbatch["--job-name"], "p3d");
  EXPECT_EQ(master_addr,
            "export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)");
  EXPECT_EQ(master_port, "export MASTER_PORT=29611");

  const std::string prefix = "srun --kill-on-bad-exit=1 bash -c ";
  ASSERT_EQ(srun.rfind(prefix, 0), 0u) << srun;
  Torchrun inner = ParseTorchrun(ShellUnquote(srun.substr(prefix.size())));
  EXPECT_EQ(std::stoi(inner.options["--nnodes"]), c.expected_nodes);
  EXPECT_EQ(std::stoi(inner.options["--nproc-per-node"]), c.expected_nproc);
  EXPECT_EQ(inner.options["--node-rank"], "$SLURM_NODEID");
  EXPECT_EQ(inner.options["--master-addr"], "$MASTER_ADDR");
  EXPECT_EQ(inner.options["--master-port"], "$MASTER_PORT");
  EXPECT_EQ(inner.command, launch.command);
}

INSTANTIATE_TEST_SUITE_P(Clusters, LaunchRoundTrip,
                         ::testing::Values(LaunchCase{4, 8, 1, 4}, LaunchCase{8, 8, 1, 8},
                                           LaunchCase{64, 8, 8, 8}, LaunchCase{16, 4, 4, 4}));

TEST(LaunchExport, RefusesPartialNodes) {
  Plan plan = MakePlan(3, 4, 1, 1, 1, 1, 8);  // 12 GPUs on 8-GPU nodes
  PlanRequest request = RequestFor(testing::Llama2_7B(), plan, 2048, 8);
  for (auto r : {ExportTorchrun(request, Evaluated(plan)), ExportSlurm(request, Evaluated(plan))}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Status::Code::kInfeasible);
    EXPECT_NE(r.status().message().find("12 GPUs do not fill 2 nodes of 8"), std::string::npos);
  }
}

TEST(LaunchExport, DefaultCommandIsTrainPy) {
  Plan plan = MakePlan(8, 1, 1, 1, 0, 1, 8);
  auto r = ExportTorchrun(RequestFor(testing::Gpt2Small(), plan, 1024), Evaluated(plan));
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->text.find("--master-port=${MASTER_PORT:-29500} train.py\n"), std::string::npos);
}

}  // namespace
}  // namespace p3d
