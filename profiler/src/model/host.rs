//! Where and when a report was taken: the time, the host, its kernel and boot, its CPU, and
//! the command line (read by `session::host`).
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Host {
    /// When profiling began, RFC 3339 in UTC.
    pub time: String,
    pub hostname: String,
    pub kernel_release: String,
    /// `/proc/sys/kernel/random/boot_id`: tells two boots of one host apart.
    pub boot_id: String,
    pub cpu_model: String,
    /// The profiler's own command line.
    pub command_line: Vec<String>,
}
