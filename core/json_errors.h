#pragma once
// A JSON library error said to a user: nlohmann::json's message without its
// "[json.exception.parse_error.101] " tag ("parse error at line 7, column 20: syntax error while
// parsing object - unexpected end of input; expected '}'", "key 'overrides' not found"), for
// messages that name the file and what it should have been. Header-only: it takes the text, so
// callers need not share the library's types.

#include <string>

namespace segrun {

inline std::string json_error_text(const std::string& what) {
  if (what.rfind("[json.exception.", 0) != 0) return what;
  const auto end = what.find("] ");
  return end == std::string::npos ? what : what.substr(end + 2);
}

}  // namespace segrun
