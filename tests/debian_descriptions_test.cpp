#include "data/debian_descriptions.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/fs.h"
#include "test_util.h"

namespace mds {

using data::DebianBuildOptions;
using data::DebianBuildStats;
using data::DebianRecord;
using data::build_debian_descriptions;
using data::parse_translation_file;

namespace {

// Records as apt stores them, with the shapes seen in real lists.
const char* kSnippet =
    "Package: 0ad\n"
    "Description-md5: d943033bedada21853d2ae54a2578a7b\n"
    "Description-en: Real-time strategy game of ancient warfare\n"
    " 0 A.D. (pronounced \"zero ey-dee\") is a free, open-source, cross-platform\n"
    " real-time strategy (RTS) game of ancient warfare.\n"
    "\n"
    "Package: acl\n"
    "Description-md5: 1e25d3d3a9a1f5a4c1e4a8a2b9f0c3d1\n"
    "Description-en: access control list - utilities\n"
    " This package contains the getfacl and setfacl utilities needed for\n"
    " manipulating access control lists.\n"
    " .\n"
    " It also contains the chacl IRIX compatible utility.\n"
    "\n"
    "Package: apt-doc\n"
    "Description-md5: 2c4fe4d1e2b3a4f5c6d7e8f9a0b1c2d3\n"
    "Description-en: documentation for APT\n"
    "\n"
    "Package: bash-completion\n"
    "Description-md5: 3d5a1c2b3a4f5c6d7e8f9a0b1c2d3e4f\n"
    "Description-en:   programmable completion for the bash shell  \n"
    " bash completion extends bash's standard completion behavior to achieve\n"
    " complex command lines with just a few keystrokes.\n"
    " .\n"
    " It supports:\n"
    "   * options of many commands\n"
    "   * host names\n"
    " .\n"
    " .\n"
    "\tThis line starts with a tab.\n"
    "\n"
    "\n"
    "Package: fonts-noto-cjk\n"
    "Description-md5: 4e6b2d3c4b5a6f7e8d9c0b1a2f3e4d5c\n"
    "Description-en: \"No Tofu\" font families with large Unicode coverage (CJK regular and bold)\n"
    " Noto CJK fonts, supporting Simplified Chinese (简体中文), Japanese (日本語)\n"
    " and Korean (한국어) — naïve café résumé.\n"
    "\n"
    "Package: libfoo-common\n"
    "Description-en: shared files for libfoo\n"
    " libfoo is a library for doing foo.\n"
    " .\n"
    " This package contains the architecture-independent files.\n"
    "\n"
    "Package: libfoo-data\n"
    "Description-en: data for libfoo\n"
    " libfoo is a library for doing foo.\n"
    " .\n"
    " This package contains the architecture-independent files.\n"
    "\n"
    " stray continuation line after a blank line\n"
    "Description-en: a record without a Package field\n"
    " is skipped.\n"
    "\n"
    "Package: no-synopsis\n"
    "Description-en:\n"
    " A long description without a synopsis is skipped.\n";

TEST(DebianDescriptions, ParsesRecords) {
  std::vector<DebianRecord> r = parse_translation_file(kSnippet, "snippet");
  ASSERT_EQ(r.size(), 6u);
  EXPECT_EQ(r[0].package, "0ad");
  EXPECT_EQ(r[0].synopsis, "Real-time strategy game of ancient warfare");
  EXPECT_EQ(r[0].description,
            "0 A.D. (pronounced \"zero ey-dee\") is a free, open-source, cross-platform "
            "real-time strategy (RTS) game of ancient warfare.");
  EXPECT_EQ(r[1].package, "acl");
  EXPECT_EQ(r[1].synopsis, "access control list - utilities");
  EXPECT_EQ(r[1].description,
            "This package contains the getfacl and setfacl utilities needed for manipulating "
            "access control lists.\nIt also contains the chacl IRIX compatible utility.");
  // apt-doc has no long description: skipped.
  EXPECT_EQ(r[2].package, "bash-completion");
  EXPECT_EQ(r[2].synopsis, "programmable completion for the bash shell");
  EXPECT_EQ(r[2].description,
            "bash completion extends bash's standard completion behavior to achieve complex "
            "command lines with just a few keystrokes.\n"
            "It supports: * options of many commands * host names\n"
            "This line starts with a tab.");
  EXPECT_EQ(r[3].package, "fonts-noto-cjk");
  EXPECT_EQ(r[3].synopsis,
            "\"No Tofu\" font families with large Unicode coverage (CJK regular and bold)");
  EXPECT_EQ(r[3].description,
            "Noto CJK fonts, supporting Simplified Chinese (简体中文), "
            "Japanese (日本語) and Korean (한국어) — naïve café résumé.");
  EXPECT_EQ(r[4].package, "libfoo-common");
  EXPECT_EQ(r[5].package, "libfoo-data");
  EXPECT_EQ(r[4].description, r[5].description);
  EXPECT_EQ(r[5].description,
            "libfoo is a library for doing foo.\n"
            "This package contains the architecture-independent files.");
  EXPECT_EQ(r[5].synopsis, "data for libfoo");
}

TEST(DebianDescriptions, ParsesCrlfAndMissingFinalNewline) {
  auto r = parse_translation_file(
      "Package: x\r\nDescription-en: syn\r\n line one\r\n line two", "crlf");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].synopsis, "syn");
  EXPECT_EQ(r[0].description, "line one line two");
  EXPECT_TRUE(parse_translation_file("", "empty").empty());
  // Invalid UTF-8 would make invalid JSON: the record is dropped.
  EXPECT_TRUE(parse_translation_file("Package: y\nDescription-en: s\n bad \xff byte\n", "bad")
                  .empty());
}

void write_gzip(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, text.data(), static_cast<unsigned>(text.size())),
            static_cast<int>(text.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string synthetic_records(int n) {
  std::ostringstream os;
  for (int i = 0; i < n; ++i) {
    os << "Package: pkg-" << 1000 + i << "\n"
       << "Description-md5: 0123456789abcdef0123456789abcdef\n"
       << "Description-en: synthetic package number " << i << "\n"
       << " This is the long description of package " << i << ".\n"
       << " .\n"
       << " It has " << i % 7 << " features.\n\n";
  }
  return os.str();
}

std::vector<nlohmann::json> read_jsonl_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::istringstream in(test::read_file(path));
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(DebianDescriptions, BuildsSplits) {
  test::TempDir lists, out1, out2;
  test::write_file(lists.file("deb.example.org_dists_x_main_i18n_Translation-en"), kSnippet);
  // A compressed list, read through apt-helper; 0ad repeats with the same description.
  write_gzip(lists.file("deb.example.org_dists_x-updates_main_i18n_Translation-en.gz"),
             synthetic_records(200) +
                 "Package: 0ad\nDescription-en: Real-time strategy game of ancient warfare\n"
                 " 0 A.D. (pronounced \"zero ey-dee\") is a free, open-source, cross-platform\n"
                 " real-time strategy (RTS) game of ancient warfare.\n\n"
                 // Another description of acl: its list comes first in name order, so it wins.
                 "Package: acl\nDescription-en: access control list - utilities\n"
                 " This package contains the getfacl and setfacl utilities (updated).\n");
  // Not English translations, or not lists: ignored.
  test::write_file(lists.file("deb.example.org_dists_x_main_i18n_Translation-de"),
                   "Package: z\nDescription-de: zz\n zzz\n");
  test::write_file(lists.file("deb.example.org_dists_x_main_i18n_Translation-en.diff_Index"),
                   "junk\n");
  fs::create_directories(lists.file("partial"));

  DebianBuildOptions o;
  o.lists_dir = lists.path();
  o.allow_apt_update = false;
  o.valid_percent = 20;
  o.test_percent = 10;
  DebianBuildStats s = build_debian_descriptions(out1.path(), o);
  // 6 + 202 parsed; libfoo-data repeats libfoo-common's description, 0ad and acl come twice.
  EXPECT_EQ(s.duplicates, 3u);
  EXPECT_EQ(s.records, 205u);
  EXPECT_EQ(s.train + s.valid + s.test, s.records);
  EXPECT_GT(s.valid, 15u);
  EXPECT_GT(s.test, 5u);
  EXPECT_GT(s.train, 110u);

  std::map<std::string, std::string> split_of;  // id -> split
  std::set<std::string> descriptions;
  for (const char* split : {"train", "valid", "test"}) {
    auto lines = read_jsonl_lines(out1.file(std::string(split) + ".jsonl"));
    std::size_t expected = split[0] == 't' ? (split[1] == 'r' ? s.train : s.test) : s.valid;
    EXPECT_EQ(lines.size(), expected) << split;
    std::string previous;
    for (const auto& j : lines) {
      ASSERT_EQ(j.size(), 3u);
      std::string id = j.at("id"), src = j.at("src");
      EXPECT_FALSE(j.at("trg").get<std::string>().empty());
      EXPECT_TRUE(split_of.emplace(id, split).second) << id << " in two splits";
      EXPECT_TRUE(descriptions.insert(src).second) << "description repeated: " << id;
      EXPECT_LT(previous, id) << "not in package order";
      previous = id;
    }
  }
  EXPECT_EQ(split_of.size(), s.records);
  EXPECT_EQ(split_of.count("libfoo-common"), 1u);  // first in package order
  EXPECT_EQ(split_of.count("libfoo-data"), 0u);
  EXPECT_EQ(split_of.count("apt-doc"), 0u);
  EXPECT_EQ(split_of.count("z"), 0u);

  // The exact line, non-ASCII kept as is.
  std::string all = test::read_file(out1.file("train.jsonl")) +
                    test::read_file(out1.file("valid.jsonl")) +
                    test::read_file(out1.file("test.jsonl"));
  EXPECT_NE(all.find("{\"id\": \"fonts-noto-cjk\", \"src\": \"Noto CJK fonts, supporting "
                     "Simplified Chinese (简体中文), Japanese (日本語) and "
                     "Korean (한국어) — naïve café résumé.\", \"trg\": "
                     "\"\\\"No Tofu\\\" font families with large Unicode "
                     "coverage (CJK regular and bold)\"}\n"),
            std::string::npos);
  EXPECT_NE(all.find("\"src\": \"libfoo is a library for doing foo.\\nThis package"),
            std::string::npos);
  EXPECT_NE(all.find("{\"id\": \"acl\", \"src\": \"This package contains the getfacl and "
                     "setfacl utilities (updated).\", \"trg\": \"access control list - "
                     "utilities\"}\n"),
            std::string::npos);

  std::string readme = test::read_file(out1.file("README.md"));
  EXPECT_NE(readme.find("Translation-en.gz"), std::string::npos);
  EXPECT_NE(readme.find("| total | 205 |"), std::string::npos);
  EXPECT_NE(readme.find("licence"), std::string::npos);

  // Deterministic: a second build gives the same files.
  DebianBuildStats s2 = build_debian_descriptions(out2.path(), o);
  EXPECT_EQ(s2.records, s.records);
  for (const char* f : {"train.jsonl", "valid.jsonl", "test.jsonl"})
    EXPECT_EQ(test::read_file(out1.file(f)), test::read_file(out2.file(f))) << f;
  // Rebuilding in place replaces the files and leaves no temporaries.
  build_debian_descriptions(out1.path(), o);
  EXPECT_EQ(fs::list_directory(out1.path()).size(), 4u);
}

// Packages lists as apt stores them: the fields around Section, an area prefix, a package without one.
const char* kPackagesSnippet =
    "Package: 0ad\n"
    "Version: 0.0.26-3\n"
    "Installed-Size: 28591\n"
    "Depends: 0ad-data (>= 0.0.26)\n"
    "Description: Real-time strategy game of ancient warfare\n"
    "Section: games\n"
    "Priority: optional\n"
    "\n"
    "Package: acl\n"
    "Section: utils\n"
    "Description-md5: 1e25d3d3a9a1f5a4c1e4a8a2b9f0c3d1\n"
    "\n"
    "Package: bash-completion\n"
    "Section: contrib/shells\n"
    "\n"
    "Package: fonts-noto-cjk\n"
    "Priority: optional\n";  // no Section, no final blank line

TEST(DebianDescriptions, ParsesPackageSections) {
  const auto sections = data::parse_package_sections(kPackagesSnippet);
  const std::map<std::string, std::string> expected = {{"0ad", "games"}, {"acl", "utils"}, {"bash-completion", "shells"}};
  EXPECT_EQ(sections, expected);
}

TEST(DebianDescriptions, BuildsDescriptionToSection) {
  test::TempDir lists, out;
  test::write_file(lists.file("deb.example.org_dists_x_main_i18n_Translation-en"), kSnippet);
  write_gzip(lists.file("deb.example.org_dists_x_main_binary-amd64_Packages.gz"), kPackagesSnippet);
  // A later list names acl again with another section: the first list in name order wins.
  test::write_file(lists.file("deb.example.org_dists_y_main_binary-amd64_Packages"), "Package: acl\nSection: admin\n");
  DebianBuildOptions o;
  o.lists_dir = lists.path();
  o.allow_apt_update = false;
  o.target = "section";
  o.valid_percent = 0;
  o.test_percent = 0;
  const DebianBuildStats s = build_debian_descriptions(out.path(), o);
  // kSnippet's six records: fonts-noto-cjk, libfoo-common and libfoo-data have no section.
  EXPECT_EQ(s.records, 3u);
  EXPECT_EQ(s.no_section, 3u);
  EXPECT_EQ(s.train, 3u);
  const std::string train = test::read_file(out.file("train.jsonl"));
  EXPECT_NE(train.find("{\"id\": \"0ad\", \"src\": \"0 A.D. (pronounced \\\"zero ey-dee\\\") is a free, open-source, "
                       "cross-platform real-time strategy (RTS) game of ancient warfare.\", \"trg\": \"games\"}\n"),
            std::string::npos) << train;
  EXPECT_NE(train.find("\"id\": \"acl\", "), std::string::npos);
  EXPECT_NE(train.find("\"trg\": \"utils\"}"), std::string::npos);
  EXPECT_NE(train.find("\"trg\": \"shells\"}"), std::string::npos);
  const std::string readme = test::read_file(out.file("README.md"));
  EXPECT_NE(readme.find("archive section"), std::string::npos);
  EXPECT_NE(readme.find("binary-amd64_Packages.gz"), std::string::npos);
  EXPECT_NE(readme.find("3 as packages without a section"), std::string::npos);

  // Without Packages lists the error says where the sections come from.
  test::TempDir only_translations;
  test::write_file(only_translations.file("x_main_i18n_Translation-en"), kSnippet);
  o.lists_dir = only_translations.path();
  const std::string e = test::error_of([&] { build_debian_descriptions(out.path(), o); });
  EXPECT_NE(e.find("no Packages lists in " + only_translations.path() + " (the sections come from them)"),
            std::string::npos) << e;
  o.target = "title";
  EXPECT_NE(test::error_of([&] { build_debian_descriptions(out.path(), o); }).find("not \"title\""), std::string::npos);
}

TEST(DebianDescriptions, NoListsWithoutUpdate) {
  test::TempDir lists, out;
  DebianBuildOptions o;
  o.lists_dir = lists.path();
  o.allow_apt_update = false;
  try {
    build_debian_descriptions(out.path(), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("apt-get update -o Acquire::Languages=en"), std::string::npos) << msg;
    EXPECT_NE(msg.find(lists.path()), std::string::npos) << msg;
  }
  o.lists_dir = lists.file("missing");
  EXPECT_THROW(build_debian_descriptions(out.path(), o), Error);
  o.valid_percent = 60;
  o.test_percent = 50;
  EXPECT_THROW(build_debian_descriptions(out.path(), o), Error);
}

TEST(DebianDescriptions, UnreadableListNamesTheFile) {
  test::TempDir lists, out;
  // Claims to be lz4 but is not: apt-helper fails, and the error names the file.
  std::string bad = lists.file("x_i18n_Translation-en.lz4");
  test::write_file(bad, "not lz4 data");
  DebianBuildOptions o;
  o.lists_dir = lists.path();
  o.allow_apt_update = false;
  try {
    build_debian_descriptions(out.path(), o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mds
