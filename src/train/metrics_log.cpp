#include "train/metrics_log.h"

#include <cmath>

#include "core/crash_point.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_integer.h"
#include "core/log.h"

namespace mds::train {

MetricsLog::MetricsLog(const std::string& path, int64_t from_step) : path_(path) {
  if (path.empty()) return;
  if (fs::is_regular_file(path)) {
    const std::string text = fs::read_file(path);
    std::string kept;
    int64_t dropped = 0;
    for (std::size_t at = 0; at < text.size();) {
      const std::size_t end = text.find('\n', at);
      if (end == std::string::npos) {  // cut short by a kill mid-write
        ++dropped;
        break;
      }
      const std::string line = text.substr(at, end - at);
      at = end + 1;
      const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      const bool later = record.is_object() && record.contains("step") &&
                         json_integer<int64_t>(record["step"]).value_or(std::numeric_limits<int64_t>::min()) > from_step;
      if (later || record.is_discarded()) ++dropped;
      else kept += line + "\n";
    }
    if (dropped > 0) {
      fs::write_file_atomic(path, kept);
      log_info(path, ": ", dropped, " record(s) after step ", from_step, " or cut short dropped (written before ",
               "the run stopped without their checkpoint; they are written again)");
    }
  }
  file_ = std::fopen(path.c_str(), "a");
  MDS_CHECK(file_ != nullptr, "cannot open ", path, " for writing");
}

MetricsLog::~MetricsLog() {
  if (file_) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!file_) return;
  const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  // In two halves, so that the kill test can stop the process between them (a torn line).
  const std::size_t half = line.size() / 2;
  MDS_CHECK(std::fwrite(line.data(), 1, half, file_) == half, "cannot write to ", path_);
  std::fflush(file_);
  crash_point("metrics.write");
  MDS_CHECK(std::fwrite(line.data() + half, 1, line.size() - half, file_) == line.size() - half, "cannot write to ",
            path_);
  std::fflush(file_);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

}  // namespace mds::train
