#include "metrics/eval_report.h"

#include <algorithm>
#include <cstdio>

#include "core/error.h"
#include "core/strings.h"
#include "metrics/chrf.h"
#include "metrics/diversity.h"
#include "metrics/mbr.h"
#include "metrics/nltk_bleu.h"
#include "metrics/nltk_corpus_bleu.h"
#include "metrics/pysum.h"
#include "metrics/rouge_score.h"
#include "metrics/sacrebleu_bleu.h"
#include "metrics/squad.h"
#include "metrics/text.h"
#include "metrics/torchmetrics_rouge.h"

namespace mds::metrics {

namespace {

using json = nlohmann::ordered_json;

json bleu_details(const BleuScore& s, const std::string& signature) {
  return {
      {"counts", s.counts},   {"totals", s.totals},   {"precisions", s.precisions}, {"bp", s.bp},
      {"sys_len", s.sys_len}, {"ref_len", s.ref_len}, {"signature", signature}};
}

const RougeValue& rouge_of(const RougeScores& s, const std::string& name) {
  if (name == "rouge1") return s.rouge1;
  if (name == "rouge2") return s.rouge2;
  if (name == "rougeL") return s.rougeL;
  return s.rougeLsum;
}

// Scores one list of predictions (aligned with set.references) on the chosen metrics.
SystemReport score_system(const std::string& name, const std::vector<std::string>& preds,
                          const EvalSet& set, const EvalOptions& options) {
  SystemReport out;
  out.name = name;
  out.predictions = preds;
  const std::size_t n = preds.size();
  const auto& refs = set.references;
  std::vector<json> scores(options.per_example ? n : 0, json::object());
  auto per_item = [&](const std::string& metric, const std::vector<double>& values) {
    for (std::size_t i = 0; i < scores.size(); ++i) scores[i][metric] = values[i];
  };
  const std::string stem_note = options.stemmer ? "Porter stemmer" : "no stemmer";

  // Computed on first use and shared between metrics.
  std::vector<BleuScore> sentence_bleu;
  auto sentence_bleus = [&]() -> const std::vector<BleuScore>& {
    if (sentence_bleu.empty())
      for (std::size_t i = 0; i < n; ++i)
        sentence_bleu.push_back(sacrebleu_sentence_bleu(preds[i], refs[i]));
    return sentence_bleu;
  };
  std::vector<RougeScores> rouge;
  auto rouges = [&]() -> const std::vector<RougeScores>& {
    if (rouge.empty())
      for (std::size_t i = 0; i < n; ++i)
        rouge.push_back(rouge_score_multi(refs[i], preds[i], options.stemmer));
    return rouge;
  };

  for (const std::string& metric : options.metrics) {
    MetricValue v;
    v.name = metric;
    if (metric == "bleu") {
      const BleuScore s = sacrebleu_corpus_bleu(preds, refs);
      v = {metric, s.score, "0-100", "sacreBLEU 2.6.0 corpus BLEU, 13a, exp smoothing",
           bleu_details(s, sacrebleu_bleu_signature(refs, false))};
      if (options.per_example) {
        std::vector<double> values;
        for (const auto& b : sentence_bleus()) values.push_back(b.score);
        per_item("sentence-bleu", values);
      }
    } else if (metric == "sentence-bleu") {
      std::vector<double> values;
      for (const auto& b : sentence_bleus()) values.push_back(b.score);
      v = {metric,
           numpy_mean(values),
           "0-100",
           "sacreBLEU 2.6.0 sentence_bleu (13a, exp, effective order), mean",
           {{"signature", sacrebleu_bleu_signature(refs, true)}}};
      per_item(metric, values);
    } else if (metric == "chrf") {
      v = {metric,
           sacrebleu_corpus_chrf(preds, refs),
           "0-100",
           "sacreBLEU 2.6.0 corpus chrF2",
           {{"signature", sacrebleu_chrf_signature(refs)}}};
      if (options.per_example) {
        std::vector<double> values;
        for (std::size_t i = 0; i < n; ++i)
          values.push_back(sacrebleu_sentence_chrf(preds[i], refs[i]));
        per_item("chrf", values);
      }
    } else if (metric == "diffuseq-bleu") {
      std::vector<double> values;
      for (std::size_t i = 0; i < n; ++i)
        values.push_back(mds::diffuseq_bleu(preds[i], refs[i][0]));
      v = {metric, numpy_mean(values), "0-1",
           "DiffuSeq get_bleu: NLTK 3.8.1 sentence BLEU, method4, first reference, mean", nullptr};
      per_item(metric, values);
    } else if (metric == "nltk-corpus-bleu") {
      v = {metric,
           nltk_corpus_bleu(refs, preds, NltkSmoothing::none),
           "0-1",
           "NLTK 3.8.1 corpus_bleu, str.split(), no smoothing",
           {{"method4", nltk_corpus_bleu(refs, preds, NltkSmoothing::method4)}}};
    } else if (metric == "rouge1" || metric == "rouge2" || metric == "rougeL" ||
               metric == "rougeLsum") {
      std::vector<double> p, r, f;
      for (const auto& s : rouges()) {
        const RougeValue& x = rouge_of(s, metric);
        p.push_back(x.precision);
        r.push_back(x.recall);
        f.push_back(x.fmeasure);
      }
      v = {metric,
           numpy_mean(f),
           "0-1",
           "rouge-score 0.1.2 F, " + stem_note + ", best reference, mean",
           {{"precision", numpy_mean(p)}, {"recall", numpy_mean(r)}, {"stemmer", options.stemmer}}};
      per_item(metric, f);
    } else if (metric == "diffuseq-rougeL") {
      std::vector<double> values;
      for (std::size_t i = 0; i < n; ++i)
        values.push_back(torchmetrics_rouge(preds[i], {refs[i][0]}).rougeL_fmeasure);
      v = {metric, numpy_mean(values), "0-1",
           "torchmetrics 1.9.0 ROUGEScore rougeL F (float32), first reference, mean", nullptr};
      per_item(metric, values);
    } else if (metric == "exact" || metric == "f1") {
      const SquadCorpus squad = squad_evaluate(preds, refs);
      const bool exact = metric == "exact";
      v = {metric, exact ? squad.exact_match : squad.f1, "0-100",
           exact ? "SQuAD v1.1 evaluate: exact match" : "SQuAD v1.1 evaluate: token F1", nullptr};
      for (std::size_t i = 0; i < scores.size(); ++i) {
        if (exact)
          scores[i][metric] = squad_exact_match(preds[i], refs[i]);
        else
          scores[i][metric] = squad_f1(preds[i], refs[i]);
      }
    } else if (metric == "dist1" || metric == "dist2") {
      const std::size_t order = metric == "dist1" ? 1 : 2;
      std::vector<double> values;
      for (const auto& p : preds) values.push_back(distinct_n_gram({p}, order));
      v = {metric, numpy_mean(values), "0-1", "DiffuSeq distinct_n_gram per sentence, mean",
           nullptr};
      per_item(metric, values);
    } else if (metric == "len") {
      std::vector<double> values;
      for (const auto& p : preds) values.push_back(static_cast<double>(diffuseq_length(p)));
      v = {metric, numpy_mean(values), "tokens", "DiffuSeq avg len: len(h.split(' ')), mean",
           nullptr};
      per_item(metric, values);
    } else if (metric == "empty") {
      // Outputs with no word: a generator that collapses to PAD or EOS shows here first.
      std::vector<double> values;
      for (const auto& p : preds) values.push_back(trim(p).empty() ? 100.0 : 0.0);
      v = {metric, numpy_mean(values), "0-100", "percent of predictions with no non-space character", nullptr};
      per_item(metric, values);
    } else if (metric == "copied" || metric == "rewrite-better" || metric == "rewrite-worse") {
      // Against the source: where a model edits its source (a paraphrase from a noised copy of the
      // question), the scores alone cannot tell copying from rewriting, nor good rewrites from bad.
      std::vector<double> values;
      for (std::size_t i = 0; i < n; ++i) {
        // Where the item came from: the first predictions file's line, when the set knows it.
        const std::string where = set.prediction_files.empty() ? "" : set.prediction_files[0] +
            (i < set.lines.size() ? ":" + std::to_string(set.lines[i]) : "") + ": ";
        MDS_CHECK(!trim(set.sources[i]).empty(), "eval: ", where, "metric \"", metric, "\" needs each item's source "
                  "(\"src\"), but item ", i + 1, " (id \"", set.ids[i], "\") has none");
        const bool copied = python_split(preds[i]) == python_split(set.sources[i]);
        bool counted = copied;
        if (metric != "copied") {
          const double gain = squad_f1(preds[i], refs[i]) - squad_f1(set.sources[i], refs[i]);
          counted = !copied && (metric == "rewrite-better" ? gain > 0 : gain < 0);
        }
        values.push_back(counted ? 100.0 : 0.0);
      }
      const char* what = metric == "copied" ? "percent of predictions equal to their source, up to spacing"
                         : metric == "rewrite-better"
                             ? "percent of predictions that differ from their source and score a higher SQuAD token F1 than it"
                             : "percent of predictions that differ from their source and score a lower SQuAD token F1 than it";
      v = {metric, numpy_mean(values), "0-100", what, nullptr};
      per_item(metric, values);
    } else {
      fail("eval: unknown metric \"", metric, "\"");
    }
    out.metrics.push_back(std::move(v));
  }

  for (std::size_t i = 0; i < scores.size(); ++i) {
    out.per_example.push_back({{"system", name},
                               {"index", i},
                               {"id", set.ids[i]},
                               {"prediction", preds[i]},
                               {"references", refs[i]},
                               {"scores", scores[i]}});
  }
  return out;
}

json metrics_json(const std::vector<MetricValue>& metrics) {
  json out = json::object();
  for (const auto& m : metrics) {
    json entry = {{"value", m.value}, {"scale", m.scale}, {"implementation", m.implementation}};
    if (m.details.is_object()) {
      for (auto it = m.details.begin(); it != m.details.end(); ++it) entry[it.key()] = it.value();
    }
    out[m.name] = entry;
  }
  return out;
}

std::string format_value(const MetricValue& m) {
  char buf[64];
  std::snprintf(buf, sizeof buf, m.scale == "0-1" ? "%.4f" : "%.2f", m.value);
  return buf;
}

void append_rows(std::string& out, const std::vector<MetricValue>& metrics) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "  %-17s %10s  %-7s %s\n", "metric", "value", "scale",
                "implementation");
  out += buf;
  for (const auto& m : metrics) {
    std::snprintf(buf, sizeof buf, "  %-17s %10s  %-7s %s\n", m.name.c_str(),
                  format_value(m).c_str(), m.scale.c_str(), m.implementation.c_str());
    out += buf;
  }
}

}  // namespace

const std::vector<std::string>& known_metrics() {
  static const std::vector<std::string> names = {
      "bleu", "sentence-bleu", "chrf", "diffuseq-bleu", "nltk-corpus-bleu", "rouge1", "rouge2",
      "rougeL", "rougeLsum", "diffuseq-rougeL", "exact", "f1", "dist1", "dist2", "len", "empty", "copied",
      "rewrite-better", "rewrite-worse"};
  return names;
}

const std::vector<std::string>& default_metrics() {
  static const std::vector<std::string> names = {
      "bleu", "chrf", "diffuseq-bleu", "rouge1", "rouge2", "rougeL", "exact", "f1", "dist1", "len", "empty"};
  return names;
}

std::vector<std::string> parse_metric_list(const std::string& list) {
  const auto& known = known_metrics();
  std::vector<std::string> out;
  for (const std::string& piece : split(list, ',')) {
    std::string name(trim(piece));
    if (name.empty()) continue;
    // Case does not matter ("rougel" is rougeL): no two names differ only by case.
    auto it = std::find_if(known.begin(), known.end(), [&](const std::string& k) {
      return to_lower_ascii(k) == to_lower_ascii(name);
    });
    if (it == known.end()) {
      const std::string guess = closest_match(name, known);
      std::string all;
      for (const auto& k : known) all += (all.empty() ? "" : ", ") + k;
      fail("unknown metric \"", name, "\"",
           guess.empty() ? "" : " (did you mean \"" + guess + "\"?)", "; known: ", all);
    }
    if (std::find(out.begin(), out.end(), *it) == out.end()) out.push_back(*it);
  }
  if (out.empty()) fail("--metrics: no metric named");
  return out;
}

bool needs_references(const std::vector<std::string>& metrics) {
  for (const auto& m : metrics) {
    if (m != "dist1" && m != "dist2" && m != "len" && m != "empty" && m != "copied") return true;
  }
  return false;
}

EvalReport evaluate(const EvalSet& set, const EvalOptions& given) {
  EvalOptions options = given;
  if (options.metrics.empty()) options.metrics = default_metrics();
  const std::size_t files = set.predictions.size();
  MDS_CHECK(files > 0 && !set.predictions[0].empty(), "eval: nothing to evaluate");
  const std::size_t n = set.predictions[0].size();
  if (needs_references(options.metrics)) {
    for (std::size_t i = 0; i < n; ++i)
      MDS_CHECK(!set.references[i].empty(), "eval: item ", i + 1, " has no reference");
  }

  EvalReport report;
  report.examples = n;
  report.independent = options.independent;
  for (std::size_t f = 0; f < files; ++f)
    report.systems.push_back(
        score_system(set.prediction_files[f], set.predictions[f], set, options));

  json diversity_json = nullptr, mbr_json = nullptr;
  if (files > 1 && !options.independent) {
    std::vector<double> self_bleu, div4, inter1, inter2;
    std::vector<std::string> picks;
    std::vector<std::size_t> picked_file;
    for (std::size_t i = 0; i < n; ++i) {
      std::vector<std::string> samples;
      for (std::size_t f = 0; f < files; ++f) samples.push_back(set.predictions[f][i]);
      const SetDiversity d = diversity_of_set(samples);
      self_bleu.push_back(d.self_bleu);
      div4.push_back(d.div4);
      inter1.push_back(distinct_n_gram_inter_sent(samples, 1));
      inter2.push_back(distinct_n_gram_inter_sent(samples, 2));
      const std::size_t pick = mds::mbr_select(samples, "bleu");
      picks.push_back(samples[pick]);
      picked_file.push_back(pick);
    }
    const std::string per_source = ", mean over sources";
    report.diversity = {
        {"self-bleu", numpy_mean(self_bleu), "0-1",
         "DiffuSeq diversityOfSet self-BLEU (get_bleu over pairs i<j)" + per_source, nullptr},
        {"div4", numpy_mean(div4), "0-1", "DiffuSeq diversityOfSet div-4" + per_source, nullptr},
        {"inter-dist1", numpy_mean(inter1), "0-1",
         "DiffuSeq distinct_n_gram_inter_sent n=1" + per_source, nullptr},
        {"inter-dist2", numpy_mean(inter2), "0-1",
         "DiffuSeq distinct_n_gram_inter_sent n=2" + per_source, nullptr}};
    diversity_json = metrics_json(report.diversity);
    diversity_json["samples_per_source"] = files;

    SystemReport mbr = score_system("MBR", picks, set, options);
    for (std::size_t i = 0; i < mbr.per_example.size(); ++i)
      mbr.per_example[i]["picked_file"] = picked_file[i];
    std::vector<std::size_t> counts(files, 0);
    for (std::size_t p : picked_file) ++counts[p];
    mbr_json = {{"metric", "bleu"},
                {"implementation", "DiffuSeq selectBest: argmax_i sum_j get_bleu(s_i, s_j)"},
                {"picks_per_file", counts},
                {"metrics", metrics_json(mbr.metrics)}};
    report.systems.push_back(std::move(mbr));
  }

  json systems = json::array();
  for (std::size_t f = 0; f < files; ++f)
    systems.push_back(
        {{"name", report.systems[f].name}, {"metrics", metrics_json(report.systems[f].metrics)}});
  report.json = {
      {"predictions", set.prediction_files},
      {"references", set.reference_file.empty() ? json(nullptr) : json(set.reference_file)},
      {"matched_by", set.matched_by},
      {"examples", n},
      {"metrics", options.metrics},
      {"stemmer", options.stemmer},
      {"systems", systems}};
  if (files > 1) {
    report.json["diversity"] = diversity_json;
    report.json["mbr"] = mbr_json;
  }
  return report;
}

std::string EvalReport::table() const {
  std::string out;
  if (independent && systems.size() > 1) {
    // Systems side by side: one row each, one column a metric (the implementations below).
    std::size_t width = 6;
    for (const auto& s : systems) width = std::max(width, s.name.size());
    char buf[512];
    std::snprintf(buf, sizeof buf, "%-*s", static_cast<int>(width), "system");
    out += buf;
    // A column is as wide as its name, and at least 13.
    auto column = [](const MetricValue& m) { return static_cast<int>(std::max<std::size_t>(13, m.name.size())); };
    for (const auto& m : systems.front().metrics) {
      std::snprintf(buf, sizeof buf, " %*s", column(m), m.name.c_str());
      out += buf;
    }
    out += "\n";
    for (const auto& s : systems) {
      std::snprintf(buf, sizeof buf, "%-*s", static_cast<int>(width), s.name.c_str());
      out += buf;
      for (const auto& m : s.metrics) {
        std::snprintf(buf, sizeof buf, " %*s", column(m), format_value(m).c_str());
        out += buf;
      }
      out += "\n";
    }
    out += "\n";
    for (const auto& m : systems.front().metrics) out += "  " + m.name + " (" + m.scale + "): " + m.implementation + "\n";
    return out;
  }
  for (std::size_t s = 0; s < systems.size(); ++s) {
    if (s > 0) out += "\n";
    const bool mbr = s + 1 == systems.size() && !diversity.empty();
    out += mbr ? str_cat("MBR pick among ", systems.size() - 1,
                         " samples per source (DiffuSeq selectBest, BLEU)\n")
               : systems[s].name + "\n";
    append_rows(out, systems[s].metrics);
  }
  if (!diversity.empty()) {
    out += str_cat("\ndiversity of the ", systems.size() - 1, " samples per source\n");
    append_rows(out, diversity);
  }
  return out;
}

}  // namespace mds::metrics
