// Bounded input files and atomic writes (common/input_file.h), and the JSON
// reader that never throws (common/json_fields.h): the inputs that crashed or
// hung the tools before (issue 18).
#include "common/input_file.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/json_fields.h"

namespace p3d {
namespace {

std::string TempDir() {
  std::string dir = ::testing::TempDir() + "p3d_input_file_test_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST(InputFileTest, RefusesDirectoriesDevicesAndMissingFiles) {
  const std::string dir = TempDir();
  auto d = ReadInputFile(dir, "model file");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(d.status().message().find("is a directory"), std::string::npos);
  auto z = ReadInputFile("/dev/zero", "hardware file");  // would grow without bound
  ASSERT_FALSE(z.ok());
  EXPECT_NE(z.status().message().find("not a regular file"), std::string::npos);
  auto m = ReadInputFile(dir + "/nope.json", "plan file");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Status::Code::kInvalidArgument);  // bad input: exit 2 everywhere
  EXPECT_NE(m.status().message().find("plan file"), std::string::npos);
}

TEST(InputFileTest, RefusesFilesOverTheLimitBeforeReading) {
  const std::string path = TempDir() + "/big.json";
  Write(path, std::string(1000, ' '));
  EXPECT_TRUE(ReadInputFile(path, "x", 1000).ok());
  auto r = ReadInputFile(path, "x", 999);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("over the limit of 999 bytes"), std::string::npos);
}

TEST(InputFileTest, AtomicWriteKeepsTheOldFileWhenTheWriteFails) {
  const std::string dir = TempDir();
  const std::string path = dir + "/plan.json";
  ASSERT_TRUE(WriteFileAtomic(path, "first", "plan").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second", "plan").ok());
  EXPECT_EQ(*ReadInputFile(path, "plan"), "second");
  // A path whose folder does not exist: the write fails and reports it.
  Status s = WriteFileAtomic(dir + "/missing/plan.json", "x", "--save-plan");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--save-plan"), std::string::npos);
  // Streaming writers: a failed commit removes the temporary and keeps the old file.
  const std::string tmp = TempPathFor(path);
  Write(tmp, "partial");
  EXPECT_FALSE(CommitTempFile(tmp, path, false, "checkpoint").ok());
  EXPECT_FALSE(std::filesystem::exists(tmp));
  EXPECT_EQ(*ReadInputFile(path, "plan"), "second");
  EXPECT_FALSE(WriteFileAtomic("", "x", "--report").ok());
}

TEST(JsonReaderTest, NeverThrows) {
  // 1e605 overflows a double: nlohmann throws out_of_range (it aborted p3d-plan).
  auto big = ParseJson(R"({"rms_norm_eps": 1e605})", "config.json");
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("config.json"), std::string::npos);
  EXPECT_FALSE(ParseJson("{\"a\": ", "x").ok());
  EXPECT_FALSE(ParseJson("", "x").ok());
  EXPECT_FALSE(ParseJson(std::string(100000, '['), "x").ok());  // deep nesting: refused, no stack overflow
  EXPECT_TRUE(ParseJson(R"({"s": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["})", "x").ok());
  EXPECT_TRUE(ParseJson(R"({"a": [1, 2.5, "x", null, true]})", "x").ok());
}

TEST(JsonReaderTest, UnknownKeysNameTheClosestKnownOne) {
  nlohmann::json j = {{"bytes_per_sec", 1}, {"name", "x"}};
  JsonFields f(j, "hw.json");
  Status s = f.OnlyKeys({"name", "bytes_per_s", "latency_s"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'bytes_per_sec'"), std::string::npos);
  EXPECT_NE(s.message().find("did you mean 'bytes_per_s'"), std::string::npos);
  EXPECT_TRUE(f.OnlyKeys({"name", "bytes_per_sec"}).ok());
  EXPECT_EQ(ClosestMatch("zzzzzz", {"name", "latency_s"}), "");
}

TEST(JsonReaderTest, NumbersAreRangeChecked) {
  nlohmann::json j = {{"a", 1e308}, {"b", -3}, {"c", 4096.0}, {"d", 2.5}, {"e", "7"}};
  JsonFields f(j, "f.json");
  EXPECT_FALSE(f.Number("a", 0, 1e18).ok());
  EXPECT_FALSE(f.IntInRange("b", 1, 10).ok());
  EXPECT_EQ(*f.IntInRange("c", 1, 1 << 20), 4096);
  EXPECT_FALSE(f.IntInRange("d", 1, 10).ok());
  EXPECT_FALSE(f.Number("e", 0, 10).ok());
  EXPECT_EQ(*f.NumberOr("missing", 0, 1, 0.5), 0.5);
  // Found by p3d-fuzz under UBSan: hidden 2^63 - 1 overflowed 4 * hidden.
  nlohmann::json big = {{"hidden", INT64_MAX}, {"ok", int64_t{1} << 40}};
  JsonFields g(big, "m.json");
  EXPECT_FALSE(g.PositiveInt("hidden").ok());
  EXPECT_EQ(*g.PositiveInt("ok"), int64_t{1} << 40);
}

}  // namespace
}  // namespace p3d
