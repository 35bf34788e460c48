// Communication model: ring collectives and point-to-point transfers over the
// link a process group actually uses, decided by the rank layout.
//
// Rank layout (common/plan.h): rank = tp + TP*(dp + DP*pp). A group is
// `size` ranks spaced `stride` apart: TP groups have stride 1, DP groups
// stride TP, PP neighbours stride TP*DP. The network (simulator/network.h) is
// tiers of GPU domains, innermost first; in a tier of G GPUs per domain a
// group keeps k = min(size, max(1, G/stride)) members in each domain, so it
// stays inside one domain when k == size. The group's tier is the innermost
// one it stays inside (the outermost tier holds everything); it crosses every
// tier up to that one.
//
// Bandwidth a ring gets per member (bus bandwidth): the slowest link of the
// tiers it crosses, min over tiers 0..tier of bytes_per_s * efficiency.
// Two tiers (a node of G GPUs, NVLink inside, one NIC per GPU across):
//   inside a node:  intra.bytes_per_s * intra.efficiency            (NVLink)
//   across nodes:   min(intra bus bandwidth, inter.bytes_per_s * inter.efficiency)
// Across nodes the ring's bottleneck is the per-GPU share of the node's
// network (inter is already per GPU: one HDR/NDR NIC per GPU in DGX nodes);
// all groups of the same kind on a node communicate at once (every DP group
// reduces at the same time), so the k members of a group on one node do not
// get more than their own k shares between them. This is conservative next to
// NCCL's multi-channel rings, which can spread one ring's crossing over the
// members' k NICs (k times this bandwidth, at most NVLink). The conservative
// rule puts ZeRO-3 without model parallelism at 768-1536 A100s in the
// communication-bound regime Narayanan et al. measured (Table 2; p3d predicts
// 117 and 55 TFLOP/s/GPU incl. recompute where the paper has 88 and 44); with
// k shares it would be compute-bound and faster than PTD-P, against the paper.
// The same holds at every tier: each GPU's share of the tier's link.
// Latency (alpha) per ring step is the slowest latency of the tiers crossed.
//
// Costs (n members, `bytes` = the full buffer each rank holds before an
// all-reduce / after an all-gather / before a reduce-scatter):
//   all-reduce       2(n-1)/n * bytes / bw + 2(n-1) * alpha
//   reduce-scatter     (n-1)/n * bytes / bw +  (n-1) * alpha
//   all-gather         (n-1)/n * bytes / bw +  (n-1) * alpha
//   send/recv                    bytes / bw +         alpha   (bw of one GPU's link)
//   all-to-all  max((m-1)/n * bytes / bw_in, (n-m)/n * bytes / bw) + (n-1) * alpha
//     (each rank sends 1/n of `bytes` to every other member directly, not
//     round a ring: the m-1 members in its domain below the outermost tier
//     crossed over that domain's links, bw_in, the n-m others over the
//     crossed tier's per-GPU share, bw, both at once)
//   DeepEP dispatch (token_bytes: one copy of each of the member's tokens,
//   each token routed to k of E experts; the group's n members in n/m
//   domains of m, "nodes"):
//     max(r*(m-1)/m * token_bytes / bw_in, d*(N-1)/N * token_bytes / bw) + (n-1) * alpha
//     with N = n/m nodes, d = ExpectedDistinctGroups(E, N, k) nodes and
//     r = ExpectedDistinctGroups(E, n, k) ranks a token's experts are on
//     (deepseek-ai/DeepEP csrc/kernels/internode.cu: a token goes once to each
//     node holding one of its experts, to the GPU of the sender's local index
//     there, with a SourceMeta bitmask of the node's ranks it is for; that GPU
//     forwards it over NVLink once to each of them; intranode.cu sends once per
//     destination rank; combine reduces in the same two stages, backwards)
// Contention between concurrent collectives of different kinds (e.g. DP and
// PP at once) is not modelled.
#pragma once

#include "simulator/collectives.h"
#include "simulator/hardware.h"

namespace p3d {

// The path one process group's collectives take.
struct GroupPath {
  int size = 1;
  int inner_members = 1;        // members sharing one domain of the tier below `tier` (size when tier is 0)
  double inner_bytes_per_s = 0;  // bandwidth per member inside that domain (bus_bytes_per_s when tier is 0)
  int tier = 0;                // outermost tier crossed (0: inside one innermost domain)
  double bus_bytes_per_s = 0;  // effective ring bandwidth per member
  double latency_s = 0;        // alpha per ring step
};

// Group of `size` ranks spaced `stride` apart in the rank layout, on a
// validated network (ValidateNetwork).
GroupPath GroupPathFor(const Network& network, int size, int stride);

// Seconds for one ring collective (all-reduce, reduce-scatter, all-gather) of
// `bytes` over `path` (0 when path.size == 1); send-recv: SendRecvSeconds.
double CollectiveSeconds(Collective kind, double bytes, const GroupPath& path);
// Seconds for an all-to-all in which each member holds `bytes` and sends 1/n
// of them to every member (formula above; 0 when path.size == 1).
double AllToAllSeconds(double bytes, const GroupPath& path);

// Expected number of the `groups` equal groups of `items` items (items
// divisible by groups) that k distinct items drawn uniformly at random
// (balanced routing: every k-subset of the experts equally likely) fall in:
// a group is missed when all k fall in the other items - items/groups, with
// probability C(items - items/groups, k) / C(items, k); by linearity of
// expectation groups * (1 - C(items - items/groups, k) / C(items, k)).
double ExpectedDistinctGroups(double items, double groups, double k);

// A token's routing: k of `experts` experts; with group-limited routing
// (ModelSpec::expert_groups, groups_per_token) the k come from g of G equal
// groups (balanced: the g groups uniformly, then the k experts uniformly
// among theirs).
struct ExpertRouting {
  double experts = 1, k = 1;
  double groups = 0, groups_per_token = 0;  // G, g; 0: no group limit
};
// Expected number of `slices` equal slices of the experts (a rank's, a
// node's) holding at least one of a token's k experts. No group limit, or
// groups that neither tile the slices nor are tiled by them:
// ExpectedDistinctGroups(E, slices, k). A slice of q = G/slices whole groups is
// hit when j >= 1 of its groups are among the g chosen (hypergeometric) and one
// of the k experts falls in them: sum_j P(j) * (1 - C((g - j)E/G, k) / C(gE/G, k)).
// Groups of several slices: g*slices/G slices lie in the chosen groups, each
// hit with probability 1 - C(gE/G - E/slices, k) / C(gE/G, k).
double ExpectedSlicesHit(const ExpertRouting& routing, double slices);
// Seconds for one DeepEP dispatch (or combine) in which each member holds
// `token_bytes` (one copy of each of its tokens), each token routed as
// `routing` to experts spread evenly over `path`'s members (formula above; 0
// when path.size == 1). Against AllToAllSeconds of k*token_bytes it crosses
// the outermost tier with d/k of the bytes, d = ExpectedSlicesHit(routing, nodes).
double DeepEpAllToAllSeconds(double token_bytes, const ExpertRouting& routing, const GroupPath& path);

// Seconds to send `bytes` from `rank` to `rank + stride`, over the link of
// the innermost tier whose domain holds both (TierBetween).
double SendRecvSeconds(const Network& network, double bytes, int rank, int stride);

// A rank of a ring of `stride`-spaced members (on `path`) whose send to the
// next member crosses the ring's outermost tier: its slowest hop.
int SlowestHopRank(const Network& network, const GroupPath& path, int stride);

}  // namespace p3d
