// calibration.cpu_adam (simulator/profile_cpu_adam.h): the probe's object is
// accepted and yields params/s; each bad field is refused by name.
#include "simulator/profile_cpu_adam.h"

#include <gtest/gtest.h>

#include <string>

namespace p3d {
namespace {

using nlohmann::json;

json Good() {
  return {{"params", 134217728},        {"threads", 32},
          {"seconds_per_step", 0.05},   {"params_per_s", 134217728 / 0.05},
          {"chunk_elements", 16777216}, {"steps", 10}};
}

TEST(ProfileCpuAdamTest, ReturnsParamsPerSecond) {
  auto rate = CalibratedCpuAdamParamsPerS(Good(), "p.json");
  ASSERT_TRUE(rate.ok()) << rate.status().ToString();
  EXPECT_DOUBLE_EQ(*rate, 134217728 / 0.05);
}

// Every rule, one bad value at a time: the message names the field.
TEST(ProfileCpuAdamTest, RejectsBadFieldsByName) {
  struct Case {
    const char* key;
    json value;  // null: the field removed
    const char* message;
  };
  const Case cases[] = {
      {"params_per_s", -1, "field 'calibration.cpu_adam.params_per_s' must be a positive number"},
      {"params_per_s", "fast",
       "field 'calibration.cpu_adam.params_per_s' must be a positive number"},
      {"params_per_s", 1e9,
       "field 'calibration.cpu_adam.params_per_s' must equal params / "
       "seconds_per_step"},
      {"params_per_s", nullptr, "field 'calibration.cpu_adam.params_per_s' is missing"},
      {"seconds_per_step", 0,
       "field 'calibration.cpu_adam.seconds_per_step' must be a positive "
       "number"},
      {"params", 1.5, "field 'calibration.cpu_adam.params' must be a positive integer"},
      {"threads", 0, "field 'calibration.cpu_adam.threads' must be a positive integer"},
      {"threads", nullptr, "field 'calibration.cpu_adam.threads' is missing"},
  };
  for (const Case& c : cases) {
    json j = Good();
    if (c.value.is_null())
      j.erase(c.key);
    else
      j[c.key] = c.value;
    auto rate = CalibratedCpuAdamParamsPerS(j, "p.json");
    ASSERT_FALSE(rate.ok()) << c.key << " = " << c.value.dump();
    EXPECT_EQ(rate.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(rate.status().message().find(std::string("profile p.json: ") + c.message),
              std::string::npos)
        << rate.status().message();
  }
  auto not_object = CalibratedCpuAdamParamsPerS(json::array(), "p.json");
  ASSERT_FALSE(not_object.ok());
  EXPECT_NE(not_object.status().message().find("'calibration.cpu_adam' must be an object"),
            std::string::npos);
}

}  // namespace
}  // namespace p3d
