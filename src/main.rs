//! The `gleap-etl` command: everything lives in the library; this only sets the exit code.

// Records are built on a reader thread and freed on the stream thread; mimalloc handles that
// hand-over far better than the system allocator (a quarter of the time went to malloc/free).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(gleap_etl::cli::main_with_args(std::env::args_os()));
}
