#include "core/log.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string_view>

namespace mds {
namespace {

LogLevel initial_level() {
  const char* env = std::getenv("MDS_LOG");
  if (!env) return LogLevel::info;
  std::string_view v(env);
  if (v == "debug") return LogLevel::debug;
  if (v == "warn") return LogLevel::warn;
  if (v == "error") return LogLevel::error;
  if (v == "off") return LogLevel::off;
  return LogLevel::info;
}

LogLevel g_level = initial_level();
std::mutex g_mutex;

}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }
bool stderr_is_terminal() { return isatty(STDERR_FILENO) == 1; }

std::string utc_now(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

void log_message(LogLevel level, const std::string& message) {
  static const char* names[] = {"debug", "info", "warn", "error"};
  auto now = std::chrono::system_clock::now();
  std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  localtime_r(&t, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(g_mutex);
  // Output printed before this line first: where stdout and stderr share a pipe (`2>&1 | tee`),
  // stdout's buffer would otherwise land after it, or split a table's line around it.
  std::fflush(stdout);
  std::fprintf(stderr, "[%s %s] %s\n", stamp, names[static_cast<int>(level)], message.c_str());
  std::fflush(stderr);
}

}  // namespace mds
