// `moe-diffuseq data prepare|inspect|split|baseline|build`: tokenize jsonl into prepared data, describe
// prepared data, set examples aside, write trivial baselines, and build the data sets the project ships
// recipes for.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json_integer.h"
#include "core/log.h"
#include "core/strings.h"
#include "data/baseline.h"
#include "data/debian_descriptions.h"
#include "data/prepared.h"
#include "data/split.h"
#include "data/tokenizer.h"

namespace mds::cli {

using data::DebianBuildOptions;
using data::DebianBuildStats;
using data::PreparedDataset;
using data::Tokenizer;
using data::build_debian_descriptions;
using data::BaselineKind;
using data::BaselineStats;
using data::prepare_dataset;
using data::parse_baseline_kind;
using data::write_baseline_predictions;

namespace {

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string tokenizer;
  std::string out;
};

// "min 3  median 17  p90 40  p99 88  max 311" (nearest-rank percentiles).
std::string length_summary(std::vector<uint32_t> lengths) {
  if (lengths.empty()) return "-";
  std::sort(lengths.begin(), lengths.end());
  auto rank = [&](double q) {
    std::size_t k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(lengths.size())));
    return lengths[std::min(lengths.size() - 1, k == 0 ? 0 : k - 1)];
  };
  return str_cat("min ", lengths.front(), "  median ", rank(0.5), "  p90 ", rank(0.9), "  p99 ",
                 rank(0.99), "  max ", lengths.back());
}

void run_inspect(const std::string& dir) {
  const PreparedDataset data(dir);
  std::vector<uint32_t> src_len(data.size()), trg_len(data.size());
  uint64_t src_tokens = 0, trg_tokens = 0;
  for (std::size_t i = 0; i < data.size(); ++i) {
    src_len[i] = static_cast<uint32_t>(data.src(i).size);
    trg_len[i] = static_cast<uint32_t>(data.trg(i).size);
    src_tokens += src_len[i];
    trg_tokens += trg_len[i];
  }
  // Inputs and skipped counts are only in meta.json (PreparedDataset already validated it).
  nlohmann::json meta;
  std::ifstream(data.dir() + "/meta.json") >> meta;

  std::string out;
  out += str_cat("data:          ", data.dir(), "\n");
  out += str_cat("examples:      ", data.size(), " (", json_integer_or<int64_t>(meta, "skipped", 0, data.dir() + "/meta.json"), " skipped)\n");
  out += str_cat("tokens:        ", src_tokens + trg_tokens, " (src ", src_tokens, ", trg ",
                 trg_tokens, ")\n");
  out += str_cat("src length:    ", length_summary(std::move(src_len)), "\n");
  out += str_cat("trg length:    ", length_summary(std::move(trg_len)), "\n");
  out += str_cat("vocab size:    ", data.vocab_size(), "\n");
  out += str_cat("tokenizer:     ", data.tokenizer_fingerprint(), "\n");
  if (meta.contains("inputs") && meta["inputs"].is_array()) {
    for (const auto& input : meta["inputs"])
      out += str_cat("input:         ", input.is_string() ? input.get<std::string>() : input.dump(),
                     "\n");
  }
  std::fputs(out.c_str(), stdout);
}

}  // namespace

void add_data_command(CLI::App& app) {
  auto* data = app.add_subcommand("data", "prepare, inspect and build data sets");
  data->require_subcommand(1);

  auto prepare_options = std::make_shared<PrepareOptions>();
  auto* prepare = data->add_subcommand(
      "prepare", "tokenize jsonl files into a memory-mapped prepared data directory");
  prepare->add_option("--input", prepare_options->inputs, "jsonl file (repeatable; .gz, .zst)")
      ->required();
  prepare->add_option("--tokenizer", prepare_options->tokenizer,
                      "tokenizer directory or tokenizer.model")
      ->required();
  prepare->add_option("--out", prepare_options->out, "output directory (replaced if it exists)")
      ->required();
  prepare->callback([prepare_options] {
    const Tokenizer tok = Tokenizer::load(prepare_options->tokenizer);
    prepare_dataset(prepare_options->inputs, tok, prepare_options->out);
  });

  auto inspect_dir = std::make_shared<std::string>();
  auto* inspect =
      data->add_subcommand("inspect", "print counts and length statistics of prepared data");
  inspect->add_option("dir", *inspect_dir, "prepared data directory")->required();
  inspect->callback([inspect_dir] { run_inspect(*inspect_dir); });

  struct SplitArgs {
    std::string input, train_out, holdout_out;
    int64_t holdout = 0;  // signed: "-3" must be refused, not read as 2^64 - 3
    std::optional<uint64_t> seed;
  };
  auto split_args = std::make_shared<SplitArgs>();
  auto* split = data->add_subcommand(
      "split", "set N examples of a jsonl file aside (the last N, or a random N with --seed), as plain jsonl");
  split->add_option("--input", split_args->input, "jsonl file (.gz, .zst)")->required();
  split->add_option("--holdout", split_args->holdout, "examples set aside")->required();
  split->add_option("--seed", split_args->seed, "choose the examples at random with this seed (default: the last N)");
  split->add_option("--train-out", split_args->train_out, "the other examples (jsonl)")->required();
  split->add_option("--holdout-out", split_args->holdout_out, "the examples set aside (jsonl)")->required();
  split->callback([split_args] {
    const auto& a = *split_args;
    MDS_CHECK(a.holdout >= 1, "data split: --holdout must be at least 1, got ", a.holdout);
    const data::SplitStats s =
        data::split_examples(a.input, {static_cast<std::size_t>(a.holdout), a.seed}, a.train_out, a.holdout_out);
    log_info("split ", a.input, ": ", s.train, " examples -> ", a.train_out, ", ", s.holdout,
             a.seed ? str_cat(" chosen at random (seed ", *a.seed, ")") : std::string(" (the last)"), " -> ",
             a.holdout_out, s.skipped ? str_cat(" (", s.skipped, " blank lines or empty examples left out)") : "");
  });

  struct BaselineArgs {
    std::string train, input, output, kind = "most-frequent";
    std::size_t k = 0;
  };
  auto baseline_args = std::make_shared<BaselineArgs>();
  auto* baseline = data->add_subcommand(
      "baseline", "predictions of a trivial baseline: the most frequent training target, the source itself, or "
                  "its first k words");
  baseline->add_option("--kind", baseline_args->kind, "most-frequent (default) | copy | first-k")
      ->check(CLI::IsMember({"most-frequent", "copy", "first-k"}));
  baseline->add_option("--train", baseline_args->train,
                       "training jsonl (most-frequent; first-k without --k: the median target length)");
  baseline->add_option("--k", baseline_args->k, "first-k: words kept (0 = the median target length in --train)");
  baseline->add_option("--input", baseline_args->input, "jsonl to predict for")->required();
  baseline->add_option("--output", baseline_args->output, "predictions jsonl")->required();
  baseline->callback([baseline_args] {
    const auto& a = *baseline_args;
    const BaselineKind kind = parse_baseline_kind(a.kind);
    MDS_CHECK(!a.train.empty() || kind == BaselineKind::copy || (kind == BaselineKind::first_k && a.k > 0),
              "data baseline --kind ", a.kind, " needs --train", kind == BaselineKind::first_k ? " (or --k)" : "");
    const BaselineStats stats = write_baseline_predictions(kind, a.train, a.input, a.output, a.k);
    log_info("baseline: ", stats.description, " for ", stats.predictions, " inputs -> ", a.output);
  });

  auto* build = data->add_subcommand("build", "build a data set from a public source");
  build->require_subcommand(1);
  auto debian_out = std::make_shared<std::string>();
  auto debian_options = std::make_shared<DebianBuildOptions>();
  auto no_apt_update = std::make_shared<bool>(false);
  auto* debian = build->add_subcommand(
      "debian-descriptions",
      "Debian package descriptions -> synopses (or sections), from apt's lists");
  debian->add_option("--out", *debian_out, "directory for train/valid/test.jsonl")->required();
  debian->add_option("--lists-dir", debian_options->lists_dir, "apt lists directory")
      ->capture_default_str();
  debian->add_option("--target", debian_options->target,
                     "what trg holds: the one-line synopsis, or the package's section (from the Packages lists)")
      ->check(CLI::IsMember({"synopsis", "section"}))
      ->capture_default_str();
  debian->add_flag("--no-apt-update", *no_apt_update,
                   "never run apt-get update, even when no translation lists are found");
  debian->callback([debian_out, debian_options, no_apt_update] {
    DebianBuildOptions options = *debian_options;
    options.allow_apt_update = !*no_apt_update;
    const DebianBuildStats s = build_debian_descriptions(*debian_out, options);
    std::fputs(str_cat("records:     ", s.records, " (", s.duplicates, " duplicates dropped)\n",
                       "train:       ", s.train, "\n", "valid:       ", s.valid, "\n",
                       "test:        ", s.test, "\n",
                       options.target == "section" ? str_cat("no section:  ", s.no_section, " (left out)\n") : "",
                       "written to:  ", *debian_out, "\n")
                   .c_str(),
               stdout);
  });
}

}  // namespace mds::cli
