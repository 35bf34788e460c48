// DataParallel: the data-parallel side of one model replica's step: gradient
// reduction over the DP group in buckets overlapped with the backward, and
// the ZeRO stages (executor/zero_layout.h says who owns what). What runs when
// is the OverlapSchedule (executor/overlap_schedule.h: the buckets, the ZeRO-3
// gather passes); this class runs it on a comm stream with CUDA events.
//
// Per stage (a bucket is launched once its last unit's backward is done,
// GradsReady):
//   ZeRO-0/1  in the LAST micro-batch of the step, an fp32 all-reduce (sum)
//             of the bucket's range, overlapping the backward of the units
//             before it. ZeRO-1 then updates only the owned slices and
//             all-gathers the bf16 weights of every unit after the optimizer
//             step.
//   ZeRO-2    in EVERY micro-batch, the bucket's units accumulate into the
//             bucket's staging buffer (GradStaging, executor/zero_layout.h: a
//             ring of two slots taken alternately by the buckets in backward
//             order, plus dedicated buffers for the tied embedding's bucket
//             and buckets wider than a slot; no full-size gradient buffer
//             exists); then each unit's gradients are reduce-scattered there
//             (in place, fp32, one NCCL group per bucket), the owned slices are
//             added to the fp32 gradient shard and the bucket's staging range
//             is re-zeroed; all on the comm stream. After the step: all-gather
//             of the bf16 weights, as ZeRO-1.
//   ZeRO-3    as ZeRO-2 for gradients; the bf16 weight region holds only
//             this rank's shard (the owned slices at their local offsets,
//             what the optimizer updates). Each unit is all-gathered from the
//             shards before every use (forward and again backward) into its
//             gather buffer (WeightGather, executor/zero_layout.h: a ring of
//             two slots of the largest unit, taken alternately in unit order,
//             plus a dedicated buffer for a tied embedding, which the embedding
//             and the LM head use at the two ends of the forward), the next
//             unit's gather issued on the comm stream before the current unit
//             runs (prefetch one ahead, the pass's GatherPass).
// The gradient norm sums squares over the full gradients (ZeRO-0/1) or over
// the owned shards with an all-reduce of the partial sums (ZeRO-2/3).
//
// Ordering: every comm-stream operation first waits for an event recorded on
// the compute stream at the point of issue (after the backward of the
// bucket's last unit; before a gather, after the compute enqueued so far);
// before the compute stream writes a unit's gradients it waits for the last
// reduction out of the same gradient buffer (ZeRO-0/1: the unit's bucket;
// ZeRO-2/3: its staging buffer, i.e. the bucket that used the ring slot
// before); before it uses a unit's gathered weights (ZeRO-3) for that gather;
// and for all reductions before the optimizer. A ZeRO-3 gather into a ring
// slot is issued (BeforeUse) after the compute of the slot's previous unit
// was enqueued (the unit used before, two units earlier in the use order), so
// the comm stream's wait for the compute stream at that point keeps the
// gather from overwriting weights still being read.
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
#include "executor/overlap_schedule.h"
#include "executor/param_layout.h"
#include "executor/zero_layout.h"

namespace p3d {

class Communicator;

class DataParallel {
 public:
  // comm: the DP group (size == zero.dp), or nullptr when zero.dp == 1.
  // buckets: BuildGradBuckets(params, ...).
  // staging: BuildGradStaging(params, buckets) when ZeRO >= 2 and dp > 1 (the
  // gradient buffer bound is then the staging region), else empty.
  // gather: BuildWeightGather(params) when ZeRO-3 and dp > 1, else empty.
  static StatusOr<std::unique_ptr<DataParallel>> Create(const ParamLayout& params,
                                                        const ZeroLayout& zero, GradBuckets buckets,
                                                        GradStaging staging, UnitRing gather,
                                                        Communicator* comm, cudaStream_t compute);
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
  // Start of a forward or a backward pass over the layers: ZeRO-3 gathers
  // follow that pass's GatherPass.
  void BeginPass(Pass pass);
  // ZeRO-3: issues the gathers the pass lists before `unit` computes (the
  // prefetch of the next unit) and makes the compute stream wait for `unit`'s.
  // Contract (the gather ring): the units of the pass are used in its order,
  // each call after the compute of the unit before was enqueued. No-op
  // otherwise.
  Status BeforeUse(int unit);
  // The compute stream is about to write unit `unit`'s gradients.
  Status BeforeGradWrite(int unit);
  // Unit `unit`'s gradients of this micro-batch are complete on the compute
  // stream; `last_micro`: the step's last micro-batch. Launches the unit's
  // bucket when this was its last unit to complete.
  Status GradsReady(int unit, bool last_micro);
  // The compute stream waits for every reduction of the step. Internal error
  // when a bucket was left with some but not all of its units complete.
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
  DataParallel(const ParamLayout& params, const ZeroLayout& zero, GradBuckets buckets,
               GradStaging staging, UnitRing gather, Communicator* comm, cudaStream_t compute)
      : params_(params),
        zero_(zero),
        buckets_(std::move(buckets)),
        staging_(std::move(staging)),
        gather_(std::move(gather)),
        comm_(comm),
        compute_(compute) {}
  Status CommWaitsCompute();
  Status Gather(int unit, cudaStream_t stream);
  // The bucket's collective(s) on the comm stream (ZeRO-0/1: all-reduce;
  // ZeRO-2/3: reduce-scatter into the shard and re-zeroing of the staging).
  Status LaunchBucket(int bucket);
  // The gradient buffer unit `unit` accumulates in (index into grad_done_:
  // its bucket, or its staging buffer) and where its gradients start.
  int GradBuffer(int unit) const;
  float* UnitGrads(int unit) const;

  const ParamLayout& params_;
  ZeroLayout zero_;
  GradBuckets buckets_;
  GradStaging staging_;
  UnitRing gather_;
  GatherPass passes_[2];              // ZeRO-3: forward, backward
  const GatherPass* pass_ = nullptr;  // the current one
  Communicator* comm_;
  cudaStream_t compute_;
  cudaStream_t comm_stream_ = nullptr;
  cudaEvent_t marker_ = nullptr;          // compute -> comm ordering
  std::vector<cudaEvent_t> grad_done_;    // per gradient buffer: its last reduction finished
  std::vector<bool> pending_;             // grad_done_[b] not yet waited for by compute
  std::vector<int> incomplete_;           // per bucket: units not yet complete in this micro-batch
  std::vector<cudaEvent_t> gather_done_;  // ZeRO-3, per unit: its last gather finished
  std::vector<int> pass_index_;           // ZeRO-3: unit -> its position in the current pass
  bf16* weights_ = nullptr;
  bf16* gathered_weights_ = nullptr;
  float* grads_ = nullptr;
  float* grad_shard_ = nullptr;
};

}  // namespace p3d
