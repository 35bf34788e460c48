#include "common/enum_names.h"

#include <gtest/gtest.h>

#include "common/plan.h"

namespace p3d {
namespace {

enum class Color { kRed, kGreen, kBlue };
constexpr EnumEntry<Color> kColorNames[] = {{Color::kRed, "red"}, {Color::kGreen, "green"}};

TEST(EnumNamesTest, NameAndParseAreInverses) {
  static_assert(EnumName(kColorNames, Color::kGreen)[0] == 'g');
  for (const EnumEntry<Color>& e : kColorNames) {
    Color c = Color::kBlue;
    ASSERT_TRUE(ParseEnum(kColorNames, EnumName(kColorNames, e.value), &c));
    EXPECT_EQ(c, e.value);
  }
}

TEST(EnumNamesTest, MissingValueAndUnknownName) {
  EXPECT_STREQ(EnumName(kColorNames, Color::kBlue), "?");
  EXPECT_STREQ(EnumName(kColorNames, Color::kBlue, "color"), "color");
  Color c = Color::kBlue;
  EXPECT_FALSE(ParseEnum(kColorNames, "Red", &c));
  EXPECT_FALSE(ParseEnum(kColorNames, "", &c));
  EXPECT_EQ(c, Color::kBlue);
}

// The plan's enums keep their documented names (common/plan.h).
TEST(EnumNamesTest, PlanEnums) {
  EXPECT_STREQ(RecomputeName(Recompute::kSelective), "selective");
  EXPECT_STREQ(OffloadName(Offload::kOptimizerAndParams), "params");
  EXPECT_STREQ(AttentionImplName(AttentionImpl::kUnfused), "unfused");
  Offload o = Offload::kNone;
  EXPECT_TRUE(ParseOffload("optimizer", &o));
  EXPECT_EQ(o, Offload::kOptimizer);
  AttentionImpl a = AttentionImpl::kFused;
  EXPECT_FALSE(ParseAttentionImpl("flash", &a));
  EXPECT_EQ(a, AttentionImpl::kFused);
}

}  // namespace
}  // namespace p3d
