// The network as data: tiers of GPU domains, innermost first.
//
// Each tier groups the cluster's GPUs into domains of `gpus` GPUs; a GPU
// reaches the others of its domain over the tier's link (bandwidth per GPU,
// one direction). A tier's domain is made of whole domains of the tier below
// (its size a multiple of theirs), and the outermost tier's domain is the
// whole cluster (gpus = 0). Ranks fill domains in order: rank r sits in
// domain r / gpus of every tier.
//
//   DGX H100 (the two-tier node):  [{8, NVLink4 450 GB/s}, {all, NDR 50 GB/s}]
//   GB200 NVL72:                   [{72, NVLink5 900 GB/s}, {all, NDR 50 GB/s}]
//   a rail-optimised fabric with an oversubscribed spine (3 tiers):
//                                  [{8, NVLink}, {256, leaf 50 GB/s}, {all, spine 25 GB/s}]
//
// The node (NodeSpec: one host, its CPU memory and PCIe) is another
// grouping: in a DGX the innermost tier is the node; in an NVL72 rack a node
// (compute tray) holds 4 GPUs of the 72-GPU NVLink domain.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace p3d {

// One link class (NVLink, a network, PCIe).
struct LinkSpec {
  std::string name;            // "nvlink4", "ib-ndr", "pcie4"
  double bytes_per_s = 0;      // per GPU, one direction, datasheet
  double efficiency = 1.0;     // achievable fraction of bytes_per_s for large messages
  double latency_s = 0;        // per collective step (alpha)
};

struct NetworkTier {
  int gpus = 0;   // GPUs per domain of this tier; 0 on the outermost tier (the whole cluster)
  LinkSpec link;
};

// Innermost tier first; never empty once validated.
using Network = std::vector<NetworkTier>;

// The two-tier network of nodes of `gpus_per_node` GPUs: `intra` inside a
// node, `inter` (each GPU's share of the node's network) across nodes.
Network NodeNetwork(int gpus_per_node, LinkSpec intra, LinkSpec inter);

// Rules, each named in the error with the field ("network[1].gpus"):
//   network-tiers    at least one tier
//   tier-gpus        every tier but the outermost has gpus >= 1; the outermost has 0
//   tiers-nest       each tier's gpus a multiple of the tier below's, and larger
//   tier-bandwidth   bytes_per_s * efficiency > 0 (and latency_s >= 0), finite
// `prefix` comes before the field's name ("hardware field " gives
// "hardware field 'network[1].gpus' must be ...").
Status ValidateNetwork(const Network& network, std::string_view prefix);

// GPUs of one domain of the innermost tier; 0 when that tier is the whole
// cluster (one tier).
inline int InnermostDomainGpus(const Network& network) {
  return network.empty() ? 0 : network.front().gpus;
}

// True when the network is the two-tier network of nodes of `gpus_per_node`
// GPUs (NodeNetwork's shape: the innermost tier is the node).
inline bool IsNodeNetwork(const Network& network, int gpus_per_node) {
  return network.size() == 2 && network.front().gpus == gpus_per_node;
}

// The tiers for people, innermost first: "72-GPU nvlink5 > ib-ndr".
std::string DescribeNetwork(const Network& network);

// The tier whose link joins ranks `rank` and `rank + stride`: the innermost
// one whose domain holds both.
int TierBetween(const Network& network, int rank, int stride);

}  // namespace p3d
