#include "executor/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "executor/check.h"
#include "executor/checkpoint.h"
#include "executor/comm/process_groups.h"
#include "executor/data.h"
#include "executor/host/shard.h"
#include "executor/model.h"
#include "models/flops.h"
#include "models/model_json.h"
#include "simulator/hardware.h"
#include "simulator/memory_model.h"

namespace p3d {
namespace {

Status WriteFile(const std::string& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  out.close();
  if (!out) return Status::IoError(fmt::format("cannot write '{}'", path));
  return Status::Ok();
}

StatusOr<int64_t> DeviceUsedBytes(int64_t* total) {
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  *total = static_cast<int64_t>(total_b);
  return static_cast<int64_t>(total_b - free_b);
}

// What reference.py needs to rebuild the model: shape, recipe and tensor table.
nlohmann::json DumpMeta(const TrainOptions& o, const Model& model) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const ParamTensor& t : model.params().tensors)
    tensors.push_back({{"name", t.name},
                       {"rows", t.rows},
                       {"cols", t.cols},
                       {"offset", t.offset},
                       {"decay", t.decay}});
  return {{"model", ModelToJson(o.model)},
          {"micro_batch", o.plan.micro_batch},
          {"grad_accum", o.plan.grad_accum},
          {"seq", o.seq},
          {"steps", o.steps},
          {"lr", o.adam.lr},
          {"beta1", o.adam.beta1},
          {"beta2", o.adam.beta2},
          {"eps", o.adam.eps},
          {"weight_decay", o.adam.weight_decay},
          {"max_grad_norm", o.max_grad_norm},
          {"norm_eps", model.config().norm_eps},
          {"rope_theta", model.config().rope_theta},
          {"param_elements", model.params().total},
          {"tensors", tensors}};
}

// Every rank's step times and memory, all-gathered over the world; then each
// step's time becomes the slowest rank's (what the step costs the job).
Status GatherRankReports(const TrainOptions& o, ProcessGroups& groups, cudaStream_t stream,
                         TrainResult* r) {
  const int world = groups.grid().world_size();
  const size_t steps = r->steps.size(), per_rank = steps + 2;
  std::vector<double> mine(per_rank), all(per_rank * world);
  for (size_t i = 0; i < steps; ++i) mine[i] = r->steps[i].seconds;
  mine[steps] = static_cast<double>(r->memory.arena_bytes);
  mine[steps + 1] = static_cast<double>(r->memory.device_used_peak_bytes);
  double* dev = nullptr;
  CUDA_CHECK(cudaMalloc(&dev, sizeof(double) * per_rank * (world + 1)));
  std::unique_ptr<double, void (*)(double*)> guard(dev, [](double* p) { cudaFree(p); });
  CUDA_CHECK(
      cudaMemcpyAsync(dev, mine.data(), sizeof(double) * per_rank, cudaMemcpyHostToDevice, stream));
  P3D_RETURN_IF_ERROR(groups.world().AllGather(dev, dev + per_rank, per_rank, ncclFloat64, stream));
  // The watchdog waits for the all-gather first: a copy to pageable memory
  // blocks the host, outside any deadline, behind a collective that never ends.
  P3D_RETURN_IF_ERROR(groups.world().Wait(stream));
  CUDA_CHECK(cudaMemcpyAsync(all.data(), dev + per_rank, sizeof(double) * per_rank * world,
                             cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  r->ranks.clear();
  double slowest = -1, peak = -1;
  for (int k = 0; k < world; ++k) {
    const double* v = all.data() + per_rank * k;
    const RankCoords c = groups.grid().Coords(k);
    RankReport rep{
        k, c.tp, c.dp, c.pp, 0, static_cast<int64_t>(v[steps]), static_cast<int64_t>(v[steps + 1])};
    StatusOr<StepTimeStats> own = SummarizeStepTimes(std::vector<double>(v, v + steps), o.warmup);
    if (own.ok()) rep.median_step_s = own->median_s;
    if (rep.median_step_s > slowest) slowest = rep.median_step_s, r->slowest_rank = k;
    if (v[steps + 1] > peak) peak = v[steps + 1], r->peak_memory_rank = k;
    for (size_t i = 0; i < steps; ++i) r->steps[i].seconds = std::max(r->steps[i].seconds, v[i]);
    r->ranks.push_back(rep);
  }
  return Status::Ok();
}

// Rules of a run beyond CheckRunnable's (train_options.h): counts, the
// launched world against the plan, single-GPU-only files.
Status CheckTrainOptions(const TrainOptions& o, int world) {
  const Plan& p = o.plan;
  if (o.steps < 1) return Status::InvalidArgument("--steps must be >= 1");
  if (p.grad_accum < 1) return Status::InvalidArgument("--grad-accum must be >= 1");
  if (!o.dump_dir.empty() && !o.load_path.empty())
    return Status::InvalidArgument("--dump starts from the seed's initial weights; drop --load");
  if (p.gpus() != world ||
      (o.groups && (o.groups->grid().dp() != p.dp || o.groups->grid().tp() != p.tp ||
                    o.groups->grid().pp() != p.pp)))
    return Status::InvalidArgument(fmt::format(
        "rule world=dp*tp*pp: dp {} x tp {} x pp {} on {} ranks", p.dp, p.tp, p.pp, world));
  if (world > 1 && (!o.dump_dir.empty() || !o.save_path.empty() || !o.load_path.empty()))
    return Status::InvalidArgument(
        "--dump, --save and --load are single-GPU only (ZeRO ranks hold slices)");
  return Status::Ok();
}

// The card, its catalog entry and datasheet peak (the MFU denominator), or
// why there is no MFU.
Status DescribeDevice(TrainResult* r) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  r->device_name = prop.name;
  StatusOr<std::string> catalog = CatalogGpuForDevice(r->device_name);
  if (!catalog.ok()) {
    r->mfu_note = catalog.status().message();
    return Status::Ok();
  }
  P3D_ASSIGN_OR_RETURN(ClusterSpec cluster, CatalogCluster(*catalog));
  r->catalog_gpu = *catalog;
  r->peak_flops = cluster.gpu.peak_flops;
  return Status::Ok();
}

// This rank's part of the plan: its TP / PP coordinates, layers and
// communicators, its DP rank and ZeRO stage, the micro-batch shape.
StatusOr<ModelConfig> ModelConfigFor(const TrainOptions& o, const RankCoords& coords) {
  const Plan& p = o.plan;
  ModelConfig config;
  config.spec = o.model;
  config.parallel = SingleGpuContext(o.model);
  if (p.tp * p.pp > 1) {
    ParallelContext& ctx = config.parallel;
    ctx.tp = p.tp;
    ctx.tp_rank = coords.tp;
    ctx.pp = p.pp;
    ctx.pp_rank = coords.pp;
    ctx.vpp = p.vpp;
    ctx.sequence_parallel = p.sequence_parallel;
    P3D_ASSIGN_OR_RETURN(std::vector<Range> chunks, ModelChunkLayers(o.model.layers, p.pp * p.vpp));
    ctx.first_layer = StageChunkLayers(chunks, p.pp, coords.pp, 0).offset;
    ctx.layers = o.model.layers / p.pp;
    config.model_parallel.tp = p.tp > 1 ? &o.groups->group(GroupKind::kTensor) : nullptr;
    config.model_parallel.pp = p.pp > 1 ? &o.groups->group(GroupKind::kPipeline) : nullptr;
    config.model_parallel.mp = &o.groups->group(GroupKind::kModel);
    config.model_parallel.schedule = ScheduleOf(p);
    config.model_parallel.microbatches = p.grad_accum;
  }
  config.shape = {p.micro_batch, o.seq, p.recompute, o.logits_chunk};
  config.shape.attention = p.attention;
  config.offload = p.offload;
  config.offload_threads = o.offload_threads;
  config.gemm_epilogues = o.gemm_epilogues;
  config.data = {p.dp, coords.dp, p.zero, p.dp > 1 ? &o.groups->group(GroupKind::kData) : nullptr,
                 o.grad_bucket_bytes};
  return config;
}

// The arena the model planned, region by region and by term.
void RecordMemoryPlan(const Model& model, MemoryReport* m) {
  const ArenaPlan& arena = model.memory().arena;
  m->arena_bytes = arena.total_bytes();
  m->host_pinned_bytes = model.host_optimizer_bytes();
  for (int t = 0; t < kRegionTerms; ++t)
    m->term_bytes[t] = arena.TermBytes(static_cast<RegionTerm>(t));
  m->regions = arena.regions();
}

// The global step's micro-batches (grad_accum x DP); each DP rank runs its
// grad_accum of them.
StatusOr<std::unique_ptr<TokenSource>> OpenTokenSource(const TrainOptions& o) {
  const BatchShape shape{o.plan.micro_batch, o.seq, o.plan.grad_accum * o.plan.dp};
  if (o.data_path.empty()) return MakeSyntheticSource(o.seed, o.model.vocab, shape);
  P3D_ASSIGN_OR_RETURN(TokenDType dtype, ParseTokenDType(o.data_dtype));
  return MakeFileSource(o.data_path, dtype, o.model.vocab, shape);
}

// Where the run starts: a checkpoint (--load), or the seed's initial weights.
StatusOr<CheckpointInfo> LoadOrInitialize(const TrainOptions& o, Model& model) {
  if (!o.load_path.empty()) return LoadCheckpoint(o.load_path, model);
  P3D_RETURN_IF_ERROR(model.InitParameters(o.seed));
  return CheckpointInfo{0, 0, o.seed};
}

// --dump: what tests/executor/reference.py rebuilds and compares: the initial
// weights, every step's tokens and targets, the first step's logits (first
// micro-batch) and gradients, and meta.json (shape, recipe, tensor table,
// losses and gradient norms).
class ReferenceDump {
 public:
  static StatusOr<std::unique_ptr<ReferenceDump>> Start(const std::string& dir,
                                                        const Model& model) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return Status::IoError(fmt::format("--dump: cannot create '{}': {}", dir, ec.message()));
    std::vector<uint16_t> w(model.params().total);
    P3D_RETURN_IF_ERROR(model.CopyOut(ParamBuffer::kWeights, w.data()));
    P3D_RETURN_IF_ERROR(WriteFile(dir + "/weights.bin", w.data(), w.size() * 2));
    std::unique_ptr<ReferenceDump> d(new ReferenceDump(dir));
    d->tokens_.open(dir + "/tokens.bin", std::ios::binary | std::ios::trunc);
    const ModelConfig& c = model.config();
    d->logits_.resize(c.shape.micro_batch * c.shape.seq * model.local().vocab);
    return StatusOr<std::unique_ptr<ReferenceDump>>(std::move(d));
  }
  void AppendTokens(const std::vector<int32_t>& tokens, const std::vector<int32_t>& targets) {
    tokens_.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 4);
    tokens_.write(reinterpret_cast<const char*>(targets.data()), targets.size() * 4);
  }
  float* logits() { return logits_.data(); }
  // After the dumped step's backward: its gradients and the captured logits.
  Status WriteGradients(const Model& model) {
    std::vector<float> g(model.params().total);
    P3D_RETURN_IF_ERROR(model.CopyOut(ParamBuffer::kGrads, g.data()));
    P3D_RETURN_IF_ERROR(WriteFile(dir_ + "/grads.bin", g.data(), g.size() * 4));
    return WriteFile(dir_ + "/logits.bin", logits_.data(), logits_.size() * sizeof(float));
  }
  Status Finish(const TrainOptions& o, const Model& model, const std::vector<StepRecord>& steps) {
    nlohmann::json meta = DumpMeta(o, model);
    nlohmann::json losses = nlohmann::json::array(), norms = nlohmann::json::array();
    for (const StepRecord& s : steps) {
      losses.push_back(s.loss);
      norms.push_back(s.grad_norm);
    }
    meta["losses"] = losses;
    meta["grad_norms"] = norms;
    const std::string text = meta.dump(1);
    return WriteFile(dir_ + "/meta.json", text.data(), text.size());
  }

 private:
  explicit ReferenceDump(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  std::ofstream tokens_;
  std::vector<float> logits_;
};

// One optimizer step of this rank: its micro-batches (through the pipeline
// schedule with pp > 1), the optimizer, the step's loss and gradient norm.
class StepRunner {
 public:
  StepRunner(const TrainOptions& o, Model& model, const TokenSource& data, int dp_rank,
             int64_t adam_steps, ReferenceDump* dump)
      : o_(o),
        model_(model),
        data_(data),
        dp_rank_(dp_rank),
        adam_steps_(adam_steps),
        dump_(dump) {}
  int64_t adam_steps() const { return adam_steps_; }

  // timer: phase-time this step (the profiled step); dump_step: write its
  // logits and gradients (--dump, first step).
  StatusOr<StepRecord> Run(int64_t step, PhaseTimer* timer, bool dump_step) {
    if (o_.before_step) o_.before_step(step);
    const auto start = std::chrono::steady_clock::now();
    P3D_RETURN_IF_ERROR(model_.ZeroGrads());
    P3D_RETURN_IF_ERROR(MicroBatches(step, timer, dump_step));
    if (dump_step) P3D_RETURN_IF_ERROR(dump_->WriteGradients(model_));
    AdamWHyper h = o_.adam;
    h.step = ++adam_steps_;
    P3D_RETURN_IF_ERROR(model_.OptimizerStep(h, o_.max_grad_norm, timer));
    P3D_ASSIGN_OR_RETURN(StepScalars sc, model_.ReadScalars());
    StepRecord rec;
    rec.step = step;
    rec.loss = static_cast<double>(sc.loss_sum) / static_cast<double>(GlobalTokens(o_));
    rec.grad_norm = sc.grad_norm;
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return rec;
  }

  // Tokens of one global step: B x S x grad_accum x DP.
  static int64_t GlobalTokens(const TrainOptions& o) {
    return o.plan.micro_batch * o.seq * o.plan.grad_accum * o.plan.dp;
  }

 private:
  // Forward and backward of this DP rank's micro-batches of `step`.
  Status MicroBatches(int64_t step, PhaseTimer* timer, bool dump_step) {
    const int64_t ga = o_.plan.grad_accum;
    const float grad_scale = 1.0f / static_cast<float>(GlobalTokens(o_));
    if (o_.plan.pp > 1) {
      MicroBatchFn batch = [&](int micro, std::vector<int32_t>* tok, std::vector<int32_t>* tgt) {
        return data_.Batch(step, dp_rank_ * ga + micro, tok, tgt);
      };
      return model_.TrainStepPipelined(batch, grad_scale, timer);
    }
    for (int64_t micro = 0; micro < ga; ++micro) {
      P3D_RETURN_IF_ERROR(data_.Batch(step, dp_rank_ * ga + micro, &tokens_, &targets_));
      if (dump_ && timer == nullptr) dump_->AppendTokens(tokens_, targets_);
      float* logits_out = dump_step && micro == 0 ? dump_->logits() : nullptr;
      P3D_RETURN_IF_ERROR(model_.TrainMicroBatch(tokens_, targets_, grad_scale, timer, logits_out,
                                                 micro + 1 == ga));
    }
    return Status::Ok();
  }

  const TrainOptions& o_;
  Model& model_;
  const TokenSource& data_;
  const int dp_rank_;
  int64_t adam_steps_;
  ReferenceDump* dump_;  // --dump only
  std::vector<int32_t> tokens_, targets_;
};

// Step-time statistics after warm-up and what follows from them: tokens/s
// over the global batch, TFLOP/s per GPU, MFU.
void SummarizeTiming(const TrainOptions& o, int world, TrainResult* r) {
  std::vector<double> times;
  for (const StepRecord& s : r->steps) times.push_back(s.seconds);
  StatusOr<StepTimeStats> stats = SummarizeStepTimes(times, o.warmup);
  r->world = world;
  r->model_flops_per_step =
      ModelFlopsPerStep(o.model, o.plan.micro_batch * o.plan.grad_accum * o.plan.dp, o.seq);
  if (!stats.ok()) return;
  r->time = *stats;
  r->tokens_per_s = static_cast<double>(StepRunner::GlobalTokens(o)) / stats->median_s;
  r->tflops_per_gpu = r->model_flops_per_step / stats->median_s / world / 1e12;
  if (r->peak_flops > 0) r->mfu = r->tflops_per_gpu * 1e12 / r->peak_flops;
}

// --profile: one extra step with a CUDA event at every phase change.
Status ProfileStep(StepRunner& runner, int64_t step, cudaStream_t stream, TrainResult* r) {
  PhaseTimer timer(stream);
  P3D_ASSIGN_OR_RETURN(StepRecord rec, runner.Run(step, &timer, false));
  P3D_RETURN_IF_ERROR(timer.Finish());
  std::array<double, kPhases> phases{};
  for (int p = 0; p < kPhases; ++p) phases[p] = timer.seconds(static_cast<Phase>(p));
  r->phase_seconds = phases;
  r->profiled_step_seconds = rec.seconds;
  return Status::Ok();
}

}  // namespace

StatusOr<TrainResult> Train(const TrainOptions& o,
                            const std::function<void(const StepRecord&)>& on_step) {
  const int world = o.groups ? o.groups->grid().world_size() : 1;
  P3D_RETURN_IF_ERROR(CheckTrainOptions(o, world));
  const RankCoords coords = o.groups ? o.groups->grid().Coords(o.groups->rank()) : RankCoords{};
  TrainResult r;
  P3D_RETURN_IF_ERROR(DescribeDevice(&r));
  P3D_ASSIGN_OR_RETURN(r.memory.device_used_before_bytes,
                       DeviceUsedBytes(&r.memory.device_total_bytes));
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::unique_ptr<cudaStream_t, void (*)(cudaStream_t*)> stream_guard(
      &stream, [](cudaStream_t* s) { cudaStreamDestroy(*s); });

  P3D_ASSIGN_OR_RETURN(ModelConfig config, ModelConfigFor(o, coords));
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Create(config, stream));
  r.param_count = model->params().count();
  RecordMemoryPlan(*model, &r.memory);
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<TokenSource> data, OpenTokenSource(o));
  r.data = data->Describe();
  P3D_ASSIGN_OR_RETURN(CheckpointInfo ck, LoadOrInitialize(o, *model));
  r.first_step = ck.step;
  std::unique_ptr<ReferenceDump> dump;
  if (!o.dump_dir.empty()) {
    P3D_ASSIGN_OR_RETURN(dump, ReferenceDump::Start(o.dump_dir, *model));
  }

  StepRunner runner(o, *model, *data, coords.dp, ck.adam_steps, dump.get());
  for (int64_t i = 0; i < o.steps; ++i) {
    P3D_ASSIGN_OR_RETURN(StepRecord rec, runner.Run(ck.step + i, nullptr, dump && i == 0));
    int64_t used = 0, dev_total = 0;
    P3D_ASSIGN_OR_RETURN(used, DeviceUsedBytes(&dev_total));
    r.memory.device_used_peak_bytes = std::max(r.memory.device_used_peak_bytes, used);
    r.steps.push_back(rec);
    if (on_step) on_step(rec);
  }
  ck.step += o.steps;
  ck.adam_steps = runner.adam_steps();
  if (dump) P3D_RETURN_IF_ERROR(dump->Finish(o, *model, r.steps));
  if (!o.save_path.empty()) P3D_RETURN_IF_ERROR(SaveCheckpoint(o.save_path, *model, ck));

  if (o.groups && world > 1) P3D_RETURN_IF_ERROR(GatherRankReports(o, *o.groups, stream, &r));
  SummarizeTiming(o, world, &r);
  if (o.profile) P3D_RETURN_IF_ERROR(ProfileStep(runner, ck.step, stream, &r));
  return r;
}

}  // namespace p3d
