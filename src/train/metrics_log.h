// metrics.jsonl (one JSON object per logged step and per validation) and the progress line.
#pragma once

#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace mds::train {

class MetricsLog {
 public:
  // Appends: a resumed run continues the file. An empty path writes nothing (the data-parallel
  // ranks other than 0).
  explicit MetricsLog(const std::string& path);
  ~MetricsLog();
  void write(const nlohmann::json& record);      // one line, flushed

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// "1:02:03" for a duration in seconds.
std::string format_duration(double seconds);

}  // namespace mds::train
