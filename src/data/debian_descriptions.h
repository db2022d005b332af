// The Debian package-description data set: long description -> one-line synopsis, built from apt's
// English translation lists (/var/lib/apt/lists/*Translation-en*), about 60,000 real pairs; or
// long description -> the package's section ("libdevel", "python", "doc", ...: apt's Packages lists).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

#include "data/jsonl.h"

namespace mds::data {

struct DebianRecord {
  std::string package;
  std::string synopsis;     // the text after "Description-en: "
  std::string description;  // the long description: paragraphs joined by "\n", lines by " "
};

// Parses the text of one Translation-en file (deb822 records separated by blank lines).
// Records without a long description are skipped. `origin` names the file in error messages.
std::vector<DebianRecord> parse_translation_file(const std::string& text, const std::string& origin);

// Parses the text of one Packages file: package -> its section, without an area prefix ("contrib/net"
// -> "net"). Packages without a Section field are left out.
std::map<std::string, std::string> parse_package_sections(const std::string& text);

struct DebianBuildOptions {
  std::string lists_dir = "/var/lib/apt/lists";
  bool allow_apt_update = true;  // run `apt-get update -o Acquire::Languages=en` if no lists are found
  int valid_percent = 2;         // split by a hash of the description: deterministic, no leakage
  int test_percent = 2;
  std::string target = "synopsis";  // what trg holds: "synopsis", or "section" (from the Packages lists)
};

struct DebianBuildStats {
  std::size_t records = 0, duplicates = 0, train = 0, valid = 0, test = 0;
  std::size_t no_section = 0;  // target "section": descriptions of packages no Packages list names
};

// Writes OUT_DIR/{train,valid,test}.jsonl ({"id": package, "src": description, "trg": synopsis})
// and OUT_DIR/README.md (where the data came from, counts, licence note). Duplicate descriptions
// are kept once (the first package in name order), so no text appears in two splits.
DebianBuildStats build_debian_descriptions(const std::string& out_dir,
                                           const DebianBuildOptions& options = {});

}  // namespace mds::data
