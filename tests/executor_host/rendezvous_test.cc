#include "executor/host/rendezvous.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "executor/host/spawn.h"

namespace p3d {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// 128 bytes with embedded zeros, like an ncclUniqueId.
std::string UniqueIdLikeBlob() {
  std::string blob(128, '\0');
  for (int i = 0; i < 128; i += 3) blob[i] = static_cast<char>(i * 7 + 1);
  return blob;
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(RendezvousTest, RankZeroHandsTheBlobToEveryRank) {
  const int world = 6;
  auto server = RendezvousServer::Listen(0);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const int port = (*server)->port();
  const std::string blob = UniqueIdLikeBlob();
  std::vector<StatusOr<std::string>> got(world, Status::Internal("not run"));
  std::vector<std::thread> ranks;
  for (int r = 1; r < world; ++r) {
    ranks.emplace_back(
        [&, r] { got[r] = RendezvousFetch("127.0.0.1", port, r, world, 0, milliseconds(10000)); });
  }
  const Status served = (*server)->Serve(blob, world, 0, milliseconds(10000));
  for (auto& t : ranks) t.join();
  ASSERT_TRUE(served.ok()) << served.ToString();
  for (int r = 1; r < world; ++r) {
    ASSERT_TRUE(got[r].ok()) << "rank " << r << ": " << got[r].status().ToString();
    EXPECT_EQ(*got[r], blob) << "rank " << r;
  }
}

TEST(RendezvousTest, RanksStartedBeforeRankZeroRetry) {
  auto port = FindFreePort();
  ASSERT_TRUE(port.ok());
  LaunchInfo info;
  info.world_size = 3;
  info.master_addr = "localhost";
  info.master_port = *port;
  std::vector<StatusOr<std::string>> got(3, Status::Internal("not run"));
  std::vector<std::thread> ranks;
  for (int r : {1, 2}) {
    ranks.emplace_back([&, r] {
      LaunchInfo mine = info;
      mine.rank = r;
      got[r] = ShareFromRankZero(mine, 0, "", milliseconds(10000));
    });
  }
  std::this_thread::sleep_for(milliseconds(300));  // rank 0 comes late
  got[0] = ShareFromRankZero(info, 0, "nccl-id", milliseconds(10000));
  for (auto& t : ranks) t.join();
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(got[r].ok()) << "rank " << r << ": " << got[r].status().ToString();
    EXPECT_EQ(*got[r], "nccl-id");
  }
}

// Process groups for several layouts rendezvous again and again on one
// MASTER_PORT; a fast rank may knock while the previous round's listener is
// closing, and must retry rather than fail.
TEST(RendezvousTest, BackToBackRoundsOnOnePort) {
  auto port = FindFreePort();
  ASSERT_TRUE(port.ok());
  const int world = 3, rounds = 20;
  std::vector<std::vector<StatusOr<std::string>>> got(
      world, std::vector<StatusOr<std::string>>(rounds, Status::Internal("not run")));
  std::vector<std::thread> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.emplace_back([&, r] {
      LaunchInfo info;
      info.rank = r;
      info.world_size = world;
      info.master_addr = "127.0.0.1";
      info.master_port = *port;
      for (int k = 0; k < rounds; ++k) {
        got[r][k] = ShareFromRankZero(info, k, "round" + std::to_string(k), milliseconds(10000));
      }
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < world; ++r) {
    for (int k = 0; k < rounds; ++k) {
      ASSERT_TRUE(got[r][k].ok()) << "rank " << r << " round " << k << ": "
                                  << got[r][k].status().ToString();
      EXPECT_EQ(*got[r][k], "round" + std::to_string(k));
    }
  }
}

TEST(RendezvousTest, RankZeroTimesOutNamingMissingRanks) {
  auto server = RendezvousServer::Listen(0);
  ASSERT_TRUE(server.ok());
  const int port = (*server)->port();
  std::thread rank1([&] { (void)RendezvousFetch("127.0.0.1", port, 1, 4, 0, milliseconds(5000)); });
  const Clock::time_point start = Clock::now();
  const Status s = (*server)->Serve("x", 4, 0, milliseconds(400));
  const double took = SecondsSince(start);
  rank1.join();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rendezvous round 0 timed out after 0.4 s"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("heard from 2 of 4 ranks"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("missing ranks: 2, 3"), std::string::npos) << s.message();
  EXPECT_GE(took, 0.39);
  EXPECT_LT(took, 3.0);
}

TEST(RendezvousTest, RankTimesOutWhenRankZeroNeverListens) {
  auto port = FindFreePort();
  ASSERT_TRUE(port.ok());
  const Clock::time_point start = Clock::now();
  auto got = RendezvousFetch("127.0.0.1", *port, 2, 3, 0, milliseconds(300));
  const double took = SecondsSince(start);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("rank 2 could not reach rank 0 at 127.0.0.1:"),
            std::string::npos)
      << got.status().message();
  EXPECT_GE(took, 0.29);
  EXPECT_LT(took, 3.0);
}

TEST(RendezvousTest, RejectsWorldSizeMismatchOnBothSides) {
  auto server = RendezvousServer::Listen(0);
  ASSERT_TRUE(server.ok());
  const int port = (*server)->port();
  StatusOr<std::string> got = Status::Internal("not run");
  std::thread rank1([&] { got = RendezvousFetch("127.0.0.1", port, 1, 3, 0, milliseconds(5000)); });
  const Status s = (*server)->Serve("x", 2, 0, milliseconds(5000));
  rank1.join();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 1 says the world has 3 ranks, rank 0 says 2"), std::string::npos)
      << s.message();
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("rank 0 refused rank 1"), std::string::npos)
      << got.status().message();
}

TEST(RendezvousTest, RejectsARankThatMissedARound) {
  auto server = RendezvousServer::Listen(0);
  ASSERT_TRUE(server.ok());
  const int port = (*server)->port();
  StatusOr<std::string> got = Status::Internal("not run");
  std::thread rank1([&] { got = RendezvousFetch("127.0.0.1", port, 1, 2, 0, milliseconds(5000)); });
  const Status s = (*server)->Serve("x", 2, 1, milliseconds(5000));
  rank1.join();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 1 is at rendezvous round 0, rank 0 at round 1"),
            std::string::npos)
      << s.message();
  EXPECT_FALSE(got.ok());
}

TEST(RendezvousTest, RejectsADuplicateRank) {
  auto server = RendezvousServer::Listen(0);
  ASSERT_TRUE(server.ok());
  const int port = (*server)->port();
  std::vector<std::thread> ranks;
  for (int i = 0; i < 2; ++i) {
    ranks.emplace_back(
        [&] { (void)RendezvousFetch("127.0.0.1", port, 1, 3, 0, milliseconds(5000)); });
  }
  const Status s = (*server)->Serve("x", 3, 0, milliseconds(5000));
  for (auto& t : ranks) t.join();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 1 joined round 0 twice"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace p3d
