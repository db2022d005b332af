// Ctrl-C and `kill` during a long run: the first SIGINT or SIGTERM asks the run to stop at the next
// safe point (the training loop finishes its step, writes a checkpoint and returns); a second one ends
// the process at once (exit status 128 + signal). The previous handlers come back when the scope ends.
#pragma once

namespace mds::runtime {

class StopSignals {
 public:
  // Installs the handlers; the first signal prints `first_message` (a string literal: it is read from
  // the handler), the second exits at once.
  explicit StopSignals(const char* first_message =
                           "\nstop signal: finishing this step and writing a checkpoint (again to exit now)\n");
  ~StopSignals();  // restores the previous ones
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The signal that asked for a stop (SIGINT, SIGTERM), or 0.
  int requested() const;
  // "SIGINT", "SIGTERM".
  static const char* name(int signal);
};

}  // namespace mds::runtime
