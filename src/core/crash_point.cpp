#include "core/crash_point.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace mds {
namespace {

struct CrashSpec {
  std::string name;  // empty: off
  long count = 1;
  int signal = SIGKILL;
};

CrashSpec parse(const char* text) {
  CrashSpec s;
  if (text == nullptr || *text == '\0') return s;
  const std::string t = text;
  const std::size_t a = t.find(':');
  s.name = t.substr(0, a);
  if (a == std::string::npos) return s;
  const std::size_t b = t.find(':', a + 1);
  const std::string n = t.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
  char* end = nullptr;
  s.count = std::strtol(n.c_str(), &end, 10);
  MDS_CHECK(!n.empty() && *end == '\0' && s.count >= 1, "MDS_CRASH_AT=\"", t, "\": the count must be a whole number >= 1");
  if (b == std::string::npos) return s;
  const std::string sig = t.substr(b + 1);
  if (sig == "KILL") s.signal = SIGKILL;
  else if (sig == "TERM") s.signal = SIGTERM;
  else if (sig == "INT") s.signal = SIGINT;
  else fail("MDS_CRASH_AT=\"", t, "\": the signal must be KILL, TERM or INT");
  return s;
}

}  // namespace

void crash_point(const char* name) {
  static const CrashSpec spec = parse(std::getenv("MDS_CRASH_AT"));
  static std::atomic<long> passes{0};
  if (spec.name.empty() || spec.name != name) return;
  if (passes.fetch_add(1) + 1 == spec.count) std::raise(spec.signal);
}

}  // namespace mds
