//! `syscall-top`: the live terminal view (same as `syscall-profiler top`).
fn main() {
    std::process::exit(profiler::commands::syscall_top_main());
}
