// The precision recipes the exports refuse, and the messages each framework
// gives (planner/export_precision.h).
#include "planner/export_precision.h"

#include <gtest/gtest.h>

namespace p3d {
namespace {

constexpr PrecisionLimits kLimits{.framework = "fw",
                                  .param = " has no mode",
                                  .grad = ": no such accumulation",
                                  .master = ": fp32 only"};

TEST(ExportPrecisionTest, AcceptsBf16AndFp32Recipes) {
  Precision p;  // bf16 weights, fp32 gradients, fp32 master and moments
  EXPECT_TRUE(CheckExportPrecision(p, kLimits).ok());
  p.param_bytes = 4;
  p.grad_bytes = 2;
  EXPECT_TRUE(CheckExportPrecision(p, kLimits).ok());
}

TEST(ExportPrecisionTest, NamesTheFirstFieldItCannotExpress) {
  Precision p;
  p.param_bytes = 1;
  p.grad_bytes = 8;
  Status s = CheckExportPrecision(p, kLimits);
  EXPECT_EQ(s.code(), Status::Code::kInfeasible);
  EXPECT_EQ(s.message(), "fw: precision.param_bytes=1 has no mode");
  p.param_bytes = 2;
  EXPECT_EQ(CheckExportPrecision(p, kLimits).message(),
            "fw: precision.grad_bytes=8: no such accumulation");
  p.grad_bytes = 4;
  p.optimizer_bytes = 4;
  EXPECT_EQ(CheckExportPrecision(p, kLimits).message(),
            "fw: precision master_bytes=4 optimizer_bytes=4: fp32 only");
}

}  // namespace
}  // namespace p3d
