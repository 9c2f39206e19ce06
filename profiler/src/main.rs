//! `syscall-profiler`: where does a process's time at the kernel boundary go?
fn main() {
    std::process::exit(profiler::commands::main());
}
