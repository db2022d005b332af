// mds::fs on real temporary directories, and a guard that keeps <filesystem> out of the tree.
#include "core/fs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "test_util.h"

namespace mds {
namespace {

using test::error_of;

using Names = std::vector<std::string>;

// Expects `f` to fail with a message naming `path` and the reason.
void expect_error_naming(const std::function<void()>& f, const std::string& path, int err) {
  const std::string message = error_of(f);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find(std::strerror(err)), std::string::npos) << message;
}

void make_symlink(const std::string& target, const std::string& link) {
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0) << link << ": " << std::strerror(errno);
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
      had_ = true;
    }
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_, old_.c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(Fs, Queries) {
  test::TempDir dir;
  const std::string file = dir.file("f"), missing = dir.file("missing");
  test::write_file(file, "12345");
  make_symlink(file, dir.file("link"));
  make_symlink(missing, dir.file("dangling"));

  EXPECT_TRUE(fs::exists(file));
  EXPECT_TRUE(fs::exists(dir.path()));
  EXPECT_FALSE(fs::exists(missing));
  EXPECT_FALSE(fs::exists(dir.file("dangling")));  // follows the link, like stat
  EXPECT_TRUE(fs::is_directory(dir.path()));
  EXPECT_FALSE(fs::is_directory(file));
  EXPECT_FALSE(fs::is_directory(missing));
  EXPECT_TRUE(fs::is_regular_file(file));
  EXPECT_TRUE(fs::is_regular_file(dir.file("link")));
  EXPECT_FALSE(fs::is_regular_file(dir.path()));
  EXPECT_FALSE(fs::is_regular_file(missing));

  EXPECT_EQ(fs::file_size(file), 5u);
  test::write_file(file, "");
  EXPECT_EQ(fs::file_size(file), 0u);
  expect_error_naming([&] { fs::file_size(missing); }, missing, ENOENT);
  EXPECT_NE(error_of([&] { fs::file_size(dir.path()); }).find(dir.path()), std::string::npos);
}

TEST(Fs, CreateDirectoriesMakesEveryLevel) {
  test::TempDir dir;
  const std::string deep = dir.file("a/b/c");
  fs::create_directories(deep);
  EXPECT_TRUE(fs::is_directory(deep));
  fs::create_directories(deep);  // existing: fine
  fs::create_directories(dir.file("a//b/d/"));
  EXPECT_TRUE(fs::is_directory(dir.file("a/b/d")));
  EXPECT_EQ(fs::list_directory(dir.file("a/b")), (Names{"c", "d"}));

  test::write_file(dir.file("file"), "x");
  expect_error_naming([&] { fs::create_directories(dir.file("file")); }, dir.file("file"),
                      EEXIST);
  // The error names the level that failed.
  expect_error_naming([&] { fs::create_directories(dir.file("file/sub")); }, dir.file("file"),
                      EEXIST);
  EXPECT_THROW(fs::create_directories(""), Error);
}

TEST(Fs, RemoveAllDoesNotFollowSymlinks) {
  test::TempDir dir;
  // Outside the tree: must survive.
  fs::create_directories(dir.file("outside/keep"));
  test::write_file(dir.file("outside/keep/precious"), "data");
  test::write_file(dir.file("outside/file"), "data");

  fs::create_directories(dir.file("tree/x/y"));
  test::write_file(dir.file("tree/top"), "1");
  test::write_file(dir.file("tree/x/y/deep"), "2");
  make_symlink(dir.file("outside"), dir.file("tree/link-to-dir"));
  make_symlink(dir.file("outside/file"), dir.file("tree/x/link-to-file"));
  make_symlink(dir.file("nowhere"), dir.file("tree/x/dangling"));

  fs::remove_all(dir.file("tree"));
  EXPECT_FALSE(fs::exists(dir.file("tree")));
  EXPECT_EQ(test::read_file(dir.file("outside/keep/precious")), "data");
  EXPECT_EQ(test::read_file(dir.file("outside/file")), "data");

  // A symlink given directly is removed itself.
  make_symlink(dir.file("outside"), dir.file("link"));
  fs::remove_all(dir.file("link"));
  EXPECT_EQ(fs::list_directory(dir.path()), Names{"outside"});
  EXPECT_EQ(fs::list_directory(dir.file("outside")), (Names{"file", "keep"}));

  fs::remove_all(dir.file("missing"));  // fine
  fs::remove_all(dir.file("outside/file"));  // a plain file
  EXPECT_FALSE(fs::exists(dir.file("outside/file")));
  EXPECT_TRUE(fs::remove_all_noexcept(dir.file("outside")));
  EXPECT_EQ(fs::list_directory(dir.path()), Names{});
}

TEST(Fs, RemoveFileAndRename) {
  test::TempDir dir;
  test::write_file(dir.file("a"), "A");
  fs::rename(dir.file("a"), dir.file("b"));
  EXPECT_FALSE(fs::exists(dir.file("a")));
  EXPECT_EQ(test::read_file(dir.file("b")), "A");
  test::write_file(dir.file("c"), "C");
  fs::rename(dir.file("c"), dir.file("b"));  // replaces
  EXPECT_EQ(test::read_file(dir.file("b")), "C");
  expect_error_naming([&] { fs::rename(dir.file("c"), dir.file("d")); }, dir.file("c"), ENOENT);

  fs::remove_file(dir.file("b"));
  EXPECT_FALSE(fs::exists(dir.file("b")));
  expect_error_naming([&] { fs::remove_file(dir.file("b")); }, dir.file("b"), ENOENT);
}

TEST(Fs, ListDirectoryIsSortedByteWise) {
  test::TempDir dir;
  for (const char* name : {"b", "a.txt", "C", "a", "_"}) test::write_file(dir.file(name), "");
  fs::create_directories(dir.file("z"));
  make_symlink("nowhere", dir.file("L"));
  EXPECT_EQ(fs::list_directory(dir.path()), (Names{"C", "L", "_", "a", "a.txt", "b", "z"}));
  EXPECT_EQ(fs::list_directory(dir.file("z")), Names{});
  expect_error_naming([&] { fs::list_directory(dir.file("missing")); }, dir.file("missing"),
                      ENOENT);
  expect_error_naming([&] { fs::list_directory(dir.file("b")); }, dir.file("b"), ENOTDIR);
}

TEST(Fs, PathStrings) {
  EXPECT_EQ(fs::join("a", "b"), "a/b");
  EXPECT_EQ(fs::join("a/", "b"), "a/b");
  EXPECT_EQ(fs::join("a", "/b"), "/b");
  EXPECT_EQ(fs::join("", "b"), "b");
  EXPECT_EQ(fs::join("a", ""), "a");
  EXPECT_EQ(fs::join("/", "b"), "/b");

  EXPECT_EQ(fs::parent_path("a/b/c"), "a/b");
  EXPECT_EQ(fs::parent_path("a/b/"), "a");
  EXPECT_EQ(fs::parent_path("a//b"), "a");
  EXPECT_EQ(fs::parent_path("b"), "");
  EXPECT_EQ(fs::parent_path("/b"), "/");
  EXPECT_EQ(fs::parent_path("/"), "/");
  EXPECT_EQ(fs::parent_path(""), "");

  EXPECT_EQ(fs::filename("a/b.txt"), "b.txt");
  EXPECT_EQ(fs::filename("a/b/"), "b");
  EXPECT_EQ(fs::filename("b"), "b");
  EXPECT_EQ(fs::filename("/"), "");
}

TEST(Fs, AbsoluteAndCanonical) {
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  EXPECT_EQ(fs::absolute("x/y"), std::string(cwd) + "/x/y");
  EXPECT_EQ(fs::absolute("/x/../y"), "/x/../y");  // not normalized
  EXPECT_THROW(fs::absolute(""), Error);

  test::TempDir dir;
  fs::create_directories(dir.file("real/sub"));
  make_symlink(dir.file("real"), dir.file("link"));
  const std::string real = fs::canonical(dir.file("real"));
  EXPECT_EQ(real.front(), '/');
  EXPECT_EQ(fs::canonical(dir.file("link/sub/..")), real);
  expect_error_naming([&] { fs::canonical(dir.file("missing")); }, dir.file("missing"), ENOENT);
}

TEST(Fs, TemporaryDirectories) {
  test::TempDir dir;
  {
    ScopedEnv env("TMPDIR", dir.path().c_str());
    EXPECT_EQ(fs::temp_directory(), dir.path());
    const std::string a = fs::make_temp_directory("mds-x-");
    const std::string b = fs::make_temp_directory("mds-x-");
    EXPECT_NE(a, b);
    EXPECT_EQ(fs::parent_path(a), dir.path());
    EXPECT_EQ(fs::filename(a).rfind("mds-x-", 0), 0u) << a;
    EXPECT_TRUE(fs::is_directory(a));
    EXPECT_EQ(fs::list_directory(a), Names{});
    struct stat st {};
    ASSERT_EQ(::stat(a.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);  // private
  }
  {
    ScopedEnv env("TMPDIR", dir.file("missing").c_str());
    expect_error_naming([] { fs::make_temp_directory("p-"); }, dir.file("missing"), ENOENT);
  }
  {
    ScopedEnv env("TMPDIR", nullptr);
    EXPECT_EQ(fs::temp_directory(), "/tmp");
  }
  {
    ScopedEnv env("TMPDIR", "");
    EXPECT_EQ(fs::temp_directory(), "/tmp");
  }
}

TEST(Fs, FsyncPath) {
  test::TempDir dir;
  test::write_file(dir.file("f"), "x");
  fs::fsync_path(dir.file("f"));
  fs::fsync_path(dir.path());
  expect_error_naming([&] { fs::fsync_path(dir.file("missing")); }, dir.file("missing"), ENOENT);
}

TEST(Fs, WriteFileAtomicLeavesNoTemporary) {
  test::TempDir dir;
  const std::string path = dir.file("out.bin");
  const std::string bytes("a\0b\nc", 5);
  fs::write_file_atomic(path, bytes);
  EXPECT_EQ(test::read_file(path), bytes);
  fs::write_file_atomic(path, "replaced");
  EXPECT_EQ(test::read_file(path), "replaced");
  fs::write_file_atomic(path, "");
  EXPECT_EQ(test::read_file(path), "");
  EXPECT_EQ(fs::list_directory(dir.path()), Names{"out.bin"});

  // Into a missing directory: an error naming the path, and nothing left behind.
  const std::string bad = dir.file("missing/out.bin");
  expect_error_naming([&] { fs::write_file_atomic(bad, "x"); }, bad, ENOENT);
  EXPECT_NE(error_of([&] { fs::write_file_atomic(bad, "x"); }).find("the directory " + dir.file("missing") + " does not exist"),
            std::string::npos);
  // Onto a directory: the rename fails; the temporary is removed.
  fs::create_directories(dir.file("d/inner"));
  EXPECT_NE(error_of([&] { fs::write_file_atomic(dir.file("d"), "x"); }).find(dir.file("d")),
            std::string::npos);
  EXPECT_EQ(fs::list_directory(dir.path()), (Names{"d", "out.bin"}));
}

// Only regular files are replaced: a symlink's target is written (the link stays), a FIFO (as a
// device such as /dev/null, or a shell's >(...)) is written to, never replaced by a regular file.
TEST(Fs, WriteFileAtomicReplacesOnlyRegularFiles) {
  test::TempDir dir;
  fs::write_file_atomic(dir.file("target.txt"), "old");
  ASSERT_EQ(::symlink("target.txt", dir.file("link").c_str()), 0);
  ASSERT_EQ(::symlink("link", dir.file("link2").c_str()), 0);
  fs::write_file_atomic(dir.file("link2"), "through two links");
  EXPECT_EQ(test::read_file(dir.file("target.txt")), "through two links");
  struct stat st {};
  ASSERT_EQ(::lstat(dir.file("link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(::lstat(dir.file("link2").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  // A dangling link: its target is created.
  ASSERT_EQ(::symlink("new.txt", dir.file("dangling").c_str()), 0);
  fs::write_file_atomic(dir.file("dangling"), "made");
  EXPECT_EQ(test::read_file(dir.file("new.txt")), "made");

  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::string received;
  std::thread reader([&] { received = test::read_file(fifo); });
  fs::write_file_atomic(fifo, "into the pipe");
  reader.join();
  EXPECT_EQ(received, "into the pipe");
  ASSERT_EQ(::lstat(fifo.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));  // still a FIFO
  EXPECT_EQ(fs::list_directory(dir.path()), (Names{"dangling", "fifo", "link", "link2", "new.txt", "target.txt"}));
}

TEST(Fs, ExclusiveLockRefusesASecondHolderNamingTheFirst) {
  test::TempDir dir;
  const std::string path = dir.file("run.lock");
  {
    fs::ExclusiveLock first(path, "the run directory r");
    const std::string message = error_of([&] { fs::ExclusiveLock second(path, "the run directory r"); });
    EXPECT_NE(message.find("the run directory r is in use by process " + std::to_string(::getpid())), std::string::npos)
        << message;
  }
  fs::ExclusiveLock again(path, "the run directory r");  // released with its holder
  fs::ExclusiveLock moved = std::move(again);
  EXPECT_NE(error_of([&] { fs::ExclusiveLock other(path, "x"); }), "");
}

// ------------------------------------------------------------------------------- the guard

// The pip LibTorch interposes the standard file-system library (src/core/fs.h): code must use
// mds::fs. The needles are assembled so that this file does not match itself.
TEST(Fs, NoStandardFilesystemInTheSourceTree) {
  const std::string source_dir = MDS_SOURCE_DIR;
  const std::string lib = "filesystem";
  const std::vector<std::string> needles = {"std::" + lib, "#include <" + lib + ">"};
  const Names sources = test::source_files({"src", "tests", "kernels", "bench"});
  Names offenders;
  ASSERT_GT(sources.size(), 10u) << "found no sources under " << source_dir;
  for (const std::string& rel : sources) {
    if (rel == "src/core/fs.cpp") continue;
    const std::string text = test::read_file(fs::join(source_dir, rel));
    for (const std::string& needle : needles) {
      if (text.find(needle) != std::string::npos) {
        offenders.push_back(rel + " (" + needle + ")");
        break;
      }
    }
  }
  std::string list;
  for (const std::string& o : offenders) list += "\n  " + o;
  EXPECT_TRUE(offenders.empty()) << "use mds::fs (src/core/fs.h), not <" << lib << ">, in:" << list;
}

}  // namespace
}  // namespace mds
