// The report of `moe-diffuseq eval`: a chosen set of metrics over aligned predictions and
// references (metrics/eval_inputs.h), as JSON, as a readable table, and per example.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "metrics/eval_inputs.h"

namespace mds::metrics {

struct EvalOptions {
  std::vector<std::string> metrics;  // names (known_metrics()); empty: default_metrics()
  bool stemmer = true;               // rouge-score's use_stemmer
  bool per_example = false;          // fill SystemReport::per_example
  // Several predictions files are different systems compared side by side (the quality race), not
  // samples of one: no diversity or MBR across them.
  bool independent = false;
};

// bleu sentence-bleu chrf diffuseq-bleu nltk-corpus-bleu rouge1 rouge2 rougeL rougeLsum
// diffuseq-rougeL exact f1 dist1 dist2 len empty (the percent of empty predictions).
const std::vector<std::string>& known_metrics();
// bleu chrf diffuseq-bleu rouge1 rouge2 rougeL exact f1 dist1 len empty.
const std::vector<std::string>& default_metrics();
// "bleu, Rouge1" -> {"bleu", "rouge1"} (any case); an unknown name is an error that suggests the
// closest.
std::vector<std::string> parse_metric_list(const std::string& list);
// Whether any of the metrics compares with references (dist1, dist2, len and empty do not).
bool needs_references(const std::vector<std::string>& metrics);

struct MetricValue {
  std::string name;
  double value = 0.0;
  std::string scale;               // "0-100", "0-1" or "tokens"
  std::string implementation;      // the implementation matched, e.g. "sacreBLEU 2.6.0, 13a"
  nlohmann::ordered_json details;  // extra fields (BLEU counts, signatures...), may be null
};

struct SystemReport {
  std::string name;  // the predictions file, or "MBR"
  std::vector<MetricValue> metrics;
  std::vector<nlohmann::ordered_json> per_example;  // one object per item when asked for
  std::vector<std::string> predictions;             // the predictions scored (MBR: the picks)
};

struct EvalReport {
  std::size_t examples = 0;
  std::vector<SystemReport> systems;   // one per predictions file, then the MBR pick if several
  std::vector<MetricValue> diversity;  // several predictions files: self-BLEU, div-4, inter-dist
  nlohmann::ordered_json json;         // everything above, plus the inputs and settings
  bool independent = false;            // EvalOptions::independent: table() puts the systems side by side
  std::string table() const;           // the readable table
};

// Scores every predictions file of `set`; with several, also their diversity per source and the
// MBR pick among them (DiffuSeq's selectBest, metric "bleu").
EvalReport evaluate(const EvalSet& set, const EvalOptions& options);

}  // namespace mds::metrics
