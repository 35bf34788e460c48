#include "common/edit_distance.h"

#include <gtest/gtest.h>

namespace p3d {
namespace {

TEST(EditDistanceTest, CountsInsertionsDeletionsAndSubstitutions) {
  EXPECT_EQ(EditDistance("", ""), 0u);
  EXPECT_EQ(EditDistance("", "abc"), 3u);
  EXPECT_EQ(EditDistance("abc", ""), 3u);
  EXPECT_EQ(EditDistance("llama-7b", "llama-7b"), 0u);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3u);
  EXPECT_EQ(EditDistance("latency", "latency_s"), 2u);
  EXPECT_EQ(EditDistance("gpt2-xl", "gpt2-xk"), 1u);
}

TEST(EditDistanceTest, IsSymmetric) {
  EXPECT_EQ(EditDistance("bytes_per_s", "byte_per_sec"),
            EditDistance("byte_per_sec", "bytes_per_s"));
}

}  // namespace
}  // namespace p3d
