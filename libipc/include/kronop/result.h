// Result<T>: a value or an Error, for expected failures (no exceptions across libuv
// callbacks or the C ABI). Error codes are the KRONOP_E* codes of kronop_ipc.h where the
// failure has one, else KRONOP_ESYS.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace kronop {

struct Error {
  int code = 0;
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T &value() & { return std::get<0>(v_); }
  T &&value() && { return std::get<0>(std::move(v_)); }
  T *operator->() { return &std::get<0>(v_); }
  const Error &error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace kronop
