// Derivation: the --explain text, recorded by the models while they compute.
//
// Each term is a name, a formula over named inputs, the inputs' values and
// the value the model itself went on with. The text is never written apart
// from the arithmetic: the model records a term at the line that computes
// it, and tests/simulator/derivation_test.cc evaluates every recorded formula
// with its inputs (EvaluateFormula) over many plans and requires the recorded
// value, so a formula that drifts from its number fails the build's tests.
//
// Formulas: numbers, input names ([A-Za-z_][A-Za-z0-9_]*), + - * /, unary
// minus, parentheses, min(a, b, ...), max(a, b, ...), ceil(a). A branch the
// model takes (ZeRO>=3 ? ... : ...) is resolved by recording the branch's
// own formula, so every formula is plain arithmetic.
//
// Cost: models take a `Derivation*` that is null in the search (P3D_TERM below).
#pragma once

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p3d {

struct TermInput {
  const char* name;  // a string literal
  double value;
};

struct DerivedTerm {
  std::string name;     // e.g. "activations.layers", "layer.tp_comm.forward"
  std::string formula;  // arithmetic over the inputs' names
  std::vector<TermInput> inputs;
  double value = 0;
  std::string note;   // what is counted, in words (optional)
  bool part = false;  // one of the parts that sum to the total (memory: the
                      // stage's bytes; time: the step)
};

class Derivation {
 public:
  // Records the term; returns `value`. Cold: the search never records.
  [[gnu::cold]] double Add(std::string_view name, std::string_view formula,
             std::initializer_list<TermInput> inputs, double value, std::string_view note = {},
             bool part = false);
  const std::vector<DerivedTerm>& terms() const { return terms_; }
  // The recorded value of `name`; 0 when absent.
  double ValueOf(std::string_view name) const;

 private:
  std::vector<DerivedTerm> terms_;
};

// A model computes and records a term in one expression:
//   x = P3D_TERM(why, "x", "a*b", a * b, "what x counts", {"a", a}, {"b", b});
// yields the value (evaluated once) and, when `why` is non-null, records it
// with its inputs; P3D_PART records a part of the total. Macros, because the
// inputs must only be built on the recording branch: the search passes a null
// `why` and pays one branch per term (a function would build every input list
// before the call).
#define P3D_TERM(why, name, formula, value, note, ...) \
  ((why) != nullptr ? (why)->Add(name, formula, {__VA_ARGS__}, value, note, false) : (value))
#define P3D_PART(why, name, formula, value, note, ...) \
  ((why) != nullptr ? (why)->Add(name, formula, {__VA_ARGS__}, value, note, true) : (value))

// The formula with every input name replaced by its value ({:.6g}).
std::string Substituted(const DerivedTerm& term);

// Evaluates `formula` with `inputs`. Errors name the unknown input or the
// position of a syntax error.
StatusOr<double> EvaluateFormula(std::string_view formula, std::span<const TermInput> inputs);

}  // namespace p3d
