#include "simulator/network.h"

#include <fmt/format.h>

#include <cmath>

#include "simulator/hardware.h"

namespace p3d {

Network NodeNetwork(int gpus_per_node, LinkSpec intra, LinkSpec inter) {
  return {{gpus_per_node, std::move(intra)}, {0, std::move(inter)}};
}

Status ValidateNetwork(const Network& network, std::string_view prefix) {
  auto error = [&](size_t i, const char* field, const char* rule, const std::string& what) {
    return Status::InvalidArgument(fmt::format("{}'network[{}].{}' {} (rule {})", prefix, i, field, what, rule));
  };
  if (network.empty())
    return Status::InvalidArgument(fmt::format("{}'network' needs at least one tier (rule network-tiers)", prefix));
  for (size_t i = 0; i < network.size(); ++i) {
    const NetworkTier& t = network[i];
    const bool outermost = i + 1 == network.size();
    if (outermost && t.gpus != 0)
      return error(i, "gpus", "tier-gpus",
                   fmt::format("must be left out: the outermost tier spans the whole cluster, got {}", t.gpus));
    if (!outermost && t.gpus < 1)
      return error(i, "gpus", "tier-gpus", fmt::format("must be >= 1 on every tier but the outermost, got {}", t.gpus));
    if (!outermost && i > 0) {
      const int below = network[i - 1].gpus;
      if (t.gpus <= below || t.gpus % below != 0)
        return error(i, "gpus", "tiers-nest",
                     fmt::format("must be a multiple of network[{}].gpus ({}) and larger: a domain holds whole "
                                 "domains of the tier below, got {}",
                                 i - 1, below, t.gpus));
    }
    const double bw = t.link.bytes_per_s * t.link.efficiency;
    if (!(bw > 0) || !std::isfinite(bw))
      return error(i, t.link.bytes_per_s > 0 ? "efficiency" : "bytes_per_s", "tier-bandwidth",
                   fmt::format("must make a positive bandwidth, got bytes_per_s {} x efficiency {}",
                               t.link.bytes_per_s, t.link.efficiency));
    if (!(t.link.latency_s >= 0) || !std::isfinite(t.link.latency_s))
      return error(i, "latency_s", "tier-bandwidth", fmt::format("must be >= 0, got {}", t.link.latency_s));
  }
  return Status::Ok();
}

std::string DescribeNetwork(const Network& network) {
  std::string out;
  for (const NetworkTier& t : network) {
    if (!out.empty()) out += " > ";
    out += t.gpus > 0 ? fmt::format("{}-GPU {}", t.gpus, t.link.name) : t.link.name;
  }
  return out;
}

int TierBetween(const Network& network, int rank, int stride) {
  const int last = static_cast<int>(network.size()) - 1;
  for (int t = 0; t < last; ++t) {
    const int g = network[t].gpus;
    if (rank / g == (rank + stride) / g) return t;
  }
  return last;
}

Status SetGpusPerNode(ClusterSpec* cluster, int gpus) {
  Network& net = cluster->network;
  if (net.size() > 1 && net.front().gpus == cluster->node.gpus_per_node) net.front().gpus = gpus;
  cluster->node.gpus_per_node = gpus;
  return ValidateNetwork(net, fmt::format("--gpus-per-node {} on hardware '{}': ", gpus, cluster->gpu.name));
}

}  // namespace p3d
