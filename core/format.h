#pragma once
// Brace formatting for log lines and printed tables, with no dependency on fmt:
//   format("iter {} loss {:.4f} {:>7.2f}|{:<22}|", 12, 0.5, 3.14159, "name")
// Fields: "{}" or "{:[[fill]align][width][.precision][type]}" with align one of < > ^ and type
// one of d f e g s (or none); "{{" and "}}" are literal braces. Without a spec, numbers print as
// fmt prints them (integers exactly, floating point in its shortest round-trip form, bool as
// true/false) and are right-aligned in a width; strings are left-aligned. Arguments: arithmetic
// types, strings (std::string, std::string_view, const char*) and anything with operator<<.
// A pattern never throws: a field without an argument, or with a spec it cannot read, is copied
// verbatim; surplus arguments are ignored.
// Why not fmt: headers shared with LibTorch translation units must not include fmt, because
// LibTorch 2.x ships its own fmt (v12) under its include folder, which shadows the system fmt
// that spdlog was built against (docs/gpu.md). spdlog stays inside core/log.cpp.

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace segrun {

// One argument of format(), converted once. Holds a view of strings: valid during the call.
class FormatArg {
 public:
  enum class Kind { kNone, kBool, kSigned, kUnsigned, kDouble, kString };

  FormatArg() = default;
  FormatArg(bool v) : kind_(Kind::kBool), signed_(v) {}
  FormatArg(char v) : kind_(Kind::kString), owned_(1, v), text_(owned_) {}
  FormatArg(double v) : kind_(Kind::kDouble), double_(v) {}
  FormatArg(float v) : kind_(Kind::kDouble), double_(v) {}
  FormatArg(const char* v) : kind_(Kind::kString), text_(v ? v : "(null)") {}
  FormatArg(std::string_view v) : kind_(Kind::kString), text_(v) {}
  FormatArg(const std::string& v) : kind_(Kind::kString), text_(v) {}
  template <typename T, std::enable_if_t<std::is_integral_v<T> && std::is_signed_v<T> && !std::is_same_v<T, char> &&
                                             !std::is_same_v<T, bool>,
                                         int> = 0>
  FormatArg(T v) : kind_(Kind::kSigned), signed_(static_cast<int64_t>(v)) {}
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && std::is_unsigned_v<T> && !std::is_same_v<T, bool>, int> = 0>
  FormatArg(T v) : kind_(Kind::kUnsigned), unsigned_(static_cast<uint64_t>(v)) {}
  // Anything else that can be streamed (paths, tensor sizes, enums with operator<<).
  template <typename T,
            std::enable_if_t<!std::is_arithmetic_v<T> && !std::is_convertible_v<T, std::string_view>, int> = 0,
            typename = decltype(std::declval<std::ostream&>() << std::declval<const T&>())>
  FormatArg(const T& v) : kind_(Kind::kString) {
    std::ostringstream os;
    os << v;
    owned_ = os.str();
    text_ = owned_;
  }
  FormatArg(const FormatArg& other) { *this = other; }
  FormatArg& operator=(const FormatArg& other);

  // Appends this argument formatted by `spec` (the text after ':' in the field, may be empty);
  // false when the spec cannot be read (the caller then copies the field verbatim).
  bool append_to(std::string& out, std::string_view spec) const;

 private:
  Kind kind_ = Kind::kNone;
  int64_t signed_ = 0;
  uint64_t unsigned_ = 0;
  double double_ = 0;
  std::string owned_;      // streamed or single-character text
  std::string_view text_;  // kString: the text (views owned_ or the caller's string)
};

std::string format_args(std::string_view pattern, const FormatArg* args, size_t count);

// `items` with `separator` between them: join({"a", "", "b"}, ", ") == "a, , b".
std::string join(const std::vector<std::string>& items, std::string_view separator);

// The whole of `text` as a finite number (strtod syntax): false for "", "1x", "nan", "inf".
bool parse_number(const std::string& text, double& value);

template <typename... Args>
std::string format(std::string_view pattern, const Args&... args) {
  const FormatArg list[] = {FormatArg(args)..., FormatArg()};  // the last one: zero arguments
  return format_args(pattern, list, sizeof...(Args));
}

}  // namespace segrun
