// Packing of (src, trg) token lists into fixed-shape rows, and token-budget batching.
//
// Row layout (length L = S + T + 2), DiffuSeq's [src ; SEP ; trg] with separate regions:
//
//   pos:   0     1 .. S             S+1    S+2 .. S+1+T
//          BOS   src (PAD-filled)   SEP    trg  EOS  PAD ...
//
// S = the longest (truncated) source in the batch, T = the target region: data.max_trg_len when
// trg_pad = "max" (so training and generation see the same shape), else the batch's longest target + 1.
// Source padding is masked out of attention (key_mask = 0); target padding is generated, as in
// DiffuSeq, so the model decides the output length.
//
// Masks, each B x L, 1 = yes:
//   trg_mask     target region (noised, generated, in the loss); DiffuSeq's input_mask
//   key_mask     may be attended to (everything except source padding, and with
//                mask_target_padding the target padding after EOS, which then leaves trg_mask too)
//   global_mask  global tokens: BOS and SEP; with globals = "bos+sep+target" every target position too
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "data/example_source.h"

namespace mds::data {

enum class Truncation { end, start, middle };  // which part of a long source is dropped
enum class TargetPadding { max, batch };
enum class GlobalTokens { none, bos_sep, bos_sep_target };

Truncation parse_truncation(const std::string& name);       // "end" | "start" | "middle"
TargetPadding parse_target_padding(const std::string& name);  // "max" | "batch"
GlobalTokens parse_global_tokens(const std::string& name);   // "none" | "bos+sep" | "bos+sep+target"

struct PackOptions {
  int max_src_len = 1024;  // source tokens kept (BOS and SEP not counted)
  int max_trg_len = 128;   // target region length, EOS included
  Truncation truncation = Truncation::end;
  TargetPadding trg_pad = TargetPadding::max;
  GlobalTokens globals = GlobalTokens::bos_sep;
  // The target region's padding after the EOS is masked like source padding (not noised, not in the
  // loss, not attended to) instead of being generated: data.target_length = "predict".
  bool mask_target_padding = false;
  // data.target_canvas = "source": targets are laid out on their source, each source token followed
  // by canvas_slots empty places (data/source_canvas.h).
  bool source_canvas = false;
  int canvas_slots = 1;
};

// Target position j starts from source token j / stride where j is a multiple of it (sample.start_time
// < 1, train.source_start_prob): canvas_slots + 1 on a canvas, else 1.
inline int64_t canvas_stride(const PackOptions& o) { return o.source_canvas ? o.canvas_slots + 1 : 1; }

// The source tokens a packed row keeps: at most max_src_len, cut as `truncation` says.
std::vector<int32_t> kept_source(const TokenSpan& src, const PackOptions& options);

struct Batch {
  int64_t batch_size = 0;  // B
  int64_t length = 0;      // L
  int64_t src_region = 0;  // S: the SEP sits at position S + 1
  int64_t trg_region = 0;  // T
  std::vector<int32_t> ids;           // B*L
  std::vector<uint8_t> trg_mask;      // B*L
  std::vector<uint8_t> key_mask;      // B*L
  std::vector<uint8_t> global_mask;   // B*L
  std::vector<int32_t> src_len;       // B, after truncation
  std::vector<int32_t> trg_len;       // B, after truncation, EOS not counted
  std::vector<std::size_t> example;   // B, index into the source
  // B: the row starts from its source packed at the first places, not stretched over its canvas
  // (ExampleSource::compact_start); empty when no row of the batch does.
  std::vector<uint8_t> compact_start;
  int64_t tokens() const { return batch_size * length; }  // padded
  // Not padding: each row's BOS, source, SEP, target and EOS.
  int64_t real_tokens() const {
    int64_t n = 0;
    for (std::size_t b = 0; b < src_len.size(); ++b) n += int64_t{src_len[b]} + int64_t{trg_len[b]} + 3;
    return n;
  }
};

// The longest packed row: BOS + max_src_len + SEP + max_trg_len.
int64_t longest_row(const PackOptions& options);

// Throws unless a batch of `batch_tokens` holds one row of the longest shape; `where` names the
// setting in the message ("x.toml:4: ", "--set: ", or "").
void check_batch_budget(std::size_t batch_tokens, const PackOptions& pack, const std::string& where = "");

// Lengths of a row's regions for one example, after truncation.
int64_t packed_src_len(std::size_t src_len, const PackOptions& options);
int64_t packed_trg_len(std::size_t trg_len, const PackOptions& options);  // EOS not counted

// What the length limits cut from a data set: the examples whose source is longer than max_src_len
// (cut as `truncation` says) and whose target does not fit the target region with its EOS.
struct LengthCuts {
  std::size_t examples = 0;
  std::size_t src_cut = 0, trg_cut = 0;
  std::size_t src_median = 0, trg_median = 0;  // tokens, before the cut
};
LengthCuts length_cuts(const ExampleSource& source, const PackOptions& options);
const char* where_cut(Truncation t);  // "at the end", "at the start", "in the middle"
// One line for the start-up log, e.g. "sources: median 1301 tokens, 1290 of 1295 cut to 64
// (data.max_src_len, at the end); targets: median 3 tokens, none cut (data.max_trg_len = 16)".
std::string describe_length_cuts(const LengthCuts& cuts, const PackOptions& options);

// Packs the given examples of `source` into one batch.
Batch pack_batch(const ExampleSource& source, const std::vector<std::size_t>& examples,
                 const PackOptions& options);

struct BatchPlanOptions {
  std::size_t batch_tokens = 16384;      // B * L never exceeds this
  std::size_t max_batch_size = 0;        // 0 = no limit on B
  std::size_t bucket_window = 100;       // sort by length within windows of this many batches' worth
  bool shuffle = true;
  uint64_t seed = 0;
  int rank = 0, world_size = 1;          // each rank gets every world_size-th batch
};

// data.max_src_len, data.max_trg_len, data.truncation, data.trg_pad, data.target_length,
// data.target_canvas, data.canvas_slots and attention.globals.
PackOptions pack_options_from_config(const Config& config);
// data.batch_tokens (checked against the longest row), data.max_batch_size, data.bucket_window,
// data.shuffle (only when `shuffle`: validation batches are never shuffled) and train.seed.
BatchPlanOptions batch_plan_options_from_config(const Config& config, bool shuffle);

// The batches of one epoch, for one rank: lists of example indices. Deterministic for
// (seed, epoch, rank, world_size); all ranks get the same number of batches (the few left over
// after an even split are dropped that epoch). Throws mds::Error when the budget cannot hold one
// sequence of the longest possible shape.
std::vector<std::vector<std::size_t>> plan_batches(const ExampleSource& source,
                                                   const PackOptions& pack,
                                                   const BatchPlanOptions& plan, uint64_t epoch);

// Iterates over batches epoch after epoch; its position (epoch, batch) is part of a checkpoint.
class Batcher {
 public:
  Batcher(const ExampleSource& source, PackOptions pack, BatchPlanOptions plan);
  Batch next();  // moves to the next epoch when one ends
  uint64_t epoch() const { return epoch_; }
  std::size_t position() const { return position_; }  // batches taken in this epoch
  std::size_t batches_per_epoch() const { return plan_.size(); }
  void seek(uint64_t epoch, std::size_t position);  // resume exactly here

 private:
  const ExampleSource& source_;
  PackOptions pack_;
  BatchPlanOptions options_;
  uint64_t epoch_ = 0;
  std::size_t position_ = 0;
  std::vector<std::vector<std::size_t>> plan_;
};

}  // namespace mds::data
