#include "bench/fuzz/fuzz_mutator.h"

#include <cctype>

namespace p3d::fuzz {
namespace {

const char* const kNumbers[] = {"0",    "-1",      "1",     "2",         "3",      "7",
                                "1e9",  "1e12",    "1e308", "1e-300",    "1e605",  "-1e308",
                                "0.5",  "4096.0",  "2.5",   "65536",     "1e-9",   "9223372036854775807",
                                "9223372036854775808", "18446744073709551616", "-0", "null", "true",
                                "\"7\"", "[]",     "{}"};
const char* const kTokens[] = {"{", "}", "[", "]", ",", ":", "\"", "\\", "e", "-", ".", " ", "\n", "\"\\u0000\""};

// Positions of number literals in `s` (start, length).
std::vector<std::pair<size_t, size_t>> Numbers(const std::string& s) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!(std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '-')) continue;
    if (i > 0 && (std::isalnum(static_cast<unsigned char>(s[i - 1])) || s[i - 1] == '_' || s[i - 1] == '.')) continue;
    size_t j = i + 1;
    while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.' || s[j] == 'e' ||
                            s[j] == 'E' || s[j] == '+' || s[j] == '-'))
      ++j;
    out.push_back({i, j - i});
    i = j;
  }
  return out;
}

// Positions of string literals (keys and values), quotes excluded.
std::vector<std::pair<size_t, size_t>> Strings(const std::string& s) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '"') continue;
    size_t j = i + 1;
    while (j < s.size() && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
    if (j >= s.size()) break;
    out.push_back({i + 1, j - i - 1});
    i = j;
  }
  return out;
}

void MutateOnce(std::string& s, const std::vector<std::string>& seeds, Rng& rng) {
  switch (rng.Below(10)) {
    case 0:  // flip a byte
      if (!s.empty()) s[rng.Below(s.size())] ^= static_cast<char>(1u << rng.Below(8));
      break;
    case 1:  // insert a structural token
      s.insert(rng.Below(s.size() + 1), kTokens[rng.Below(std::size(kTokens))]);
      break;
    case 2: {  // delete a range
      if (s.empty()) break;
      size_t at = rng.Below(s.size());
      s.erase(at, 1 + rng.Below(std::min<size_t>(64, s.size() - at)));
      break;
    }
    case 3: {  // duplicate a range
      if (s.empty()) break;
      size_t at = rng.Below(s.size()), len = 1 + rng.Below(std::min<size_t>(256, s.size() - at));
      s.insert(rng.Below(s.size() + 1), s.substr(at, len));
      break;
    }
    case 4: {  // splice: head of this, tail of another seed
      const std::string& other = seeds[rng.Below(seeds.size())];
      s = s.substr(0, rng.Below(s.size() + 1)) + other.substr(rng.Below(other.size() + 1));
      break;
    }
    case 5:  // truncate
      s.resize(rng.Below(s.size() + 1));
      break;
    case 6:
    case 7:
    case 8: {  // a number becomes an extreme value (most productive: reaches range checks)
      auto nums = Numbers(s);
      if (nums.empty()) break;
      auto [at, len] = nums[rng.Below(nums.size())];
      s.replace(at, len, kNumbers[rng.Below(std::size(kNumbers))]);
      break;
    }
    default: {  // a string (key or value) loses, gains or swaps a character
      auto strs = Strings(s);
      if (strs.empty()) break;
      auto [at, len] = strs[rng.Below(strs.size())];
      if (len > 0 && rng.Below(2)) s.erase(at + rng.Below(len), 1);
      else s.insert(at + rng.Below(len + 1), 1, static_cast<char>('a' + rng.Below(26)));
      break;
    }
  }
}

}  // namespace

std::string Mutate(const std::vector<std::string>& seeds, Rng& rng) {
  std::string s = seeds[rng.Below(seeds.size())];
  const size_t n = 1 + rng.Below(4);
  for (size_t i = 0; i < n; ++i) MutateOnce(s, seeds, rng);
  return s;
}

}  // namespace p3d::fuzz
