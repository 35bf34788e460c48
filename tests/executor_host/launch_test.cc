#include "executor/host/launch.h"

#include <gtest/gtest.h>

#include <string>

namespace p3d {
namespace {

void ExpectError(const MapEnv& env, const std::string& text) {
  auto info = ParseLaunchEnv(env);
  ASSERT_FALSE(info.ok()) << "expected an error mentioning " << text;
  EXPECT_NE(info.status().message().find(text), std::string::npos) << info.status().message();
}

TEST(LaunchEnvTest, NoLauncherIsOneProcess) {
  auto info = ParseLaunchEnv(MapEnv({{"HOME", std::string("/root")}}));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->launcher, Launcher::kNone);
  EXPECT_EQ(info->rank, 0);
  EXPECT_EQ(info->world_size, 1);
  EXPECT_TRUE(info->master_addr.empty());
}

TEST(LaunchEnvTest, Torchrun) {
  auto info = ParseLaunchEnv(MapEnv({{"RANK", "5"},
                                     {"WORLD_SIZE", "16"},
                                     {"LOCAL_RANK", "5"},
                                     {"MASTER_ADDR", "node0"},
                                     {"MASTER_PORT", "29500"}}));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->launcher, Launcher::kTorchrun);
  EXPECT_EQ(info->rank, 5);
  EXPECT_EQ(info->world_size, 16);
  EXPECT_EQ(info->local_rank, 5);
  EXPECT_EQ(info->master_addr, "node0");
  EXPECT_EQ(info->master_port, 29500);
}

TEST(LaunchEnvTest, OpenMpi) {
  auto info = ParseLaunchEnv(MapEnv({{"OMPI_COMM_WORLD_RANK", "9"},
                                     {"OMPI_COMM_WORLD_SIZE", "16"},
                                     {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                                     {"MASTER_ADDR", "10.0.0.1"},
                                     {"MASTER_PORT", "6000"}}));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->launcher, Launcher::kOpenMpi);
  EXPECT_EQ(info->rank, 9);
  EXPECT_EQ(info->local_rank, 1);
}

TEST(LaunchEnvTest, Slurm) {
  auto info = ParseLaunchEnv(MapEnv({{"SLURM_PROCID", "3"},
                                     {"SLURM_NTASKS", "8"},
                                     {"SLURM_LOCALID", "3"},
                                     {"MASTER_ADDR", "gpu-01"},
                                     {"MASTER_PORT", "29400"}}));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->launcher, Launcher::kSlurm);
  EXPECT_EQ(info->world_size, 8);
}

TEST(LaunchEnvTest, PrecedenceTorchrunThenOpenMpiThenSlurm) {
  // torchrun inside a Slurm allocation: RANK wins over SLURM_PROCID.
  auto info = ParseLaunchEnv(MapEnv({{"RANK", "1"},
                                     {"WORLD_SIZE", "2"},
                                     {"LOCAL_RANK", "1"},
                                     {"SLURM_PROCID", "0"},
                                     {"SLURM_NTASKS", "1"},
                                     {"SLURM_LOCALID", "0"},
                                     {"OMPI_COMM_WORLD_RANK", "0"},
                                     {"MASTER_ADDR", "a"},
                                     {"MASTER_PORT", "1"}}));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->launcher, Launcher::kTorchrun);
  EXPECT_EQ(info->rank, 1);
  // mpirun under Slurm: Open MPI wins over Slurm.
  info = ParseLaunchEnv(MapEnv({{"OMPI_COMM_WORLD_RANK", "0"},
                                {"OMPI_COMM_WORLD_SIZE", "1"},
                                {"OMPI_COMM_WORLD_LOCAL_RANK", "0"},
                                {"SLURM_PROCID", "0"}}));
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->launcher, Launcher::kOpenMpi);
}

TEST(LaunchEnvTest, SingleRankNeedsNoMaster) {
  auto info = ParseLaunchEnv(MapEnv({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"LOCAL_RANK", "0"}}));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->world_size, 1);
}

TEST(LaunchEnvTest, ErrorsNameTheVariable) {
  const std::map<std::string, std::string> good = {{"RANK", "1"},
                                                   {"WORLD_SIZE", "4"},
                                                   {"LOCAL_RANK", "1"},
                                                   {"MASTER_ADDR", "h"},
                                                   {"MASTER_PORT", "29500"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto m = good;
    m[k] = v;
    return MapEnv(m);
  };
  auto without = [&](const std::string& k) {
    auto m = good;
    m.erase(k);
    return MapEnv(m);
  };
  ExpectError(without("RANK"), "RANK is not set");
  ExpectError(without("WORLD_SIZE"), "WORLD_SIZE is not set");
  ExpectError(without("LOCAL_RANK"), "LOCAL_RANK is not set");
  ExpectError(without("MASTER_ADDR"), "MASTER_ADDR is not set");
  ExpectError(without("MASTER_PORT"), "MASTER_PORT is not set");
  ExpectError(with("RANK", "one"), "RANK='one' is not an integer");
  ExpectError(with("RANK", "1x"), "RANK='1x' is not an integer");
  ExpectError(with("RANK", ""), "RANK='' is not an integer");
  ExpectError(with("RANK", "4"), "RANK=4 is outside [0, WORLD_SIZE=4)");
  ExpectError(with("RANK", "-1"), "RANK=-1 is outside");
  ExpectError(with("WORLD_SIZE", "0"), "WORLD_SIZE=0 must be at least 1");
  ExpectError(with("LOCAL_RANK", "7"), "LOCAL_RANK=7 is outside");
  ExpectError(with("MASTER_PORT", "70000"), "MASTER_PORT=70000 is outside [1, 65535]");
  ExpectError(with("MASTER_PORT", "http"), "MASTER_PORT='http' is not an integer");
  ExpectError(MapEnv({{"SLURM_PROCID", "0"}, {"SLURM_LOCALID", "0"}}), "SLURM_NTASKS is not set");
  ExpectError(MapEnv({{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}}),
              "OMPI_COMM_WORLD_LOCAL_RANK is not set");
}

}  // namespace
}  // namespace p3d
