#include "core/format.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace segrun {
namespace {

struct Spec {
  char fill = ' ';
  char align = 0;  // '<', '>', '^' or 0 (the kind's default)
  int width = 0;
  int precision = -1;
  char type = 0;
};

bool is_align(char c) { return c == '<' || c == '>' || c == '^'; }

bool parse_spec(std::string_view text, Spec& spec) {
  size_t i = 0;
  if (text.size() >= 2 && is_align(text[1])) {
    spec.fill = text[0];
    spec.align = text[1];
    i = 2;
  } else if (!text.empty() && is_align(text[0])) {
    spec.align = text[0];
    i = 1;
  }
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') spec.width = spec.width * 10 + (text[i++] - '0');
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (i == text.size() || text[i] < '0' || text[i] > '9') return false;
    spec.precision = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9')
      spec.precision = spec.precision * 10 + (text[i++] - '0');
  }
  if (i < text.size()) spec.type = text[i++];
  return i == text.size() && (spec.type == 0 || std::string_view("dfegs").find(spec.type) != std::string_view::npos);
}

void pad(std::string& out, std::string_view body, const Spec& spec, char default_align) {
  const size_t width = static_cast<size_t>(spec.width);
  const size_t fill = width > body.size() ? width - body.size() : 0;
  const char align = spec.align ? spec.align : default_align;
  const size_t before = align == '>' ? fill : align == '^' ? fill / 2 : 0;
  out.append(before, spec.fill);
  out.append(body);
  out.append(fill - before, spec.fill);
}

std::string format_double(double value, const Spec& spec) {
  char buf[512];
  if (spec.type == 0 && spec.precision < 0) {  // shortest round-trip form, as fmt's "{}"
    auto result = std::to_chars(buf, buf + sizeof(buf), value);
    return std::string(buf, result.ptr);
  }
  const char type = spec.type == 0 ? 'g' : spec.type;
  const int precision = spec.precision < 0 ? 6 : spec.precision;
  char pattern[] = {'%', '.', '*', type == 'd' || type == 's' ? 'g' : type, '\0'};
  int n = std::snprintf(buf, sizeof(buf), pattern, precision, value);
  return std::string(buf, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1) : 0);
}

}  // namespace

FormatArg& FormatArg::operator=(const FormatArg& other) {
  kind_ = other.kind_;
  signed_ = other.signed_;
  unsigned_ = other.unsigned_;
  double_ = other.double_;
  owned_ = other.owned_;
  const bool views_own = other.text_.data() == other.owned_.data();
  text_ = views_own ? std::string_view(owned_) : other.text_;
  return *this;
}

bool FormatArg::append_to(std::string& out, std::string_view spec_text) const {
  Spec spec;
  if (kind_ == Kind::kNone || !parse_spec(spec_text, spec)) return false;
  switch (kind_) {
    case Kind::kBool: pad(out, signed_ ? "true" : "false", spec, '<'); return true;
    case Kind::kSigned:
    case Kind::kUnsigned:
      if (spec.type == 'f' || spec.type == 'e' || spec.type == 'g' || spec.precision >= 0) {
        const double value = kind_ == Kind::kSigned ? static_cast<double>(signed_) : static_cast<double>(unsigned_);
        pad(out, format_double(value, spec), spec, '>');
      } else {
        pad(out, kind_ == Kind::kSigned ? std::to_string(signed_) : std::to_string(unsigned_), spec, '>');
      }
      return true;
    case Kind::kDouble: pad(out, format_double(double_, spec), spec, '>'); return true;
    case Kind::kString: {
      std::string_view text = text_;
      if (spec.precision >= 0 && text.size() > static_cast<size_t>(spec.precision))
        text = text.substr(0, static_cast<size_t>(spec.precision));
      pad(out, text, spec, '<');
      return true;
    }
    case Kind::kNone: break;
  }
  return false;
}

std::string format_args(std::string_view pattern, const FormatArg* args, size_t count) {
  std::string out;
  out.reserve(pattern.size() + 16 * count);
  size_t next_arg = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if ((c == '{' || c == '}') && i + 1 < pattern.size() && pattern[i + 1] == c) {  // "{{" or "}}"
      out.push_back(c);
      ++i;
      continue;
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    const size_t close = pattern.find('}', i);
    if (close == std::string_view::npos) {
      out.append(pattern.substr(i));
      break;
    }
    const std::string_view field = pattern.substr(i, close - i + 1);  // "{...}"
    std::string_view spec = field.substr(1, field.size() - 2);
    const bool plain = spec.empty() || spec.front() == ':';
    if (!spec.empty()) spec.remove_prefix(1);
    if (!plain || next_arg >= count || !args[next_arg].append_to(out, spec)) out.append(field);
    if (plain) ++next_arg;
    i = close;
  }
  return out;
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string joined;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) joined += separator;
    joined += items[i];
  }
  return joined;
}

bool parse_number(const std::string& text, double& value) {
  if (text.empty()) return false;
  char* end = nullptr;
  value = std::strtod(text.c_str(), &end);
  return end && *end == '\0' && std::isfinite(value);
}

}  // namespace segrun
