#include "simulator/derivation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>

namespace p3d {

double Derivation::Add(std::string_view name, std::string_view formula,
                       std::initializer_list<TermInput> inputs, double value, std::string_view note,
                       bool part) {
  terms_.push_back({std::string(name), std::string(formula), std::vector<TermInput>(inputs), value,
                    std::string(note), part});
  return value;
}

double Derivation::ValueOf(std::string_view name) const {
  for (const DerivedTerm& t : terms_)
    if (t.name == name) return t.value;
  return 0;
}

namespace {

bool IdentStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

const TermInput* Find(std::span<const TermInput> inputs, std::string_view name) {
  for (const TermInput& in : inputs)
    if (name == in.name) return &in;
  return nullptr;
}

// Recursive descent over: expr = term {(+|-) term}; term = unary {(*|/) unary};
// unary = -unary | primary; primary = number | name | call | (expr).
class Parser {
 public:
  Parser(std::string_view text, std::span<const TermInput> inputs) : s_(text), in_(inputs) {}

  StatusOr<double> Parse() {
    const double v = Expr();
    Skip();
    if (error_.empty() && i_ != s_.size()) Fail("unexpected character");
    if (!error_.empty()) return Status::InvalidArgument(error_);
    return v;
  }

 private:
  void Skip() {
    while (i_ < s_.size() && s_[i_] == ' ') ++i_;
  }
  bool Eat(char c) {
    Skip();
    if (i_ < s_.size() && s_[i_] == c) return ++i_, true;
    return false;
  }
  void Fail(std::string_view what) {
    if (error_.empty()) error_ = fmt::format("formula '{}': {} at position {}", s_, what, i_);
  }
  double Expr() {
    double v = Term();
    for (;;) {
      if (Eat('+'))
        v += Term();
      else if (Eat('-'))
        v -= Term();
      else
        return v;
    }
  }
  double Term() {
    double v = Unary();
    for (;;) {
      if (Eat('*'))
        v *= Unary();
      else if (Eat('/'))
        v /= Unary();
      else
        return v;
    }
  }
  double Unary() { return Eat('-') ? -Unary() : Primary(); }
  double Primary() {
    Skip();
    if (i_ >= s_.size()) return Fail("expression expected"), 0;
    if (Eat('(')) {
      const double v = Expr();
      if (!Eat(')')) Fail("')' expected");
      return v;
    }
    const char c = s_[i_];
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      const std::string rest(s_.substr(i_));
      char* end = nullptr;
      const double v = std::strtod(rest.c_str(), &end);
      i_ += static_cast<size_t>(end - rest.c_str());
      return v;
    }
    if (!IdentStart(c)) return Fail("unexpected character"), 0;
    const size_t start = i_;
    while (i_ < s_.size() && IdentChar(s_[i_])) ++i_;
    const std::string_view name = s_.substr(start, i_ - start);
    if (Eat('(')) return Call(name);
    const TermInput* in = Find(in_, name);
    if (in == nullptr) return Fail(fmt::format("unknown input '{}'", name)), 0;
    return in->value;
  }
  double Call(std::string_view name) {
    std::vector<double> args{Expr()};
    while (Eat(',')) args.push_back(Expr());
    if (!Eat(')')) return Fail("')' expected"), 0;
    if (name == "min") return *std::min_element(args.begin(), args.end());
    if (name == "max") return *std::max_element(args.begin(), args.end());
    if (name == "ceil" && args.size() == 1) return std::ceil(args[0]);
    return Fail(fmt::format("unknown function '{}'", name)), 0;
  }

  std::string_view s_;
  std::span<const TermInput> in_;
  size_t i_ = 0;
  std::string error_;
};

}  // namespace

std::string Substituted(const DerivedTerm& term) {
  const std::string_view f = term.formula;
  std::string out;
  size_t i = 0;
  while (i < f.size()) {
    if (!IdentStart(f[i]) || (i > 0 && (IdentChar(f[i - 1]) || f[i - 1] == '.'))) {
      out += f[i++];
      continue;
    }
    const size_t start = i;
    while (i < f.size() && IdentChar(f[i])) ++i;
    const std::string_view name = f.substr(start, i - start);
    const TermInput* in = Find(term.inputs, name);
    out += in != nullptr ? fmt::format("{:.6g}", in->value) : std::string(name);
  }
  return out;
}

StatusOr<double> EvaluateFormula(std::string_view formula, std::span<const TermInput> inputs) {
  return Parser(formula, inputs).Parse();
}

}  // namespace p3d
