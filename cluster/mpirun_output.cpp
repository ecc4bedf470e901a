#include "cluster/mpirun_output.h"

#include <algorithm>
#include <regex>

namespace segrun::cluster {
namespace {

// Open MPI's help blocks open and close with a line of 74 dashes, and are a few lines long.
constexpr size_t kRuleWidth = 74;
constexpr size_t kLongestBlock = 64;

bool is_rule(const std::string& text) {
  return text.size() == kRuleWidth && text.find_first_not_of('-') == std::string::npos;
}

bool is_abort_note(const std::string& text) {
  // "[vm:01234] 1 more process has sent help message help-mpi-api.txt / mpi-abort" and the
  // aggregation hint printed with it; "[vm:01234] [[32694,0],0] ORTE_ERROR_LOG: Out of resource in
  // file ../../../orte/util/show_help.c at line 501" (the help system itself, under load).
  return text.find("help-mpi-api.txt / mpi-abort") != std::string::npos ||
         text.find("\"orte_base_help_aggregate\" to 0 to see all help / error messages") != std::string::npos ||
         (text.find("ORTE_ERROR_LOG") != std::string::npos && text.find("show_help.c") != std::string::npos);
}

}  // namespace

bool MpirunErrFilter::is_said_already(const std::vector<std::string>& block) const {
  const auto has = [&block](const char* words) {
    return std::any_of(block.begin(), block.end(),
                       [words](const std::string& l) { return l.find(words) != std::string::npos; });
  };
  static const std::regex kStopped("^ *Exit code: +75$");  // a rank stopped by request (checkpointed)
  const bool stopped =
      std::any_of(block.begin(), block.end(), [](const std::string& l) { return std::regex_match(l, kStopped); });
  return has("MPI_ABORT was invoked on rank") || has("terminated normally, but") ||
         (has("mpirun detected that one or more processes exited with non-zero status") &&
          (stopped || !rank_errors_.empty()));
}

std::vector<std::string> MpirunErrFilter::line(const std::string& text) {
  if (!held_.empty()) {
    held_.push_back(text);
    if (!is_rule(text) && held_.size() < kLongestBlock) return {};
    std::vector<std::string> block;
    block.swap(held_);
    return is_rule(block.back()) && is_said_already(block) ? std::vector<std::string>{} : block;
  }
  if (is_rule(text)) {
    held_.push_back(text);
    return {};
  }
  if (is_abort_note(text) || text.rfind("mpirun: Forwarding signal ", 0) == 0) return {};
  // "segrun: error on rank <digits>: <message>"
  static const std::string kRankError = "segrun: error on rank ";
  if (text.rfind(kRankError, 0) == 0) {
    const size_t digits_end = text.find_first_not_of("0123456789", kRankError.size());
    if (digits_end != std::string::npos && digits_end > kRankError.size() && text.compare(digits_end, 2, ": ") == 0) {
      const std::string message = text.substr(digits_end + 2);
      if (std::find(rank_errors_.begin(), rank_errors_.end(), message) != rank_errors_.end()) return {};
      rank_errors_.push_back(message);
    }
  }
  return {text};
}

std::vector<std::string> MpirunErrFilter::finish() {
  std::vector<std::string> rest;
  rest.swap(held_);
  return rest;
}

}  // namespace segrun::cluster
