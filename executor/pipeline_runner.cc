#include "executor/pipeline_runner.h"

#include <fmt/format.h>

#include <vector>

#include "executor/check.h"
#include "executor/comm/communicator.h"

namespace p3d {

StatusOr<std::unique_ptr<PipelineRunner>> PipelineRunner::Create(PipelineProgram program,
                                                                 Communicator* comm,
                                                                 cudaStream_t compute) {
  if (!comm)
    for (const PipeAction& a : program.actions)
      if (a.kind == PipeAction::Kind::kComm)
        return Status::InvalidArgument(
            "pipeline runner: the program sends or receives but no PP communicator was given");
  std::unique_ptr<PipelineRunner> r(new PipelineRunner(std::move(program), comm, compute));
  if (comm) {
    CUDA_CHECK(cudaStreamCreateWithFlags(&r->comm_stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&r->compute_done_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&r->comm_done_, cudaEventDisableTiming));
  }
  return StatusOr<std::unique_ptr<PipelineRunner>>(std::move(r));
}

PipelineRunner::~PipelineRunner() {
  if (comm_done_) cudaEventDestroy(comm_done_);
  if (compute_done_) cudaEventDestroy(compute_done_);
  if (comm_stream_) cudaStreamDestroy(comm_stream_);
}

Status PipelineRunner::RunComm(const PipeAction& a, PipelineStage& stage) {
  const size_t n = static_cast<size_t>(stage.ActivationElements());
  std::vector<P2POp> ops;
  for (size_t k = 0; k < a.comm.size(); ++k) {
    const PipeStep& s = a.comm[k];
    P2POp op;
    op.peer = s.peer;
    op.count = n;
    op.type = ncclBfloat16;
    switch (s.kind) {
      case StepKind::kSendForward:
        op.kind = P2POp::Kind::kSend;
        op.buffer = stage.ChunkOutput(s.chunk, a.comm_slot[k]);
        break;
      case StepKind::kRecvForward:
        op.kind = P2POp::Kind::kRecv;
        op.buffer = stage.ChunkInput(s.chunk, a.comm_slot[k]);
        break;
      case StepKind::kSendBackward:
        op.kind = P2POp::Kind::kSend;
        op.buffer = stage.GradInput();
        break;
      case StepKind::kRecvBackward:
        op.kind = P2POp::Kind::kRecv;
        op.buffer = stage.GradOutput();
        break;
      default:
        return Status::Internal(
            fmt::format("pipeline runner: {} in a comm action", StepKindName(s.kind)));
    }
    ops.push_back(op);
  }
  CUDA_CHECK(cudaEventRecord(compute_done_, compute_));
  CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, compute_done_, 0));
  P3D_RETURN_IF_ERROR(comm_->SendRecv(ops, comm_stream_));
  CUDA_CHECK(cudaEventRecord(comm_done_, comm_stream_));
  CUDA_CHECK(cudaStreamWaitEvent(compute_, comm_done_, 0));
  return Status::Ok();
}

Status PipelineRunner::Run(PipelineStage& stage) {
  for (const PipeAction& a : program_.actions) {
    switch (a.kind) {
      case PipeAction::Kind::kForward:
        P3D_RETURN_IF_ERROR(stage.ForwardChunk(a.microbatch, a.chunk, a.slot));
        break;
      case PipeAction::Kind::kBackward:
        P3D_RETURN_IF_ERROR(stage.BackwardChunk(a.microbatch, a.chunk, a.slot));
        break;
      case PipeAction::Kind::kComm:
        P3D_RETURN_IF_ERROR(RunComm(a, stage));
        break;
    }
  }
  return Status::Ok();
}

}  // namespace p3d
