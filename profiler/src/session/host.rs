//! Reading where and when a report is taken ([`Host`]). Each fact best effort: one that
//! cannot be read is empty, never an error (a report matters more than its header).
use std::{fs, time::SystemTime};

use crate::model::host::Host;

/// The facts as of `started`.
pub fn read_host(started: SystemTime) -> Host {
    let (hostname, kernel_release) = uname();
    Host {
        time: humantime::format_rfc3339_seconds(started).to_string(),
        hostname,
        kernel_release,
        boot_id: fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_owned())
            .unwrap_or_default(),
        cpu_model: fs::read_to_string("/proc/cpuinfo")
            .map(|text| cpu_model(&text))
            .unwrap_or_default(),
        command_line: std::env::args().collect(),
    }
}

/// `(nodename, release)` from uname(2).
fn uname() -> (String, String) {
    // SAFETY: uname fills a zeroed struct of NUL-terminated arrays.
    let names = unsafe {
        let mut names: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut names) != 0 {
            return Default::default();
        }
        names
    };
    let text = |field: &[libc::c_char]| {
        #[allow(clippy::unnecessary_cast)] // c_char is i8 on x86_64, u8 on arm64
        let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    (text(&names.nodename), text(&names.release))
}

/// The CPU's model from `/proc/cpuinfo`: `model name` on x86; arm64 has none, and gives its
/// implementer and part numbers instead.
fn cpu_model(cpuinfo: &str) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    if let Some(model) = field("model name") {
        return model;
    }
    match (field("CPU implementer"), field("CPU part")) {
        (Some(implementer), Some(part)) => format!("implementer {implementer} part {part}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_model_comes_from_cpuinfo() {
        let x86 =
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz\n";
        assert_eq!(cpu_model(x86), "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz");
        let arm64 = "processor\t: 0\nBogoMIPS\t: 243.75\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n";
        assert_eq!(cpu_model(arm64), "implementer 0x41 part 0xd0c");
        assert_eq!(cpu_model(""), "");
    }

    #[test]
    fn the_time_is_rfc3339_in_utc() {
        let started = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_990_396);
        assert_eq!(read_host(started).time, "2026-11-29T22:13:16Z");
    }
}
