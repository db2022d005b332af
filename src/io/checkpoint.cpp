// Checkpoint directories: written whole into DIR.tmp-<pid>, then swapped in by renames.
//
// Replacing an existing DIR takes two renames (POSIX cannot swap two directories in one):
//   1. DIR.tmp-<pid> is complete and synced;
//   2. DIR          -> DIR.old-<pid>
//   3. DIR.tmp-<pid> -> DIR
//   4. DIR.old-<pid> is removed.
// So at every moment a complete checkpoint exists under DIR or, between 2 and 3 only, under
// DIR.old-<pid>. Readers look there when DIR is missing or incomplete (read_checkpoint,
// list_checkpoints), so a crash between 2 and 3 loses nothing. Other leftovers (*.tmp-*, and
// *.old-* next to a complete DIR) are ignored, never read; prune_checkpoints removes the *.old-*
// of the steps it prunes.
//
// "Complete" means trainer_state.json exists: it is written last. It also holds the size and crc32 of
// every other file ("files"), checked when they are read: a truncated or damaged file is an error
// naming it, never weights silently different from those saved.
#include "io/checkpoint.h"

#include <ATen/ATen.h>
#include <unistd.h>

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <utility>

#include "core/crash_point.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/json_integer.h"
#include "core/log.h"

namespace mds::io {
namespace {

constexpr const char* kModel = "model.safetensors";
constexpr const char* kRaw = "raw.safetensors";
constexpr const char* kOptimizer = "optimizer.safetensors";
constexpr const char* kSampler = "sampler.safetensors";
constexpr const char* kTrainerState = "trainer_state.json";
constexpr const char* kTokenizer = "tokenizer.model";
constexpr const char* kConfig = "config.toml";

constexpr const char* kFiles = "files";  // trainer_state.json's sizes and checksums

// Size and zlib crc32 of a file's bytes.
std::pair<uint64_t, std::string> file_sum(const std::string& path) {
  const fs::MappedFile map(path);
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = static_cast<const Bytef*>(map.data());
  for (std::size_t left = map.size(); left > 0;) {
    const uInt n = static_cast<uInt>(std::min<std::size_t>(left, std::size_t{1} << 30));
    crc = crc32(crc, p, n);
    p += n;
    left -= n;
  }
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08lx", static_cast<unsigned long>(crc));
  return {map.size(), hex};
}

// Checks a file against what the save recorded for it (nothing recorded: a checkpoint from before
// the checksums, taken as it is).
void verify_file(const std::string& dir, const char* name, const nlohmann::json& files) {
  if (!files.is_object() || !files.contains(name)) return;
  const std::string path = fs::join(dir, name);
  MDS_CHECK(fs::is_regular_file(path), path, " is missing, but the save wrote it: the checkpoint is damaged");
  const nlohmann::json& want = files.at(name);
  const auto [bytes, crc] = file_sum(path);
  const std::string state_path = fs::join(dir, kTrainerState);
  MDS_CHECK(want.is_object() && want.contains("crc32") && want.at("crc32").is_string(), state_path,
            ": \"files\".\"", name, "\" must hold \"bytes\" and \"crc32\" (a string)");
  const uint64_t want_bytes = json_integer<uint64_t>(want, "bytes", state_path);
  MDS_CHECK(bytes == want_bytes, path, " is ", bytes, " bytes, but the save wrote ", want_bytes,
            ": the file was cut short or replaced after the checkpoint was written");
  const std::string want_crc = want.at("crc32").get<std::string>();
  MDS_CHECK(crc == want_crc, path, ": its checksum (crc32 ", crc, ") is not the one saved with it (", want_crc,
            "): the file is damaged (changed bytes, a bad copy)");
}

bool is_complete(const std::string& dir) {
  return fs::is_regular_file(fs::join(dir, kTrainerState));
}

// Digits in canonical form (no sign, no leading zero), small enough for int64.
bool parse_number(const std::string& text, int64_t* value) {
  if (text.empty() || text.size() > 18) return false;
  if (text.size() > 1 && text[0] == '0') return false;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *value = v;
  return true;
}

// "step_N" (plain) or "step_N.old-P" (the previous copy, mid-replacement); anything else: false.
bool parse_step_name(const std::string& name, int64_t* step, bool* old) {
  const std::string prefix = "step_";
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  const std::string rest = name.substr(prefix.size());
  const std::size_t dot = rest.find(".old-");
  int64_t pid = 0;
  *old = dot != std::string::npos;
  if (*old && !parse_number(rest.substr(dot + 5), &pid)) return false;
  return parse_number(rest.substr(0, dot), step);
}

// "NAME.tmp-P": a checkpoint being written, or left by a process that stopped while writing it.
bool is_unfinished_name(const std::string& name) {
  const std::size_t dot = name.rfind(".tmp-");
  int64_t pid = 0;
  return dot != std::string::npos && dot > 0 && parse_number(name.substr(dot + 5), &pid);
}

// DIR when it is complete, else a complete DIR.old-<pid> (a replacement cut short), else DIR.
std::string readable_dir(const std::string& dir) {
  if (is_complete(dir)) return dir;
  const std::string parent = fs::parent_path(dir);
  const std::string listed = parent.empty() ? "." : parent;
  if (!fs::is_directory(listed)) return dir;
  const std::string prefix = fs::filename(dir) + ".old-";
  for (const std::string& name : fs::list_directory(listed)) {
    int64_t pid = 0;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    if (!parse_number(name.substr(prefix.size()), &pid)) continue;
    const std::string candidate = fs::join(parent, name);
    if (is_complete(candidate)) {
      log_warn(dir, ": missing or incomplete; reading ", candidate,
               ", the copy an interrupted replacement left");
      return candidate;
    }
  }
  return dir;
}

void check_finite(const char* part, const TensorMap& tensors, const std::string& dir) {
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined() || !at::isFloatingType(tensor.scalar_type())) continue;
    if (at::isfinite(tensor).all().item<bool>()) continue;
    const bool nan = at::isnan(tensor).any().item<bool>();
    fail("refusing to write a checkpoint: ", part, " tensor \"", name, "\" holds ",
         nan ? "NaN" : "inf", " (nothing written to ", dir, ")");
  }
}

void write_contents(const std::string& dir, const CheckpointContent& content) {
  save_safetensors(fs::join(dir, kModel), content.model);
  if (!content.raw.empty()) save_safetensors(fs::join(dir, kRaw), content.raw);
  if (!content.optimizer.empty()) save_safetensors(fs::join(dir, kOptimizer), content.optimizer);
  if (!content.sampler.empty()) save_safetensors(fs::join(dir, kSampler), content.sampler);
  if (!content.tokenizer_model.empty())
    fs::write_file_atomic(fs::join(dir, kTokenizer), content.tokenizer_model);
  if (!content.config_toml.empty())
    fs::write_file_atomic(fs::join(dir, kConfig), content.config_toml);
  crash_point("checkpoint.write");
  nlohmann::json with_sums = content.trainer_state;
  nlohmann::json& files = with_sums[kFiles] = nlohmann::json::object();
  for (const char* name : {kModel, kRaw, kOptimizer, kSampler, kTokenizer, kConfig}) {
    if (!fs::is_regular_file(fs::join(dir, name))) continue;
    const auto [bytes, crc] = file_sum(fs::join(dir, name));
    files[name] = {{"bytes", bytes}, {"crc32", crc}};
  }
  std::string state;
  try {
    state = with_sums.dump(2) + "\n";
  } catch (const nlohmann::json::exception& e) {  // strings that are not UTF-8
    fail(fs::join(dir, kTrainerState), ": cannot write: ", e.what());
  }
  // Last: its presence is what makes the checkpoint complete.
  fs::write_file_atomic(fs::join(dir, kTrainerState), state);
  fs::fsync_path(dir);
}

}  // namespace

void write_checkpoint(const std::string& dir_arg, const CheckpointContent& content) {
  const std::string dir = fs::strip_trailing_slashes(dir_arg);
  MDS_CHECK(!dir.empty(), "write_checkpoint: empty directory name");
  check_finite("model", content.model, dir);
  check_finite("raw", content.raw, dir);
  check_finite("optimizer", content.optimizer, dir);

  const std::string tmp = str_cat(dir, ".tmp-", ::getpid());
  const std::string old = str_cat(dir, ".old-", ::getpid());  // fs::replace_directory's name
  fs::remove_all(tmp);  // left by an earlier process that had our pid
  fs::create_directories(tmp);
  try {
    write_contents(tmp, content);
  } catch (...) {
    fs::remove_all_noexcept(tmp);
    throw;
  }

  bool cleaned = true;
  try {
    cleaned = fs::replace_directory(tmp, dir);
  } catch (...) {
    fs::remove_all_noexcept(tmp);
    throw;
  }
  if (!cleaned) log_warn(old, ": cannot remove the previous checkpoint; remove it by hand");
}

CheckpointContent read_checkpoint(const std::string& dir_arg, bool with_training_state) {
  const std::string given = fs::strip_trailing_slashes(dir_arg);
  MDS_CHECK(!is_unfinished_name(fs::filename(given)), given,
            " is an unfinished checkpoint (the run stopped while saving it); use a step_N directory beside it "
            "(the next training run removes this one)");
  const std::string dir = readable_dir(given);
  MDS_CHECK(fs::is_directory(dir), dir, ": no such checkpoint directory");
  const auto file = [&](const char* name) { return fs::join(dir, name); };
  const auto present = [&](const char* name) { return fs::is_regular_file(file(name)); };

  CheckpointContent content;
  if (with_training_state)
    MDS_CHECK(present(kTrainerState), dir, ": ", kTrainerState,
              " is missing: the checkpoint is incomplete (an interrupted save?)");
  if (present(kTrainerState)) {
    try {
      content.trainer_state = nlohmann::json::parse(fs::read_file(file(kTrainerState)));
    } catch (const nlohmann::json::exception& e) {
      fail(file(kTrainerState), ": not valid JSON (damaged?): ", e.what());
    }
    MDS_CHECK(content.trainer_state.is_object(), file(kTrainerState), ": not a JSON object (damaged?)");
  }
  nlohmann::json files;
  if (content.trainer_state.contains(kFiles)) {
    files = content.trainer_state[kFiles];
    content.trainer_state.erase(kFiles);
  }
  const auto read_part = [&](const char* name) {
    verify_file(dir, name, files);
    return present(name);
  };
  MDS_CHECK(present(kModel), dir, ": ", kModel, " is missing");
  if (read_part(kModel)) content.model = load_safetensors(file(kModel));
  if (read_part(kConfig)) content.config_toml = fs::read_file(file(kConfig));
  if (read_part(kTokenizer)) content.tokenizer_model = fs::read_file(file(kTokenizer));
  if (!with_training_state) {
    content.trainer_state = nlohmann::json();
    return content;
  }
  if (read_part(kRaw)) content.raw = load_safetensors(file(kRaw));
  if (read_part(kOptimizer)) content.optimizer = load_safetensors(file(kOptimizer));
  if (read_part(kSampler)) content.sampler = load_safetensors(file(kSampler));
  return content;
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir) {
  const std::string root = fs::join(run_dir, "checkpoints");
  if (!fs::is_directory(root)) return {};
  std::map<int64_t, std::string> found, stranded;
  for (const std::string& name : fs::list_directory(root)) {
    int64_t step = 0;
    bool old = false;
    if (!parse_step_name(name, &step, &old)) continue;
    const std::string path = fs::join(root, name);
    if (!fs::is_directory(path) || !is_complete(path)) continue;
    (old ? stranded : found).emplace(step, path);
  }
  // A step_N.old-P counts only when step_N itself is missing or incomplete.
  for (const auto& [step, path] : stranded) found.emplace(step, path);
  return {found.begin(), found.end()};
}

void prune_checkpoints(const std::string& run_dir, int64_t keep_last) {
  MDS_CHECK(keep_last >= 0, "prune_checkpoints: keep_last is ", keep_last, ", must be >= 0");
  const auto checkpoints = list_checkpoints(run_dir);
  const int64_t excess = static_cast<int64_t>(checkpoints.size()) - keep_last;
  if (excess <= 0) return;
  const std::string root = fs::join(run_dir, "checkpoints");
  for (int64_t i = 0; i < excess; ++i) fs::remove_all(checkpoints[i].second);
  // Old copies of the pruned steps go too: listed in place of a missing step_N, they would
  // bring it back.
  for (const std::string& name : fs::list_directory(root)) {
    int64_t step = 0;
    bool old = false;
    if (parse_step_name(name, &step, &old) && old && step <= checkpoints[excess - 1].first)
      fs::remove_all(fs::join(root, name));
  }
}

std::vector<std::string> remove_checkpoint_leftovers(const std::string& run_dir) {
  std::vector<std::string> removed;
  auto sweep = [&](const std::string& root, bool steps) {
    if (!fs::is_directory(root)) return;
    for (const std::string& name : fs::list_directory(root)) {
      const std::string path = fs::join(root, name);
      bool leftover = is_unfinished_name(name) && (steps ? name.rfind("step_", 0) == 0 : name.rfind("best.tmp-", 0) == 0);
      int64_t step = 0;
      bool old = false;
      // step_N.old-P beside a complete step_N: the replacement finished, only the removal did not.
      if (steps && !leftover && parse_step_name(name, &step, &old) && old)
        leftover = is_complete(fs::join(root, "step_" + std::to_string(step)));
      if (!leftover || !fs::is_directory(path)) continue;
      fs::remove_all(path);
      removed.push_back(path);
    }
  };
  sweep(fs::join(run_dir, "checkpoints"), true);
  sweep(run_dir, false);
  return removed;
}

std::string latest_checkpoint(const std::string& run_dir) {
  const auto checkpoints = list_checkpoints(run_dir);
  return checkpoints.empty() ? "" : checkpoints.back().second;
}

}  // namespace mds::io
