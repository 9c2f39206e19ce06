//! `syscall-profiler diff A B`: two saved reports (`report --save`, or `--format json`)
//! compared, as text, JSON or a self-contained HTML page. No kernel, no root.
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::{
    commands::{report::Format, write_file},
    model::diff::{diff, DiffReport, Side, Snapshot, DIFF_SCHEMA_VERSION},
    report::{diff::render_diff_text, html::render_diff_html, SCHEMA_VERSION},
};

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The earlier (or good) report.
    pub a: PathBuf,
    /// The later (or bad) report.
    pub b: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the comparison as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Rows shown in the text output (JSON and HTML have all).
    #[arg(long, default_value_t = 25)]
    pub limit: usize,
}

pub fn run(args: DiffArgs) -> anyhow::Result<i32> {
    let (a, b) = (load(&args.a)?, load(&args.b)?);
    let side = |path: &Path, snapshot: &Snapshot| Side {
        path: path.display().to_string(),
        duration_ns: snapshot.duration_ns,
        host: snapshot.host.clone(),
    };
    let report = DiffReport {
        schema_version: DIFF_SCHEMA_VERSION,
        a: side(&args.a, &a),
        b: side(&args.b, &b),
        rows: diff(&a, &b),
    };
    if let Some(path) = &args.html {
        write_file(path, &render_diff_html(&report))?;
    }
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
        Format::Text => render_diff_text(&report, args.limit),
    };
    print!("{text}");
    Ok(0)
}

/// Reads a saved report, with one clear line for a file that is missing, not JSON,
/// truncated, not a report, or from a newer version.
fn load(path: &Path) -> anyhow::Result<Snapshot> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {name}: {e}"))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        if e.is_eof() {
            anyhow::anyhow!("{name} is truncated ({e})")
        } else {
            anyhow::anyhow!("{name} is not a syscall-profiler report: not JSON ({e})")
        }
    })?;
    let Some(version) = value.get("schema_version").and_then(Value::as_u64) else {
        anyhow::bail!("{name} is not a syscall-profiler report (no schema_version)");
    };
    if version > u64::from(SCHEMA_VERSION) {
        anyhow::bail!(
            "{name} was written by a newer syscall-profiler (report schema {version}; this one reads 3 to {SCHEMA_VERSION}): compare it with that version"
        );
    }
    if version < 3 {
        anyhow::bail!("{name} is a report of schema {version}, too old to compare (3 to {SCHEMA_VERSION})");
    }
    serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{name} is not a complete syscall-profiler report: {e}"))
}
