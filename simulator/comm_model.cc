#include "simulator/comm_model.h"

#include <algorithm>

namespace p3d {

namespace {
double Bandwidth(const LinkSpec& link) { return link.bytes_per_s * link.efficiency; }
}  // namespace

GroupPath GroupPathFor(const NodeSpec& node, int size, int stride) {
  GroupPath p;
  p.size = std::max(size, 1);
  const int g = std::max(node.gpus_per_node, 1);
  p.members_per_node = std::min(p.size, std::max(1, g / std::max(stride, 1)));
  p.spans_nodes = p.members_per_node < p.size;
  const double intra = Bandwidth(node.intra);
  if (!p.spans_nodes) {
    p.bus_bytes_per_s = intra;
    p.latency_s = node.intra.latency_s;
  } else {
    // The ring's bottleneck is the per-GPU network link (see comm_model.h).
    p.bus_bytes_per_s = std::min(intra, Bandwidth(node.inter));
    p.latency_s = std::max(node.intra.latency_s, node.inter.latency_s);
  }
  return p;
}

double CollectiveSeconds(Collective kind, double bytes, const GroupPath& path) {
  if (path.size <= 1 || bytes <= 0) return 0;
  return BusFactor(kind, path.size) * bytes / path.bus_bytes_per_s + RingSteps(kind, path.size) * path.latency_s;
}

double SendRecvSeconds(const NodeSpec& node, double bytes, int rank, int stride) {
  if (bytes <= 0) return 0;
  const int g = std::max(node.gpus_per_node, 1);
  const LinkSpec& link = rank / g == (rank + stride) / g ? node.intra : node.inter;
  return bytes / Bandwidth(link) + link.latency_s;
}

}  // namespace p3d
