#include "simulator/comm_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace p3d {

namespace {
double Bandwidth(const LinkSpec& link) { return link.bytes_per_s * link.efficiency; }
}  // namespace

GroupPath GroupPathFor(const Network& network, int size, int stride) {
  GroupPath p;
  p.size = std::max(size, 1);
  stride = std::max(stride, 1);
  p.bus_bytes_per_s = std::numeric_limits<double>::infinity();
  // Every tier up to the innermost one whose domain holds the whole group;
  // the ring's bottleneck is the slowest of them (see comm_model.h).
  for (size_t t = 0; t < network.size(); ++t) {
    const NetworkTier& tier = network[t];
    p.tier = static_cast<int>(t);
    p.inner_bytes_per_s = p.bus_bytes_per_s;  // the tiers below this one
    p.bus_bytes_per_s = std::min(p.bus_bytes_per_s, Bandwidth(tier.link));
    p.latency_s = std::max(p.latency_s, tier.link.latency_s);
    const int members = tier.gpus == 0 ? p.size : std::min(p.size, std::max(1, tier.gpus / stride));
    if (members == p.size) break;
    p.inner_members = members;
  }
  if (p.tier == 0) p.inner_members = p.size, p.inner_bytes_per_s = p.bus_bytes_per_s;
  return p;
}

double CollectiveSeconds(Collective kind, double bytes, const GroupPath& path) {
  if (path.size <= 1 || bytes <= 0) return 0;
  return BusFactor(kind, path.size) * bytes / path.bus_bytes_per_s + RingSteps(kind, path.size) * path.latency_s;
}

double AllToAllSeconds(double bytes, const GroupPath& path) {
  if (path.size <= 1 || bytes <= 0) return 0;
  const double n = path.size, m = path.inner_members;
  const double inside = m > 1 ? (m - 1) / n * bytes / path.inner_bytes_per_s : 0;
  const double across = (n - m) / n * bytes / path.bus_bytes_per_s;
  return std::max(inside, across) + (n - 1) * path.latency_s;
}

double ExpectedDistinctGroups(double items, double groups, double k) {
  const double outside = items - items / groups;  // the items of the other groups
  double miss = 1;                                // C(outside, k) / C(items, k)
  for (int i = 0; i < k; ++i) miss *= std::max(0.0, (outside - i) / (items - i));
  return groups * (1 - miss);
}

namespace {
// C(a - b, k) / C(a, k): k items drawn from a all miss a given b of them.
double MissRatio(double a, double b, double k) {
  double miss = 1;
  for (int i = 0; i < k; ++i) miss *= std::max(0.0, (a - b - i) / (a - i));
  return miss;
}
// C(n, r) as a double (small n: group counts).
double Choose(double n, double r) {
  if (r < 0 || r > n) return 0;
  double c = 1;
  for (int i = 0; i < r; ++i) c = c * (n - i) / (i + 1);
  return c;
}
bool Divides(double a, double b) { return a > 0 && b >= a && std::fmod(b, a) == 0; }
}  // namespace

double ExpectedSlicesHit(const ExpertRouting& r, double slices) {
  const double G = r.groups, g = r.groups_per_token;
  if (G <= 0 || g <= 0) return ExpectedDistinctGroups(r.experts, slices, r.k);
  const double allowed = g * r.experts / G;  // experts of the chosen groups
  if (Divides(slices, G)) {                  // q whole groups per slice
    const double q = G / slices;
    double hit = 0;
    for (int j = 1; j <= std::min(q, g); ++j)
      hit += Choose(q, j) * Choose(G - q, g - j) / Choose(G, g) *
             (1 - MissRatio(allowed, j * r.experts / G, r.k));
    return slices * hit;
  }
  if (Divides(G, slices))  // slices/G slices per group
    return g * slices / G * (1 - MissRatio(allowed, r.experts / slices, r.k));
  return ExpectedDistinctGroups(r.experts, slices, r.k);
}

double DeepEpAllToAllSeconds(double token_bytes, const ExpertRouting& routing, const GroupPath& path) {
  if (path.size <= 1 || token_bytes <= 0) return 0;
  const double n = path.size, m = path.inner_members, nodes = n / m;
  const double ranks_hit = ExpectedSlicesHit(routing, n);
  const double nodes_hit = ExpectedSlicesHit(routing, nodes);
  const double nvlink = m > 1 ? ranks_hit * (m - 1) / m * token_bytes / path.inner_bytes_per_s : 0;
  const double rdma = nodes_hit * (nodes - 1) / nodes * token_bytes / path.bus_bytes_per_s;
  return std::max(nvlink, rdma) + (n - 1) * path.latency_s;
}

double SendRecvSeconds(const Network& network, double bytes, int rank, int stride) {
  if (bytes <= 0) return 0;
  const LinkSpec& link = network[TierBetween(network, rank, stride)].link;
  return bytes / Bandwidth(link) + link.latency_s;
}

int SlowestHopRank(const Network& network, const GroupPath& path, int stride) {
  return path.tier > 0 ? std::max(0, network[path.tier - 1].gpus - stride) : 0;
}

}  // namespace p3d
