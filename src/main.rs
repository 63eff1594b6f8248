//! The `gleap-etl` command: everything lives in the library; this only sets the exit code.

// Records are built on a reader thread and freed on the stream thread; mimalloc handles that
// hand-over far better than the system allocator (a quarter of the time went to malloc/free).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options, by their number in `mi_option_t` (mimalloc.h, the same in v2 and v3).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory stays low and flat: arenas made from here on are committed as they are used, not up
/// front, and freed pages go back to the OS after 5 ms instead of 10 (50 instead of 100 for
/// arenas). Measured on a 1M-session export: peak RSS 163-169 MB -> 117-121 MB
/// (`cargo bench --bench export`); setting both in the environment, which also covers the
/// arena mimalloc makes before `main`, gives 89 MB. The environment still wins.
fn tune_allocator() {
    for (option, var, value) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 5),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: setting an option is a plain store mimalloc allows at any time.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

/// A panic's message may hold a value from the environment: it goes through the same
/// redaction as every other message.
fn redact_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        let text = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                format!("thread '{name}' {info}\nstack backtrace:\n{backtrace}")
            }
            _ => format!(
                "thread '{name}' {info}\nnote: run with `RUST_BACKTRACE=1` to display a backtrace"
            ),
        };
        eprintln!("{}", gleap_etl::redact::redact(text.trim_end()));
    }));
}

fn main() {
    tune_allocator();
    redact_panics();
    std::process::exit(gleap_etl::cli::main_with_args(std::env::args_os()));
}
