#include "executor/data_parallel.h"

#include "executor/check.h"
#include "executor/comm/communicator.h"
#include "executor/kernels/optimizer.h"
#include "executor/str_cat.h"

namespace p3d {

StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(const ParamLayout& params,
                                                             const ZeroLayout& zero,
                                                             Communicator* comm,
                                                             cudaStream_t compute) {
  if (zero.dp > 1 && (comm == nullptr || comm->size() != zero.dp))
    return Status::InvalidArgument(
        StrCat("data parallel: dp = ", zero.dp, " needs a DP communicator of that size"));
  std::unique_ptr<DataParallel> d(
      new DataParallel(params, zero, zero.dp > 1 ? comm : nullptr, compute));
  if (!d->active()) return StatusOr<std::unique_ptr<DataParallel>>(std::move(d));
  CUDA_CHECK(cudaStreamCreateWithFlags(&d->comm_stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&d->marker_, cudaEventDisableTiming));
  const size_t units = params.units.size();
  d->unit_done_.assign(units, nullptr);
  for (cudaEvent_t& e : d->unit_done_)
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  d->pending_.assign(units, false);
  d->gathered_.assign(units, false);
  return StatusOr<std::unique_ptr<DataParallel>>(std::move(d));
}

DataParallel::~DataParallel() {
  for (cudaEvent_t e : unit_done_) cudaEventDestroy(e);
  if (marker_) cudaEventDestroy(marker_);
  if (comm_stream_) cudaStreamDestroy(comm_stream_);
}

void DataParallel::Bind(bf16* weights, float* grads, float* grad_shard) {
  weights_ = weights;
  grads_ = grads;
  grad_shard_ = grad_shard;
}

Status DataParallel::CommWaitsCompute() {
  CUDA_CHECK(cudaEventRecord(marker_, compute_));
  CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, marker_, 0));
  return Status::Ok();
}

// In place: rank d's slice of the unit is the send buffer of the gather.
Status DataParallel::Gather(int unit, cudaStream_t stream) {
  const OwnedSlice& s = zero_.slices[unit];
  return comm_->AllGather(weights_ + s.begin, weights_ + params_.units[unit].begin, s.size(),
                          ncclBfloat16, stream);
}

void DataParallel::BeginPass() { gathered_.assign(gathered_.size(), false); }

Status DataParallel::BeforeUse(int unit, int prefetch) {
  if (!active() || zero_.zero < 3 || unit < 0) return Status::Ok();
  for (int u : {unit, prefetch}) {
    if (u < 0 || gathered_[u]) continue;
    P3D_RETURN_IF_ERROR(CommWaitsCompute());
    P3D_RETURN_IF_ERROR(Gather(u, comm_stream_));
    CUDA_CHECK(cudaEventRecord(unit_done_[u], comm_stream_));
    gathered_[u] = true;
  }
  // unit_done_ is the unit's latest comm work, the gather included.
  CUDA_CHECK(cudaStreamWaitEvent(compute_, unit_done_[unit], 0));
  return Status::Ok();
}

Status DataParallel::BeforeGradWrite(int unit) {
  if (!active() || unit < 0 || !pending_[unit]) return Status::Ok();
  CUDA_CHECK(cudaStreamWaitEvent(compute_, unit_done_[unit], 0));
  pending_[unit] = false;
  return Status::Ok();
}

Status DataParallel::GradsReady(int unit, bool last_micro) {
  if (!active() || unit < 0) return Status::Ok();
  const ParamUnit& u = params_.units[unit];
  if (zero_.zero <= 1) {
    if (!last_micro) return Status::Ok();
    P3D_RETURN_IF_ERROR(CommWaitsCompute());
    P3D_RETURN_IF_ERROR(comm_->AllReduce(grads_ + u.begin, grads_ + u.begin, u.size(), ncclFloat32,
                                         ncclSum, comm_stream_));
  } else {
    const OwnedSlice& s = zero_.slices[unit];
    P3D_RETURN_IF_ERROR(CommWaitsCompute());
    P3D_RETURN_IF_ERROR(comm_->ReduceScatter(grads_ + u.begin, grads_ + s.begin, s.size(),
                                             ncclFloat32, ncclSum, comm_stream_));
    P3D_RETURN_IF_ERROR(AddF32(grads_ + s.begin, grad_shard_ + s.local, s.size(), comm_stream_));
    CUDA_CHECK(cudaMemsetAsync(grads_ + u.begin, 0, u.size() * sizeof(float), comm_stream_));
  }
  CUDA_CHECK(cudaEventRecord(unit_done_[unit], comm_stream_));
  pending_[unit] = true;
  return Status::Ok();
}

Status DataParallel::FinishGrads() {
  for (size_t u = 0; u < pending_.size(); ++u)
    P3D_RETURN_IF_ERROR(BeforeGradWrite(static_cast<int>(u)));
  return Status::Ok();
}

Status DataParallel::AllReduceSum(float* data, int64_t n) {
  if (!active()) return Status::Ok();
  return comm_->AllReduce(data, data, n, ncclFloat32, ncclSum, compute_);
}

Status DataParallel::ReducePartials(double* partials, int64_t n) {
  if (!active() || zero_.zero < 2) return Status::Ok();
  return comm_->AllReduce(partials, partials, n, ncclFloat64, ncclSum, compute_);
}

Status DataParallel::AfterOptimizer() {
  if (!active() || zero_.zero == 0 || zero_.zero == 3) return Status::Ok();
  for (size_t u = 0; u < params_.units.size(); ++u)
    P3D_RETURN_IF_ERROR(Gather(static_cast<int>(u), compute_));
  return Status::Ok();
}

Status DataParallel::Sync(cudaStream_t stream) {
  if (active()) return comm_->Wait(stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return Status::Ok();
}

}  // namespace p3d
