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
          {"micro_batch", o.micro_batch},
          {"grad_accum", o.grad_accum},
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

}  // namespace

StatusOr<TrainResult> Train(const TrainOptions& o,
                            const std::function<void(const StepRecord&)>& on_step) {
  if (o.steps < 1) return Status::InvalidArgument("--steps must be >= 1");
  if (o.grad_accum < 1) return Status::InvalidArgument("--grad-accum must be >= 1");
  if (!o.dump_dir.empty() && !o.load_path.empty())
    return Status::InvalidArgument("--dump starts from the seed's initial weights; drop --load");
  const int world = o.groups ? o.groups->grid().world_size() : 1;
  if (o.dp * o.tp * o.pp != world ||
      (o.groups && (o.groups->grid().dp() != o.dp || o.groups->grid().tp() != o.tp ||
                    o.groups->grid().pp() != o.pp)))
    return Status::InvalidArgument(fmt::format(
        "rule world=dp*tp*pp: dp {} x tp {} x pp {} on {} ranks", o.dp, o.tp, o.pp, world));
  if (world > 1 && (!o.dump_dir.empty() || !o.save_path.empty() || !o.load_path.empty()))
    return Status::InvalidArgument(
        "--dump, --save and --load are single-GPU only (ZeRO ranks hold slices)");
  const int rank = o.groups ? o.groups->rank() : 0;
  const RankCoords coords = o.groups ? o.groups->grid().Coords(rank) : RankCoords{};
  const int dp_rank = coords.dp;
  TrainResult r;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  r.device_name = prop.name;
  StatusOr<std::string> catalog = CatalogGpuForDevice(r.device_name);
  if (catalog.ok()) {
    P3D_ASSIGN_OR_RETURN(ClusterSpec cluster, CatalogCluster(*catalog));
    r.catalog_gpu = *catalog;
    r.peak_flops = cluster.gpu.peak_flops;
  } else {
    r.mfu_note = catalog.status().message();
  }

  P3D_ASSIGN_OR_RETURN(r.memory.device_used_before_bytes,
                       DeviceUsedBytes(&r.memory.device_total_bytes));
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  std::unique_ptr<cudaStream_t, void (*)(cudaStream_t*)> stream_guard(
      &stream, [](cudaStream_t* s) { cudaStreamDestroy(*s); });

  ModelConfig config;
  config.spec = o.model;
  config.parallel = SingleGpuContext(o.model);
  if (o.tp * o.pp > 1) {
    ParallelContext& ctx = config.parallel;
    ctx.tp = o.tp;
    ctx.tp_rank = coords.tp;
    ctx.pp = o.pp;
    ctx.pp_rank = coords.pp;
    ctx.vpp = o.vpp;
    ctx.sequence_parallel = o.sequence_parallel;
    P3D_ASSIGN_OR_RETURN(std::vector<Range> chunks, ModelChunkLayers(o.model.layers, o.pp * o.vpp));
    ctx.first_layer = StageChunkLayers(chunks, o.pp, coords.pp, 0).offset;
    ctx.layers = o.model.layers / o.pp;
    config.model_parallel.tp = o.tp > 1 ? &o.groups->group(GroupKind::kTensor) : nullptr;
    config.model_parallel.pp = o.pp > 1 ? &o.groups->group(GroupKind::kPipeline) : nullptr;
    config.model_parallel.mp = &o.groups->group(GroupKind::kModel);
    config.model_parallel.schedule =
        o.vpp > 1 ? ScheduleKind::kInterleaved1F1B : ScheduleKind::k1F1B;
    config.model_parallel.microbatches = o.grad_accum;
  }
  config.shape = {o.micro_batch, o.seq, o.recompute, o.logits_chunk};
  config.shape.attention = o.attention;
  config.offload = o.offload;
  config.offload_threads = o.offload_threads;
  config.data = {o.dp, dp_rank, o.zero, o.dp > 1 ? &o.groups->group(GroupKind::kData) : nullptr};
  P3D_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::Create(config, stream));
  r.param_count = model->params().count();
  const TrainingMemoryPlan& plan = model->memory();
  r.memory.arena_bytes = plan.arena.total_bytes();
  r.memory.host_pinned_bytes = model->host_optimizer_bytes();
  for (int t = 0; t < kRegionTerms; ++t)
    r.memory.term_bytes[t] = plan.arena.TermBytes(static_cast<RegionTerm>(t));
  r.memory.regions = plan.arena.regions();

  // The global step's micro-batches; this DP rank runs its grad_accum of them.
  const BatchShape shape{o.micro_batch, o.seq, o.grad_accum * o.dp};
  std::unique_ptr<TokenSource> data;
  if (o.data_path.empty()) {
    P3D_ASSIGN_OR_RETURN(data, MakeSyntheticSource(o.seed, o.model.vocab, shape));
  } else {
    P3D_ASSIGN_OR_RETURN(TokenDType dtype, ParseTokenDType(o.data_dtype));
    P3D_ASSIGN_OR_RETURN(data, MakeFileSource(o.data_path, dtype, o.model.vocab, shape));
  }
  r.data = data->Describe();

  CheckpointInfo ck{0, 0, o.seed};
  if (!o.load_path.empty()) {
    P3D_ASSIGN_OR_RETURN(ck, LoadCheckpoint(o.load_path, *model));
  } else {
    P3D_RETURN_IF_ERROR(model->InitParameters(o.seed));
  }
  r.first_step = ck.step;

  const bool dump = !o.dump_dir.empty();
  const int64_t T = o.micro_batch * o.seq, total = model->params().total;
  std::ofstream dump_tokens;
  std::vector<float> logits;
  if (dump) {
    std::error_code ec;
    std::filesystem::create_directories(o.dump_dir, ec);
    if (ec)
      return Status::IoError(
          fmt::format("--dump: cannot create '{}': {}", o.dump_dir, ec.message()));
    std::vector<uint16_t> w(total);
    P3D_RETURN_IF_ERROR(model->CopyOut(ParamBuffer::kWeights, w.data()));
    P3D_RETURN_IF_ERROR(WriteFile(o.dump_dir + "/weights.bin", w.data(), w.size() * 2));
    dump_tokens.open(o.dump_dir + "/tokens.bin", std::ios::binary | std::ios::trunc);
    logits.resize(T * model->local().vocab);
  }

  const int64_t global_tokens = T * o.grad_accum * o.dp;
  const float grad_scale = 1.0f / static_cast<float>(global_tokens);
  std::vector<int32_t> tokens, targets;
  auto run_step = [&](int64_t step, PhaseTimer* timer, bool dump_step) -> StatusOr<StepRecord> {
    if (o.before_step) o.before_step(step);
    const auto start = std::chrono::steady_clock::now();
    P3D_RETURN_IF_ERROR(model->ZeroGrads());
    if (o.pp > 1) {
      MicroBatchFn batch = [&](int micro, std::vector<int32_t>* tok, std::vector<int32_t>* tgt) {
        return data->Batch(step, dp_rank * o.grad_accum + micro, tok, tgt);
      };
      P3D_RETURN_IF_ERROR(model->TrainStepPipelined(batch, grad_scale, timer));
    }
    for (int64_t micro = 0; micro < o.grad_accum && o.pp == 1; ++micro) {
      P3D_RETURN_IF_ERROR(data->Batch(step, dp_rank * o.grad_accum + micro, &tokens, &targets));
      if (dump && timer == nullptr) {
        dump_tokens.write(reinterpret_cast<const char*>(tokens.data()), T * 4);
        dump_tokens.write(reinterpret_cast<const char*>(targets.data()), T * 4);
      }
      float* logits_out = dump_step && micro == 0 ? logits.data() : nullptr;
      P3D_RETURN_IF_ERROR(model->TrainMicroBatch(tokens, targets, grad_scale, timer, logits_out,
                                                 micro + 1 == o.grad_accum));
    }
    if (dump_step) {
      std::vector<float> g(total);
      P3D_RETURN_IF_ERROR(model->CopyOut(ParamBuffer::kGrads, g.data()));
      P3D_RETURN_IF_ERROR(WriteFile(o.dump_dir + "/grads.bin", g.data(), g.size() * 4));
      P3D_RETURN_IF_ERROR(
          WriteFile(o.dump_dir + "/logits.bin", logits.data(), logits.size() * sizeof(float)));
    }
    AdamWHyper h = o.adam;
    h.step = ++ck.adam_steps;
    P3D_RETURN_IF_ERROR(model->OptimizerStep(h, o.max_grad_norm, timer));
    P3D_ASSIGN_OR_RETURN(StepScalars sc, model->ReadScalars());
    StepRecord rec;
    rec.step = step;
    rec.loss = static_cast<double>(sc.loss_sum) / static_cast<double>(global_tokens);
    rec.grad_norm = sc.grad_norm;
    rec.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return rec;
  };

  for (int64_t i = 0; i < o.steps; ++i) {
    const int64_t step = ck.step + i;
    P3D_ASSIGN_OR_RETURN(StepRecord rec, run_step(step, nullptr, dump && i == 0));
    int64_t used = 0, dev_total = 0;
    P3D_ASSIGN_OR_RETURN(used, DeviceUsedBytes(&dev_total));
    r.memory.device_used_peak_bytes = std::max(r.memory.device_used_peak_bytes, used);
    r.steps.push_back(rec);
    if (on_step) on_step(rec);
  }
  ck.step += o.steps;
  if (dump) {
    nlohmann::json meta = DumpMeta(o, *model);
    nlohmann::json losses = nlohmann::json::array(), norms = nlohmann::json::array();
    for (const StepRecord& s : r.steps) {
      losses.push_back(s.loss);
      norms.push_back(s.grad_norm);
    }
    meta["losses"] = losses;
    meta["grad_norms"] = norms;
    const std::string text = meta.dump(1);
    P3D_RETURN_IF_ERROR(WriteFile(o.dump_dir + "/meta.json", text.data(), text.size()));
  }
  if (!o.save_path.empty()) P3D_RETURN_IF_ERROR(SaveCheckpoint(o.save_path, *model, ck));

  if (o.groups && world > 1) P3D_RETURN_IF_ERROR(GatherRankReports(o, *o.groups, stream, &r));
  std::vector<double> times;
  for (const StepRecord& s : r.steps) times.push_back(s.seconds);
  StatusOr<StepTimeStats> stats = SummarizeStepTimes(times, o.warmup);
  r.world = world;
  r.model_flops_per_step = ModelFlopsPerStep(o.model, o.micro_batch * o.grad_accum * o.dp, o.seq);
  if (stats.ok()) {
    r.time = *stats;
    r.tokens_per_s = static_cast<double>(global_tokens) / stats->median_s;
    r.tflops_per_gpu = r.model_flops_per_step / stats->median_s / world / 1e12;
    if (r.peak_flops > 0) r.mfu = r.tflops_per_gpu * 1e12 / r.peak_flops;
  }

  if (o.profile) {
    PhaseTimer timer(stream);
    P3D_ASSIGN_OR_RETURN(StepRecord rec, run_step(ck.step, &timer, false));
    P3D_RETURN_IF_ERROR(timer.Finish());
    std::array<double, kPhases> phases{};
    for (int p = 0; p < kPhases; ++p) phases[p] = timer.seconds(static_cast<Phase>(p));
    r.phase_seconds = phases;
    r.profiled_step_seconds = rec.seconds;
  }
  return r;
}

}  // namespace p3d
