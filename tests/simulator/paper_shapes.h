// GPT shapes as Korthikanti et al. 2022 and Narayanan et al. 2021 use them
// (published.md sections 1-2): GPT-2 architecture, F = 4H, no GQA, learned
// positions (s = 2048), tied head, V = 51,200 unless given.
#pragma once

#include "models/model_spec.h"

namespace p3d {

inline ModelSpec PaperGpt(int64_t heads, int64_t hidden, int64_t layers, int64_t vocab = 51200) {
  ModelSpec m;
  m.name = "gpt-paper";
  m.arch = Arch::kGpt2;
  m.layers = layers;
  m.hidden = hidden;
  m.ffn = 4 * hidden;
  m.heads = heads;
  m.kv_heads = heads;
  m.vocab = vocab;
  m.max_positions = 2048;
  m.tie_embeddings = true;
  return m;
}

}  // namespace p3d
