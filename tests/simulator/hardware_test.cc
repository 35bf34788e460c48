// Hardware catalog and custom hardware JSON (simulator/hardware_catalog.cc,
// simulator/hardware_json.cc).
#include "simulator/hardware.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <span>

#include "common/units.h"

namespace p3d {
namespace {

TEST(Catalog, HasEveryRequiredGpu) {
  // Names required by issue 2 ("Hardware" bullet) and the brief.
  for (const char* name : {"a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "b200",
                           "v100-32gb", "v100-16gb", "l40s", "rtx4090", "rtx3090", "mi300x"}) {
    auto c = CatalogCluster(name);
    ASSERT_TRUE(c.ok()) << name << ": " << c.status().ToString();
    EXPECT_EQ(c->gpu.name, name);
    EXPECT_EQ(c->num_gpus, 0);
    EXPECT_NE(c->source.find(name), std::string::npos);
  }
  EXPECT_GE(CatalogGpuNames().size(), 12u);
}

// The catalog is data (simulator/catalog.json): it parses, every GPU has its
// GEMM efficiency curve (a missing one used to mean 100% silently), and every
// device name maps back to its GPU.
TEST(Catalog, IsDataWithACurveForEveryGpu) {
  ASSERT_TRUE(CatalogStatus().ok()) << CatalogStatus().ToString();
  for (const auto& name : CatalogGpuNames()) {
    SCOPED_TRACE(name);
    ClusterSpec c = CatalogCluster(name).value();
    ASSERT_FALSE(c.gpu.gemm_efficiency.empty());
    EXPECT_EQ(DefaultGemmEfficiency(name).size(), c.gpu.gemm_efficiency.size());
    EXPECT_LE(c.gpu.gemm_efficiency.back().efficiency, 1.0);
  }
  EXPECT_TRUE(DefaultGemmEfficiency("no-such-gpu").empty());
  EXPECT_EQ(*CatalogGpuForDevice("NVIDIA H800"), "h800");
  EXPECT_EQ(CatalogGpuForDevice("NVIDIA H100 NVL").status().code(), Status::Code::kNotFound);
  // H800: an H100 whose NVLink carries 400 GB/s in both directions together (issue 16).
  ClusterSpec h800 = CatalogCluster("h800").value(), h100 = CatalogCluster("h100-sxm").value();
  EXPECT_EQ(h800.network[0].link.bytes_per_s, 200e9);
  EXPECT_EQ(h800.gpu.peak_flops, h100.gpu.peak_flops);
  EXPECT_EQ(h800.gpu.memory_bytes, h100.gpu.memory_bytes);
}

TEST(Catalog, EveryEntryIsPhysicallySane) {
  for (const auto& name : CatalogGpuNames()) {
    SCOPED_TRACE(name);
    ClusterSpec c = CatalogCluster(name).value();
    EXPECT_GT(c.gpu.memory_bytes, 15 * kGiB);
    EXPECT_GT(c.gpu.hbm_bytes_per_s, 5e11);
    EXPECT_GT(c.gpu.peak_flops, 5e13);
    EXPECT_GT(c.gpu.hbm_efficiency, 0);
    EXPECT_LE(c.gpu.hbm_efficiency, 1);
    EXPECT_GT(c.gpu.runtime.cuda_context_bytes, 0);
    EXPECT_GT(c.gpu.runtime.nccl_per_comm_bytes, 0);
    EXPECT_GE(c.node.gpus_per_node, 1);
    EXPECT_TRUE(ValidateNetwork(c.network, "").ok());
    for (const NetworkTier& t : c.network) {
      const LinkSpec* l = &t.link;
      EXPECT_FALSE(l->name.empty());
      EXPECT_GT(l->bytes_per_s, 0);
      EXPECT_GT(l->efficiency, 0);
      EXPECT_LE(l->efficiency, 1);
      EXPECT_GT(l->latency_s, 0);
    }
    // An inner tier is never slower than the per-GPU share of an outer one.
    for (size_t i = 1; i < c.network.size(); ++i)
      EXPECT_GE(c.network[i - 1].link.bytes_per_s, c.network[i].link.bytes_per_s);
    EXPECT_GT(c.node.host_memory_bytes, 0);
    EXPECT_GT(c.node.pcie_bytes_per_s, 0);
    // The GEMM table is the time model's default for this GPU.
    const auto table = DefaultGemmEfficiency(name);
    ASSERT_EQ(c.gpu.gemm_efficiency.size(), table.size());
    for (size_t i = 0; i < table.size(); ++i)
      EXPECT_EQ(c.gpu.gemm_efficiency[i].flops, table[i].flops);
  }
}

TEST(Catalog, DatasheetFigures) {
  // published.md sec. 5 (vendor datasheets); memory as the driver reports it
  // (nvidia-smi MiB). Exact: these are table entries, not computations.
  ClusterSpec h100 = CatalogCluster("h100-sxm").value();
  EXPECT_EQ(h100.gpu.memory_bytes, 81559 * kMiB);
  EXPECT_EQ(h100.gpu.peak_flops, 989e12);
  EXPECT_EQ(h100.gpu.hbm_bytes_per_s, 3350e9);
  EXPECT_EQ(h100.network[0].link.bytes_per_s, 450e9);  // NVLink4, per direction
  EXPECT_EQ(h100.network[0].gpus, 8);                  // the DGX node is the NVLink domain
  EXPECT_EQ(h100.network[1].link.bytes_per_s, 50e9);   // NDR 400 Gb/s per GPU
  ClusterSpec a100 = CatalogCluster("a100-80gb").value();
  EXPECT_EQ(a100.gpu.memory_bytes, 81920 * kMiB);
  EXPECT_EQ(a100.gpu.peak_flops, 312e12);
  EXPECT_EQ(a100.network[0].link.bytes_per_s, 300e9);  // NVLink3
  EXPECT_EQ(a100.network[1].link.bytes_per_s, 25e9);   // HDR 200 Gb/s per GPU
  EXPECT_EQ(CatalogCluster("h200").value().gpu.memory_bytes, 143771 * kMiB);
  EXPECT_EQ(CatalogCluster("b200").value().network[0].link.bytes_per_s, 900e9);
  // GB200 NVL72 datasheet: 186 GB HBM3e (nvidia-smi 189471 MiB), 8 TB/s,
  // 2.5 PFLOP/s dense bf16, 5 dense FP8, NVLink5 1.8 TB/s per GPU both
  // directions across the 72-GPU rack; compute trays of 4 GPUs, one
  // 400 Gb/s NIC per GPU.
  ClusterSpec gb200 = CatalogCluster("gb200").value();
  EXPECT_EQ(gb200.gpu.memory_bytes, 189471 * kMiB);
  EXPECT_EQ(gb200.gpu.hbm_bytes_per_s, 8000e9);
  EXPECT_EQ(gb200.gpu.peak_flops, 2500e12);
  EXPECT_EQ(gb200.gpu.fp8_peak_flops, 5000e12);
  EXPECT_EQ(gb200.node.gpus_per_node, 4);
  ASSERT_EQ(gb200.network.size(), 2u);
  EXPECT_EQ(gb200.network[0].gpus, 72);
  EXPECT_EQ(gb200.network[0].link.bytes_per_s, 900e9);
  EXPECT_EQ(gb200.network[1].link.bytes_per_s, 50e9);
  EXPECT_EQ(*CatalogGpuForDevice("NVIDIA GB200"), "gb200");
  EXPECT_TRUE(CatalogCluster("mi300x").value().gpu.plan_only);
  EXPECT_FALSE(h100.gpu.plan_only);
}

TEST(Catalog, UnknownGpuNamesTheGpu) {
  auto c = CatalogCluster("h1000");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Status::Code::kNotFound);
  EXPECT_NE(c.status().message().find("h1000"), std::string::npos);
  EXPECT_NE(c.status().message().find("h100-sxm"), std::string::npos);  // lists the known names
}

TEST(DefaultGpuForMemory, MarketedCapacities) {
  const std::pair<double, const char*> cases[] = {
      {80, "h100-sxm"},
      {40, "a100-40gb"},
      {24, "rtx4090"},
      {141, "h200"},
      {192, "mi300x"},
      {180, "b200"},
      {48, "l40s"},
      {32, "v100-32gb"},
      {16, "v100-16gb"},
      // Nearby values: typed approximately or the driver-reported GiB.
      {79.6, "h100-sxm"},
      {81.5, "h100-sxm"},
      {140.4, "h200"},
      {45, "l40s"},
      {23.99, "rtx4090"},
      {179.06, "b200"},
      {31.75, "v100-32gb"}};
  for (auto [gb, want] : cases) {
    auto got = DefaultGpuForMemory(gb);
    ASSERT_TRUE(got.ok()) << gb << ": " << got.status().ToString();
    EXPECT_EQ(*got, want) << gb;
  }
}

TEST(DefaultGpuForMemory, NothingNearIsAnError) {
  for (double gb : {0.0, -80.0, 60.0, 1000.0, 1e300, std::nan("")}) {
    auto got = DefaultGpuForMemory(gb);
    EXPECT_FALSE(got.ok()) << gb;
    EXPECT_NE(got.status().message().find("mem"), std::string::npos) << got.status().message();
  }
}

TEST(ClusterJson, RoundTripsEveryCatalogEntry) {
  for (const auto& name : CatalogGpuNames()) {
    ClusterSpec c = CatalogCluster(name).value();
    auto back = ParseClusterJson(ClusterToJson(c), "roundtrip");
    ASSERT_TRUE(back.ok()) << name << ": " << back.status().ToString();
    EXPECT_EQ(back->gpu.name, c.gpu.name);
    EXPECT_EQ(back->gpu.description, c.gpu.description);
    EXPECT_EQ(back->gpu.memory_bytes, c.gpu.memory_bytes);
    EXPECT_EQ(back->gpu.peak_flops, c.gpu.peak_flops);
    EXPECT_EQ(back->gpu.plan_only, c.gpu.plan_only);
    EXPECT_EQ(back->gpu.runtime.nccl_per_comm_bytes, c.gpu.runtime.nccl_per_comm_bytes);
    EXPECT_EQ(back->gpu.gemm_efficiency.size(), c.gpu.gemm_efficiency.size());
    EXPECT_EQ(back->node.gpus_per_node, c.node.gpus_per_node);
    ASSERT_EQ(back->network.size(), c.network.size());
    for (size_t i = 0; i < c.network.size(); ++i) {
      EXPECT_EQ(back->network[i].gpus, c.network[i].gpus);
      EXPECT_EQ(back->network[i].link.name, c.network[i].link.name);
      EXPECT_EQ(back->network[i].link.bytes_per_s, c.network[i].link.bytes_per_s);
      EXPECT_EQ(back->network[i].link.efficiency, c.network[i].link.efficiency);
      EXPECT_EQ(back->network[i].link.latency_s, c.network[i].link.latency_s);
    }
    EXPECT_EQ(back->node.pcie_bytes_per_s, c.node.pcie_bytes_per_s);
    EXPECT_EQ(back->source, "file roundtrip");
  }
}

constexpr const char* kGood = R"({
  "gpu": {"name": "my-gpu", "memory_bytes": 68719476736, "hbm_bytes_per_s": 2e12,
          "hbm_efficiency": 0.8,
          "gemm_efficiency": [{"flops": 1e9, "efficiency": 0.3}, {"flops": 1e12, "efficiency": 0.8}],
          "peak_flops": 4e14},
  "node": {"gpus_per_node": 4,
           "intra": {"name": "nvlink", "bytes_per_s": 1e11, "efficiency": 0.8, "latency_s": 1e-5},
           "inter": {"name": "roce", "bytes_per_s": 1.25e10, "efficiency": 0.9, "latency_s": 2e-5},
           "host_memory_bytes": 5e11, "pcie_bytes_per_s": 3.15e10}
})";

TEST(ClusterJson, MinimalFileUsesDocumentedDefaults) {
  auto c = ParseClusterJson(kGood, "good.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->gpu.name, "my-gpu");
  EXPECT_EQ(c->gpu.description, "my-gpu");
  EXPECT_EQ(c->gpu.memory_bytes, 64 * kGiB);
  EXPECT_EQ(c->node.gpus_per_node, 4);
  EXPECT_FALSE(c->gpu.plan_only);
  EXPECT_EQ(c->gpu.runtime.cuda_context_bytes, DefaultRuntimeMemory().cuda_context_bytes);
  EXPECT_EQ(c->gpu.runtime.allocator_fraction, DefaultRuntimeMemory().allocator_fraction);
}

// Replaces the first occurrence of `from` in `base`.
std::string Edit(const std::string& from, const std::string& to, const std::string& base = kGood) {
  std::string s = base;
  size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return s.replace(at, from.size(), to);
}

// Each (file, field) case is refused with an error naming the field and the file.
void ExpectEachNamesItsField(std::span<const std::pair<std::string, std::string>> cases) {
  for (const auto& [text, field] : cases) {
    auto c = ParseClusterJson(text, "bad.json");
    ASSERT_FALSE(c.ok()) << "accepted: " << text;
    EXPECT_EQ(c.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(c.status().message().find(field), std::string::npos)
        << "want '" << field << "' in: " << c.status().message();
    EXPECT_NE(c.status().message().find("bad.json"), std::string::npos);
  }
}

TEST(ClusterJson, BadFilesNameTheField) {
  const std::pair<std::string, std::string> cases[] = {
      {Edit("\"memory_bytes\": 68719476736,", ""), "gpu.memory_bytes"},
      {Edit("68719476736", "\"64GB\""), "gpu.memory_bytes"},
      {Edit("68719476736", "-1"), "gpu.memory_bytes"},
      {Edit("68719476736", "0"), "gpu.memory_bytes"},
      {Edit("4e14", "1e300"), "gpu.peak_flops"},
      {Edit("\"hbm_efficiency\": 0.8", "\"hbm_efficiency\": 1.5"), "gpu.hbm_efficiency"},
      {Edit("\"name\": \"my-gpu\"", "\"name\": 7"), "gpu.name"},
      {Edit("\"gpus_per_node\": 4", "\"gpus_per_node\": 2.5"), "node.gpus_per_node"},
      {Edit("\"latency_s\": 1e-5", "\"latency_s\": 0"), "node.intra.latency_s"},
      {Edit(", \"latency_s\": 2e-5", ""), "node.inter.latency_s"},
      {Edit("\"efficiency\": 0.9", "\"efficiency\": null"), "node.inter.efficiency"},
      {Edit("\"pcie_bytes_per_s\": 3.15e10", "\"pcie_bytes_per_s\": true"),
       "node.pcie_bytes_per_s"},
      {Edit("\"peak_flops\": 4e14}",
            "\"peak_flops\": 4e14, \"runtime\": {\"cuda_context_bytes\": 1}}"),
       "gpu.runtime.nccl_per_comm_bytes"},
      {Edit("\"peak_flops\": 4e14}",
            "\"peak_flops\": 4e14, \"gemm_efficiency\": [{\"flops\": 1e9}]}"),
       "gpu.gemm_efficiency[0].efficiency"},
      {Edit("\"peak_flops\": 4e14}", "\"peak_flops\": 4e14, \"plan_only\": 1}"), "gpu.plan_only"},
      // Unit slips, misspelled keys and a GPU with no efficiency curve (issue 18).
      {Edit("\"bytes_per_s\": 1e11", "\"bytes_per_s\": 25"), "node.intra.bytes_per_s"},
      {Edit("\"peak_flops\": 4e14", "\"peak_flop\": 4e14"), "did you mean 'peak_flops'"},
      {Edit("\"gpus_per_node\": 4", "\"gpus_per_node\": 4, \"gpus_per_nod\": 4"), "node.gpus_per_nod"},
      {Edit("\"gemm_efficiency\": [{\"flops\": 1e9, \"efficiency\": 0.3}, {\"flops\": 1e12, \"efficiency\": 0.8}],", ""),
       "gpu.gemm_efficiency"},
      {R"({"node": {}})", "'gpu'"},
      {R"({"gpu": [], "node": {}})", "'gpu'"},
      {std::string(kGood).substr(0, 120), "not valid JSON"},  // truncated
      {"[1, 2]", "top level"},
      {"", "not valid JSON"},
  };
  ExpectEachNamesItsField(cases);
}

TEST(ClusterJson, LoadsFilesAndReportsMissingOnes) {
  const std::string path = ::testing::TempDir() + "/p3d_hardware_test.json";
  {
    std::ofstream out(path);
    out << kGood;
  }
  auto c = LoadClusterJson(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->source, "file " + path);
  auto missing = LoadClusterJson(path + ".does-not-exist");  // bad input: exit 2
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kInvalidArgument);
}

// A three-tier network (network.h): NVLink domains of 8, leaf switches of
// 256 GPUs, an oversubscribed spine.
constexpr const char* kTiered = R"({
  "gpu": {"name": "my-gpu", "memory_bytes": 68719476736, "hbm_bytes_per_s": 2e12,
          "hbm_efficiency": 0.8,
          "gemm_efficiency": [{"flops": 1e9, "efficiency": 0.3}, {"flops": 1e12, "efficiency": 0.8}],
          "peak_flops": 4e14},
  "node": {"gpus_per_node": 8, "host_memory_bytes": 5e11, "pcie_bytes_per_s": 3.15e10},
  "network": [
    {"name": "nvlink", "gpus": 8, "bytes_per_s": 4.5e11, "efficiency": 0.8, "latency_s": 8e-6},
    {"name": "leaf", "gpus": 256, "bytes_per_s": 5e10, "efficiency": 0.9, "latency_s": 1.5e-5},
    {"name": "spine", "bytes_per_s": 2.5e10, "efficiency": 0.9, "latency_s": 2.5e-5}]
})";

std::string EditTiered(const std::string& from, const std::string& to) { return Edit(from, to, kTiered); }

// kTiered up to its "network" (left open).
std::string WithoutNetwork() {
  const std::string s = kTiered;
  return s.substr(0, s.find(",\n  \"network\""));
}

TEST(ClusterJson, NetworkTiersLoadAndRoundTrip) {
  auto c = ParseClusterJson(kTiered, "tiers.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->network.size(), 3u);
  EXPECT_EQ(c->network[0].gpus, 8);
  EXPECT_EQ(c->network[1].gpus, 256);
  EXPECT_EQ(c->network[2].gpus, 0);  // the outermost tier: the whole cluster
  EXPECT_EQ(c->network[2].link.name, "spine");
  EXPECT_EQ(c->network[2].link.bytes_per_s, 2.5e10);
  auto back = ParseClusterJson(ClusterToJson(*c), "back.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->network.size(), 3u);
  EXPECT_EQ(back->network[1].gpus, 256);
  EXPECT_EQ(back->network[1].link.latency_s, 1.5e-5);
  // An old file (node.intra / node.inter) is the two-tier network of its nodes.
  auto old = ParseClusterJson(kGood, "good.json");
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  ASSERT_EQ(old->network.size(), 2u);
  EXPECT_EQ(old->network[0].gpus, 4);
  EXPECT_EQ(old->network[0].link.name, "nvlink");
  EXPECT_EQ(old->network[1].gpus, 0);
  EXPECT_EQ(old->network[1].link.bytes_per_s, 1.25e10);
  EXPECT_TRUE(IsNodeNetwork(old->network, old->node.gpus_per_node));
  EXPECT_FALSE(IsNodeNetwork(c->network, c->node.gpus_per_node));
}

TEST(ClusterJson, BadNetworkTiersNameTheFieldAndRule) {
  const std::pair<std::string, std::string> cases[] = {
      // Tier sizes that do not nest: 100 is no multiple of 8; 8 is not larger than 8.
      {EditTiered("\"gpus\": 256", "\"gpus\": 100"), "'network[1].gpus' must be a multiple of network[0].gpus (8)"},
      {EditTiered("\"gpus\": 256", "\"gpus\": 8"), "(rule tiers-nest)"},
      {EditTiered("\"gpus\": 256", "\"gpus\": 0"), "'network[1].gpus' must be in (0, "},
      {EditTiered("\"gpus\": 256", "\"gpus\": 2.5"), "'network[1].gpus' must be an integer"},
      {EditTiered("\"gpus\": 8, ", ""), "'network[0].gpus' must be >= 1 on every tier but the outermost"},
      {EditTiered("{\"name\": \"spine\", ", "{\"name\": \"spine\", \"gpus\": 1024, "),
       "'network[2].gpus' must be left out: the outermost tier spans the whole cluster"},
      // Non-positive or implausible bandwidths, efficiencies and latencies.
      {EditTiered("\"bytes_per_s\": 2.5e10", "\"bytes_per_s\": -1"), "'network[2].bytes_per_s' must be in [1e+08"},
      {EditTiered("\"bytes_per_s\": 5e10", "\"bytes_per_s\": 0"), "'network[1].bytes_per_s'"},
      {EditTiered("4.5e11, \"efficiency\": 0.8", "4.5e11, \"efficiency\": 0"), "'network[0].efficiency'"},
      {EditTiered("\"latency_s\": 8e-6", "\"latency_s\": -1"), "'network[0].latency_s'"},
      {EditTiered(", \"latency_s\": 2.5e-5", ""), "'network[2].latency_s' is missing"},
      {EditTiered("{\"name\": \"leaf\", ", "{\"nme\": \"leaf\", "), "did you mean 'name'"},
      // The list itself.
      {WithoutNetwork() + ", \"network\": []}", "'network' must be a non-empty array"},
      {WithoutNetwork() + ", \"network\": {}}", "'network' must be a non-empty array"},
      {EditTiered("\"network\": [", "\"networks\": ["), "did you mean 'network'"},
      {EditTiered("\"pcie_bytes_per_s\": 3.15e10}",
                  "\"pcie_bytes_per_s\": 3.15e10, \"intra\": {\"name\": \"x\", \"bytes_per_s\": 1e11, "
                  "\"efficiency\": 0.8, \"latency_s\": 1e-5}}"),
       "both describe the network"},
  };
  ExpectEachNamesItsField(cases);
  // Neither a network nor the node's two links.
  auto none = ParseClusterJson(WithoutNetwork() + "}", "none.json");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("'network' is missing"), std::string::npos) << none.status().message();
}

TEST(ValidateNetwork, RulesWithABadCaseEach) {
  const LinkSpec nv{"nvlink", 4.5e11, 0.8, 8e-6}, ib{"ib", 5e10, 0.9, 1.5e-5};
  EXPECT_TRUE(ValidateNetwork(NodeNetwork(8, nv, ib), "").ok());
  EXPECT_TRUE(ValidateNetwork({{0, nv}}, "").ok());  // one tier: everything on one fabric
  auto rule = [](const Network& n) { return ValidateNetwork(n, "net: ").message(); };
  EXPECT_NE(rule({}).find("rule network-tiers"), std::string::npos);
  EXPECT_NE(rule({{8, nv}}).find("rule tier-gpus"), std::string::npos);
  EXPECT_NE(rule({{0, nv}, {0, ib}}).find("rule tier-gpus"), std::string::npos);
  EXPECT_NE(rule({{8, nv}, {12, ib}, {0, ib}}).find("rule tiers-nest"), std::string::npos);
  EXPECT_NE(rule({{8, nv}, {16, {"ib", 5e10, 0, 1e-5}}, {0, ib}}).find("'network[1].efficiency'"),
            std::string::npos);
  EXPECT_NE(rule({{8, {"nv", 0, 0.8, 1e-5}}, {0, ib}}).find("rule tier-bandwidth"), std::string::npos);
}

TEST(SetGpusPerNode, TheNodeTierFollowsTheNode) {
  // Two tiers whose innermost is the node (DGX): --gpus-per-node 16 (a DGX-2) widens the NVLink domain.
  ClusterSpec dgx = CatalogCluster("h100-sxm").value();
  ASSERT_TRUE(SetGpusPerNode(&dgx, 16).ok());
  EXPECT_EQ(dgx.node.gpus_per_node, 16);
  EXPECT_EQ(dgx.network[0].gpus, 16);
  // NVL72: the tray is 4 GPUs of the 72-GPU NVLink domain; the domain stays.
  ClusterSpec nvl = CatalogCluster("gb200").value();
  ASSERT_TRUE(SetGpusPerNode(&nvl, 4).ok());
  EXPECT_EQ(nvl.network[0].gpus, 72);
  // Three tiers: a node of 12 no longer nests in leaves of 256 (rule tiers-nest).
  ClusterSpec tiered = ParseClusterJson(kTiered, "tiers.json").value();
  Status s = SetGpusPerNode(&tiered, 12);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--gpus-per-node 12"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("rule tiers-nest"), std::string::npos) << s.message();
}

// The reader's interval messages to the letter (hardware_json.cc Reader::Number).
std::string MessageOf(const std::string& text) {
  auto c = ParseClusterJson(text, "x.json");
  EXPECT_FALSE(c.ok()) << "accepted: " << text;
  return c.ok() ? "" : c.status().message();
}

TEST(HardwareJsonMessages, NameTheIntervalOfEachReader) {
  const std::string prefix = "hardware file x.json: hardware field ";
  // Positive: (0, max].
  EXPECT_EQ(MessageOf(Edit("\"hbm_efficiency\": 0.8", "\"hbm_efficiency\": 1.5")),
            prefix + "'gpu.hbm_efficiency' must be in (0, 1], got 1.5");
  // Plausible: [min, max] unit.
  EXPECT_EQ(MessageOf(Edit("\"bytes_per_s\": 1e11", "\"bytes_per_s\": 25")),
            prefix + "'node.intra.bytes_per_s' must be in [1e+08, 1e+18] bytes/s, got 25");
  // Fraction: [0, 1).
  EXPECT_EQ(MessageOf(Edit("\"peak_flops\": 4e14}",
                           "\"peak_flops\": 4e14, \"overlap_slowdown_gemm\": 1}")),
            prefix + "'gpu.overlap_slowdown_gemm' must be in [0, 1), got 1");
  // NonNegative: [0, max].
  EXPECT_EQ(MessageOf(Edit("\"peak_flops\": 4e14}",
                           "\"peak_flops\": 4e14, \"runtime\": {\"cuda_context_bytes\": 1, "
                           "\"nccl_per_comm_bytes\": -1, \"allocator_fraction\": 0}}")),
            prefix + "'gpu.runtime.nccl_per_comm_bytes' must be in [0, 1e+15], got -1");
  EXPECT_EQ(MessageOf(Edit("\"hbm_efficiency\": 0.8", "\"hbm_efficiency\": \"high\"")),
            prefix + "'gpu.hbm_efficiency' must be a number, got \"high\"");
  EXPECT_EQ(MessageOf(Edit("\"hbm_efficiency\": 0.8,", "")),
            prefix + "'gpu.hbm_efficiency' is missing");
  EXPECT_EQ(MessageOf(Edit("\"gemm_efficiency\": [{\"flops\": 1e9, \"efficiency\": 0.3}, "
                           "{\"flops\": 1e12",
                           "\"gemm_efficiency\": [{\"flops\": 1e9, \"efficiency\": 0.3}, "
                           "{\"flops\": 1e9")),
            prefix + "'gpu.gemm_efficiency[1].flops' must increase along the table");
}

TEST(HardwareJsonMessages, CalibratedTablesRoundTrip) {
  auto c = ParseClusterJson(kGood, "good.json");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  c->gpu.hbm_efficiency_by_bytes = {{1e6, 0.4}, {1e9, 0.9}};
  c->gpu.gemm_shapes = {{4096, 12288, 4096, 1e-3, 1.1e-3, 1.2e-3}};
  c->gpu.attention_efficiency = {{128, 2048, 3e12, 0.5, 0.3, 0.4}, {64, 1024, 1e12, 0.4, 0.2, 0.3}};
  auto back = ParseClusterJson(ClusterToJson(*c), "back.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->gpu.hbm_efficiency_by_bytes.size(), 2u);
  EXPECT_EQ(back->gpu.hbm_efficiency_by_bytes[1].flops, 1e9);
  EXPECT_EQ(back->gpu.hbm_efficiency_by_bytes[1].efficiency, 0.9);
  ASSERT_EQ(back->gpu.gemm_shapes.size(), 1u);
  EXPECT_EQ(back->gpu.gemm_shapes[0].n, 12288);
  EXPECT_EQ(back->gpu.gemm_shapes[0].dw_s, 1.2e-3);
  ASSERT_EQ(back->gpu.attention_efficiency.size(), 2u);
  EXPECT_EQ(back->gpu.attention_efficiency[0].seq, 2048);
  EXPECT_EQ(back->gpu.attention_efficiency[0].backward, 0.4);
  EXPECT_EQ(back->gpu.attention_efficiency[1].head_dim, 64);
  ASSERT_EQ(back->gpu.gemm_efficiency.size(), 2u);
  EXPECT_EQ(back->gpu.gemm_efficiency[0].efficiency, 0.3);
  EXPECT_EQ(ClusterToJson(*back), ClusterToJson(*c));
}

}  // namespace
}  // namespace p3d
