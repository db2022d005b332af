// moe-diffuseq: the command-line entry point. Subcommands are registered from cmd_*.cpp.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"
#include "core/log.h"

int main(int argc, char** argv) {
  CLI::App app{"moe-diffuseq: train, sample and evaluate MoE-DiffuSeq text generators"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moe-diffuseq 0.1.0");
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "debug logging");
  app.add_flag("-q,--quiet", quiet, "warnings and errors only");
  app.parse_complete_callback([&] {
    if (verbose) mds::set_log_level(mds::LogLevel::debug);
    if (quiet) mds::set_log_level(mds::LogLevel::warn);
  });

  mds::cli::add_config_command(app);
  mds::cli::add_tokenizer_command(app);
  mds::cli::add_data_command(app);
  mds::cli::add_model_command(app);
  mds::cli::add_train_command(app);
  mds::cli::add_generate_command(app);
  mds::cli::add_serve_command(app);
  mds::cli::add_launch_command(app);
  mds::cli::add_eval_command(app);
  mds::cli::add_info_command(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mds::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
