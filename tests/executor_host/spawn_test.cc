#include "executor/host/spawn.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "executor/host/launch.h"
#include "executor/host/rendezvous.h"

namespace p3d {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr char kChildMarker[] = "P3D_SPAWN_TEST_CHILD";

SpawnOptions Shell(int nproc, const std::string& script) {
  SpawnOptions o;
  o.nproc = nproc;
  o.argv = {"/bin/sh", "-c", script};
  o.timeout = milliseconds(30000);
  return o;
}

fs::path TempDir() {
  fs::path dir =
      fs::temp_directory_path() / ("p3d_spawn_test_" + std::to_string(getpid()) + "_" +
                                   testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void ExpectError(const Status& s, const std::string& text) {
  ASSERT_FALSE(s.ok()) << "expected an error mentioning " << text;
  EXPECT_NE(s.message().find(text), std::string::npos) << s.message();
}

TEST(SpawnTest, EveryRankGetsItsLaunchVariables) {
  const fs::path dir = TempDir();
  SpawnOptions o = Shell(3,
                         "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR "
                         "$MASTER_PORT $NCCL_NVLS_ENABLE $EXTRA\" > " +
                             dir.string() + "/rank$RANK");
  o.master_port = 29123;
  o.env = {{"EXTRA", "x"}};
  ASSERT_TRUE(SpawnLocalRanks(o).ok());
  for (int r = 0; r < 3; ++r) {
    std::ifstream in(dir / ("rank" + std::to_string(r)));
    std::string line;
    std::getline(in, line);
    const std::string want =
        std::to_string(r) + " 3 " + std::to_string(r) + " 3 127.0.0.1 29123 " +
        (std::getenv("NCCL_NVLS_ENABLE") ? std::getenv("NCCL_NVLS_ENABLE") : "0") + " x";
    EXPECT_EQ(line, want);
  }
  fs::remove_all(dir);
}

TEST(SpawnTest, AFailingRankStopsTheOthersAndIsNamed) {
  const Clock::time_point start = Clock::now();
  const Status s =
      SpawnLocalRanks(Shell(3, "if [ \"$RANK\" = 1 ]; then sleep 0.2; exit 3; fi; exec sleep 30"));
  ExpectError(s, "rank 1 (pid ");
  ExpectError(s, "exited with status 3; stopped the 2 ranks still running");
  EXPECT_LT(SecondsSince(start), 10.0);  // the sleepers were stopped, not waited for
}

TEST(SpawnTest, ARankKilledBySignalIsNamed) {
  const Status s =
      SpawnLocalRanks(Shell(2, "if [ \"$RANK\" = 0 ]; then kill -9 $$; fi; exec sleep 30"));
  ExpectError(s, "rank 0 (pid ");
  ExpectError(s, "was killed by signal 9");
}

TEST(SpawnTest, RanksThatIgnoreSigtermAreKilledAfterTheGrace) {
  SpawnOptions o = Shell(2, "trap '' TERM; if [ \"$RANK\" = 1 ]; then exit 1; fi; exec sleep 30");
  o.kill_grace = milliseconds(300);
  const Clock::time_point start = Clock::now();
  ExpectError(SpawnLocalRanks(o), "rank 1 (pid ");
  EXPECT_LT(SecondsSince(start), 10.0);
}

TEST(SpawnTest, TimeoutStopsEveryRank) {
  SpawnOptions o = Shell(2, "exec sleep 30");
  o.timeout = milliseconds(300);
  const Clock::time_point start = Clock::now();
  ExpectError(SpawnLocalRanks(o), "timed out after 0.3 s; stopped the 2 ranks still running");
  EXPECT_LT(SecondsSince(start), 10.0);
}

TEST(SpawnTest, ExecFailureIsReported) {
  SpawnOptions o;
  o.nproc = 2;
  o.argv = {"/nonexistent/p3d-run"};
  ExpectError(SpawnLocalRanks(o), "rank 0: cannot execute '/nonexistent/p3d-run'");
}

TEST(SpawnTest, RejectsBadOptions) {
  SpawnOptions o;
  o.argv = {"/bin/true"};
  o.nproc = 0;
  ExpectError(SpawnLocalRanks(o), "rule nproc>=1");
  o.nproc = 1;
  o.argv.clear();
  ExpectError(SpawnLocalRanks(o), "rule argv non-empty");
}

// End to end across real processes: this test binary spawns three copies of
// itself running SpawnChildTest.Rendezvous, which read their launch
// variables and share a blob from rank 0 through the rendezvous.
TEST(SpawnTest, SpawnedRanksRendezvous) {
  setenv(kChildMarker, "1", 1);  // inherited by the children only: this test already runs
  const Status s = SpawnSelf(3, {"--gtest_filter=SpawnChildTest.Rendezvous"}, milliseconds(30000));
  unsetenv(kChildMarker);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(SpawnChildTest, Rendezvous) {
  if (std::getenv(kChildMarker) == nullptr) GTEST_SKIP() << "runs only as a spawned rank";
  auto info = ParseLaunchEnv(ProcessEnv());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_EQ(info->launcher, Launcher::kTorchrun);
  ASSERT_EQ(info->world_size, 3);
  const std::string id = "id-" + std::to_string(info->master_port);
  auto got = ShareFromRankZero(*info, 0, info->rank == 0 ? id : "", milliseconds(20000));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, id);
}

}  // namespace
}  // namespace p3d
