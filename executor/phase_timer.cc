#include "executor/phase_timer.h"

#include "common/enum_names.h"
#include "executor/check.h"

namespace p3d {

constexpr EnumEntry<Phase> kPhaseNames[] = {{Phase::kGemm, "gemm"},
                                            {Phase::kAttention, "attention"},
                                            {Phase::kOther, "other"},
                                            {Phase::kOptimizer, "optimizer"},
                                            {Phase::kIdle, "idle"}};

const char* PhaseName(Phase phase) { return EnumName(kPhaseNames, phase); }

PhaseTimer::~PhaseTimer() {
  for (cudaEvent_t e : events_) cudaEventDestroy(e);
}

Status PhaseTimer::Mark(Phase phase) {
  if (!phases_.empty() && phases_.back() == phase) return Status::Ok();
  cudaEvent_t e;
  CUDA_CHECK(cudaEventCreate(&e));
  events_.push_back(e);
  phases_.push_back(phase);
  CUDA_CHECK(cudaEventRecord(e, stream_));
  return Status::Ok();
}

Status PhaseTimer::Finish() {
  cudaEvent_t end;
  CUDA_CHECK(cudaEventCreate(&end));
  events_.push_back(end);
  CUDA_CHECK(cudaEventRecord(end, stream_));
  CUDA_CHECK(cudaEventSynchronize(end));
  seconds_.fill(0.0);
  for (size_t i = 0; i + 1 < events_.size(); ++i) {
    float ms = 0.0f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
    seconds_[static_cast<int>(phases_[i])] += ms * 1e-3;
  }
  return Status::Ok();
}

double PhaseTimer::total_seconds() const {
  double t = 0.0;
  for (double s : seconds_) t += s;
  return t;
}

}  // namespace p3d
