#include "simulator/collectives.h"

namespace p3d {

const char* CollectiveName(Collective op) {
  switch (op) {
    case Collective::kAllReduce: return "all-reduce";
    case Collective::kReduceScatter: return "reduce-scatter";
    case Collective::kAllGather: return "all-gather";
    case Collective::kSendRecv: return "send-recv";
  }
  return "?";
}

bool ParseCollective(std::string_view name, Collective* out) {
  for (Collective op : kCollectives) {
    if (name == CollectiveName(op)) {
      *out = op;
      return true;
    }
  }
  return false;
}

std::string CollectiveNames() {
  std::string s;
  for (Collective op : kCollectives) s += (s.empty() ? "" : ", ") + std::string(CollectiveName(op));
  return s;
}

double RingSteps(Collective op, int n) {
  switch (op) {
    case Collective::kAllReduce: return 2.0 * (n - 1);
    case Collective::kReduceScatter:
    case Collective::kAllGather: return n - 1.0;
    case Collective::kSendRecv: return 1;
  }
  return 0;
}

double BusFactor(Collective op, int n) {
  return op == Collective::kSendRecv ? 1 : RingSteps(op, n) / n;
}

CollectiveCounts CountsOf(Collective op, double bytes, int n) {
  size_t full = static_cast<size_t>(bytes / sizeof(float));
  full -= full % static_cast<size_t>(n);
  if (op == Collective::kReduceScatter) return {full, full, full / n};
  if (op == Collective::kAllGather) return {full, full / n, full};
  return {full, full, full};
}

float CollectiveInput(int rank, size_t i) { return static_cast<float>((rank + 1) * (i % 13 + 1)); }

float CollectiveExpected(Collective op, const CollectiveCounts& k, int rank, int n, size_t i) {
  const float ranks_sum = static_cast<float>(n * (n + 1) / 2);  // sum over r of (r + 1)
  switch (op) {
    case Collective::kAllReduce: return ranks_sum * static_cast<float>(i % 13 + 1);
    case Collective::kReduceScatter: return ranks_sum * static_cast<float>((rank * k.recv + i) % 13 + 1);
    case Collective::kAllGather: return CollectiveInput(static_cast<int>(i / k.send), i % k.send);
    case Collective::kSendRecv: return CollectiveInput((rank + n - 1) % n, i);
  }
  return 0;
}

}  // namespace p3d
