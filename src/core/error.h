// Error type and checks used across the project.
//
// Two kinds of failure, kept apart as in LibTorch's TORCH_CHECK / TORCH_INTERNAL_ASSERT:
//  - Error: the user's input or configuration is wrong. The message says what and where
//    ("train.jsonl:17: field \"trg\": expected a string, got a number").
//  - MDS_ASSERT: an invariant of our own code broke; the message points at the source line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace mds {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// str_cat("a", 1, 'b', 2.5) -> "a1b2.5"; the project's only string formatter (no fmt, to avoid
// clashing with the copy of fmt inside newer LibTorch builds).
template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str_cat(std::forward<Args>(args)...));
}

}  // namespace mds

#define MDS_CHECK(cond, ...)                          \
  do {                                                \
    if (!(cond)) ::mds::fail(__VA_ARGS__);            \
  } while (0)

#define MDS_ASSERT(cond)                                                                     \
  do {                                                                                       \
    if (!(cond))                                                                             \
      ::mds::fail("internal error: ", __FILE__, ":", __LINE__, ": assertion failed: " #cond); \
  } while (0)
