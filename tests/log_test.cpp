// Logging: a log line (stderr) comes after the output (stdout) that the program printed before it,
// also where both go to one pipe (`moe-diffuseq eval ... 2>&1 | tee`) and stdout is fully buffered.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <string>

#include "core/log.h"

namespace mds {
namespace {

TEST(Log, ALogLineFollowsTheOutputPrintedBeforeIt) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::fflush(stdout);
  std::fflush(stderr);
  const int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
  dup2(fds[1], STDOUT_FILENO);
  dup2(fds[1], STDERR_FILENO);
  static char buffer[1 << 16];
  std::setvbuf(stdout, buffer, _IOFBF, sizeof buffer);  // as on a pipe: held until a flush
  const LogLevel before = log_level();
  set_log_level(LogLevel::info);
  std::printf("system  bleu\ncopy.jsonl  49.55\n");
  log_info("report -> eval.json");
  std::printf("after\n");
  std::fflush(stdout);
  set_log_level(before);
  dup2(saved_out, STDOUT_FILENO);
  dup2(saved_err, STDERR_FILENO);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  close(saved_out);
  close(saved_err);
  close(fds[1]);
  std::string text;
  char chunk[4096];
  for (ssize_t n; (n = read(fds[0], chunk, sizeof chunk)) > 0;) text.append(chunk, static_cast<std::size_t>(n));
  close(fds[0]);
  const std::size_t table = text.find("copy.jsonl  49.55\n"), log = text.find("report -> eval.json"),
                    after = text.find("after\n");
  ASSERT_NE(table, std::string::npos) << text;
  ASSERT_NE(log, std::string::npos) << text;
  ASSERT_NE(after, std::string::npos) << text;
  EXPECT_LT(table, log) << text;
  EXPECT_LT(log, after) << text;
}

}  // namespace
}  // namespace mds
