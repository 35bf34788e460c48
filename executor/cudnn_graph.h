// A thin owner of cuDNN backend-API descriptors (cudnn_graph.h) and a builder
// for operation graphs of tensors, matmuls, pointwise ops, reductions and
// reshapes, from which it makes one finalized execution plan. p3d uses it for
// the fused attention (executor/fused_attention.h); it knows nothing about
// attention itself.
//
// Errors: CUDNN_CHECK (of executor/check.h's family) returns a Status::Internal
// naming host, file:line, the failing call, cuDNN's status name and cuDNN's
// last error message (the backend explains most refusals there).
//
// Thread-safety: none; a graph, a plan and the handle it runs on belong to
// one stream of one thread.
#pragma once

#include <cudnn_graph.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/status.h"
#include "executor/check.h"

namespace p3d {

// "CUDNN_STATUS_... (last error: ...)".
std::string CudnnStatusString(cudnnStatus_t status);
inline bool Succeeded(cudnnStatus_t status) { return status == CUDNN_STATUS_SUCCESS; }

}  // namespace p3d

#define CUDNN_CHECK(expr) \
  P3D_GPU_CHECK(cudnnStatus_t, expr, #expr, ::p3d::CudnnStatusString, ::p3d::GpuErrorMessage)

namespace p3d {

// Owns one cudnnBackendDescriptor_t (destroyed with the object; not copyable).
class BackendDescriptor {
 public:
  static StatusOr<std::shared_ptr<BackendDescriptor>> Create(cudnnBackendDescriptorType_t type);

  cudnnBackendDescriptor_t get() const { return desc_.get(); }
  Status Set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
             const void* values);
  Status SetDescriptor(cudnnBackendAttributeName_t name, const BackendDescriptor& d) {
    cudnnBackendDescriptor_t raw = d.get();
    return Set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
  }
  Status SetInt64(cudnnBackendAttributeName_t name, int64_t v) {
    return Set(name, CUDNN_TYPE_INT64, 1, &v);
  }
  Status SetDataType(cudnnBackendAttributeName_t name, cudnnDataType_t t) {
    return Set(name, CUDNN_TYPE_DATA_TYPE, 1, &t);
  }
  Status Finalize();

 private:
  struct Destroy {
    void operator()(cudnnBackendDescriptor_t d) const { cudnnBackendDestroyDescriptor(d); }
  };
  explicit BackendDescriptor(cudnnBackendDescriptor_t d) : desc_(d) {}
  std::unique_ptr<std::remove_pointer_t<cudnnBackendDescriptor_t>, Destroy> desc_;
};

using Dims4 = std::array<int64_t, 4>;

// A tensor of the graph. Virtual tensors live only inside the fused kernel;
// by-value tensors are host scalars [1,1,1,1] passed at execution; the rest
// are device buffers bound by uid in the variant pack.
struct GraphTensor {
  int64_t uid = 0;
  cudnnDataType_t dtype = CUDNN_DATA_FLOAT;
  Dims4 dims{}, strides{};
  bool is_virtual = false;
  bool by_value = false;
};

// Row-major strides of dims (last dimension contiguous).
Dims4 PackedStrides(const Dims4& dims);

// A finalized execution plan with the descriptors it was built from.
class GraphPlan {
 public:
  int64_t workspace_bytes() const { return workspace_bytes_; }
  const std::string& engine() const { return engine_; }  // "engine <global index>"
  // Runs the plan on handle's stream. uids/pointers: every non-virtual tensor
  // (by-value tensors point to host scalars); workspace: workspace_bytes() bytes.
  Status Execute(cudnnHandle_t handle, const std::vector<int64_t>& uids,
                 const std::vector<void*>& pointers, void* workspace) const;

 private:
  friend class GraphBuilder;
  std::vector<std::shared_ptr<BackendDescriptor>> keep_alive_;
  std::shared_ptr<BackendDescriptor> plan_;
  int64_t workspace_bytes_ = 0;
  std::string engine_;
};

class GraphBuilder {
 public:
  // Tensors: returns the tensor (its uid is assigned here, from 1 up).
  StatusOr<GraphTensor> Tensor(cudnnDataType_t dtype, const Dims4& dims, const Dims4& strides,
                               bool is_virtual = false);
  StatusOr<GraphTensor> Virtual(cudnnDataType_t dtype, const Dims4& dims) {
    return Tensor(dtype, dims, PackedStrides(dims), /*is_virtual=*/true);
  }
  StatusOr<GraphTensor> Scalar(cudnnDataType_t dtype);  // by value, [1,1,1,1]

  // Operations (y must have been created with Tensor/Virtual).
  // Pointwise y = mode(x, b, t); b, t may be null (unary / binary modes);
  // axis >= 0 only for GEN_INDEX. math: the compute type.
  Status Pointwise(cudnnPointwiseMode_t mode, const GraphTensor& x, const GraphTensor* b,
                   const GraphTensor* t, const GraphTensor& y,
                   cudnnDataType_t math = CUDNN_DATA_FLOAT, int64_t axis = -1);
  Status Matmul(const GraphTensor& a, const GraphTensor& b, const GraphTensor& c);  // fp32 compute
  Status Reduction(cudnnReduceTensorOp_t op, const GraphTensor& x, const GraphTensor& y);
  Status Reshape(const GraphTensor& x, const GraphTensor& y);
  // The same operations into a new virtual tensor, returned: y = mode(x, b)
  // of `dims`; c = a b ([.., M, K] x [.., K, N] -> [a0, a1, M, N]); y = op
  // of x reduced to `dims` (fp32).
  StatusOr<GraphTensor> VirtualPointwise(cudnnPointwiseMode_t mode, const GraphTensor& x,
                                         const GraphTensor* b, const Dims4& dims,
                                         cudnnDataType_t dtype = CUDNN_DATA_FLOAT);
  StatusOr<GraphTensor> VirtualMatmul(const GraphTensor& a, const GraphTensor& b,
                                      cudnnDataType_t dtype = CUDNN_DATA_FLOAT);
  StatusOr<GraphTensor> VirtualReduction(cudnnReduceTensorOp_t op, const GraphTensor& x,
                                         const Dims4& dims);

  // Operation graph -> heuristics (mode A, then fallback) -> the first engine
  // configuration that finalizes. Error: no engine supports the graph, with
  // the last refusal's cuDNN message.
  StatusOr<GraphPlan> Build(cudnnHandle_t handle);

 private:
  // An operation's tensor attribute; a null tensor is left unset.
  using OpTensor = std::pair<cudnnBackendAttributeName_t, const GraphTensor*>;

  StatusOr<GraphTensor> AddTensor(const GraphTensor& t);  // its descriptor, by t's fields
  StatusOr<std::shared_ptr<BackendDescriptor>> Desc(int64_t uid) const;
  // Adds an operation of `type` with its tensors and, unless null, its
  // settings descriptor (finalized here) as attribute `settings_attr`.
  Status AddOp(cudnnBackendDescriptorType_t type, std::shared_ptr<BackendDescriptor> settings,
               cudnnBackendAttributeName_t settings_attr, std::initializer_list<OpTensor> tensors);

  int64_t next_uid_ = 1;
  std::vector<std::pair<int64_t, std::shared_ptr<BackendDescriptor>>> tensors_;
  std::vector<std::shared_ptr<BackendDescriptor>> keep_alive_;  // op sub-descriptors
  std::vector<std::shared_ptr<BackendDescriptor>> ops_;
};

}  // namespace p3d
