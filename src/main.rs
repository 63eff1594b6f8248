//! The `gleap-etl` command: everything lives in the library; this only sets the exit code.

fn main() {
    std::process::exit(gleap_etl::cli::main_with_args(std::env::args_os()));
}
