// metrics.jsonl (one JSON object per logged step and per validation) and the progress line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace mds::train {

class MetricsLog {
 public:
  // Appends to the records of steps up to `from_step` (where the run starts or resumes); those of
  // later steps, written before a kill or crash that lost their checkpoint, and a line cut short
  // are dropped, since the run writes them again. An empty path writes nothing (the data-parallel
  // ranks other than 0).
  MetricsLog(const std::string& path, int64_t from_step);
  ~MetricsLog();
  void write(const nlohmann::json& record);      // one line, flushed

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
};

// "1:02:03" for a duration in seconds.
std::string format_duration(double seconds);

}  // namespace mds::train
