// Multi-GPU test (2 ranks; comm_test_main.cc) of the collective pattern the
// executor's sequence parallelism relies on (executor/tensor_parallel.h,
// Model::ReduceTokens / GatherTokens): bf16 reduce-scatter IN PLACE (the
// receive block is the send buffer at rank * count) and all-gather of a token
// slice, with block r belonging to communicator rank r. Values are small
// multiples of 1/2, so every bf16 sum is exact and the comparison is exact.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "executor/comm/process_groups.h"
#include "executor/dtype.h"
#include "tests/executor_comm/comm_test_env.h"

namespace p3d {
namespace {

// Rank r's partial sum at element i of a [T, H] tensor.
float Partial(int rank, size_t i) {
  return (rank + 1) * (static_cast<float>(i % 13) - 6.0f) * 0.5f;
}

std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = FloatToBf16Bits(v[i]);
  return out;
}

TEST(SequenceParallelCommTest, InPlaceReduceScatterThenAllGatherRestoresTheSum) {
  Communicator& comm = comm_test::SharedGroups().world();
  const int tp = comm.size(), me = comm.rank();
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  for (size_t rows : {size_t{1}, size_t{64}, size_t{4096}}) {  // T/TP tokens, H = 16
    const size_t slice = rows * 16, total = slice * tp;
    std::vector<float> mine(total), sum(total, 0.0f);
    for (size_t i = 0; i < total; ++i) {
      mine[i] = Partial(me, i);
      for (int r = 0; r < tp; ++r) sum[i] += Partial(r, i);
    }
    const std::vector<uint16_t> host = ToBf16(mine);
    bf16* full = nullptr;
    bf16* gathered = nullptr;
    ASSERT_EQ(cudaMalloc(&full, total * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&gathered, total * 2), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(full, host.data(), total * 2, cudaMemcpyHostToDevice), cudaSuccess);
    bf16* my_slice = full + me * slice;
    ASSERT_TRUE(comm.ReduceScatter(full, my_slice, slice, ncclBfloat16, ncclSum, stream).ok());
    ASSERT_TRUE(comm.AllGather(my_slice, gathered, slice, ncclBfloat16, stream).ok());
    ASSERT_TRUE(comm.Wait(stream).ok());
    std::vector<uint16_t> got(total);
    ASSERT_EQ(cudaMemcpy(got.data(), gathered, total * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    cudaFree(full);
    cudaFree(gathered);
    for (size_t i = 0; i < total; ++i)
      ASSERT_EQ(Bf16BitsToFloat(got[i]), sum[i]) << "rows " << rows << " element " << i;
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace p3d
