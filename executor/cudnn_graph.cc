// cuDNN backend graph wrapper (cudnn_graph.h).
#include "executor/cudnn_graph.h"

#include <fmt/format.h>

#include <utility>

#include "executor/str_cat.h"

namespace p3d {

std::string CudnnStatusString(cudnnStatus_t status) {
  char last[1024] = "";
  cudnnGetLastErrorString(last, sizeof(last));
  std::string s = cudnnGetErrorString(status);
  if (last[0] != '\0') s += fmt::format(" (last error: {})", last);
  return s;
}

StatusOr<std::shared_ptr<BackendDescriptor>> BackendDescriptor::Create(
    cudnnBackendDescriptorType_t type) {
  cudnnBackendDescriptor_t d = nullptr;
  CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &d));
  return std::shared_ptr<BackendDescriptor>(new BackendDescriptor(d));
}

Status BackendDescriptor::Set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type,
                              int64_t count, const void* values) {
  CUDNN_CHECK(cudnnBackendSetAttribute(get(), name, type, count, values));
  return Status::Ok();
}

Status BackendDescriptor::Finalize() {
  CUDNN_CHECK(cudnnBackendFinalize(get()));
  return Status::Ok();
}

Dims4 PackedStrides(const Dims4& dims) {
  Dims4 s{};
  int64_t stride = 1;
  for (int i = 3; i >= 0; --i) {
    s[i] = stride;
    stride *= dims[i];
  }
  return s;
}

StatusOr<GraphTensor> GraphBuilder::Tensor(cudnnDataType_t dtype, const Dims4& dims,
                                           const Dims4& strides, bool is_virtual) {
  return AddTensor({next_uid_++, dtype, dims, strides, is_virtual, false});
}

StatusOr<GraphTensor> GraphBuilder::Scalar(cudnnDataType_t dtype) {
  return AddTensor({next_uid_++, dtype, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true});
}

StatusOr<GraphTensor> GraphBuilder::AddTensor(const GraphTensor& t) {
  P3D_ASSIGN_OR_RETURN(auto d, BackendDescriptor::Create(CUDNN_BACKEND_TENSOR_DESCRIPTOR));
  P3D_RETURN_IF_ERROR(d->SetDataType(CUDNN_ATTR_TENSOR_DATA_TYPE, t.dtype));
  P3D_RETURN_IF_ERROR(d->Set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, t.dims.data()));
  P3D_RETURN_IF_ERROR(d->Set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, t.strides.data()));
  P3D_RETURN_IF_ERROR(d->SetInt64(CUDNN_ATTR_TENSOR_UNIQUE_ID, t.uid));
  P3D_RETURN_IF_ERROR(d->SetInt64(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, 16));
  // A by-value scalar says only that; every other tensor says whether it is virtual.
  const bool flag = t.by_value || t.is_virtual;
  P3D_RETURN_IF_ERROR(
      d->Set(t.by_value ? CUDNN_ATTR_TENSOR_IS_BY_VALUE : CUDNN_ATTR_TENSOR_IS_VIRTUAL,
             CUDNN_TYPE_BOOLEAN, 1, &flag));
  P3D_RETURN_IF_ERROR(d->Finalize());
  tensors_.emplace_back(t.uid, std::move(d));
  return t;
}

StatusOr<std::shared_ptr<BackendDescriptor>> GraphBuilder::Desc(int64_t uid) const {
  for (const auto& [id, d] : tensors_)
    if (id == uid) return d;
  return Status::Internal(StrCat("GraphBuilder: no tensor with uid ", uid));
}

Status GraphBuilder::AddOp(cudnnBackendDescriptorType_t type,
                           std::shared_ptr<BackendDescriptor> settings,
                           cudnnBackendAttributeName_t settings_attr,
                           std::initializer_list<OpTensor> tensors) {
  P3D_ASSIGN_OR_RETURN(auto op, BackendDescriptor::Create(type));
  if (settings != nullptr) {
    P3D_RETURN_IF_ERROR(settings->Finalize());
    P3D_RETURN_IF_ERROR(op->SetDescriptor(settings_attr, *settings));
    keep_alive_.push_back(std::move(settings));
  }
  for (const auto& [attr, tensor] : tensors) {
    if (tensor == nullptr) continue;
    P3D_ASSIGN_OR_RETURN(auto d, Desc(tensor->uid));
    P3D_RETURN_IF_ERROR(op->SetDescriptor(attr, *d));
  }
  P3D_RETURN_IF_ERROR(op->Finalize());
  ops_.push_back(std::move(op));
  return Status::Ok();
}

Status GraphBuilder::Pointwise(cudnnPointwiseMode_t mode, const GraphTensor& x,
                               const GraphTensor* b, const GraphTensor* t, const GraphTensor& y,
                               cudnnDataType_t math, int64_t axis) {
  P3D_ASSIGN_OR_RETURN(auto pw, BackendDescriptor::Create(CUDNN_BACKEND_POINTWISE_DESCRIPTOR));
  P3D_RETURN_IF_ERROR(pw->Set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode));
  P3D_RETURN_IF_ERROR(pw->SetDataType(CUDNN_ATTR_POINTWISE_MATH_PREC, math));
  if (axis >= 0) P3D_RETURN_IF_ERROR(pw->SetInt64(CUDNN_ATTR_POINTWISE_AXIS, axis));
  return AddOp(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, std::move(pw),
               CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR,
               {{CUDNN_ATTR_OPERATION_POINTWISE_XDESC, &x},
                {CUDNN_ATTR_OPERATION_POINTWISE_BDESC, b},
                {CUDNN_ATTR_OPERATION_POINTWISE_TDESC, t},
                {CUDNN_ATTR_OPERATION_POINTWISE_YDESC, &y}});
}

Status GraphBuilder::Matmul(const GraphTensor& a, const GraphTensor& b, const GraphTensor& c) {
  P3D_ASSIGN_OR_RETURN(auto mm, BackendDescriptor::Create(CUDNN_BACKEND_MATMUL_DESCRIPTOR));
  P3D_RETURN_IF_ERROR(mm->SetDataType(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT));
  return AddOp(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, std::move(mm),
               CUDNN_ATTR_OPERATION_MATMUL_DESC,
               {{CUDNN_ATTR_OPERATION_MATMUL_ADESC, &a},
                {CUDNN_ATTR_OPERATION_MATMUL_BDESC, &b},
                {CUDNN_ATTR_OPERATION_MATMUL_CDESC, &c}});
}

Status GraphBuilder::Reduction(cudnnReduceTensorOp_t red, const GraphTensor& x,
                               const GraphTensor& y) {
  P3D_ASSIGN_OR_RETURN(auto rd, BackendDescriptor::Create(CUDNN_BACKEND_REDUCTION_DESCRIPTOR));
  P3D_RETURN_IF_ERROR(
      rd->Set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &red));
  P3D_RETURN_IF_ERROR(rd->SetDataType(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT));
  return AddOp(
      CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, std::move(rd),
      CUDNN_ATTR_OPERATION_REDUCTION_DESC,
      {{CUDNN_ATTR_OPERATION_REDUCTION_XDESC, &x}, {CUDNN_ATTR_OPERATION_REDUCTION_YDESC, &y}});
}

Status GraphBuilder::Reshape(const GraphTensor& x, const GraphTensor& y) {
  return AddOp(
      CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, nullptr, {},
      {{CUDNN_ATTR_OPERATION_RESHAPE_XDESC, &x}, {CUDNN_ATTR_OPERATION_RESHAPE_YDESC, &y}});
}

StatusOr<GraphTensor> GraphBuilder::VirtualPointwise(cudnnPointwiseMode_t mode,
                                                     const GraphTensor& x, const GraphTensor* b,
                                                     const Dims4& dims, cudnnDataType_t dtype) {
  P3D_ASSIGN_OR_RETURN(GraphTensor y, Virtual(dtype, dims));
  P3D_RETURN_IF_ERROR(Pointwise(mode, x, b, nullptr, y));
  return y;
}

StatusOr<GraphTensor> GraphBuilder::VirtualMatmul(const GraphTensor& a, const GraphTensor& b,
                                                  cudnnDataType_t dtype) {
  P3D_ASSIGN_OR_RETURN(GraphTensor c, Virtual(dtype, {a.dims[0], a.dims[1], a.dims[2], b.dims[3]}));
  P3D_RETURN_IF_ERROR(Matmul(a, b, c));
  return c;
}

StatusOr<GraphTensor> GraphBuilder::VirtualReduction(cudnnReduceTensorOp_t op, const GraphTensor& x,
                                                     const Dims4& dims) {
  P3D_ASSIGN_OR_RETURN(GraphTensor y, Virtual(CUDNN_DATA_FLOAT, dims));
  P3D_RETURN_IF_ERROR(Reduction(op, x, y));
  return y;
}

namespace {

// Engine configurations the heuristics propose for the graph in `mode`.
StatusOr<std::vector<std::shared_ptr<BackendDescriptor>>> EngineConfigs(
    const BackendDescriptor& graph, cudnnBackendHeurMode_t mode) {
  P3D_ASSIGN_OR_RETURN(auto heur, BackendDescriptor::Create(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR));
  P3D_RETURN_IF_ERROR(heur->SetDescriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph));
  P3D_RETURN_IF_ERROR(heur->Set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode));
  P3D_RETURN_IF_ERROR(heur->Finalize());
  int64_t count = 0;
  CUDNN_CHECK(cudnnBackendGetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                       CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
  std::vector<std::shared_ptr<BackendDescriptor>> cfgs;
  std::vector<cudnnBackendDescriptor_t> raw;
  for (int64_t i = 0; i < count; ++i) {
    P3D_ASSIGN_OR_RETURN(auto c, BackendDescriptor::Create(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
    raw.push_back(c->get());
    cfgs.push_back(std::move(c));
  }
  int64_t got = 0;
  if (count > 0) {
    CUDNN_CHECK(cudnnBackendGetAttribute(heur->get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, raw.data()));
  }
  cfgs.resize(got);
  return cfgs;
}

// "engine <global index>" of an engine configuration ("engine ?" if unreadable).
std::string EngineName(const BackendDescriptor& cfg) {
  auto engine = BackendDescriptor::Create(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  if (!engine.ok()) return "engine ?";
  cudnnBackendDescriptor_t raw = (*engine)->get();
  int64_t n = 0, index = -1;
  if (cudnnBackendGetAttribute(cfg.get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                               &raw) != CUDNN_STATUS_SUCCESS ||
      cudnnBackendGetAttribute(raw, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n,
                               &index) != CUDNN_STATUS_SUCCESS)
    return "engine ?";
  return StrCat("engine ", index);
}

}  // namespace

StatusOr<GraphPlan> GraphBuilder::Build(cudnnHandle_t handle) {
  P3D_ASSIGN_OR_RETURN(auto graph,
                       BackendDescriptor::Create(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR));
  P3D_RETURN_IF_ERROR(graph->Set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle));
  std::vector<cudnnBackendDescriptor_t> raw_ops;
  for (const auto& op : ops_) raw_ops.push_back(op->get());
  P3D_RETURN_IF_ERROR(graph->Set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
                                 static_cast<int64_t>(raw_ops.size()), raw_ops.data()));
  P3D_RETURN_IF_ERROR(graph->Finalize());

  std::string refusals;
  int tried = 0;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    auto cfgs = EngineConfigs(*graph, mode);
    if (!cfgs.ok()) {
      refusals = cfgs.status().ToString();
      continue;
    }
    for (const auto& cfg : *cfgs) {
      ++tried;
      P3D_ASSIGN_OR_RETURN(auto plan,
                           BackendDescriptor::Create(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR));
      P3D_RETURN_IF_ERROR(
          plan->Set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle));
      P3D_RETURN_IF_ERROR(plan->SetDescriptor(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *cfg));
      Status fin = plan->Finalize();
      if (!fin.ok()) {
        refusals = fin.ToString();
        continue;
      }
      GraphPlan out;
      int64_t n = 0;
      CUDNN_CHECK(cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                           CUDNN_TYPE_INT64, 1, &n, &out.workspace_bytes_));
      out.engine_ = EngineName(*cfg);
      out.plan_ = std::move(plan);
      out.keep_alive_ = ops_;
      out.keep_alive_.insert(out.keep_alive_.end(), keep_alive_.begin(), keep_alive_.end());
      for (const auto& [uid, d] : tensors_) out.keep_alive_.push_back(d);
      out.keep_alive_.push_back(graph);
      out.keep_alive_.push_back(cfg);
      return out;
    }
  }
  return Status::Internal(StrCat("cuDNN: no engine supports this graph (", tried,
                                 " engine configurations tried); last refusal: ",
                                 refusals.empty() ? "none proposed" : refusals));
}

Status GraphPlan::Execute(cudnnHandle_t handle, const std::vector<int64_t>& uids,
                          const std::vector<void*>& pointers, void* workspace) const {
  P3D_ASSIGN_OR_RETURN(auto pack, BackendDescriptor::Create(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR));
  P3D_RETURN_IF_ERROR(pack->Set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
                                static_cast<int64_t>(uids.size()), uids.data()));
  P3D_RETURN_IF_ERROR(pack->Set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
                                static_cast<int64_t>(pointers.size()), pointers.data()));
  P3D_RETURN_IF_ERROR(
      pack->Set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace));
  P3D_RETURN_IF_ERROR(pack->Finalize());
  CUDNN_CHECK(cudnnBackendExecute(handle, plan_->get(), pack->get()));
  return Status::Ok();
}

}  // namespace p3d
