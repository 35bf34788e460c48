// Launch lines for one plan: torchrun (PyTorch 2.x torch.distributed.run
// options --nnodes, --nproc-per-node, --node-rank, --master-addr,
// --master-port) and a Slurm batch script (sbatch #SBATCH options --nodes,
// --ntasks-per-node, --gpus-per-node; srun starts one torchrun per node).
#include <fmt/format.h>

#include "planner/export.h"

namespace p3d {
namespace {

struct NodeLayout {
  int nodes = 1;
  int gpus_per_node = 1;  // processes torchrun starts on each node
};

StatusOr<NodeLayout> Layout(const PlanRequest& request) {
  const int per_node = request.cluster.node.gpus_per_node;
  const int gpus = request.cluster.num_gpus;
  if (per_node < 1) {
    return Status::InvalidArgument(
        fmt::format("cluster.node.gpus_per_node={} must be >= 1", per_node));
  }
  NodeLayout layout;
  layout.nodes = (gpus + per_node - 1) / per_node;
  layout.gpus_per_node = layout.nodes == 1 ? gpus : per_node;
  if (layout.nodes > 1 && gpus % per_node != 0) {
    return Status::Infeasible(
        fmt::format("launch: {} GPUs do not fill {} nodes of {} GPUs; torchrun starts the same "
                    "--nproc-per-node "
                    "on every node",
                    gpus, layout.nodes, per_node));
  }
  return layout;
}

// Single-quotes `s` for POSIX sh.
std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string TorchrunLine(const NodeLayout& layout, const std::string& node_rank,
                         const std::string& master_addr, const std::string& master_port,
                         const std::string& command) {
  return fmt::format(
      "torchrun --nnodes={} --nproc-per-node={} --node-rank={} --master-addr={} --master-port={} "
      "{}",
      layout.nodes, layout.gpus_per_node, node_rank, master_addr, master_port, command);
}

std::string Header(const PlanRequest& request, const EvaluatedPlan& plan,
                   const NodeLayout& layout) {
  return fmt::format("# p3d plan: {} on {} GPUs ({} node(s) x {} GPUs), model {}\n",
                     PlanSummary(plan.plan), request.cluster.num_gpus, layout.nodes,
                     layout.gpus_per_node, request.model.name);
}

}  // namespace

StatusOr<ExportedFile> ExportTorchrun(const PlanRequest& request, const EvaluatedPlan& plan,
                                      const LaunchOptions& launch) {
  P3D_RETURN_IF_ERROR(CheckExportable(request, plan.plan));
  P3D_ASSIGN_OR_RETURN(NodeLayout layout, Layout(request));
  ExportedFile out;
  out.text = Header(request, plan, layout);
  out.text += fmt::format(
      "# Run once on each node: NODE_RANK = 0..{} (0 on the first node), MASTER_ADDR = the first "
      "node's address.\n",
      layout.nodes - 1);
  out.text +=
      TorchrunLine(layout, "${NODE_RANK:?}", "${MASTER_ADDR:?}",
                   fmt::format("${{MASTER_PORT:-{}}}", launch.master_port), launch.command) +
      "\n";
  return out;
}

StatusOr<ExportedFile> ExportSlurm(const PlanRequest& request, const EvaluatedPlan& plan,
                                   const LaunchOptions& launch) {
  P3D_RETURN_IF_ERROR(CheckExportable(request, plan.plan));
  P3D_ASSIGN_OR_RETURN(NodeLayout layout, Layout(request));
  ExportedFile out;
  std::string& s = out.text;
  s = "#!/bin/bash\n";
  s += fmt::format("#SBATCH --job-name={}\n", launch.job_name);
  s += fmt::format("#SBATCH --nodes={}\n", layout.nodes);
  s += "#SBATCH --ntasks-per-node=1\n";
  s += fmt::format("#SBATCH --gpus-per-node={}\n", layout.gpus_per_node);
  s += "#SBATCH --exclusive\n";
  s += Header(request, plan, layout);
  s += "set -euo pipefail\n";
  s += "export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n";
  s += fmt::format("export MASTER_PORT={}\n", launch.master_port);
  // One task per node; the single quotes defer $SLURM_NODEID to each task.
  s += "srun --kill-on-bad-exit=1 bash -c " +
       ShellQuote(
           TorchrunLine(layout, "$SLURM_NODEID", "$MASTER_ADDR", "$MASTER_PORT", launch.command)) +
       "\n";
  return out;
}

}  // namespace p3d
