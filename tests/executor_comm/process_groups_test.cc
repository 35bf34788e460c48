// Multi-GPU tests of the NCCL layer (2 ranks; see comm_test_main.cc): each
// collective's result is compared exactly with values computed on the host
// (small integers and halves in float32, so every sum is exact), for several
// sizes; then the sub-communicators of other layouts; then the watchdog.
#include "executor/comm/process_groups.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/executor_comm/comm_test_env.h"

namespace p3d {
namespace {

using comm_test::SharedGroups;

// Owns one device buffer of floats.
class DeviceFloats {
 public:
  explicit DeviceFloats(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(float)), cudaSuccess);
  }
  explicit DeviceFloats(const std::vector<float>& host) : DeviceFloats(host.size()) {
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), n_ * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceFloats() { cudaFree(ptr_); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  float* get() { return ptr_; }
  std::vector<float> ToHost() const {
    std::vector<float> out(n_);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, n_ * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

 private:
  float* ptr_ = nullptr;
  size_t n_;
};

class Stream {
 public:
  Stream() { EXPECT_EQ(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking), cudaSuccess); }
  ~Stream() { cudaStreamDestroy(s_); }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// Rank r's element i: exact in float32, different on every rank.
float Value(int rank, size_t i) { return (rank + 1) * (static_cast<float>(i % 61) - 30.0f) * 0.5f; }

std::vector<float> RankData(int rank, size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = Value(rank, i);
  return v;
}

// Compares element by element, reporting the first mismatch only.
void ExpectEqualVectors(const std::vector<float>& got, const std::vector<float>& want,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] != want[i]) {
      FAIL() << what << ": element " << i << " is " << got[i] << ", want " << want[i];
    }
  }
}

const std::vector<size_t> kSizes = {1, 7, 1000, size_t{1} << 20, (size_t{1} << 22) + 3};

TEST(CommTest, GroupsFollowTheGrid) {
  ProcessGroups& pg = SharedGroups();
  const int n = comm_test::kTestRanks;
  EXPECT_EQ(pg.world().size(), n);
  EXPECT_EQ(pg.world().rank(), comm_test::Launch().rank);
  // Layout TP1 DP2 PP1: the DP group is the world, the others are singletons.
  EXPECT_EQ(pg.group(GroupKind::kData).size(), n);
  EXPECT_EQ(pg.group(GroupKind::kData).rank(), pg.grid().Coords(pg.rank()).dp);
  EXPECT_EQ(pg.group(GroupKind::kTensor).size(), 1);
  EXPECT_EQ(pg.group(GroupKind::kPipeline).size(), 1);
  EXPECT_EQ(pg.group(GroupKind::kModel).size(), 1);
}

TEST(CommTest, AllReduceSumMatchesHost) {
  Communicator& comm = SharedGroups().world();
  Stream stream;
  for (size_t n : kSizes) {
    DeviceFloats buf(RankData(comm.rank(), n));
    DeviceFloats out(n);
    ASSERT_TRUE(comm.AllReduce(buf.get(), out.get(), n, ncclFloat32, ncclSum, stream.get()).ok());
    ASSERT_TRUE(comm.AllReduce(buf.get(), buf.get(), n, ncclFloat32, ncclSum, stream.get()).ok());
    const Status waited = comm.Wait(stream.get());
    ASSERT_TRUE(waited.ok()) << waited.ToString();
    std::vector<float> want(n, 0.0f);
    for (int r = 0; r < comm.size(); ++r) {
      for (size_t i = 0; i < n; ++i) want[i] += Value(r, i);
    }
    ExpectEqualVectors(out.ToHost(), want, "all-reduce of " + std::to_string(n));
    ExpectEqualVectors(buf.ToHost(), want, "in-place all-reduce of " + std::to_string(n));
  }
}

TEST(CommTest, ReduceScatterSumMatchesHost) {
  Communicator& comm = SharedGroups().world();
  Stream stream;
  for (size_t n : kSizes) {  // n elements per rank after the scatter
    const size_t total = n * comm.size();
    DeviceFloats send(RankData(comm.rank(), total));
    DeviceFloats recv(n);
    ASSERT_TRUE(
        comm.ReduceScatter(send.get(), recv.get(), n, ncclFloat32, ncclSum, stream.get()).ok());
    ASSERT_TRUE(comm.Wait(stream.get()).ok());
    std::vector<float> want(n, 0.0f);
    for (int r = 0; r < comm.size(); ++r) {
      for (size_t i = 0; i < n; ++i) want[i] += Value(r, comm.rank() * n + i);
    }
    ExpectEqualVectors(recv.ToHost(), want, "reduce-scatter of " + std::to_string(n));
  }
}

TEST(CommTest, AllGatherMatchesHost) {
  Communicator& comm = SharedGroups().world();
  Stream stream;
  for (size_t n : kSizes) {
    DeviceFloats send(RankData(comm.rank(), n));
    DeviceFloats recv(n * comm.size());
    ASSERT_TRUE(comm.AllGather(send.get(), recv.get(), n, ncclFloat32, stream.get()).ok());
    ASSERT_TRUE(comm.Wait(stream.get()).ok());
    std::vector<float> want;
    for (int r = 0; r < comm.size(); ++r) {
      const std::vector<float> block = RankData(r, n);
      want.insert(want.end(), block.begin(), block.end());
    }
    ExpectEqualVectors(recv.ToHost(), want, "all-gather of " + std::to_string(n));
  }
}

TEST(CommTest, BroadcastFromLastRank) {
  Communicator& comm = SharedGroups().world();
  Stream stream;
  const int root = comm.size() - 1;
  for (size_t n : kSizes) {
    DeviceFloats buf(RankData(comm.rank(), n));
    ASSERT_TRUE(comm.Broadcast(buf.get(), buf.get(), n, ncclFloat32, root, stream.get()).ok());
    ASSERT_TRUE(comm.Wait(stream.get()).ok());
    ExpectEqualVectors(buf.ToHost(), RankData(root, n), "broadcast of " + std::to_string(n));
  }
}

TEST(CommTest, GroupedSendRecvAroundTheRing) {
  Communicator& comm = SharedGroups().world();
  Stream stream;
  const int next = (comm.rank() + 1) % comm.size();
  const int prev = (comm.rank() + comm.size() - 1) % comm.size();
  for (size_t n : kSizes) {
    DeviceFloats send(RankData(comm.rank(), n));
    DeviceFloats recv(n);
    const P2POp ops[] = {{P2POp::Kind::kSend, next, send.get(), n, ncclFloat32},
                         {P2POp::Kind::kRecv, prev, recv.get(), n, ncclFloat32}};
    ASSERT_TRUE(comm.SendRecv(ops, stream.get()).ok());
    ASSERT_TRUE(comm.Wait(stream.get()).ok());
    ExpectEqualVectors(recv.ToHost(), RankData(prev, n), "send/recv of " + std::to_string(n));
  }
}

// The other two-rank layouts: TP2 (the TP group is the world) and PP2 (stage
// 0 sends an activation to stage 1, which sends a gradient back).
TEST(CommTest, TensorAndPipelineLayouts) {
  const LaunchInfo& launch = comm_test::Launch();
  CommOptions options;
  options.timeout = std::chrono::seconds(60);
  options.rendezvous_timeout = std::chrono::seconds(60);
  Stream stream;
  const size_t n = 4096;
  {
    auto grid = RankGrid::Create(2, 1, 1, comm_test::GpusPerNode());
    ASSERT_TRUE(grid.ok());
    options.round = comm_test::NextRendezvousRound();
    auto pg = ProcessGroups::Create(launch, *grid, options);
    ASSERT_TRUE(pg.ok()) << pg.status().ToString();
    Communicator& tp = (*pg)->group(GroupKind::kTensor);
    EXPECT_EQ(tp.size(), 2);
    EXPECT_EQ(tp.rank(), launch.rank);
    EXPECT_EQ((*pg)->group(GroupKind::kModel).size(), 2);
    EXPECT_EQ((*pg)->group(GroupKind::kData).size(), 1);
    DeviceFloats buf(RankData(tp.rank(), n));
    ASSERT_TRUE(tp.AllReduce(buf.get(), buf.get(), n, ncclFloat32, ncclSum, stream.get()).ok());
    ASSERT_TRUE(tp.Wait(stream.get()).ok());
    std::vector<float> want(n);
    for (size_t i = 0; i < n; ++i) want[i] = Value(0, i) + Value(1, i);
    ExpectEqualVectors(buf.ToHost(), want, "TP all-reduce");
  }
  {
    auto grid = RankGrid::Create(1, 1, 2, comm_test::GpusPerNode());
    ASSERT_TRUE(grid.ok());
    options.round = comm_test::NextRendezvousRound();
    auto pg = ProcessGroups::Create(launch, *grid, options);
    ASSERT_TRUE(pg.ok()) << pg.status().ToString();
    Communicator& pp = (*pg)->group(GroupKind::kPipeline);
    EXPECT_EQ(pp.size(), 2);
    EXPECT_EQ(pp.rank(), grid->Coords(launch.rank).pp);
    const bool first = grid->IsFirstStage(launch.rank);
    const int peer = first ? 1 : 0;  // the other stage, as a rank of the PP group
    DeviceFloats activation(RankData(0, n));
    DeviceFloats gradient(RankData(1, n));
    DeviceFloats inbox(n);
    // Forward: stage 0 -> stage 1; backward: stage 1 -> stage 0.
    const P2POp fwd = first ? P2POp{P2POp::Kind::kSend, peer, activation.get(), n, ncclFloat32}
                            : P2POp{P2POp::Kind::kRecv, peer, inbox.get(), n, ncclFloat32};
    ASSERT_TRUE(pp.SendRecv({&fwd, 1}, stream.get()).ok());
    ASSERT_TRUE(pp.Wait(stream.get()).ok());
    if (!first) ExpectEqualVectors(inbox.ToHost(), RankData(0, n), "PP forward activation");
    const P2POp bwd = first ? P2POp{P2POp::Kind::kRecv, peer, inbox.get(), n, ncclFloat32}
                            : P2POp{P2POp::Kind::kSend, peer, gradient.get(), n, ncclFloat32};
    ASSERT_TRUE(pp.SendRecv({&bwd, 1}, stream.get()).ok());
    ASSERT_TRUE(pp.Wait(stream.get()).ok());
    if (first) ExpectEqualVectors(inbox.ToHost(), RankData(1, n), "PP backward gradient");
  }
}

// The watchdog: the last rank skips an all-reduce on the group `kind` (the
// world when kind is empty). Every other rank must end with a timeout error
// naming the group and the operation within the deadline plus the abort,
// never hang, and see the message through the on_fire hook before the call
// returns; afterwards its groups fail fast, and the shared groups (another
// watchdog) still work.
void SkipOneAllReduce(std::optional<GroupKind> kind, const std::string& expect_op) {
  const LaunchInfo& launch = comm_test::Launch();
  auto grid = RankGrid::Create(1, launch.world_size, 1, comm_test::GpusPerNode());
  ASSERT_TRUE(grid.ok());
  CommOptions options;
  options.timeout = std::chrono::seconds(2);
  options.abort_timeout = std::chrono::seconds(5);
  options.rendezvous_timeout = std::chrono::seconds(60);
  options.round = comm_test::NextRendezvousRound();
  auto fired = std::make_shared<std::vector<std::string>>();
  options.hooks.on_fire = [fired](const std::string& m) { fired->push_back(m); };
  auto pg = ProcessGroups::Create(launch, *grid, options);
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  Communicator& comm = kind ? (*pg)->group(*kind) : (*pg)->world();
  Stream stream;
  const size_t n = 1 << 20;
  DeviceFloats buf(RankData(comm.rank(), n));
  const bool skipper = launch.rank == launch.world_size - 1;
  if (skipper) {
    (void)(*pg)->AbortAll("test: this rank skips the all-reduce");
  } else {
    const auto start = std::chrono::steady_clock::now();
    Status s = comm.AllReduce(buf.get(), buf.get(), n, ncclFloat32, ncclSum, stream.get());
    if (s.ok()) s = comm.Wait(stream.get());
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_FALSE(s.ok()) << "the all-reduce finished without its last rank";
    const std::string& msg = s.message();
    EXPECT_NE(msg.find(expect_op), std::string::npos) << msg;
    EXPECT_NE(msg.find("within 2.0 s"), std::string::npos) << msg;
    // Every abort returned (they run at once; one after another the world's
    // abort waited forever for the kernel of a later group).
    EXPECT_NE(msg.find("aborted 5 communicators"), std::string::npos) << msg;
    ASSERT_EQ(fired->size(), 1u);
    EXPECT_NE(fired->front().find(expect_op), std::string::npos) << fired->front();
    EXPECT_NE(fired->front().find("aborting 5 communicators"), std::string::npos) << fired->front();
    EXPECT_GE(took, 2.0);
    EXPECT_LT(took, 7.0) << msg;
    std::printf("rank %d watchdog error after %.2f s: %s\n", launch.rank, took, msg.c_str());
    // The abort ended the stuck kernel: the stream drains (else freeing the
    // buffer would block forever, so give up on the process instead).
    const auto abort_start = std::chrono::steady_clock::now();
    while (cudaStreamQuery(stream.get()) == cudaErrorNotReady) {
      if (std::chrono::steady_clock::now() - abort_start > std::chrono::seconds(10)) {
        std::fprintf(stderr, "the aborted all-reduce kernel is still running after 10 s\n");
        std::_Exit(3);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    // Later calls fail fast with the first error.
    const Status again =
        comm.AllReduce(buf.get(), buf.get(), n, ncclFloat32, ncclSum, stream.get());
    EXPECT_NE(again.message().find("aborted earlier"), std::string::npos) << again.message();
  }
  // Both ranks meet again on the shared groups, which were not aborted.
  Communicator& shared = SharedGroups().world();
  Stream barrier_stream;
  DeviceFloats one(std::vector<float>{1.0f});
  ASSERT_TRUE(
      shared.AllReduce(one.get(), one.get(), 1, ncclFloat32, ncclSum, barrier_stream.get()).ok());
  const Status met = shared.Wait(barrier_stream.get());
  ASSERT_TRUE(met.ok()) << met.ToString();
  EXPECT_EQ(one.ToHost()[0], static_cast<float>(shared.size()));
}

TEST(CommTest, WatchdogEndsASkippedCollective) {
  SkipOneAllReduce(std::nullopt, "group world (rank 0 of 2): all-reduce of 1048576 x float32");
}

// The dp_fault defect (2 x H200): the hung all-reduce is on the DP group, the
// third communicator guarded; aborting the world first never returned.
TEST(CommTest, WatchdogEndsASkippedCollectiveOfALaterGroup) {
  SkipOneAllReduce(GroupKind::kData, "group dp (rank 0 of 2): all-reduce of 1048576 x float32");
}

}  // namespace
}  // namespace p3d
