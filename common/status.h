// Status and StatusOr<T>: the error currency of p3d's library code.
//
// Library code (models, planner, simulator, host-side executor logic) never
// calls exit() and never throws for bad user input. It returns a Status whose
// message names the field or the rule at fault, e.g.
//   "rule heads%tp: 40 attention heads are not divisible by tp=16".
// Front ends (the CLIs) print the message and exit non-zero.
//
// Thread-safety: Status and StatusOr are plain values; distinct objects may be
// used from distinct threads without synchronisation.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace p3d {

class Status {
 public:
  enum class Code { kOk = 0, kInvalidArgument, kNotFound, kInfeasible, kIoError, kInternal, kUnavailable };

  Status() = default;  // OK.
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  // A request that is well-formed but has no legal plan (a named rule failed).
  static Status Infeasible(std::string msg) { return Status(Code::kInfeasible, std::move(msg)); }
  static Status IoError(std::string msg) { return Status(Code::kIoError, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(Code::kInternal, std::move(msg)); }
  // A resource the request needs is absent on this machine (no GPU, no driver).
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Holds either a value or a non-OK Status. Accessing value() of a non-OK
// StatusOr is a programming error (asserted).
template <typename T>
class StatusOr {
 public:
  StatusOr(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT
  StatusOr(T value) : value_(std::move(value)) {}                                  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  const T& value() const& { assert(ok()); return *value_; }
  T& value() & { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

inline std::string Status::ToString() const {
  switch (code_) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "invalid argument: " + message_;
    case Code::kNotFound: return "not found: " + message_;
    case Code::kInfeasible: return "infeasible: " + message_;
    case Code::kIoError: return "I/O error: " + message_;
    case Code::kInternal: return "internal error: " + message_;
    case Code::kUnavailable: return "unavailable: " + message_;
  }
  return message_;
}

// Early-return helpers for library code.
#define P3D_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    ::p3d::Status p3d_status_ = (expr);           \
    if (!p3d_status_.ok()) return p3d_status_;    \
  } while (0)

#define P3D_CONCAT_INNER_(a, b) a##b
#define P3D_CONCAT_(a, b) P3D_CONCAT_INNER_(a, b)
#define P3D_ASSIGN_OR_RETURN(lhs, expr) \
  P3D_ASSIGN_OR_RETURN_IMPL_(P3D_CONCAT_(p3d_statusor_, __LINE__), lhs, expr)
#define P3D_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

}  // namespace p3d
