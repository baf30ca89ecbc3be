#include "workflow/keys.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace herald::workflow::keys {
namespace {

std::string encoded(std::string_view s) {
  std::string out;
  put_string(out, s);
  return out;
}

TEST(KeysTest, PutStringEscapesEveryZeroByteAndEndsTheString) {
  std::string out = "p";
  put_string(out, std::string_view("a\0b\0\0", 5));
  const std::string expected{'p', 'a', '\0', '\xFF', 'b', '\0', '\xFF', '\0', '\xFF', '\0', '\x01'};
  EXPECT_EQ(out, expected);
  EXPECT_EQ(encoded("id"), (std::string{'i', 'd', '\0', '\x01'}));
  EXPECT_EQ(encoded(""), (std::string{'\0', '\x01'}));
}

TEST(KeysTest, EncodedStringsSortAsTheStringsAndNoneIsAPrefixOfAnother) {
  std::vector<std::string> strings = {"",      "a",  std::string("a\0", 2), std::string("a\0b", 3),
                                      "a\x01", "ab", std::string("\0", 1),  "b"};
  std::sort(strings.begin(), strings.end());
  for (std::size_t i = 0; i + 1 < strings.size(); ++i) {
    EXPECT_LT(encoded(strings[i]), encoded(strings[i + 1])) << i;
    for (std::size_t j = 0; j < strings.size(); ++j) {
      if (i != j) {
        EXPECT_FALSE(encoded(strings[j]).starts_with(encoded(strings[i]))) << i << " " << j;
      }
    }
  }
}

}  // namespace
}  // namespace herald::workflow::keys
