// Fault injection for the kill tests: named points in the code where a test can make the process die
// (SIGKILL: nothing runs after it, as with a power cut or the OOM killer) or receive a stop signal, at
// a chosen moment instead of a timed one. Off unless MDS_CRASH_AT is set:
//   MDS_CRASH_AT=NAME[:N[:SIGNAL]]   the N-th time (default 1) this process passes NAME, send SIGNAL
//                                    (KILL, TERM or INT; default KILL) to itself.
// The points: train.step (after a step's update), train.validation (mid-validation), checkpoint.write
// (mid-save: some files written, trainer_state.json not yet), metrics.write (half a metrics.jsonl line).
#pragma once

namespace mds {

void crash_point(const char* name);

}  // namespace mds
