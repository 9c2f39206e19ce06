//! `profiler-manpages DIR`: writes the man pages of `syscall-profiler` (one per subcommand
//! too, `syscall-profiler-report.1`, ...) and `syscall-top` into DIR, from their command
//! lines. For the packages (`cargo xtask dist`); not installed itself.
use std::{io, path::Path};

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("profiler-manpages: usage: profiler-manpages DIR");
        std::process::exit(2);
    };
    if let Err(err) = write_pages(Path::new(&dir)) {
        eprintln!(
            "profiler-manpages: cannot write into {}: {err}",
            Path::new(&dir).display()
        );
        std::process::exit(1);
    }
}

fn write_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for command in profiler::commands::command_lines() {
        write_page(dir, command.clone(), command.get_name())?;
        let version = leak(command.get_version().unwrap_or_default().to_owned());
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            // A subcommand's page carries the full name of its program, and its version.
            let name = leak(format!("{}-{}", command.get_name(), sub.get_name()));
            let bin_name = leak(format!("{} {}", command.get_name(), sub.get_name()));
            write_page(dir, sub.clone().name(name).bin_name(bin_name).version(version), name)?;
        }
    }
    Ok(())
}

fn write_page(dir: &Path, command: clap::Command, name: &str) -> io::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    std::fs::write(dir.join(format!("{name}.1")), page)
}

/// clap takes names as `&'static str` (without its `string` feature); a handful of pages'
/// names live as long as this short program anyway.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}
