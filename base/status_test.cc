#include "base/status.h"

#include <gtest/gtest.h>

namespace herald {
namespace {

Result<int> half_of_even(int v) {
  if (v % 2 != 0) {
    return Status::invalid_argument("odd");
  }
  return v / 2;
}

Status quarter(int v, int& out) {
  HERALD_ASSIGN_OR_RETURN(const int half, half_of_even(v));
  HERALD_ASSIGN_OR_RETURN(out, half_of_even(half));
  return Status::ok_status();
}

TEST(StatusTest, OkStatusPrintsOk) {
  EXPECT_EQ(Status().to_string(), "ok");
}

TEST(StatusTest, ErrorCarriesCodeNameAndMessage) {
  const Status s = Status::corruption("bad crc at index 7");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(s.to_string(), "corruption: bad crc at index 7");
}

TEST(StatusTest, AssignOrReturnPropagatesFirstFailure) {
  int out = 0;
  EXPECT_TRUE(quarter(8, out).ok());
  EXPECT_EQ(out, 2);
  const Status s = quarter(6, out);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
}

TEST(StatusDeathTest, ResultFromOkStatusAborts) {
  EXPECT_DEATH(
      {
        Result<int> r{Status()};
        (void)r;
      },
      "Result built from an ok Status");
}

}  // namespace
}  // namespace herald
