#include "core/rank_logs.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <vector>
#include <system_error>

namespace segrun::log {

namespace fs = std::filesystem;

std::map<std::string, uintmax_t> log_sizes(const std::string& log_dir) {
  std::map<std::string, uintmax_t> sizes;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(log_dir, ec)) sizes[entry.path().string()] = entry.file_size(ec);
  return sizes;
}

std::string first_error_since(const std::string& log_dir, const std::map<std::string, uintmax_t>& before) {
  const size_t time_width = std::string("2026-12-06 10:13:31.123").size();  // core/log.cpp's "%Y-%m-%d %H:%M:%S.%e"
  const std::string level = " error r";                                     // "%-5l r<rank>/<world>"
  std::string first_time, found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(log_dir, ec)) {
    const std::string path = entry.path().string();
    std::ifstream in(path);
    if (const auto it = before.find(path); it != before.end()) in.seekg(static_cast<std::streamoff>(it->second));
    for (std::string line; std::getline(in, line);) {
      if (line.compare(time_width, level.size(), level) != 0) continue;
      const size_t rank = time_width + level.size();
      const size_t slash = line.find('/', rank), space = line.find(' ', rank);
      if (slash == std::string::npos || space == std::string::npos) continue;
      const std::string time = line.substr(0, time_width);
      if (found.empty() || time < first_time) {
        first_time = time;
        found = "rank " + line.substr(rank, slash - rank) + ": " + line.substr(space + 1) + " (" + path + ")";
      }
      break;  // a file's first error is its rank's cause
    }
  }
  return found;
}

namespace {

// A rank or world size written in decimal (1 to 6 digits), -1 for other text.
int rank_number(const std::string& digits) {
  if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoi(digits);
}

// "<r>" of a logs/rank-<r>.log name (-1 for another name).
int rank_of_log(const std::string& name) {
  const std::string prefix = "rank-", suffix = ".log";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  return rank_number(name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()));
}

// Calls visit(line) on each line of the file at `path` (without its '\n'), the last first, until
// it returns true. Reads 64 KiB at a time from the end: a long log's last lines cost what a short
// one's do.
template <class Visit>
void for_each_line_from_the_end(const std::string& path, Visit visit) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return;
  constexpr std::streamoff kChunk = 65536;
  std::streamoff to = in.tellg();
  // The file's last line break ends its last line; it does not begin an empty one after it.
  if (to > 0) {
    char last = 0;
    in.seekg(to - 1);
    if (in.get(last) && last == '\n') --to;
  }
  // The end of the line that a later chunk began in, without its '\n': the chunks it spans, the
  // last one first. They are joined once, when the line's start is read: a line of any length (a
  // garbage file without line breaks) costs its length, not its length times its chunks.
  std::vector<std::string> rest;
  while (to > 0) {
    const std::streamoff from = std::max<std::streamoff>(0, to - kChunk);
    std::string text(static_cast<size_t>(to - from), '\0');
    in.seekg(from);
    if (!in.read(text.data(), static_cast<std::streamsize>(text.size()))) return;
    to = from;
    // The lines that begin in this chunk start at `first_line`; before it lies the end of a line
    // that began in an earlier one (unless the chunk is the file's start).
    size_t first_line = 0;
    if (from > 0) {
      const size_t first_break = text.find('\n');
      if (first_break == std::string::npos) {
        rest.push_back(std::move(text));
        continue;
      }
      first_line = first_break + 1;
    }
    for (auto part = rest.rbegin(); part != rest.rend(); ++part) text += *part;
    rest.clear();
    const std::string_view view(text);
    size_t end = text.size();
    for (;;) {
      const size_t line_break = end > first_line ? view.rfind('\n', end - 1) : std::string_view::npos;
      const size_t begin =
          line_break == std::string_view::npos || line_break < first_line ? first_line : line_break + 1;
      if (visit(view.substr(begin, end - begin))) return;
      if (begin == first_line) break;
      end = begin - 1;
    }
    if (from > 0) rest.push_back(text.substr(0, first_line - 1));
  }
}

// What rank 0's line says after the time and the level ("%-5l r0/<world> <message>"): world 0
// for a line that is not rank 0's (a continuation line, another layout).
struct RankZeroLine {
  int world = 0;
  std::string_view message;
};
RankZeroLine rank_zero_line(std::string_view line) {
  const std::string_view field = " r0/";  // core/log.cpp's "%-5l r<rank>/<world>"
  const size_t at = line.find(field);
  if (at == std::string_view::npos) return {};
  const size_t first = at + field.size(), end = line.find(' ', first);
  if (end == std::string_view::npos) return {};
  const int world = rank_number(std::string(line.substr(first, end - first)));
  if (world <= 0) return {};
  return {world, line.substr(end + 1)};
}

}  // namespace

int last_world_size(const std::string& log_dir) {
  int world = 0;
  for_each_line_from_the_end(log_dir + "/rank-0.log", [&](std::string_view line) {
    world = rank_zero_line(line).world;
    return world > 0;
  });
  if (world > 0) return world;
  int ranks = 1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(log_dir, ec))
    ranks = std::max(ranks, rank_of_log(entry.path().filename().string()) + 1);
  return ranks;
}

int checkpoint_world_size(const std::string& log_dir) {
  int world = 0;
  for_each_line_from_the_end(log_dir + "/rank-0.log", [&](std::string_view line) {
    const RankZeroLine said = rank_zero_line(line);
    if (said.world > 0 && said.message.substr(0, 11) == "checkpoint ") world = said.world;
    return world > 0;
  });
  return world;
}

}  // namespace segrun::log
