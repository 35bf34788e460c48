// p3d-calibrate's CPU AdamW probe (executor/calibrate/cpu_adam_probe.h) on 1M
// parameters: it runs (its own check of the updated values against the
// scalar AdamW passes), reports figures that agree with each other, and its
// object passes the profile validator (simulator/profile_cpu_adam.h).
#include "executor/calibrate/cpu_adam_probe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <thread>

#include "simulator/profile_cpu_adam.h"

namespace p3d {
namespace {

TEST(CpuAdamProbeTest, MeasuresOneMillionParameters) {
  auto j = ProbeCpuAdam(1'000'003, 2, 0.5);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["params"].get<int64_t>(), 1'000'003);
  EXPECT_EQ((*j)["threads"].get<int>(), 2);
  const int steps = (*j)["steps"].get<int>();
  EXPECT_GE(steps, 1);
  EXPECT_LE(steps, 10);
  const double s = (*j)["seconds_per_step"].get<double>();
  EXPECT_GT(s, 0);
  EXPECT_GT((*j)["norm_seconds_per_step"].get<double>(), 0);
  auto rate = CalibratedCpuAdamParamsPerS(*j, "probe");
  ASSERT_TRUE(rate.ok()) << rate.status().ToString();
  EXPECT_DOUBLE_EQ(*rate, 1'000'003 / s);
}

TEST(CpuAdamProbeTest, ZeroThreadsMeansAllHardwareThreads) {
  auto j = ProbeCpuAdam(70'000, 0, 0.1);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["threads"].get<int>(),
            std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
}

TEST(CpuAdamProbeTest, RejectsBadArgumentsByName) {
  auto params = ProbeCpuAdam(0, 1, 1);
  ASSERT_FALSE(params.ok());
  EXPECT_NE(params.status().message().find("params = 0"), std::string::npos);
  auto threads = ProbeCpuAdam(10, -1, 1);
  ASSERT_FALSE(threads.ok());
  EXPECT_NE(threads.status().message().find("threads = -1"), std::string::npos);
  auto seconds = ProbeCpuAdam(10, 1, 0);
  ASSERT_FALSE(seconds.ok());
  EXPECT_NE(seconds.status().message().find("max_seconds = 0"), std::string::npos);
}

}  // namespace
}  // namespace p3d
