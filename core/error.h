#pragma once
// Errors: a small exception hierarchy whose messages carry enough context (file, field, record,
// rank) to be printed as the one line a user sees. Library code throws; only the launcher's main
// catches (it logs with the rank, and aborts the MPI world so no rank hangs). Never call exit().
//
// SEGRUN_CHECK(cond, ErrorType, msg) throws ErrorType with "msg" when cond is false; msg is a
// stream expression: SEGRUN_CHECK(n > 0, DataError, path << ": no records").
// The message is exactly msg (no source location): the user-facing text stays one line.

#include <sstream>
#include <stdexcept>
#include <string>

namespace segrun {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ConfigError : public Error {
  using Error::Error;
};  // config files, overrides, CLI
class DataError : public Error {
  using Error::Error;
};  // datasets, stores, images, labels
class ModelError : public Error {
  using Error::Error;
};  // model building, weights import
class CheckpointError : public Error {
  using Error::Error;
};  // checkpoint read/write
class DistError : public Error {
  using Error::Error;
};  // MPI/NCCL failures
class TimeoutError : public DistError {
  using DistError::DistError;
};  // watchdog expiries
class ClusterError : public Error {
  using Error::Error;
};  // schedulers, job scripts
class IoError : public Error {
  using Error::Error;
};  // files that cannot be written
// Child processes that cannot be started; os_error() is the errno of the failed step (0: none).
class ProcessError : public Error {
 public:
  explicit ProcessError(const std::string& message, int os_error = 0) : Error(message), os_error_(os_error) {}
  int os_error() const { return os_error_; }

 private:
  int os_error_;
};

// The first line of an error's text: library errors (LibTorch's) may append a backtrace.
inline std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

}  // namespace segrun

#define SEGRUN_CHECK(cond, ErrorType, msg)     \
  do {                                         \
    if (!(cond)) {                             \
      std::ostringstream segrun_check_os_;     \
      segrun_check_os_ << msg;                 \
      throw ErrorType(segrun_check_os_.str()); \
    }                                          \
  } while (0)

#define SEGRUN_THROW(ErrorType, msg) SEGRUN_CHECK(false, ErrorType, msg)
