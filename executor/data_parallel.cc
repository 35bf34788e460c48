#include "executor/data_parallel.h"

#include "executor/check.h"
#include "executor/comm/communicator.h"
#include "executor/kernels/optimizer.h"
#include "executor/str_cat.h"

namespace p3d {

StatusOr<std::unique_ptr<DataParallel>> DataParallel::Create(
    const ParamLayout& params, const ZeroLayout& zero, GradBuckets buckets, GradStaging staging,
    UnitRing gather, Communicator* comm, cudaStream_t compute) {
  if (zero.dp > 1 && (comm == nullptr || comm->size() != zero.dp))
    return Status::InvalidArgument(
        StrCat("data parallel: dp = ", zero.dp, " needs a DP communicator of that size"));
  const bool stage = zero.zero >= 2 && zero.dp > 1;
  if (staging.staged() != stage || (stage && staging.unit_buffer.size() != params.units.size()))
    return Status::InvalidArgument(
        StrCat("data parallel: gradient staging is for ZeRO-2/3 with dp > 1 and covers every "
               "unit (ZeRO-",
               zero.zero, ", dp = ", zero.dp, ", ", staging.unit_buffer.size(), " staged units of ",
               params.units.size(), ")"));
  const bool sharded = zero.zero == 3 && zero.dp > 1;
  if (gather.staged() != sharded || (sharded && gather.unit_buffer.size() != params.units.size()))
    return Status::InvalidArgument(
        StrCat("data parallel: the weight gather ring is for ZeRO-3 with dp > 1 and covers every "
               "unit (ZeRO-",
               zero.zero, ", dp = ", zero.dp, ", ", gather.unit_buffer.size(),
               " gathered units of ", params.units.size(), ")"));
  if (buckets.unit_bucket.size() != params.units.size())
    return Status::InvalidArgument(StrCat("data parallel: ", buckets.unit_bucket.size(),
                                          " units in buckets, ", params.units.size(),
                                          " in the layout"));
  std::unique_ptr<DataParallel> d(new DataParallel(params, zero, std::move(buckets),
                                                   std::move(staging), std::move(gather),
                                                   zero.dp > 1 ? comm : nullptr, compute));
  if (!d->active()) return StatusOr<std::unique_ptr<DataParallel>>(std::move(d));
  CUDA_CHECK(cudaStreamCreateWithFlags(&d->comm_stream_, cudaStreamNonBlocking));
  CUDA_CHECK(cudaEventCreateWithFlags(&d->marker_, cudaEventDisableTiming));
  const size_t units = params.units.size(), buckets_n = d->buckets_.buckets.size();
  const size_t buffers = stage ? static_cast<size_t>(d->staging_.buffers()) : buckets_n;
  d->grad_done_.assign(buffers, nullptr);
  d->gather_done_.assign(zero.zero == 3 ? units : 0, nullptr);
  for (auto* events : {&d->grad_done_, &d->gather_done_})
    for (cudaEvent_t& e : *events) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  d->pending_.assign(buffers, false);
  for (const GradBucket& b : d->buckets_.buckets)
    d->incomplete_.push_back(static_cast<int>(b.units.size()));
  if (zero.zero == 3) {
    d->passes_[0] = BuildGatherPass(params, Pass::kForward);
    d->passes_[1] = BuildGatherPass(params, Pass::kBackward);
  }
  return StatusOr<std::unique_ptr<DataParallel>>(std::move(d));
}

DataParallel::~DataParallel() {
  for (cudaEvent_t e : grad_done_) cudaEventDestroy(e);
  for (cudaEvent_t e : gather_done_) cudaEventDestroy(e);
  if (marker_) cudaEventDestroy(marker_);
  if (comm_stream_) cudaStreamDestroy(comm_stream_);
}

void DataParallel::Bind(bf16* weights, bf16* gathered, float* grads, float* grad_shard) {
  weights_ = weights;
  gathered_weights_ = gathered;
  grads_ = grads;
  grad_shard_ = grad_shard;
}

int DataParallel::GradBuffer(int unit) const {
  return staging_.staged() ? staging_.unit_buffer[unit] : buckets_.unit_bucket[unit];
}

float* DataParallel::UnitGrads(int unit) const {
  return grads_ + (staging_.staged() ? staging_.UnitOffset(unit) : params_.units[unit].begin);
}

Status DataParallel::CommWaitsCompute() {
  CUDA_CHECK(cudaEventRecord(marker_, compute_));
  CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, marker_, 0));
  return Status::Ok();
}

// ZeRO-3: from the shard (the slice at its local offset) into the unit's
// gather buffer. ZeRO-1/2: in place, rank d's slice of the unit is the send
// buffer.
Status DataParallel::Gather(int unit, cudaStream_t stream) {
  const OwnedSlice& s = zero_.slices[unit];
  if (gather_.staged())
    return comm_->AllGather(weights_ + s.local, gathered_weights_ + gather_.UnitOffset(unit),
                            s.size(), ncclBfloat16, stream);
  return comm_->AllGather(weights_ + s.begin, weights_ + params_.units[unit].begin, s.size(),
                          ncclBfloat16, stream);
}

void DataParallel::BeginPass(Pass pass) {
  if (!active() || zero_.zero < 3) return;
  pass_ = &passes_[pass == Pass::kForward ? 0 : 1];
  pass_index_.assign(params_.units.size(), -1);
  for (size_t i = 0; i < pass_->order.size(); ++i)
    pass_index_[pass_->order[i]] = static_cast<int>(i);
}

Status DataParallel::BeforeUse(int unit) {
  if (!active() || zero_.zero < 3 || unit < 0) return Status::Ok();
  if (pass_ == nullptr || pass_index_[unit] < 0)
    return Status::Internal(StrCat("data parallel: unit ", unit, " used outside its gather pass"));
  for (int u : pass_->issue[pass_index_[unit]]) {
    P3D_RETURN_IF_ERROR(CommWaitsCompute());
    P3D_RETURN_IF_ERROR(Gather(u, comm_stream_));
    CUDA_CHECK(cudaEventRecord(gather_done_[u], comm_stream_));
  }
  CUDA_CHECK(cudaStreamWaitEvent(compute_, gather_done_[unit], 0));
  return Status::Ok();
}

Status DataParallel::BeforeGradWrite(int unit) {
  if (!active() || unit < 0) return Status::Ok();
  const int b = GradBuffer(unit);
  if (!pending_[b]) return Status::Ok();
  CUDA_CHECK(cudaStreamWaitEvent(compute_, grad_done_[b], 0));
  pending_[b] = false;
  return Status::Ok();
}

Status DataParallel::GradsReady(int unit, bool last_micro) {
  if (!active() || unit < 0) return Status::Ok();
  if (zero_.zero <= 1 && !last_micro) return Status::Ok();
  const int bucket = buckets_.unit_bucket[unit];
  if (--incomplete_[bucket] > 0) return Status::Ok();
  incomplete_[bucket] = static_cast<int>(buckets_.buckets[bucket].units.size());
  return LaunchBucket(bucket);
}

Status DataParallel::LaunchBucket(int bucket) {
  const GradBucket& k = buckets_.buckets[bucket];
  P3D_RETURN_IF_ERROR(CommWaitsCompute());
  if (zero_.zero <= 1) {
    float* g = grads_ + k.begin;  // the whole-layout buffer
    P3D_RETURN_IF_ERROR(comm_->AllReduce(g, g, k.size(), ncclFloat32, ncclSum, comm_stream_));
  } else {
    // In place: rank d's reduced block is at its slice's place in the unit.
    std::vector<ReduceScatterOp> ops;
    for (int unit : k.units) {
      const OwnedSlice& s = zero_.slices[unit];
      float* g = UnitGrads(unit);
      ops.push_back({g, g + (s.begin - params_.units[unit].begin), static_cast<size_t>(s.size())});
    }
    P3D_RETURN_IF_ERROR(comm_->ReduceScatterGroup(ops, ncclFloat32, ncclSum, comm_stream_));
    for (size_t i = 0; i < ops.size(); ++i) {
      const OwnedSlice& s = zero_.slices[k.units[i]];
      P3D_RETURN_IF_ERROR(AddF32(static_cast<const float*>(ops[i].recv), grad_shard_ + s.local,
                                 s.size(), comm_stream_));
    }
    // The bucket's units are adjacent in its staging buffer as in the layout.
    CUDA_CHECK(cudaMemsetAsync(grads_ + staging_.UnitOffset(k.units.back()), 0,
                               k.size() * sizeof(float), comm_stream_));
  }
  const int b = GradBuffer(k.units.front());
  CUDA_CHECK(cudaEventRecord(grad_done_[b], comm_stream_));
  pending_[b] = true;
  return Status::Ok();
}

Status DataParallel::FinishGrads() {
  if (!active()) return Status::Ok();
  for (size_t k = 0; k < incomplete_.size(); ++k)
    if (incomplete_[k] != static_cast<int>(buckets_.buckets[k].units.size()))
      return Status::Internal(StrCat("data parallel: bucket ", k, " was left with ", incomplete_[k],
                                     " of its units incomplete (never reduced)"));
  for (size_t b = 0; b < pending_.size(); ++b) {
    if (!pending_[b]) continue;
    CUDA_CHECK(cudaStreamWaitEvent(compute_, grad_done_[b], 0));
    pending_[b] = false;
  }
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
