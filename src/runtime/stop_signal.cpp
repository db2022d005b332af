#include "runtime/stop_signal.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstddef>

#include "core/error.h"

namespace mds::runtime {
namespace {

std::atomic<int> g_requested{0};
std::atomic<int> g_installed{0};
std::atomic<const char*> g_first_message{nullptr};  // static storage: written from the handler
struct sigaction g_previous_int {}, g_previous_term {};

extern "C" void on_stop_signal(int signal) {
  if (g_requested.exchange(signal) != 0) {
    // The second signal: the user means it. Only async-signal-safe calls here.
    static const char message[] = "\nsecond stop signal: exiting now\n";
    const ssize_t ignored = ::write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
    ::_exit(128 + signal);
  }
  const char* message = g_first_message.load();
  std::size_t n = 0;
  while (message[n] != '\0') ++n;
  const ssize_t ignored = ::write(STDERR_FILENO, message, n);
  (void)ignored;
}

}  // namespace

StopSignals::StopSignals(const char* first_message) {
  MDS_CHECK(g_installed.fetch_add(1) == 0, "StopSignals: only one may be active at a time");
  g_requested = 0;
  g_first_message = first_message;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a write interrupted by the signal goes on
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  g_requested = 0;
  g_installed = 0;
}

int StopSignals::requested() const { return g_requested.load(); }

const char* StopSignals::name(int signal) {
  switch (signal) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "a signal";
  }
}

}  // namespace mds::runtime
