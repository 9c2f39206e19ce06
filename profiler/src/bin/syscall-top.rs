//! `syscall-top`: the live terminal view (same as `syscall-profiler top`).
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "syscall-top",
    version,
    about = "Live view of where processes' time at the kernel boundary goes"
)]
struct Cli {
    #[command(flatten)]
    top: profiler::commands::top::TopArgs,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => std::process::exit(profiler::commands::clap_error(err)),
    };
    if let Err(err) = profiler::commands::top::run(cli.top) {
        eprintln!("syscall-top: {}", profiler::commands::one_line(&err));
        std::process::exit(1);
    }
}
