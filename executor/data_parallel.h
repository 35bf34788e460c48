// DataParallel: the data-parallel side of one model replica's step: gradient
// reduction over the DP group, overlapped with backward, and the ZeRO stages
// (executor/zero_layout.h says who owns what).
//
// What runs when (one bucket = one unit of param_layout.h: a layer, the
// embedding unit or the head unit; unit u's gradients are final once its
// backward has run):
//   ZeRO-0/1  in the LAST micro-batch of the step, as soon as unit u's
//             backward is done, an fp32 all-reduce (sum) of u's gradients on
//             the comm stream, overlapping the backward of the units before it.
//             ZeRO-1 then updates only the owned slices and all-gathers the
//             bf16 weights of every unit after the optimizer step.
//   ZeRO-2    in EVERY micro-batch, unit u's backward accumulates into its
//             staging buffer (GradStaging, executor/zero_layout.h: a ring of
//             two slots the size of the largest layer, taken alternately in
//             backward order, plus dedicated buffers for the tied embedding and
//             units wider than a slot; no full-size gradient buffer exists);
//             then u's gradients are reduce-scattered there (in place, fp32),
//             the owned slice is added to the fp32 gradient shard and u's range
//             of the staging buffer is re-zeroed; all on the comm stream. After
//             the step: all-gather of the bf16 weights, as ZeRO-1.
//   ZeRO-3    as ZeRO-2 for gradients; the bf16 weight region holds only
//             this rank's shard (the owned slices at their local offsets,
//             what the optimizer updates). Each unit is all-gathered from the
//             shards before every use (forward and again backward) into its
//             gather buffer (WeightGather, executor/zero_layout.h: a ring of
//             two slots of the largest unit, taken alternately in unit order,
//             plus a dedicated buffer for a tied embedding, which the embedding
//             and the LM head use at the two ends of the forward), the next
//             unit's gather issued on the comm stream before the current unit
//             runs (prefetch one ahead).
// The gradient norm sums squares over the full gradients (ZeRO-0/1) or over
// the owned shards with an all-reduce of the partial sums (ZeRO-2/3).
//
// Ordering: every comm-stream operation first waits for an event recorded on
// the compute stream at the point of issue; before the compute stream writes a
// unit's gradients it waits for the last reduction out of the same gradient
// buffer (ZeRO-0/1: the unit's own range; ZeRO-2/3: its staging buffer, i.e.
// the unit that used the ring slot before it); before it uses a unit's
// gathered weights (ZeRO-3) for that gather; and for all reductions before the
// optimizer. A ZeRO-3 gather into a ring slot is issued (BeforeUse(unit,
// prefetch)) after the compute of the slot's previous unit was enqueued (the
// unit used before `unit`, two units earlier in the use order), so the comm
// stream's wait for the compute stream at that point keeps the gather from
// overwriting weights still being read.
// Every host wait goes through the communicator's watchdog (Sync).
//
// With dp = 1 (or no communicator) every hook is a no-op and Sync is
// cudaStreamSynchronize: the single-GPU executor is unchanged.
//
// Thread-safety: one host thread per rank (as Communicator).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <utility>
#include <vector>

#include "common/status.h"
#include "executor/dtype.h"
#include "executor/param_layout.h"
#include "executor/zero_layout.h"

namespace p3d {

class Communicator;

class DataParallel {
 public:
  // comm: the DP group (size == zero.dp), or nullptr when zero.dp == 1.
  // staging: BuildGradStaging(params) when ZeRO >= 2 and dp > 1 (the gradient
  // buffer bound is then the staging region), else empty.
  // gather: BuildWeightGather(params) when ZeRO-3 and dp > 1, else empty.
  static StatusOr<std::unique_ptr<DataParallel>> Create(const ParamLayout& params,
                                                        const ZeroLayout& zero, GradStaging staging,
                                                        UnitRing gather, Communicator* comm,
                                                        cudaStream_t compute);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  bool active() const { return comm_ != nullptr; }
  const ZeroLayout& zero() const { return zero_; }
  const GradStaging& staging() const { return staging_; }
  const UnitRing& gather() const { return gather_; }
  // Device buffers of the model's arena: bf16 weights over the whole layout,
  // or this rank's shard (local offsets) when gather().staged(); the bf16
  // gather region (gather().staged(), else nullptr); fp32 gradients over the
  // whole layout, or the staging region when staging().staged(); the fp32
  // gradient shard (ZeRO-2/3, else nullptr).
  void Bind(bf16* weights, bf16* gathered, float* grads, float* grad_shard);

  // Unit arguments of -1 (a unit this stage does not hold) are ignored.
  // Start of a forward or a backward pass over the layers (ZeRO-3 gathers
  // each unit once per pass).
  void BeginPass();
  // ZeRO-3: unit `unit` is gathered before the compute stream goes on;
  // `prefetch` (or -1) is issued next. Contract (the gather ring): units are
  // used in the forward or backward unit order, `prefetch` is the unit used
  // right after `unit`, and the call comes after the compute of the unit used
  // before `unit` was enqueued. No-op otherwise.
  Status BeforeUse(int unit, int prefetch);
  // The compute stream is about to write unit `unit`'s gradients.
  Status BeforeGradWrite(int unit);
  // Unit `unit`'s gradients of this micro-batch are complete on the compute
  // stream; `last_micro`: the step's last micro-batch.
  Status GradsReady(int unit, bool last_micro);
  // The compute stream waits for every reduction of the step.
  Status FinishGrads();
  // Sum over the DP group of n floats on the compute stream (the loss sum).
  Status AllReduceSum(float* data, int64_t n);
  // Sum over the DP group of the grad-norm partials (ZeRO-2/3 only).
  Status ReducePartials(double* partials, int64_t n);
  // After the owned slices were updated: ZeRO-1/2 all-gather every unit's
  // bf16 weights (ZeRO-3 gathers before use instead).
  Status AfterOptimizer();
  // Waits (watchdog-bounded when active) until `stream` drained.
  Status Sync(cudaStream_t stream);

 private:
  DataParallel(const ParamLayout& params, const ZeroLayout& zero, GradStaging staging,
               UnitRing gather, Communicator* comm, cudaStream_t compute)
      : params_(params),
        zero_(zero),
        staging_(std::move(staging)),
        gather_(std::move(gather)),
        comm_(comm),
        compute_(compute) {}
  Status CommWaitsCompute();
  Status Gather(int unit, cudaStream_t stream);
  // The gradient buffer unit `unit` accumulates in (index into grad_done_)
  // and where its gradients start.
  int GradBuffer(int unit) const;
  float* UnitGrads(int unit) const;

  const ParamLayout& params_;
  ZeroLayout zero_;
  GradStaging staging_;
  UnitRing gather_;
  Communicator* comm_;
  cudaStream_t compute_;
  cudaStream_t comm_stream_ = nullptr;
  cudaEvent_t marker_ = nullptr;          // compute -> comm ordering
  std::vector<cudaEvent_t> grad_done_;    // per gradient buffer: its last reduction finished
  std::vector<bool> pending_;             // grad_done_[b] not yet waited for by compute
  std::vector<cudaEvent_t> gather_done_;  // ZeRO-3, per unit: its last gather finished
  std::vector<bool> gathered_;            // ZeRO-3: unit gathered in this pass
  bf16* weights_ = nullptr;
  bf16* gathered_weights_ = nullptr;
  float* grads_ = nullptr;
  float* grad_shard_ = nullptr;
};

}  // namespace p3d
