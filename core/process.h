#pragma once
// Child processes, one way for the whole program: spawning (fork + exec with a close-on-exec
// report pipe, so "could not start" is an exception naming the program, never a guess from exit
// code 127), waiting (EINTR-safe, blocking or not), exit statuses decoded the same everywhere
// (a signal death is `128 + signal` in shell terms and named in messages), signal forwarding to a
// child while it runs, the usable core count, and shell quoting for printed commands.
//
// Signal forwarding and signal counting install process-wide handlers for their scope (signal
// dispositions are process-global): at most one of each at a time; not thread-safe.

#include <sys/types.h>

#include <atomic>
#include <csignal>
#include <optional>
#include <string>
#include <vector>

namespace segrun::process {

struct ExitStatus {
  int code = 0;    // the exit code, when it exited
  int signal = 0;  // the signal that killed it, 0 when it exited
  bool ok() const { return signal == 0 && code == 0; }
  // What a shell reports: the exit code, or 128 + the signal.
  int shell_code() const { return signal != 0 ? 128 + signal : code; }
  // "exit code 3" / "killed by SIGKILL".
  std::string describe() const;
};

// Decodes a waitpid status.
ExitStatus decode_wait_status(int status);

enum class Output {
  kInherit,     // this process's stream
  kNull,        // /dev/null
  kCapture,     // a pipe read by run_captured
  kAppendFile,  // SpawnOptions::log_path, opened O_APPEND (stdout and stderr share it)
};

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::string cwd;                // "" = this process's
  bool stdin_null = false;        // read /dev/null instead of this process's stdin
  Output out = Output::kInherit;
  Output err = Output::kInherit;
  std::string log_path;            // for Output::kAppendFile (created 0644)
  bool new_process_group = false;  // own group: a terminal's Ctrl-C reaches only this process
  int parent_death_signal = 0;     // sent to the child when this process dies (0 = none)
  std::vector<std::string> env;    // "NAME=VALUE" entries added to (or replacing in) the child's environment
};

struct Child {
  pid_t pid = -1;
  int out_fd = -1;  // read ends for Output::kCapture, else -1
  int err_fd = -1;
};

// Starts a child. Throws ProcessError naming the program (or the folder, or the log file) and the
// OS reason when it cannot be started; the child's handlers for SIGINT, SIGTERM, SIGUSR1 and
// SIGUSR2 are the defaults.
Child spawn(const SpawnOptions& options);

// Waits for the child (retrying on EINTR).
ExitStatus wait(pid_t pid);
// The status when the child has ended, nullopt while it runs.
std::optional<ExitStatus> try_wait(pid_t pid);

struct Captured {
  ExitStatus status;
  std::string out;
  std::string err;
};
// Runs argv to its end with stdin from /dev/null, capturing stdout and stderr (each kept up to
// `max_bytes`). Throws ProcessError when it cannot be started.
Captured run_captured(const std::vector<std::string>& argv, const std::string& cwd = "", size_t max_bytes = 64u << 20);

// A stop signal after the first forces the stop (sent as itself, or as SIGTERM) only from this
// long after the first on: until then the ranks are checkpointing, and mpirun, which tears the
// job down once they have stopped, crashes on another signal (Open MPI 4.1: a segfault in
// PMIx_Finalize, its stack dump, exit 139). An earlier one is dropped, with a notice on stderr.
constexpr double kForceStopAfterSeconds = 5.0;
// The notice (one line, for stderr) that a stop signal was dropped, so that one more is needed.
extern const char kStopNotForcedNotice[];

// While alive, SIGINT, SIGTERM, SIGHUP (unless ignored, as under nohup), SIGUSR1 and SIGUSR2
// received by this process go to `target` (a pid; negative: a process group). The first SIGINT,
// SIGTERM or SIGHUP goes as `first_stop_as` (e.g. a rank's "checkpoint and stop" signal), later
// ones as themselves, but only from `force_after_seconds` after the first on (earlier ones are
// dropped, writing kStopNotForcedNotice to stderr). Restores the previous handlers.
class ScopedSignalForwarding {
 public:
  ScopedSignalForwarding(pid_t target, int first_stop_as, double force_after_seconds = kForceStopAfterSeconds);
  ~ScopedSignalForwarding();
  ScopedSignalForwarding(const ScopedSignalForwarding&) = delete;
  ScopedSignalForwarding& operator=(const ScopedSignalForwarding&) = delete;
  // Whether a signal has been forwarded to `target`.
  bool forwarded_any() const;

 private:
  struct sigaction old_[5];
};

// While alive, counts SIGINT, SIGTERM, SIGHUP (unless ignored) and SIGUSR1 received by this
// process (they do nothing else); count() is read by a polling loop. Restores the previous handlers.
class ScopedSignalCounter {
 public:
  ScopedSignalCounter();
  ~ScopedSignalCounter();
  ScopedSignalCounter(const ScopedSignalCounter&) = delete;
  ScopedSignalCounter& operator=(const ScopedSignalCounter&) = delete;
  int count() const;
  // The count of the current or last counter in this process.
  static int last_count();

 private:
  struct sigaction old_[4];
};

// Cores this process may run on (sched_getaffinity; at least 1).
int usable_cores();

// This machine's host name (gethostname), "" when it cannot be read.
std::string host_name();

// Whether this process ignores SIGHUP (it was started under nohup): a closed terminal then stops
// nothing, and segrun keeps that choice.
bool ignores_hangup();

// Whether `name` can name an environment variable: [A-Za-z_][A-Za-z0-9_]* (what POSIX shells,
// mpirun -x and sbatch --export accept).
bool is_environment_name(const std::string& name);

// One argument for a POSIX shell: bare when it holds only [A-Za-z0-9-_./=:,+@%], else '...' with
// ' written as '\''. `always` quotes even safe text (values in generated scripts).
std::string shell_quote(const std::string& arg, bool always = false);
// Arguments joined by spaces, each shell_quote'd: a command a user can paste.
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace segrun::process
