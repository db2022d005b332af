// One function per subcommand, each in its own cmd_*.cpp: it declares its flags on the CLI11 app
// and calls into the library. No logic lives here.
#pragma once

namespace CLI { class App; }

namespace mds::cli {

void add_config_command(CLI::App& app);     // config show | schema
void add_tokenizer_command(CLI::App& app);  // tokenizer train | encode | decode
void add_data_command(CLI::App& app);       // data prepare | build | inspect
void add_info_command(CLI::App& app);       // info: versions, devices, threads
void add_model_command(CLI::App& app);      // model describe
void add_train_command(CLI::App& app);      // train
void add_generate_command(CLI::App& app);   // generate
void add_eval_command(CLI::App& app);       // eval: metrics of predictions
void add_serve_command(CLI::App& app);      // serve: generation over HTTP
void add_launch_command(CLI::App& app);     // launch: N local processes of a data-parallel run

}  // namespace mds::cli
