// The one collective table (simulator/collectives.h): names, ring factors and
// the expected values the probes check against, derived here independently by
// doing each collective on the host.
#include "simulator/collectives.h"

#include <gtest/gtest.h>

#include <vector>

#include "simulator/comm_model.h"

namespace p3d {
namespace {

TEST(Collectives, NamesRoundTrip) {
  for (Collective op : kCollectives) {
    Collective back;
    ASSERT_TRUE(ParseCollective(CollectiveName(op), &back));
    EXPECT_EQ(back, op);
  }
  Collective c;
  EXPECT_FALSE(ParseCollective("sendrecv", &c));
  EXPECT_EQ(CollectiveNames(), "all-reduce, reduce-scatter, all-gather, send-recv");
}

TEST(Collectives, RingFactorsAreTheCommModels) {
  EXPECT_DOUBLE_EQ(BusFactor(Collective::kAllReduce, 4), 1.5);
  EXPECT_DOUBLE_EQ(BusFactor(Collective::kAllGather, 4), 0.75);
  EXPECT_DOUBLE_EQ(BusFactor(Collective::kSendRecv, 4), 1);
  EXPECT_DOUBLE_EQ(RingSteps(Collective::kAllReduce, 8), 14);
  GroupPath p;
  p.size = 4;
  p.bus_bytes_per_s = 1e11;
  p.latency_s = 1e-5;
  EXPECT_DOUBLE_EQ(CollectiveSeconds(Collective::kReduceScatter, 4e8, p), 0.75 * 4e8 / 1e11 + 3 * 1e-5);
}

// Each op done on the host over n ranks' inputs equals CollectiveExpected.
TEST(Collectives, ExpectedValuesMatchTheOperation) {
  for (int n : {2, 3, 4}) {
    for (Collective op : kCollectives) {
      SCOPED_TRACE(CollectiveName(op));
      const CollectiveCounts k = CountsOf(op, 4.0 * 60, n);
      ASSERT_EQ(k.full % n, 0u);
      for (int rank = 0; rank < n; ++rank) {
        for (size_t i = 0; i < k.recv; ++i) {
          float want = 0;
          switch (op) {
            case Collective::kAllReduce:
              for (int r = 0; r < n; ++r) want += CollectiveInput(r, i);
              break;
            case Collective::kReduceScatter:
              for (int r = 0; r < n; ++r) want += CollectiveInput(r, rank * k.recv + i);
              break;
            case Collective::kAllGather:
              want = CollectiveInput(static_cast<int>(i / k.send), i % k.send);
              break;
            case Collective::kSendRecv:
              want = CollectiveInput((rank + n - 1) % n, i);
              break;
          }
          ASSERT_EQ(CollectiveExpected(op, k, rank, n, i), want) << "n " << n << " rank " << rank << " i " << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace p3d
