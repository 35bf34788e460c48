// PipelineRunner: executes one pipeline rank's PipelineProgram
// (executor/host/pipeline_program.h, compiled from simulator/schedule.h's
// step list) for one optimizer step: forward / backward of (micro-batch,
// chunk) on the compute stream, each run of send/recv steps as one grouped
// NCCL call on a separate comm stream.
//
// Ordering (Megatron's default, without p2p overlap): a comm group waits for
// the compute issued before it (the tensors it sends are complete), and the
// compute after it waits for the group (received tensors are there, sent
// buffers may be overwritten). Buffers:
//   recv forward  (mb, c) -> stage.ChunkInput(c, slot)   (the chunk's first layer input)
//   send forward  (mb, c) <- stage.ChunkOutput(c, slot)  (lives until the pair's backward)
//   recv backward (mb, c) -> stage.GradOutput()          (d chunk output; the stage copies
//                                                         it before its backward)
//   send backward (mb, c) <- stage.GradInput()           (d chunk input, after the backward)
// GradOutput and GradInput are distinct because one group may send the last
// input gradient and receive the next output gradient. Every tensor is
// [B, S, H] bf16. Waits go through the communicator's watchdog.
//
// Thread-safety: one host thread per rank.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "common/status.h"
#include "executor/dtype.h"
#include "executor/host/pipeline_program.h"

namespace p3d {

class Communicator;

// What the runner drives: one pipeline rank's chunks of the model.
class PipelineStage {
 public:
  virtual ~PipelineStage() = default;
  virtual Status ForwardChunk(int microbatch, int chunk, int slot) = 0;
  virtual Status BackwardChunk(int microbatch, int chunk, int slot) = 0;
  virtual bf16* ChunkInput(int chunk, int slot) = 0;
  virtual bf16* ChunkOutput(int chunk, int slot) = 0;
  virtual bf16* GradOutput() = 0;
  virtual bf16* GradInput() = 0;
  virtual int64_t ActivationElements() const = 0;  // B * S * H
};

class PipelineRunner {
 public:
  // comm: the PP group (rank == pipeline rank); nullptr when pp == 1, where
  // the program must hold no comm action.
  static StatusOr<std::unique_ptr<PipelineRunner>> Create(PipelineProgram program,
                                                          Communicator* comm, cudaStream_t compute);
  ~PipelineRunner();
  PipelineRunner(const PipelineRunner&) = delete;
  PipelineRunner& operator=(const PipelineRunner&) = delete;

  const PipelineProgram& program() const { return program_; }
  // Runs every action of the program once (one optimizer step's micro-batches).
  Status Run(PipelineStage& stage);

 private:
  PipelineRunner(PipelineProgram program, Communicator* comm, cudaStream_t compute)
      : program_(std::move(program)), comm_(comm), compute_(compute) {}
  Status RunComm(const PipeAction& a, PipelineStage& stage);

  PipelineProgram program_;
  Communicator* comm_;
  cudaStream_t compute_;
  cudaStream_t comm_stream_ = nullptr;
  cudaEvent_t compute_done_ = nullptr, comm_done_ = nullptr;
};

}  // namespace p3d
