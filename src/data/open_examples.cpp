#include "data/open_examples.h"

#include <sys/stat.h>

#include "core/error.h"
#include "core/log.h"
#include "data/jsonl.h"
#include "data/prepared.h"

namespace mds::data {

std::unique_ptr<ExampleSource> open_examples(const std::string& path, const Tokenizer& tokenizer) {
  MDS_CHECK(!path.empty(), "no data path given");
  struct stat st {};
  MDS_CHECK(::stat(path.c_str(), &st) == 0, "cannot open data ", path, ": no such file or directory");
  if (S_ISDIR(st.st_mode)) {
    auto data = std::make_unique<PreparedDataset>(path);
    MDS_CHECK(data->tokenizer_fingerprint() == tokenizer.fingerprint(), path, " was prepared with tokenizer ",
              data->tokenizer_fingerprint(), ", but the run uses tokenizer ", tokenizer.fingerprint(),
              ": prepare the data again with this tokenizer");
    log_info("data: ", data->size(), " examples from ", path, " (memory-mapped)");
    return data;
  }
  auto source = std::make_unique<InMemorySource>();
  JsonlReader reader(path);
  Example ex;
  while (reader.next(ex)) source->add(tokenizer.encode(ex.src), tokenizer.encode(ex.trg));
  log_info("data: ", reader.summary());
  return source;
}

}  // namespace mds::data
