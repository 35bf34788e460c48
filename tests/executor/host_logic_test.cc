// Host-side executor logic (CPU, runs in CI): token buckets, data sources,
// step statistics, device -> catalog mapping, recompute parsing and the
// p3d-run JSON document.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>

#include "executor/data.h"
#include "executor/metrics.h"
#include "executor/run_report.h"
#include "executor/token_buckets.h"
#include "models/zoo.h"
#include "simulator/hardware.h"

namespace p3d {
namespace {

TEST(TokenBucketsTest, GroupsPositionsByTokenInOrder) {
  std::mt19937 gen(1);
  std::vector<int32_t> tokens(500);
  for (auto& t : tokens) t = static_cast<int32_t>(gen() % 37);
  TokenBuckets b = BuildTokenBuckets(tokens);
  ASSERT_EQ(b.offset.size(), b.token.size() + 1);
  EXPECT_EQ(b.offset.front(), 0);
  EXPECT_EQ(b.offset.back(), 500);
  for (size_t u = 0; u < b.token.size(); ++u) {
    if (u > 0) {
      EXPECT_LT(b.token[u - 1], b.token[u]);
    }
    for (int32_t p = b.offset[u]; p < b.offset[u + 1]; ++p) {
      EXPECT_EQ(tokens[b.positions[p]], b.token[u]);
      if (p > b.offset[u]) {
        EXPECT_LT(b.positions[p - 1], b.positions[p]);
      }
    }
  }
  TokenBuckets empty = BuildTokenBuckets({});
  EXPECT_TRUE(empty.token.empty());
  EXPECT_EQ(empty.offset.size(), 1u);
}

TEST(DataTest, SyntheticIsStatelessAndTargetsAreNextTokens) {
  auto src = MakeSyntheticSource(7, 1000, {2, 16, 3});
  ASSERT_TRUE(src.ok());
  std::vector<int32_t> t1, y1, t2, y2;
  ASSERT_TRUE((*src)->Batch(5, 2, &t1, &y1).ok());
  ASSERT_TRUE((*src)->Batch(0, 0, &t2, &y2).ok());
  ASSERT_TRUE((*src)->Batch(5, 2, &t2, &y2).ok());
  EXPECT_EQ(t1, t2);
  EXPECT_EQ(y1, y2);
  for (int s = 0; s + 1 < 16; ++s) EXPECT_EQ(y1[s], t1[s + 1]);
  std::vector<int32_t> t3, y3;
  ASSERT_TRUE((*src)->Batch(5, 1, &t3, &y3).ok());
  EXPECT_NE(t1, t3);
  for (int32_t t : t1) EXPECT_TRUE(t >= 0 && t < 1000);
}

std::string WriteTemp(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  return path;
}

TEST(DataTest, FileSourceReadsUint16AndUint32Windows) {
  std::vector<uint8_t> u16, u32;
  for (int i = 0; i < 100; ++i) {
    u16.push_back(static_cast<uint8_t>(i));
    u16.push_back(1);  // token 256 + i
    for (int b = 0; b < 4; ++b) u32.push_back(b == 0 ? static_cast<uint8_t>(i) : 0);
  }
  auto a = MakeFileSource(WriteTemp("a.u16", u16), TokenDType::kUint16, 1000, {2, 8, 1});
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  std::vector<int32_t> t, y;
  ASSERT_TRUE((*a)->Batch(1, 0, &t, &y).ok());
  // Step 1, micro 0, B=2: windows 2 and 3 start at 2*8 and 3*8.
  EXPECT_EQ(t[0], 256 + 16);
  EXPECT_EQ(y[0], 256 + 17);
  EXPECT_EQ(t[8], 256 + 24);
  auto b = MakeFileSource(WriteTemp("b.u32", u32), TokenDType::kUint32, 1000, {1, 8, 1});
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Batch(0, 0, &t, &y).ok());
  EXPECT_EQ(t[3], 3);
}

TEST(DataTest, FileSourceErrorsNameTheProblem) {
  std::vector<uint8_t> bytes = {1, 0, 2, 0, 200, 0};
  auto too_short = MakeFileSource(WriteTemp("c.u16", bytes), TokenDType::kUint16, 256, {1, 8, 1});
  ASSERT_FALSE(too_short.ok());
  EXPECT_NE(too_short.status().message().find("at least 9"), std::string::npos);
  auto vocab = MakeFileSource(WriteTemp("d.u16", bytes), TokenDType::kUint16, 100, {1, 2, 1});
  ASSERT_FALSE(vocab.ok());
  EXPECT_NE(vocab.status().message().find("offset 2"), std::string::npos);
  auto missing = MakeFileSource("/nonexistent/file", TokenDType::kUint16, 100, {1, 2, 1});
  EXPECT_EQ(missing.status().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(ParseTokenDType("int8").ok());
  EXPECT_EQ(ByteTokens("A\xff").at(1), 255);
}

TEST(MetricsTest, StepTimeStatisticsSkipWarmup) {
  auto s = SummarizeStepTimes({9.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0}, 2);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->count, 5);
  EXPECT_DOUBLE_EQ(s->median_s, 3.0);
  EXPECT_DOUBLE_EQ(s->min_s, 1.0);
  EXPECT_DOUBLE_EQ(s->max_s, 5.0);
  EXPECT_DOUBLE_EQ(s->p10_s, 1.4);
  EXPECT_DOUBLE_EQ(s->p90_s, 4.6);
  EXPECT_FALSE(SummarizeStepTimes({1.0, 2.0}, 2).ok());
}

TEST(MetricsTest, KnownCardsMapToCatalogEntriesUnknownCardsAreRefused) {
  auto h100 = CatalogGpuForDevice("NVIDIA H100 80GB HBM3");
  ASSERT_TRUE(h100.ok());
  EXPECT_EQ(*h100, "h100-sxm");
  EXPECT_EQ(*CatalogGpuForDevice("NVIDIA H200"), "h200");
  auto unknown = CatalogGpuForDevice("NVIDIA H100 NVL");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("no MFU"), std::string::npos);
  // Every mapped id exists in the simulator's catalog (the peak comes from there).
  for (const char* name :
       {"NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB",
        "NVIDIA A100-SXM4-40GB", "NVIDIA B200", "NVIDIA L40S", "NVIDIA GeForce RTX 4090",
        "NVIDIA GeForce RTX 3090", "Tesla V100-SXM2-32GB", "Tesla V100-SXM2-16GB"}) {
    auto id = CatalogGpuForDevice(name);
    ASSERT_TRUE(id.ok()) << name;
    EXPECT_TRUE(CatalogCluster(*id).ok()) << *id;
  }
}

TEST(RunReportTest, JsonHasTheDocumentedKeysAndNoMfuForUnknownCards) {
  TrainOptions o;
  o.model = *ZooModel("gpt2-small");
  TrainResult r;
  r.device_name = "Some GPU";
  r.mfu_note = "unknown card";
  r.steps = {{0, 5.5, 1.0, 0.1}, {1, 5.4, 0.9, 0.1}, {2, 5.3, 0.8, 0.1}};
  r.time = StepTimeStats{1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1};
  r.tflops_per_gpu = 100;
  nlohmann::json j = TrainResultToJson(o, r);
  for (const char* k : {"device", "run", "steps", "summary", "memory"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_TRUE(j["summary"]["mfu"].is_null());
  EXPECT_EQ(j["summary"]["mfu_note"], "unknown card");
  EXPECT_EQ(j["steps"].size(), 3u);
  EXPECT_EQ(j["run"]["bucket_bytes"], kDefaultGradBucketBytes);
  EXPECT_DOUBLE_EQ(j["summary"]["step_time_s"]["median"].get<double>(), 0.1);
  EXPECT_NE(FormatSummary(o, r).find("MFU           not reported: unknown card"),
            std::string::npos);
}

}  // namespace
}  // namespace p3d
