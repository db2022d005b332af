// Logging to stderr with a timestamp and level. Quiet by default in tests, set with set_log_level or
// the MDS_LOG environment variable (debug, info, warn, error).
#pragma once

#include <string>

#include "core/error.h"

namespace mds {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const std::string& message);
bool stderr_is_terminal();
// The current UTC time through strftime's `format` ("%Y-%m-%dT%H:%M:%SZ" for file stamps).
std::string utc_now(const char* format = "%Y-%m-%dT%H:%M:%SZ");

template <typename... Args> void log_debug(Args&&... a) { if (log_level() <= LogLevel::debug) log_message(LogLevel::debug, str_cat(std::forward<Args>(a)...)); }
template <typename... Args> void log_info(Args&&... a) { if (log_level() <= LogLevel::info) log_message(LogLevel::info, str_cat(std::forward<Args>(a)...)); }
template <typename... Args> void log_warn(Args&&... a) { if (log_level() <= LogLevel::warn) log_message(LogLevel::warn, str_cat(std::forward<Args>(a)...)); }
template <typename... Args> void log_error(Args&&... a) { if (log_level() <= LogLevel::error) log_message(LogLevel::error, str_cat(std::forward<Args>(a)...)); }

}  // namespace mds
