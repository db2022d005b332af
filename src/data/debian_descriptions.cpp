#include "data/debian_descriptions.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <unordered_set>

#include "core/error.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/strings.h"

namespace mds::data {

namespace {

constexpr const char* kAptHelper = "/usr/lib/apt/apt-helper";
constexpr const char* kAptUpdate = "apt-get update -o Acquire::Languages=en";

struct PendingRecord {
  std::string package, synopsis;
  std::vector<std::string> paragraphs;
  std::string paragraph;
  bool in_description = false;  // the last field seen is Description-en
  std::size_t line = 0;         // first line of the record

  void end_paragraph() {
    if (!paragraph.empty()) paragraphs.push_back(std::move(paragraph));
    paragraph.clear();
  }
};

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) out += sep;
    out += parts[i];
  }
  return out;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

// Runs `command` through the shell and returns its exit status (-1 when it did not exit normally);
// its standard output goes to `output`.
int run_command(const std::string& command, std::string& output) {
  output.clear();
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return -1;
  char buffer[1 << 16];
  std::size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  int status = pclose(pipe);
  if (status == -1 || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

std::string tail(const std::string& s, std::size_t n) {
  std::string_view t = trim(s);
  return std::string(t.size() > n ? t.substr(t.size() - n) : t);
}

constexpr const char* kTranslations = "Translation-en";
constexpr const char* kPackages = "_Packages";

// apt names its lists ..._i18n_Translation-en or ..._binary-ARCH_Packages, plus the extension of the
// compression it keeps.
bool is_list(const std::string& name, const char* kind) {
  const std::size_t pos = name.find(kind);
  if (pos == std::string::npos) return false;
  std::string rest = name.substr(pos + std::string(kind).size());
  for (const char* ext : {"", ".lz4", ".gz", ".xz", ".zst", ".bz2", ".lzma"})
    if (rest == ext) return true;
  return false;
}

std::vector<std::string> find_lists(const std::string& dir, const char* kind) {
  std::vector<std::string> files;
  if (!fs::is_directory(dir)) return files;
  // list_directory sorts: a fixed order, for a reproducible build.
  for (const std::string& name : fs::list_directory(dir)) {
    const std::string path = fs::join(dir, name);
    if (is_list(name, kind) && fs::is_regular_file(path)) files.push_back(path);
  }
  return files;
}

// apt-helper decompresses whatever apt stored (lz4, gz, xz, zst or plain).
std::string read_list_file(const std::string& path) {
  MDS_CHECK(access(kAptHelper, X_OK) == 0, "cannot read ", path, ": ", kAptHelper,
            " (from Debian's apt package) is needed to decompress apt's lists");
  char err_path[] = "/tmp/mds-apt-helper-XXXXXX";
  int fd = mkstemp(err_path);
  MDS_CHECK(fd >= 0, "cannot create a temporary file in /tmp");
  close(fd);
  std::string text;
  int status = run_command(str_cat(kAptHelper, " cat-file ", shell_quote(path), " 2>",
                                   shell_quote(err_path)), text);
  std::string err;
  {
    std::ifstream f(err_path, std::ios::binary);
    err.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  std::remove(err_path);
  MDS_CHECK(status == 0, "cannot read ", path, ": `apt-helper cat-file` failed (exit status ",
            status, ")", err.empty() ? "" : ": ", tail(err, 1000));
  return text;
}

void run_apt_update(const std::string& lists_dir) {
  MDS_CHECK(geteuid() == 0, "no Translation-en lists in ", lists_dir,
            ": run as root or run `sudo ", kAptUpdate, "` first");
  log_info("no Translation-en lists in ", lists_dir, ": running `", kAptUpdate, "`");
  std::string output;
  int status = run_command(str_cat(kAptUpdate, " -q 2>&1"), output);
  MDS_CHECK(status == 0, "`", kAptUpdate, "` failed (exit status ", status, "): ",
            tail(output, 2000));
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string readme(const DebianBuildStats& s, const DebianBuildOptions& o,
                   const std::vector<std::string>& files) {
  std::string r;
  const bool sections = o.target == "section";
  r += "# Debian package descriptions\n\n";
  if (sections) {
    r += "Pairs of a Debian package's long description (`src`) and its archive section (`trg`: `libs`,\n"
         "`python`, `doc`, ..., from the `Section:` field of apt's Packages lists, without an area\n"
         "prefix such as `contrib/`): real text for labelling (description -> section).\n";
  } else {
    r += "Pairs of a Debian package's long description (`src`) and its one-line synopsis (`trg`):\n";
    r += "real, varied text for summarization (description -> synopsis).\n";
  }
  r += str_cat("Each line of the jsonl files is `{\"id\": package, \"src\": description, \"trg\": ",
               sections ? "section" : "synopsis", "}`.\n\n");
  r += "## Source and licence\n\n";
  r += std::string("apt's English translation lists (`Translation-en`)") +
       (sections ? " and package lists (`Packages`)" : "") + ", fetched by `" +
       std::string(kAptUpdate) +
       "`\nfrom the archive configured on the machine that built the set:\n\n";
  for (const auto& f : files) r += "- `" + fs::filename(f) + "`\n";
  r += "\nEach description is part of its package and under that package's licence (see the\n"
       "package's `copyright` file). The set is meant for research use.\n\n";
  r += "## Counts\n\n";
  r += "| split | pairs |\n|---|---:|\n";
  r += str_cat("| train | ", s.train, " |\n| valid | ", s.valid, " |\n| test | ", s.test,
               " |\n| total | ", s.records, " |\n\n");
  r += str_cat(s.duplicates, " records were dropped as repeats of a package or a description kept "
               "already", sections ? str_cat(", ", s.no_section, " as packages without a section") : "", ".\n\n");
  r += "## How it was built\n\n";
  r += "Built on " + utc_now("%Y-%m-%d") + " (UTC) by `moe-diffuseq data build debian-descriptions`.\n\n";
  r += "1. Every record with a `Package`, a synopsis (the `Description-en:` line) and a long\n"
       "   description is read. In the description, the lines of a paragraph are joined by a\n"
       "   space (indentation of preformatted lines dropped) and paragraphs (` .` lines) by a\n"
       "   newline.\n";
  r += "2. The records are sorted by package name. A package seen before (from another list, or\n"
       "   a per-architecture variant of its description) is dropped, so ids are unique; then a\n"
       "   description seen before (another package's) is dropped, so no text appears twice.\n";
  r += str_cat("3. The split is chosen by the FNV-1a 64-bit hash of the description: h % 100 < ",
               o.valid_percent, " -> valid, < ", o.valid_percent + o.test_percent,
               " -> test, else train. It is\n   deterministic and does not depend on the rest of "
               "the data.\n");
  return r;
}

}  // namespace

std::map<std::string, std::string> parse_package_sections(const std::string& text) {
  std::map<std::string, std::string> sections;
  std::string package, section;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (trim(line).empty()) {  // the end of a record
      if (!package.empty() && !section.empty()) sections.emplace(package, section);
      package.clear();
      section.clear();
      continue;
    }
    if (line[0] == ' ' || line[0] == '\t') continue;
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string name = to_lower_ascii(trim(line.substr(0, colon)));
    const std::string_view value = trim(line.substr(colon + 1));
    if (name == "package") package = std::string(value);
    else if (name == "section") section = std::string(value.substr(value.rfind('/') + 1));
  }
  return sections;
}

std::vector<DebianRecord> parse_translation_file(const std::string& text,
                                                 const std::string& origin) {
  std::vector<DebianRecord> records;
  PendingRecord rec;
  auto finish = [&]() {
    rec.end_paragraph();
    DebianRecord r{rec.package, rec.synopsis, join(rec.paragraphs, "\n")};
    if (!r.package.empty() && !r.synopsis.empty() && !r.description.empty()) {
      // Invalid bytes would make invalid JSON later; such records are rare and dropped.
      if (find_invalid_utf8(r.package) != std::string::npos ||
          find_invalid_utf8(r.synopsis) != std::string::npos ||
          find_invalid_utf8(r.description) != std::string::npos)
        log_warn(origin, ":", rec.line, ": record of ", r.package,
                 " is not valid UTF-8, skipped");
      else
        records.push_back(std::move(r));
    }
    rec = PendingRecord{};
  };

  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    if (trim(line).empty()) {  // deb822 paragraph separator
      finish();
      continue;
    }
    if (rec.line == 0) rec.line = line_no;
    if (line[0] == ' ' || line[0] == '\t') {
      // A continuation line; only Description-en's matter. Lines with more indentation are
      // preformatted in Debian policy; they are joined like the others (plain text output).
      if (!rec.in_description) continue;
      std::string_view content = trim(line.substr(1));
      if (content == ".") rec.end_paragraph();
      else if (!content.empty()) {
        if (!rec.paragraph.empty()) rec.paragraph += ' ';
        rec.paragraph += content;
      }
      continue;
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      log_debug(origin, ":", line_no, ": not a field, skipped");
      rec.in_description = false;
      continue;
    }
    std::string name = to_lower_ascii(trim(line.substr(0, colon)));
    std::string value(trim(line.substr(colon + 1)));
    rec.in_description = false;
    if (name == "package") {
      rec.package = value;
    } else if (name == "description-en") {
      rec.synopsis = value;
      rec.paragraphs.clear();
      rec.paragraph.clear();
      rec.in_description = true;
    }
  }
  finish();
  return records;
}

DebianBuildStats build_debian_descriptions(const std::string& out_dir,
                                           const DebianBuildOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  MDS_CHECK(options.valid_percent >= 0 && options.test_percent >= 0 &&
                options.valid_percent + options.test_percent <= 100,
            "valid_percent (", options.valid_percent, ") and test_percent (", options.test_percent,
            ") must be >= 0 and add up to at most 100");

  MDS_CHECK(options.target == "synopsis" || options.target == "section", "the target must be \"synopsis\" or "
            "\"section\", not \"", options.target, "\"");
  std::vector<std::string> files = find_lists(options.lists_dir, kTranslations);
  if (files.empty()) {
    MDS_CHECK(options.allow_apt_update, "no Translation-en lists in ", options.lists_dir,
              ": run `", kAptUpdate, "` (as root) first");
    run_apt_update(options.lists_dir);
    files = find_lists(options.lists_dir, kTranslations);
    MDS_CHECK(!files.empty(), "`", kAptUpdate, "` ran but ", options.lists_dir,
              " still has no Translation-en lists (does the archive in /etc/apt/sources.list* "
              "publish them?)");
  }

  std::vector<DebianRecord> records;
  for (const auto& file : files) {
    std::string text = read_list_file(file);
    auto parsed = parse_translation_file(text, file);
    log_info("read ", parsed.size(), " descriptions from ", file, " (",
             human_bytes(static_cast<double>(text.size())), ")");
    for (auto& r : parsed) records.push_back(std::move(r));
  }

  // Target "section": every package's section, the first list in name order winning.
  std::map<std::string, std::string> sections;
  std::vector<std::string> package_files;
  if (options.target == "section") {
    package_files = find_lists(options.lists_dir, kPackages);
    MDS_CHECK(!package_files.empty(), "no Packages lists in ", options.lists_dir, " (the sections come from them): run `",
              kAptUpdate, "` (as root) first");
    for (const auto& file : package_files) {
      const std::string text = read_list_file(file);
      const auto parsed = parse_package_sections(text);
      log_info("read the sections of ", parsed.size(), " packages from ", file);
      sections.insert(parsed.begin(), parsed.end());
    }
  }

  // Package order makes the kept copy of a repeated description independent of the lists' order.
  std::stable_sort(records.begin(), records.end(),
                   [](const DebianRecord& a, const DebianRecord& b) {
                     return a.package < b.package;
                   });

  // One record per package, so that ids are unique: a package may come again from another suite
  // (security, updates) or with a per-architecture variant of its description; the first list in
  // name order wins. Then one record per description, so that no text is in two splits.
  DebianBuildStats stats;
  std::unordered_set<std::string> seen;
  std::size_t repeated_packages = 0;
  std::string out[3];  // train, valid, test
  for (std::size_t i = 0; i < records.size(); ++i) {
    const DebianRecord& r = records[i];
    if (i > 0 && records[i - 1].package == r.package) {
      if (records[i - 1].description != r.description) ++repeated_packages;
      ++stats.duplicates;
      continue;
    }
    std::string target = r.synopsis;
    if (options.target == "section") {
      const auto it = sections.find(r.package);
      if (it == sections.end()) {
        ++stats.no_section;
        continue;
      }
      target = it->second;
    }
    if (!seen.insert(r.description).second) {
      ++stats.duplicates;
      continue;
    }
    ++stats.records;
    const uint64_t bucket = fnv1a64(r.description) % 100;
    int split = 0;
    const auto valid_end = static_cast<uint64_t>(options.valid_percent);
    const auto test_end = valid_end + static_cast<uint64_t>(options.test_percent);
    if (bucket < valid_end) split = 1;
    else if (bucket < test_end) split = 2;
    (split == 0 ? stats.train : split == 1 ? stats.valid : stats.test)++;
    out[split] += str_cat("{\"id\": ", json_quote(r.package), ", \"src\": ",
                          json_quote(r.description), ", \"trg\": ", json_quote(target), "}\n");
  }

  fs::create_directories(out_dir);
  fs::write_file_atomic(fs::join(out_dir, "train.jsonl"), out[0]);
  fs::write_file_atomic(fs::join(out_dir, "valid.jsonl"), out[1]);
  fs::write_file_atomic(fs::join(out_dir, "test.jsonl"), out[2]);
  files.insert(files.end(), package_files.begin(), package_files.end());
  fs::write_file_atomic(fs::join(out_dir, "README.md"), readme(stats, options, files));

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log_info("wrote ", stats.records, " pairs to ", out_dir, " (train ", stats.train, ", valid ",
           stats.valid, ", test ", stats.test, "; ", stats.duplicates, " repeats dropped, ",
           repeated_packages, " of them a package with another description) in ",
           static_cast<int>(seconds * 10) / 10.0, " s");
  return stats;
}

}  // namespace mds::data
