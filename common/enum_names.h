// The names of an enum's values as data: one table of {value, name} entries
// per enum, and one generic lookup each way over any such table, e.g.
//
//   constexpr EnumEntry<Recompute> kRecomputeNames[] = {
//       {Recompute::kNone, "none"}, {Recompute::kSelective, "selective"}, ...};
//   EnumName(kRecomputeNames, Recompute::kFull)            -> "full"
//   ParseEnum(kRecomputeNames, "selective", &recompute)    -> true
//
// A name function is then one line over its table, and its parse function the
// exact inverse of it (both read the same entries).
#pragma once

#include <cstddef>
#include <string_view>

namespace p3d {

template <typename E>
struct EnumEntry {
  E value;
  const char* name;
};

// The name of `value` in `table`; `unknown` when no entry has that value.
template <typename E, std::size_t N>
constexpr const char* EnumName(const EnumEntry<E> (&table)[N], E value,
                               const char* unknown = "?") {
  for (const EnumEntry<E>& e : table)
    if (e.value == value) return e.name;
  return unknown;
}

// Sets *out to the value named `name` in `table`; false (and *out untouched)
// when no entry has that name.
template <typename E, std::size_t N>
constexpr bool ParseEnum(const EnumEntry<E> (&table)[N], std::string_view name, E* out) {
  for (const EnumEntry<E>& e : table) {
    if (name == e.name) {
      *out = e.value;
      return true;
    }
  }
  return false;
}

}  // namespace p3d
