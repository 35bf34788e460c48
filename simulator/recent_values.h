// RecentValues: the values computed for the last few keys, for the search's
// per-plan evaluations (PeakMemoryCache, TimeModel::StepFloor). Consecutive
// plans of the search differ in their inner dimensions only, so a term that
// depends on a few outer ones is asked for the same handful of keys over and
// over; the value for a key is computed once and kept while the key is among
// the last kSlots distinct ones asked for.
//
// Key: equality-comparable and default-constructible; it must hold every
// input the value depends on (the caller's contract: a missing input would
// return another plan's value). Value: default-constructible and copyable.
// The reference Get returns is valid until the next Get. Not thread-safe.
#pragma once

#include <algorithm>
#include <utility>

namespace p3d {

template <typename Key, typename Value>
class RecentValues {
 public:
  // The value for `key`: kept, or make() computed now and kept (replacing
  // the oldest of kSlots).
  template <typename Make>
  const Value& Get(const Key& key, Make make) {
    if (size_ > 0 && entries_[last_].first == key) return entries_[last_].second;
    for (int i = 0; i < size_; ++i)
      if (entries_[i].first == key) return entries_[last_ = i].second;
    last_ = next_;
    next_ = (next_ + 1) % kSlots;
    size_ = std::max(size_, last_ + 1);
    entries_[last_] = {key, make()};
    return entries_[last_].second;
  }

 private:
  static constexpr int kSlots = 8;  // the search's inner loops revisit a few keys: SP x recompute x EP
  std::pair<Key, Value> entries_[kSlots];
  int size_ = 0, next_ = 0, last_ = 0;
};

}  // namespace p3d
