#include "runtime/launch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/error.h"
#include "core/log.h"

namespace mds::runtime {

namespace {

std::atomic<int> g_forward{0};  // a signal to pass on to the processes
void on_signal(int sig) { g_forward = sig; }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return str_cat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return str_cat("was killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return "stopped";
}

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  MDS_CHECK(fd >= 0, "launch: cannot open a socket: ", std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
  ::close(fd);
  MDS_CHECK(ok, "launch: cannot find a free port: ", std::strerror(errno), "; give --master-port");
  return ntohs(a.sin_port);
}

int launch_local(const std::string& program, const std::vector<std::string>& args, const LaunchOptions& o) {
  MDS_CHECK(o.processes >= 1, "launch: -n must be at least 1, got ", o.processes);
  const int port = o.master_port > 0 ? o.master_port : free_port();
  log_info("launch: ", o.processes, " processes, rendezvous at ", o.master_addr, ":", port);
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {}, old_term {};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);

  std::vector<pid_t> pids;
  for (int rank = 0; rank < o.processes; ++rank) {
    const pid_t pid = ::fork();
    MDS_CHECK(pid >= 0, "launch: fork failed: ", std::strerror(errno));
    if (pid == 0) {
      sigaction(SIGINT, &old_int, nullptr);
      sigaction(SIGTERM, &old_term, nullptr);
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(o.processes).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(o.processes).c_str(), 1);
      setenv("MASTER_ADDR", o.master_addr.c_str(), 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(program.c_str()));
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(program.c_str(), argv.data());
      std::fprintf(stderr, "launch: cannot run %s: %s\n", program.c_str(), std::strerror(errno));
      std::_Exit(127);
    }
    pids.push_back(pid);
  }

  // Waits for all; the first failure stops the others.
  int result = 0, running = o.processes;
  bool stopping = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  auto signal_all = [&](int sig) {
    for (const pid_t p : pids)
      if (p > 0) ::kill(p, sig);
  };
  while (running > 0) {
    if (const int sig = g_forward.exchange(0); sig != 0) signal_all(sig);
    if (stopping && std::chrono::steady_clock::now() > deadline) {
      log_warn("launch: the other processes did not stop within ", o.grace_seconds, " s: killing them");
      signal_all(SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    int status = 0;
    const pid_t done = ::waitpid(-1, &status, WNOHANG);
    if (done <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling: signals and the deadline
      continue;
    }
    for (std::size_t rank = 0; rank < pids.size(); ++rank) {
      if (pids[rank] != done) continue;
      pids[rank] = -1;
      --running;
      if (exit_code(status) != 0 && result == 0) {
        result = exit_code(status);
        log_error("launch: rank ", rank, " ", describe_status(status),
                  running > 0 ? "; stopping the others" : "");
        if (running > 0) {
          stopping = true;
          signal_all(SIGTERM);
          deadline = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(1000.0 * o.grace_seconds));
        }
      }
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace mds::runtime
