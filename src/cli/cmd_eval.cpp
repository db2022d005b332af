// `moe-diffuseq eval --predictions P.jsonl [--predictions P2.jsonl ...] [--references R.jsonl]
//  [--metrics bleu,rouge1,...] [--no-stemmer] [--json OUT] [--per-example OUT.jsonl]
//  [--side-by-side N]`.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/fs.h"
#include "core/log.h"
#include "data/jsonl.h"
#include "metrics/eval_inputs.h"
#include "metrics/eval_report.h"
#include "metrics/text.h"

namespace mds::cli {

using data::Example;
using data::JsonlOptions;
using data::read_jsonl;

namespace {

struct EvalArgs {
  std::vector<std::string> predictions;
  std::string references, metrics, json_out, per_example_out;
  bool no_stemmer = false, systems = false;
  std::size_t side_by_side = 0;
};

// One line of the side-by-side view: newlines, carriage returns and tabs written as escapes.
std::string one_line(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else if (c == '\t')
      out += "\\t";
    else
      out += c;
  }
  return out;
}

// At most `max_chars` code points, with "..." when cut.
std::string cut(const std::string& text, std::size_t max_chars) {
  const std::u32string u = metrics::utf8_to_u32(text);
  if (u.size() <= max_chars) return text;
  return metrics::u32_to_utf8(u.substr(0, max_chars)) + "...";
}

// The first `count` examples, every text on one line and cut (a view to read, not to score): the
// source to 200 code points, references and predictions to 600.
nlohmann::ordered_json side_by_side(const metrics::EvalSet& set, const metrics::EvalReport& report,
                                    std::size_t count) {
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < std::min(count, report.examples); ++i) {
    nlohmann::ordered_json row;
    row["id"] = set.ids[i];
    row["source"] = one_line(cut(set.sources[i], 200));
    row["references"] = nlohmann::ordered_json::array();
    for (const std::string& r : set.references[i]) row["references"].push_back(one_line(cut(r, 600)));
    row["predictions"] = nlohmann::ordered_json::object();
    for (const auto& system : report.systems) row["predictions"][system.name] = one_line(cut(system.predictions[i], 600));
    rows.push_back(std::move(row));
  }
  return rows;
}

void print_side_by_side(const nlohmann::ordered_json& rows) {
  std::size_t i = 0;
  for (const auto& row : rows) {
    const std::string id = row["id"].get<std::string>();
    std::printf("[%zu]%s%s\n", ++i, id.empty() ? "" : " id ", id.c_str());
    std::printf("  source:     %s\n", row["source"].get<std::string>().c_str());
    const auto& refs = row["references"];
    for (std::size_t r = 0; r < refs.size(); ++r) {
      if (refs.size() == 1)
        std::printf("  reference:  %s\n", refs[r].get<std::string>().c_str());
      else
        std::printf("  reference %zu/%zu: %s\n", r + 1, refs.size(), refs[r].get<std::string>().c_str());
    }
    const auto& predictions = row["predictions"];
    for (const auto& [name, text] : predictions.items()) {
      if (predictions.size() > 1)
        std::printf("  prediction (%s): %s\n", name.c_str(), text.get<std::string>().c_str());
      else
        std::printf("  prediction: %s\n", text.get<std::string>().c_str());
    }
    std::printf("\n");
  }
}

void run_eval(const EvalArgs& a) {
  metrics::EvalOptions options;
  options.metrics =
      a.metrics.empty() ? metrics::default_metrics() : metrics::parse_metric_list(a.metrics);
  options.stemmer = !a.no_stemmer;
  options.per_example = !a.per_example_out.empty();
  options.independent = a.systems;

  std::vector<std::vector<metrics::PredictionRecord>> predictions;
  for (const auto& path : a.predictions) predictions.push_back(metrics::read_predictions(path));

  std::vector<metrics::ReferenceRecord> references;
  if (!a.references.empty()) {
    JsonlOptions jo;
    jo.require_trg = true;
    jo.skip_empty = false;  // keep every line, so that line matching stays aligned with `generate`
    for (const Example& e : read_jsonl(a.references, jo)) {
      references.push_back({e.id, e.src, metrics::merge_references(true, e.trg, e.refs), e.line});
    }
  }
  const metrics::EvalSet set = metrics::align_inputs(a.predictions, predictions, a.references,
                                                     a.references.empty() ? nullptr : &references,
                                                     metrics::needs_references(options.metrics));
  const metrics::EvalReport report = metrics::evaluate(set, options);

  nlohmann::ordered_json json = report.json;
  if (a.side_by_side > 0) {
    json["side_by_side"] = side_by_side(set, report, a.side_by_side);
    print_side_by_side(json["side_by_side"]);
  }
  std::printf(
      "%zu examples, %s%s, matched by %s\n\n", report.examples,
      set.reference_file.empty() ? "references from the predictions file" : "references from ",
      set.reference_file.c_str(), set.matched_by.c_str());
  std::printf("%s", report.table().c_str());

  if (!a.json_out.empty()) {
    fs::write_file_atomic(
        a.json_out,
        json.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
    log_info("report -> ", a.json_out);
  }
  if (!a.per_example_out.empty()) {
    std::string text;
    for (const auto& system : report.systems) {
      for (const auto& row : system.per_example)
        text += row.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
    }
    fs::write_file_atomic(a.per_example_out, text);
    log_info("per-example scores -> ", a.per_example_out);
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval", "score predictions (BLEU, chrF, ROUGE, SQuAD EM/F1, diversity, MBR)");
  auto a = std::make_shared<EvalArgs>();
  cmd->add_option("--predictions", a->predictions,
                  "predictions jsonl from `generate` ({\"id\", \"src\", \"prediction\", "
                  "\"reference\"/\"refs\"}); "
                  "repeat it for several samples of the same inputs (diversity, MBR)")
      ->required();
  cmd->add_option(
      "--references", a->references,
      "jsonl with \"trg\" (and \"refs\"); replaces the predictions' references, matched by id "
      "when both sides have ids, else by line");
  cmd->add_option(
      "--metrics", a->metrics,
      "comma list: bleu sentence-bleu chrf diffuseq-bleu nltk-corpus-bleu rouge1 rouge2 rougeL "
      "rougeLsum diffuseq-rougeL exact f1 dist1 dist2 len empty copied (outputs equal to their source) "
      "rewrite-better rewrite-worse (outputs that differ from their source with a higher / lower token F1) "
      "(default: bleu,chrf,diffuseq-bleu,rouge1,rouge2,rougeL,exact,f1,dist1,len,empty)");
  cmd->add_flag("--no-stemmer", a->no_stemmer, "ROUGE without rouge-score's Porter stemmer");
  cmd->add_flag("--systems", a->systems,
                "the --predictions files are different systems compared side by side (no diversity or MBR "
                "across them)");
  cmd->add_option("--json", a->json_out, "write the report as JSON");
  cmd->add_option("--per-example", a->per_example_out, "write per-example scores (jsonl)");
  cmd->add_option("--side-by-side", a->side_by_side,
                  "print the first N examples (source, references, predictions; long texts cut) and keep them "
                  "in the --json report")
      ->check(CLI::Range(0, 1000000));
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace mds::cli
