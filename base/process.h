// Restarting this process in place: the same binary, the same arguments, the same process id,
// with every file descriptor closed (listening sockets, database locks). Used when a replica must
// start over from its data directory (a rebuild after damaged data) and a supervisor cannot be
// assumed. Thread-safety: remember_command_line() once, from main(), before any thread starts.
#pragma once

namespace herald {

// Keeps argv (which must stay valid for the process's life, as main's does) for restart_process().
void remember_command_line(int argc, char** argv);

// Replaces this process image with a fresh run of the same command line. Never returns: when
// no command line was remembered, or exec fails, the process exits with EXIT_FAILURE instead
// (a supervisor then starts it again, to the same effect).
[[noreturn]] void restart_process();

}  // namespace herald
