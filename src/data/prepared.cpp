// Prepared data: jsonl -> tokens.bin, index.bin, ids.txt, meta.json; and the memory-mapped reader.
#include "data/prepared.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "core/json_integer.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/strings.h"
#include "data/jsonl.h"

// tokens.bin and index.bin are little-endian and mapped as they are.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "prepared data assumes a little-endian host");

namespace mds::data {
namespace {

constexpr char kFormat[] = "moe-diffuseq-prepared";
constexpr int kVersion = 1;
constexpr char kMagic[8] = {'M', 'D', 'S', 'I', 'D', 'X', '0', '1'};
constexpr std::size_t kHeaderBytes = 16;      // magic + uint64 count
constexpr std::size_t kEntryWords = 3;        // offset, src length, trg length
constexpr std::size_t kProgressEvery = 100000;

nlohmann::json read_meta(const std::string& path) {
  MDS_CHECK(fs::is_regular_file(path), path, ": cannot open (is this a prepared data directory?)");
  try {
    return nlohmann::json::parse(fs::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": not valid JSON: ", e.what());
  }
}

bool is_prepared_dir(const std::string& dir) {
  try {
    nlohmann::json meta = read_meta(dir + "/meta.json");
    return meta.is_object() && meta.value("format", "") == kFormat;
  } catch (const std::exception&) {
    return false;
  }
}

// Removes the half-written directory unless the preparation finished.
struct RemoveOnFailure {
  std::string path;
  bool armed = true;
  ~RemoveOnFailure() {
    if (armed) fs::remove_all_noexcept(path);
  }
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string per_second(std::size_t n, double seconds) {
  return str_cat(static_cast<uint64_t>(seconds > 0 ? n / seconds : 0.0));
}

}  // namespace

PrepareStats prepare_dataset(const std::vector<std::string>& inputs, const Tokenizer& tokenizer,
                             const std::string& out_dir_arg) {
  MDS_CHECK(!inputs.empty(), "data prepare: no --input given");
  MDS_CHECK(!out_dir_arg.empty(), "data prepare: no --out given");
  const std::string out_dir = fs::strip_trailing_slashes(out_dir_arg);
  if (fs::exists(out_dir)) {
    MDS_CHECK(fs::is_directory(out_dir), out_dir, ": exists and is not a directory");
    // Never replace a directory that is not ours: --out pointing at the wrong place must not
    // delete anything.
    MDS_CHECK(fs::list_directory(out_dir).empty() || is_prepared_dir(out_dir), out_dir,
              ": exists and is not a prepared data set; remove it or choose another --out");
  }
  for (const std::string& input : inputs)
    MDS_CHECK(input == "-" || fs::exists(input), input, ": no such file");

  const std::string tmp_dir = str_cat(out_dir, ".tmp-", getpid());
  fs::remove_all_noexcept(tmp_dir);  // left by a crashed run with the same pid
  fs::create_directories(tmp_dir);
  RemoveOnFailure cleanup{tmp_dir};

  const std::string fingerprint = tokenizer.fingerprint();
  fs::BufferedWriter tokens(tmp_dir + "/tokens.bin");
  fs::BufferedWriter index(tmp_dir + "/index.bin");
  fs::BufferedWriter ids(tmp_dir + "/ids.txt");
  const uint64_t zero = 0;
  index.write(kMagic, sizeof kMagic);
  index.write(&zero, sizeof zero);  // the count, patched at the end

  PrepareStats stats;
  uint64_t offset = 0;  // in tokens
  const auto start = std::chrono::steady_clock::now();
  Example ex;
  std::string id;
  for (const std::string& input : inputs) {
    JsonlReader reader(input, JsonlOptions{true, true});
    std::size_t dropped = 0;  // non-empty text that tokenizes to nothing (e.g. only control chars)
    while (reader.next(ex)) {
      const std::vector<int32_t> src = tokenizer.encode(ex.src);
      const std::vector<int32_t> trg = tokenizer.encode(ex.trg);
      if (src.empty() || trg.empty()) {
        log_debug(input, ":", ex.line, ": skipped: the ", src.empty() ? "src" : "trg",
                  " has no tokens");
        ++dropped;
        continue;
      }
      tokens.write(src.data(), src.size() * sizeof(int32_t));
      tokens.write(trg.data(), trg.size() * sizeof(int32_t));
      const uint64_t entry[kEntryWords] = {offset, src.size(), trg.size()};
      index.write(entry, sizeof entry);
      offset += src.size() + trg.size();
      // ids.txt is one id a line: a line break inside an id would shift every later one.
      id = ex.id;
      for (char& c : id)
        if (c == '\n' || c == '\r') c = ' ';
      id += '\n';
      ids.write(id.data(), id.size());

      ++stats.examples;
      stats.src_tokens += src.size();
      stats.trg_tokens += trg.size();
      stats.max_src_len = std::max(stats.max_src_len, src.size());
      stats.max_trg_len = std::max(stats.max_trg_len, trg.size());
      if (stats.examples % kProgressEvery == 0) {
        const double s = seconds_since(start);
        log_info("prepared ", stats.examples, " examples, ", offset, " tokens (",
                 per_second(stats.examples, s), " examples/s)");
      }
    }
    const JsonlStats& js = reader.stats();
    stats.skipped += js.empty_src + js.empty_trg + dropped;
    log_info("data prepare: ", reader.summary(),
             dropped ? str_cat(", ", dropped, " more without tokens skipped") : std::string());
  }

  const uint64_t count = stats.examples;
  index.write_at(sizeof kMagic, &count, sizeof count);
  tokens.finish();
  index.finish();
  ids.finish();

  nlohmann::json meta = {
      {"format", kFormat},
      {"version", kVersion},
      {"examples", stats.examples},
      {"src_tokens", stats.src_tokens},
      {"trg_tokens", stats.trg_tokens},
      {"max_src_len", stats.max_src_len},
      {"max_trg_len", stats.max_trg_len},
      {"vocab_size", tokenizer.vocab_size()},
      {"tokenizer_fingerprint", fingerprint},
      {"inputs", inputs},
      {"skipped", stats.skipped},
  };
  // An empty result is a mistake (an empty file, a wrong path, every line skipped), not a data set.
  MDS_CHECK(stats.examples > 0, "data prepare: no examples in ", meta.at("inputs").dump(),
            stats.skipped > 0 ? str_cat(" (all ", stats.skipped, " skipped)") : std::string(), "; nothing written to ",
            out_dir);
  {
    fs::BufferedWriter meta_file(tmp_dir + "/meta.json");
    meta_file.write(meta.dump(2) + "\n");
    meta_file.finish();
  }
  fs::fsync_path(tmp_dir);

  // Swap the new directory in: OUT_DIR is never half-written.
  if (!fs::replace_directory(tmp_dir, out_dir))
    log_warn(out_dir, ".old-", getpid(), ": cannot remove the previous data; remove it by hand");
  cleanup.armed = false;

  const double s = seconds_since(start);
  log_info("prepared ", stats.examples, " examples (", stats.skipped, " skipped): ",
           stats.src_tokens, " src + ", stats.trg_tokens, " trg tokens, ",
           human_bytes(static_cast<double>(offset * sizeof(int32_t))), " in ",
           str_cat(static_cast<int64_t>(s * 10) / 10.0), " s (", per_second(stats.examples, s),
           " examples/s, ", per_second(stats.src_tokens + stats.trg_tokens, s),
           " tokens/s) -> ", out_dir);
  return stats;
}

// ------------------------------------------------------------------------------------ reader

PreparedDataset::PreparedDataset(const std::string& dir_arg)
    : dir_(fs::strip_trailing_slashes(dir_arg)) {
  MDS_CHECK(fs::is_directory(dir_), dir_, ": no such directory (expected prepared data from "
            "`moe-diffuseq data prepare`)");
  const std::string meta_path = dir_ + "/meta.json";
  const nlohmann::json meta = read_meta(meta_path);
  uint64_t meta_count = 0;
  try {
    MDS_CHECK(meta.is_object() && meta.value("format", "") == kFormat, meta_path,
              ": not prepared data (\"format\" is not \"", kFormat, "\")");
    const int version = json_integer<int>(meta, "version", meta_path);
    MDS_CHECK(version == kVersion, meta_path, ": format version ", version,
              " is not supported (this build reads version ", kVersion, ")");
    meta_count = json_integer<uint64_t>(meta, "examples", meta_path);
    vocab_size_ = json_integer<int32_t>(meta, "vocab_size", meta_path);
    fingerprint_ = meta.at("tokenizer_fingerprint").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    fail(meta_path, ": ", e.what());
  }

  const std::string index_path = dir_ + "/index.bin";
  index_file_ = fs::MappedFile(index_path);
  const std::size_t index_bytes = index_file_.size();
  MDS_CHECK(index_bytes >= kHeaderBytes, index_path, ": truncated (", index_bytes,
            " bytes, the header alone is ", kHeaderBytes, ")");
  const char* index_base = static_cast<const char*>(index_file_.data());
  MDS_CHECK(std::memcmp(index_base, kMagic, sizeof kMagic) == 0, index_path,
            ": bad header (expected \"MDSIDX01\"): not a moe-diffuseq index or corrupted");
  uint64_t count = 0;
  std::memcpy(&count, index_base + sizeof kMagic, sizeof count);
  MDS_CHECK(count == meta_count, index_path, ": holds ", count, " examples but ", meta_path,
            " says ", meta_count);
  MDS_CHECK(count <= (index_bytes - kHeaderBytes) / (kEntryWords * sizeof(uint64_t)) &&
                index_bytes == kHeaderBytes + count * kEntryWords * sizeof(uint64_t),
            index_path, ": ", index_bytes, " bytes, expected ",
            kHeaderBytes + count * kEntryWords * sizeof(uint64_t), " for ", count,
            " examples (truncated or corrupted)");
  index_ = reinterpret_cast<const uint64_t*>(index_base + kHeaderBytes);

  const std::string tokens_path = dir_ + "/tokens.bin";
  tokens_file_ = fs::MappedFile(tokens_path);
  const std::size_t tokens_bytes = tokens_file_.size();
  MDS_CHECK(tokens_bytes % sizeof(int32_t) == 0, tokens_path, ": ", tokens_bytes,
            " bytes is not a whole number of int32 tokens (truncated?)");
  tokens_ = static_cast<const int32_t*>(tokens_file_.data());
  const uint64_t n_tokens = tokens_bytes / sizeof(int32_t);
  for (uint64_t i = 0; i < count; ++i) {
    const uint64_t* e = index_ + kEntryWords * i;
    // Written so that no sum can overflow on a corrupted entry.
    MDS_CHECK(e[0] <= n_tokens && e[1] <= n_tokens - e[0] && e[2] <= n_tokens - e[0] - e[1],
              index_path, ": example ", i, " (offset ", e[0], ", lengths ", e[1], " + ", e[2],
              ") lies outside ", tokens_path, " (", n_tokens, " tokens)");
  }
  // Every token an id of the tokenizer: a damaged file is found here, not as an index error deep in
  // the model (one pass over memory already mapped; milliseconds for millions of tokens).
  for (uint64_t i = 0; i < n_tokens; ++i) {
    if (tokens_[i] >= 0 && tokens_[i] < vocab_size_) continue;
    fail(tokens_path, ": token ", i, " is ", tokens_[i], ", not an id of the tokenizer's ", vocab_size_,
         " (the file is damaged; prepare the data again)");
  }

  const std::string ids_path = dir_ + "/ids.txt";
  std::ifstream ids(ids_path, std::ios::binary);
  MDS_CHECK(ids, ids_path, ": cannot open");
  ids_.reserve(count);
  std::string line;
  while (ids_.size() <= count && std::getline(ids, line)) ids_.push_back(line);
  MDS_CHECK(ids_.size() == count, ids_path, ": ", ids_.size() > count ? "more" : "fewer",
            " lines than the ", count, " examples");
  count_ = count;
}

PreparedDataset& PreparedDataset::operator=(PreparedDataset&& other) noexcept {
  if (this == &other) return *this;
  dir_ = std::move(other.dir_);
  count_ = std::exchange(other.count_, 0);
  vocab_size_ = std::exchange(other.vocab_size_, 0);
  fingerprint_ = std::move(other.fingerprint_);
  tokens_file_ = std::move(other.tokens_file_);
  index_file_ = std::move(other.index_file_);
  tokens_ = std::exchange(other.tokens_, nullptr);
  index_ = std::exchange(other.index_, nullptr);
  ids_ = std::move(other.ids_);
  other.ids_.clear();
  return *this;
}

TokenSpan PreparedDataset::src(std::size_t i) const {
  MDS_ASSERT(i < count_);
  const uint64_t* e = index_ + kEntryWords * i;
  return {tokens_ + e[0], static_cast<std::size_t>(e[1])};
}

TokenSpan PreparedDataset::trg(std::size_t i) const {
  MDS_ASSERT(i < count_);
  const uint64_t* e = index_ + kEntryWords * i;
  return {tokens_ + e[0] + e[1], static_cast<std::size_t>(e[2])};
}

std::string PreparedDataset::id(std::size_t i) const {
  MDS_ASSERT(i < count_);
  return ids_[i];
}

}  // namespace mds::data
