//! `cargo xtask matrix`: the kernel tests that do not depend on timing, on other kernels.
//!
//! Each kernel is one of Debian's packaged kernels (the newest 6.1 generic and PREEMPT_RT
//! for amd64), downloaded once into the cache and booted under qemu by virtme-ng with this
//! machine's root shared read-only (9p); virtme-ng lays a tmpfs overlay on `/tmp`, where
//! the tests' fifos and sockets can live (they cannot on 9p) and a checkout under `/tmp`
//! stays visible. Nothing is installed as the host's kernel: only the kernel's modules go to
//! `/lib/modules/VERSION`, where the VM's initramfs looks for the 9p drivers.
//!
//! Nested KVM hangs at boot on this machine kind, so the VMs run under TCG emulation (boot
//! in ~15 s): timing means nothing there, so only tests of counts, errnos, names, ia32,
//! churn, attach and detach and the stuck view run (see [`TESTS`]).
use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{dist, parse_test_result, setup, step};

/// The kernels of the matrix: Debian package name patterns (`{}` is the ABI number; the
/// newest in the archive is taken) and what they are.
const KERNELS: &[(&str, &str)] = &[
    ("linux-image-6.1.0-{}-amd64-unsigned", "Debian 12, 6.1 generic"),
    ("linux-image-6.1.0-{}-rt-amd64-unsigned", RT_WHAT),
];

/// Its VMs no longer freeze under single-threaded TCG (see `vng_command`), and its stuck-view
/// failure (a hang just begun shown as in its call since the start: the slots were read
/// before /proc) is fixed (12 of 12 since, 3 failures in 18 before). It boots beside the
/// generic kernel (see [`run`]), so its ~4 minutes do not add to CI's.
const RT_WHAT: &str = "Debian 12, 6.1 PREEMPT_RT";

/// The tests run in each VM, by test binary. None of them asserts a time.
pub const TESTS: &[(&str, &[&str])] = &[
    (
        "report",
        &[
            "exact_number_of_trivial_syscalls",
            "exact_number_of_failing_openat_under_enoent",
            "ia32_calls_are_named_from_the_i386_table",
            "command_descendants_are_profiled",
            "new_tasks_on_reused_kernel_stacks_are_told_apart",
            "a_fork_storm_loses_no_call",
        ],
    ),
    (
        "lifecycle",
        &[
            "killed_inside_a_blocking_call_leaves_no_slot",
            "exit_group_never_returns_and_leaves_no_slot",
            "exec_from_a_thread_moves_the_call_to_the_new_tid",
            "a_key_keeps_its_slot_when_slots_before_it_are_freed",
            "full_maps_are_counted_and_reported",
        ],
    ),
    (
        "incident",
        &[
            "a_report_names_what_hung_threads_wait_on",
            "threads_get_rows_of_their_own",
        ],
    ),
    ("top", &["stuck_view_times_a_blocking_call_that_was_not_sampled"]),
];

/// virtme-ng release known to boot these kernels here.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// Result of the matrix: tests passed and failed, over every kernel.
pub struct Outcome {
    pub passed: u64,
    pub failed: u64,
}

/// Boots every kernel of the matrix (or those whose description contains `only`: `generic`,
/// `RT`, `5.10`, `arm64`) and runs [`TESTS`] in it. The x86 kernels of [`KERNELS`] boot side
/// by side: each VM is one host thread (single-threaded TCG), so two of them on a two-core
/// machine take the time of the slower one; the 5.10 check and arm64 (which builds first)
/// follow.
pub fn run(path: &OsString, only: Option<&str>) -> Result<Outcome> {
    let chosen = |what: &str| only.is_none_or(|only| what.contains(only));
    if !crate::is_root() {
        bail!("the kernel matrix needs root (it puts the kernels' modules under /lib/modules)");
    }
    let vng = ensure_tools()?;
    let binaries = test_binaries(path)?;
    let root = std::env::current_dir()?;
    let mut kernels = Vec::new();
    for (pattern, what) in KERNELS.iter().filter(|(_, what)| chosen(what)) {
        kernels.push((fetch_kernel(pattern)?, *what));
    }
    let mut outcome = Outcome { passed: 0, failed: 0 };
    let mut lines = Vec::new();
    let mut add = |(one, line): (Outcome, String)| {
        outcome.passed += one.passed;
        outcome.failed += one.failed;
        lines.push(line);
    };
    let side_by_side: Vec<Result<(Outcome, String)>> = std::thread::scope(|scope| {
        let vms: Vec<_> = kernels
            .iter()
            .map(|(kernel, what)| scope.spawn(|| run_tests_in_vm(&vng, &root, &binaries, kernel, what)))
            .collect();
        vms.into_iter()
            .map(|vm| vm.join().unwrap_or_else(|_| bail!("a VM's thread panicked")))
            .collect()
    });
    for result in side_by_side {
        add(result?);
    }
    if chosen(TOO_OLD_WHAT) {
        add(run_too_old(&vng, &root)?);
    }
    if chosen(ARM64_WHAT) {
        add(run_arm64(path)?);
    }
    println!("kernel matrix (under qemu, TCG):");
    for line in lines {
        println!("  {line}");
    }
    Ok(outcome)
}

/// Boots `kernel` and runs [`TESTS`] in it. Its script, console and output have a directory
/// of their own (`target/matrix/VERSION/`), so VMs can run side by side.
fn run_tests_in_vm(
    vng: &Path,
    root: &Path,
    binaries: &BTreeMap<String, PathBuf>,
    kernel: &Kernel,
    what: &str,
) -> Result<(Outcome, String)> {
    let share = share_dir(root, &kernel.version)?;
    let output = share.join("tests.out");
    // The script goes to a file the VM reads through the shared root: vng passes `--exec` on
    // the kernel's command line, and a long one (past 2 KiB on x86) kills the kernel in early
    // boot ("PANIC: early exception 0x06").
    let script_file = share.with_file_name("tests.sh");
    fs::write(&script_file, vm_script(root, binaries, &output)?)?;
    let script = format!("sh {}", script_file.display());
    let expected: u64 = TESTS.iter().map(|(_, names)| names.len() as u64).sum();
    step(&format!("booting {} ({what}) under qemu", kernel.version));
    let started = Instant::now();
    let make = || {
        let mut vm = vng_command(vng, kernel, "4G", &script)?;
        vm.arg("--rwdir").arg(&share);
        Ok(vm)
    };
    let console = console_of(make, root, &kernel.version, Some(&output))?;
    // The tests' output as the script wrote it to the shared directory: complete even where
    // the serial console fell behind or stalled.
    let written = fs::read_to_string(&output).unwrap_or_default();
    let one = tally(&written, expected);
    if one.failed > 0 {
        println!("{console}");
    }
    Ok(result_line(kernel, what, one, started))
}

/// `target/matrix/VERSION/share`, created: the directory a kernel's VM shares read-write,
/// where its script writes what it ran (one per kernel, so VMs can run side by side).
fn share_dir(root: &Path, version: &str) -> Result<PathBuf> {
    let share = crate::target_dir(root).join("matrix").join(version).join("share");
    fs::create_dir_all(&share)?;
    Ok(share)
}

/// Debian 11's newest 5.10 kernel (older than the profiler supports), from the archive's
/// package index: the apt sources here are Debian 12's.
const TOO_OLD_INDEX: &str = "http://deb.debian.org/debian/dists/bullseye/main/binary-amd64/Packages.xz";
const TOO_OLD_ARCHIVE: &str = "http://deb.debian.org/debian/";
const TOO_OLD_WHAT: &str = "Debian 11, 5.10 (too old)";
const ARM64_WHAT: &str = "Debian 12, 6.1 arm64";

/// Boots a kernel older than 5.12 and checks that the profiler says so in one line and exits
/// 1, before the verifier could print anything.
fn run_too_old(vng: &Path, root: &Path) -> Result<(Outcome, String)> {
    let dir = fetch_from_index(TOO_OLD_INDEX, "linux-image-5.10.0-", "-amd64-unsigned")?;
    let kernel = kernel_in(&dir)?;
    install_modules(&dir, &kernel.version)?;
    step(&format!("booting {} ({TOO_OLD_WHAT}) under qemu", kernel.version));
    let started = Instant::now();
    let profiler = crate::target_dir(root).join("release/syscall-profiler");
    // What the profiler says, and its exit status, to a file in a directory shared read-write:
    // the console lost the last line (the status) to the power-down once.
    let share = share_dir(root, &kernel.version)?;
    let output = share.join("too-old.out");
    let script = format!(
        "echo {STARTED}; {} report --duration 1 -- true > {out} 2>&1; echo \"exit status $?\" >> {out}",
        profiler.display(),
        out = output.display()
    );
    let make = || {
        let mut vm = vng_command(vng, &kernel, "2G", &script)?;
        vm.arg("--rwdir").arg(&share);
        Ok(vm)
    };
    let console = console_of(make, root, &kernel.version, Some(&output))?;
    let written = fs::read_to_string(&output).unwrap_or_default();
    let said = too_old_said_so(&written, &kernel.version);
    if !said {
        println!("{console}\n{written}");
    }
    let outcome = Outcome {
        passed: u64::from(said),
        failed: u64::from(!said),
    };
    Ok(result_line(&kernel, TOO_OLD_WHAT, outcome, started))
}

/// Whether the output shows exactly one line from the profiler, the "too old" one, and its
/// exit status 1.
fn too_old_said_so(console: &str, release: &str) -> bool {
    let from_profiler: Vec<&str> = console
        .lines()
        .filter(|line| line.contains("syscall-profiler: "))
        .collect();
    let expected = format!("syscall-profiler: Linux {release} is too old: syscall-profiler needs Linux 5.12 or later");
    from_profiler.len() == 1
        && from_profiler[0].contains(&expected)
        && console.lines().any(|line| line.trim() == "exit status 1")
}

/// The newest package `BEFORE<N>AFTER` in a Debian package index, downloaded (its SHA-256
/// checked) and unpacked into the cache once.
fn fetch_from_index(index: &str, before: &str, after: &str) -> Result<PathBuf> {
    let listing = setup::output("sh", &["-c", &format!("curl -fsSL '{index}' | xz -d")])?;
    let (name, filename, sha256) =
        newest_in_index(&listing, before, after).with_context(|| format!("no {before}N{after} in {index}"))?;
    let dir = setup::cache_dir().join("debs").join(&name);
    if dir.is_dir() {
        return Ok(dir);
    }
    step(&format!("downloading {name} from Debian's archive (once)"));
    let deb = setup::cache_dir().join("debs").join(format!("{name}.deb"));
    setup::run(
        "curl",
        &[
            "-fsSL",
            "-o",
            &deb.to_string_lossy(),
            &format!("{TOO_OLD_ARCHIVE}{filename}"),
        ],
    )?;
    let sum = setup::output("sha256sum", &[&deb.to_string_lossy()])?;
    if sum.split_whitespace().next() != Some(sha256.as_str()) {
        bail!("{name}: SHA-256 differs from the index's");
    }
    unpack(&deb, &dir)?;
    fs::remove_file(&deb)?;
    Ok(dir)
}

/// The package name, `Filename` and `SHA256` of the highest ABI number's `BEFORE<N>AFTER` in
/// a `Packages` index.
fn newest_in_index(listing: &str, before: &str, after: &str) -> Option<(String, String, String)> {
    listing
        .split("\n\n")
        .filter_map(|stanza| {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
                    .map(str::to_owned)
            };
            let package = field("Package")?;
            let abi: u32 = package.strip_prefix(before)?.strip_suffix(after)?.parse().ok()?;
            Some((abi, package, field("Filename")?, field("SHA256")?))
        })
        .max()
        .map(|(_, package, filename, sha256)| (package, filename, sha256))
}

/// A VM's longest run: a test that hangs must not hold up the whole run. (8 minutes was too
/// tight on a noisy host: one build's PREEMPT_RT VM took 390 s in one run and over 480 s in
/// the next; a freeze is caught sooner, by 3 minutes without output.)
const VM_LIMIT: Duration = Duration::from_secs(12 * 60);

/// What each VM's script prints first: a VM that has not printed it within [`BOOT_LIMIT`]
/// did not boot (a kernel that dies in early boot hangs rather than powering off).
const STARTED: &str = "matrix: tests start";
const BOOT_LIMIT: Duration = Duration::from_secs(150);

/// A VM whose console stays silent this long has frozen: no test here is silent for more
/// than a minute, and the watchdog in the VM prints every 30 s once one runs long.
const SILENCE_LIMIT: Duration = Duration::from_secs(180);

/// Boots of a VM that freezes or does not boot, at most.
const ATTEMPTS: u32 = 3;

/// How a VM run ended.
enum VmEnd {
    PoweredOff,
    NotBooted,
    Silent,
    LockedUp,
    Stopped,
}

/// What the kernel prints when a CPU stops answering: a VM that says it is not coming back
/// (the console goes on with reports every half minute, so silence alone would not tell).
const LOCKUP: &str = "watchdog: BUG: soft lockup";

/// Runs a VM (made by `make`) to its end; its console goes to `target/matrix/VERSION.log` as
/// it comes (to follow a slow run), and is returned. A VM that did not boot, froze (a silent
/// console), reported a soft lockup or ran past [`VM_LIMIT`] is stopped, its console shown,
/// and booted again (up to [`ATTEMPTS`] times): under multi-threaded TCG a VM now and then
/// locked up while the kernel patched its tracepoints (see `vng_command`), at a different
/// test each time. A test that hangs for real hangs every time.
///
/// `output`: a file the VM's script writes its output to as well, through a shared directory;
/// it counts as output for telling a frozen VM (emptied before each boot).
fn console_of(make: impl Fn() -> Result<Command>, root: &Path, version: &str, output: Option<&Path>) -> Result<String> {
    let dir = crate::target_dir(root).join("matrix");
    fs::create_dir_all(&dir)?;
    let log = dir.join(format!("{version}.log"));
    for attempt in 1..=ATTEMPTS {
        if let Some(output) = output {
            let _ = fs::remove_file(output);
        }
        let end = run_vm(make()?, &log, output)?;
        let console = fs::read_to_string(&log)?;
        let what = match end {
            VmEnd::PoweredOff => return Ok(console),
            VmEnd::NotBooted => format!("did not boot within {BOOT_LIMIT:?}"),
            VmEnd::Silent => format!("froze (no console output for {SILENCE_LIMIT:?})"),
            VmEnd::LockedUp => "locked up (its kernel reported a soft lockup)".to_owned(),
            VmEnd::Stopped => format!("was still running after {VM_LIMIT:?}"),
        };
        if attempt < ATTEMPTS {
            println!("{console}");
            step(&format!(
                "the VM of {version} {what}; its console is above; booting it again"
            ));
        } else {
            step(&format!(
                "the VM of {version} {what}, {ATTEMPTS} times (console: {})",
                log.display()
            ));
            return Ok(console);
        }
    }
    unreachable!("the last attempt returns")
}

fn run_vm(mut vm: Command, log: &Path, output: Option<&Path>) -> Result<VmEnd> {
    use std::os::unix::process::CommandExt;
    let file = fs::File::create(log)?;
    // A group of its own: vng starts qemu as its child, and a stop must reach both.
    let mut child = vm
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("starting the VM")?;
    let started = Instant::now();
    let (mut booted, mut length, mut last_output) = (false, 0, Instant::now());
    loop {
        // vng's own exit status says nothing of the tests.
        if child.try_wait()?.is_some() {
            return Ok(VmEnd::PoweredOff);
        }
        let console = fs::read_to_string(log).unwrap_or_default();
        booted = booted || console.contains(STARTED);
        let written = output
            .and_then(|output| fs::metadata(output).ok())
            .map_or(0, |m| m.len() as usize);
        if console.len() + written != length {
            (length, last_output) = (console.len() + written, Instant::now());
        }
        let end = if started.elapsed() > BOOT_LIMIT && !booted {
            VmEnd::NotBooted
        } else if last_output.elapsed() > SILENCE_LIMIT {
            VmEnd::Silent
        } else if console.contains(LOCKUP) {
            VmEnd::LockedUp
        } else if started.elapsed() > VM_LIMIT {
            VmEnd::Stopped
        } else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.wait();
        return Ok(end);
    }
}

/// virtme-ng booting `kernel` with this machine's root, running `script`.
fn vng_command(vng: &Path, kernel: &Kernel, memory: &str, script: &str) -> Result<Command> {
    let mut vm = Command::new(vng);
    // vng runs the venv's other commands (virtme-run) by name.
    vm.env("PATH", with_venv(vng)?)
        .arg("-r")
        .arg(&kernel.vmlinuz)
        .args([
            "--cpus",
            "2",
            "--memory",
            memory,
            "--disable-kvm",
            "--force-9p",
            "--verbose",
            // One host thread runs both vCPUs, in turns. With a thread per vCPU (MTTCG, qemu's
            // default) a VM now and then locked up for good while the profiler attached or
            // detached its programs: the kernel patches the tracepoints' call sites
            // (`text_poke_bp`: an int3, then an IPI to every CPU), and the other vCPU kept
            // trapping on the int3 with interrupts off, never answering the IPI (seen in
            // the soft-lockup report and NMI backtraces one such VM printed; README, Tests).
            "--qemu-opts=-accel tcg,thread=single",
        ])
        .args(["--exec", script]);
    Ok(vm)
}

/// A kernel's line in the matrix's closing table, with its outcome.
fn result_line(kernel: &Kernel, what: &str, outcome: Outcome, started: Instant) -> (Outcome, String) {
    let line = format!(
        "{:<22} {:<28} {:>3} passed {:>3} failed  {:>4.0} s",
        kernel.version,
        what,
        outcome.passed,
        outcome.failed,
        started.elapsed().as_secs_f64()
    );
    (outcome, line)
}

/// The tests a VM's console says passed and failed; a VM that did not boot, or a test binary
/// that did not run, counts its `expected` tests that never reported as failed. The console
/// is shown when anything failed.
fn tally(console: &str, expected: u64) -> Outcome {
    let (passed, failed) = console
        .lines()
        .filter_map(parse_test_result)
        .fold((0, 0), |(p, f), (tp, tf)| (p + tp, f + tf));
    let missing = expected.saturating_sub(passed + failed);
    if failed > 0 || missing > 0 {
        println!("{console}");
    }
    Outcome {
        passed,
        failed: failed + missing,
    }
}

/// qemu, kmod (depmod) and busybox from Debian; virtme-ng from PyPI into a venv of its own.
fn ensure_tools() -> Result<PathBuf> {
    setup::install_missing(
        &[
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("depmod", "kmod"),
            ("busybox", "busybox-static"),
        ],
        "the kernel matrix boots kernels under qemu",
    )?;
    let venv = setup::cache_dir().join("virtme-ng");
    let vng = venv.join("bin/vng");
    if !vng.is_file() {
        step(&format!("installing {VIRTME_NG} from PyPI into {}", venv.display()));
        setup::run("python3", &["-m", "venv", &venv.to_string_lossy()])?;
        setup::run(&venv.join("bin/pip").to_string_lossy(), &["install", "-q", VIRTME_NG])?;
    }
    Ok(vng)
}

/// `PATH` with the venv's `bin` first.
fn with_venv(vng: &Path) -> Result<OsString> {
    let bin = vng.parent().expect("vng is in bin/").to_owned();
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&path)),
    )?)
}

struct Kernel {
    /// `uname -r` of the kernel, e.g. `6.1.0-57-amd64`.
    version: String,
    vmlinuz: PathBuf,
}

/// The newest ABI number among the archive's packages matching `pattern`.
fn newest_package(pattern: &str) -> Result<String> {
    let (before, after) = pattern.split_once("{}").expect("a {} in the pattern");
    let regex = format!("^{}[0-9]+{}$", before.replace('.', "\\."), after);
    let listed = |update: bool| -> Result<Option<String>> {
        if update {
            setup::apt_update()?;
        }
        let found = setup::output("apt-cache", &["search", "--names-only", &regex])?;
        Ok(newest_of(&found, before, after))
    };
    match listed(false)? {
        Some(name) => Ok(name),
        None => listed(true)?.with_context(|| format!("no package {pattern} in Debian's archive")),
    }
}

/// The package with the highest ABI number among `apt-cache search` lines.
fn newest_of(listing: &str, before: &str, after: &str) -> Option<String> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| {
            let abi: u32 = name.strip_prefix(before)?.strip_suffix(after)?.parse().ok()?;
            Some((abi, name.to_owned()))
        })
        .max()
        .map(|(_, name)| name)
}

/// Downloads and unpacks the newest kernel matching `pattern` into the cache (once), and puts
/// its modules where the VM looks for them.
fn fetch_kernel(pattern: &str) -> Result<Kernel> {
    let package = newest_package(pattern)?;
    let dir = unpacked(&package, &package)?;
    let kernel = kernel_in(&dir)?;
    install_modules(&dir, &kernel.version)?;
    Ok(kernel)
}

/// The kernel of an unpacked `linux-image` package.
fn kernel_in(dir: &Path) -> Result<Kernel> {
    let boot = dir.join("boot");
    let vmlinuz = fs::read_dir(&boot)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .with_context(|| format!("no vmlinuz in {}", boot.display()))?;
    let version = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_owned();
    Ok(Kernel { version, vmlinuz })
}

/// Puts an unpacked kernel's modules where virtme-ng's initramfs looks for them.
fn install_modules(dir: &Path, version: &str) -> Result<()> {
    let modules = Path::new("/lib/modules").join(version);
    if !modules.join("modules.dep").is_file() {
        step(&format!(
            "putting {version}'s modules under /lib/modules (for the VM's initramfs)"
        ));
        fs::create_dir_all("/lib/modules")?;
        let _ = fs::remove_dir_all(&modules);
        setup::run(
            "cp",
            &[
                "-a",
                &dir.join("lib/modules").join(version).to_string_lossy(),
                &modules.to_string_lossy(),
            ],
        )?;
        setup::run("depmod", &[version])?;
    }
    Ok(())
}

/// Debian package `package` (`NAME` or `NAME:ARCH`) downloaded and unpacked into the cache
/// as `name`, once; returns its directory.
fn unpacked(package: &str, name: &str) -> Result<PathBuf> {
    let dir = setup::cache_dir().join("debs").join(name);
    if dir.is_dir() {
        return Ok(dir);
    }
    step(&format!("downloading {package} from Debian's archive (once)"));
    let download = dir.with_file_name(format!("{name}.download"));
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download)?;
    let status = Command::new("apt-get")
        .args(["download", "-qq", package])
        .current_dir(&download)
        .status()
        .context("running apt-get download")?;
    if !status.success() {
        bail!("apt-get download {package} failed");
    }
    let deb = only_file(&download)?;
    unpack(&deb, &dir)?;
    fs::remove_dir_all(&download)?;
    Ok(dir)
}

/// Unpacks a `.deb` into `dir`, which appears only once complete.
fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    // Not with_extension: the package names have dots ("linux-image-6.1.0-...").
    let name = dir.file_name().expect("a directory").to_string_lossy();
    let unpacking = dir.with_file_name(format!("{name}.unpacked"));
    let _ = fs::remove_dir_all(&unpacking);
    setup::run(
        "dpkg-deb",
        &["-x", &deb.to_string_lossy(), &unpacking.to_string_lossy()],
    )?;
    fs::rename(&unpacking, dir)?;
    Ok(())
}

fn only_file(dir: &Path) -> Result<PathBuf> {
    fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .next()
        .with_context(|| format!("nothing downloaded into {}", dir.display()))
}

/// Builds the test binaries (release) and maps each test target's name to its executable.
fn test_binaries(path: &OsString) -> Result<BTreeMap<String, PathBuf>> {
    let output = crate::cargo_command(
        path,
        &[
            "test",
            "--release",
            "--package",
            "profiler",
            "--no-run",
            "--message-format=json",
        ],
    )
    .stderr(std::process::Stdio::inherit())
    .output()
    .context("building the test binaries")?;
    if !output.status.success() {
        bail!("building the test binaries failed");
    }
    Ok(executables(&String::from_utf8_lossy(&output.stdout)))
}

/// Test targets and their executables from cargo's `--message-format=json` lines.
fn executables(messages: &str) -> BTreeMap<String, PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["profile"]["test"] == true)
        .filter_map(|message| {
            let name = message["target"]["name"].as_str()?.to_owned();
            Some((name, PathBuf::from(message["executable"].as_str()?)))
        })
        .collect()
}

/// Tells the tests they run under emulation, where times mean nothing (`tests/common.rs`).
const EMULATED: &str = "PROFILER_TESTS_EMULATED";

/// Prints where a profiler or workload process running for more than 90 s is (each thread's
/// kernel stack): the record of a hang, should a test hang in a VM. `vm_script` runs it in
/// the background.
const WATCHDOG: &str = r#"(while sleep 30; do for p in $(pgrep -f "/release/(syscall-profiler|profiler-workload)"); do e=$(ps -o etimes= -p $p); [ "${e:-0}" -gt 90 ] || continue; echo "=== running for ${e}s: $p $(tr "\0" " " < /proc/$p/cmdline)"; for t in /proc/$p/task/*; do echo "--- $t $(cat $t/comm) $(cat $t/wchan)"; cat $t/stack; done; done; done)"#;

/// The shell script run in each VM: the watchdog, then each test binary on its tests, all
/// of it written to the console and to `output` (a file in a directory shared read-write).
/// The watchdog appends to `output` itself: in the braces it would hold the pipe to `tee`
/// open, and the script would never end.
fn vm_script(root: &Path, binaries: &BTreeMap<String, PathBuf>, output: &Path) -> Result<String> {
    let output = output.display();
    let mut script = format!(
        "echo {STARTED}\nexport {EMULATED}=1\ncd {}/profiler\n{WATCHDOG} >> {output} 2>&1 &\n{{\n",
        root.display()
    );
    for (binary, names) in TESTS {
        let executable = binaries
            .get(*binary)
            .with_context(|| format!("no test binary {binary} was built"))?;
        script += &format!(
            "{} --include-ignored --test-threads=1 --exact {}\n",
            executable.display(),
            names.join(" ")
        );
    }
    script += &format!("}} 2>&1 | tee -a {output}\n");
    Ok(script)
}

/// The tests run on arm64, by test binary: counts, errnos, names from the arm64 table,
/// churn, and the `pt_regs` fields found in arm64's BTF. Not the fork storm: 20,000
/// processes take more than 4 minutes under arm64 emulation.
pub const ARM64_TESTS: &[(&str, &[&str])] = &[
    (
        "report",
        &[
            "exact_number_of_trivial_syscalls",
            "exact_number_of_failing_openat_under_enoent",
            "command_descendants_are_profiled",
            "new_tasks_on_reused_kernel_stacks_are_told_apart",
        ],
    ),
    (
        "lifecycle",
        &[
            "killed_inside_a_blocking_call_leaves_no_slot",
            "exit_group_never_returns_and_leaves_no_slot",
            "exec_from_a_thread_moves_the_call_to_the_new_tid",
            "full_maps_are_counted_and_reported",
        ],
    ),
    (
        "profiler",
        &["kernel::btf::tests::running_kernel_offsets_are_plausible"],
    ),
];

/// Debian's arm64 kernel under `qemu-system-aarch64` (TCG), booted straight into an
/// initramfs: busybox, the arm64 C library from Debian's cross packages, and the test
/// binaries cross-built for arm64 at the paths they were built at (they find the profiler
/// and the workload there).
pub fn run_arm64(path: &OsString) -> Result<(Outcome, String)> {
    let target = &dist::TARGETS[1];
    ensure_arm64_tools()?;
    dist::ensure_cross(target)?;
    step("building the tests for arm64");
    let output = dist::cross_cargo(
        path,
        target,
        &[
            "test",
            "--release",
            "--package",
            "profiler",
            "--target",
            target.triple,
            "--no-run",
            "--message-format=json",
        ],
    )
    .stderr(std::process::Stdio::inherit())
    .output()
    .context("building the arm64 tests")?;
    if !output.status.success() {
        bail!("building the tests for arm64 failed");
    }
    let binaries = executables(&String::from_utf8_lossy(&output.stdout));
    let kernel = fetch_arm64_kernel()?;
    let root = std::env::current_dir()?;
    let initrd = arm64_initramfs(&root, target, &binaries)?;
    step(&format!(
        "booting {} ({ARM64_WHAT}) under qemu-system-aarch64",
        kernel.version
    ));
    let started = Instant::now();
    let vm = || -> Result<Command> {
        let mut vm = Command::new("qemu-system-aarch64");
        vm.args(["-M", "virt", "-smp", "2", "-m", "2G", "-nographic", "-no-reboot"])
            // The kernel signs its return addresses (pointer authentication): qemu's own cheap
            // algorithm for it, instead of emulating QARMA, makes the VM several times faster.
            .args(["-cpu", "max,pauth-impdef=on"])
            .arg("-kernel")
            .arg(&kernel.vmlinuz)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyAMA0 rdinit=/init panic=-1 quiet"]);
        Ok(vm)
    };
    let console = console_of(vm, &root, &kernel.version, None)?;
    let expected: u64 = ARM64_TESTS.iter().map(|(_, names)| names.len() as u64).sum();
    Ok(result_line(&kernel, ARM64_WHAT, tally(&console, expected), started))
}

/// qemu-system-aarch64 and cpio; Debian's arm64 packages (for the kernel and busybox) need the
/// architecture added to dpkg.
fn ensure_arm64_tools() -> Result<()> {
    setup::install_missing(
        &[("qemu-system-aarch64", "qemu-system-arm"), ("cpio", "cpio")],
        "the arm64 kernel runs under qemu",
    )?;
    let foreign = setup::output("dpkg", &["--print-foreign-architectures"])?;
    if !foreign.lines().any(|line| line.trim() == "arm64") {
        step("adding arm64 to dpkg's architectures (to download Debian's arm64 kernel and busybox)");
        setup::run("dpkg", &["--add-architecture", "arm64"])?;
        setup::apt_update()?;
    }
    Ok(())
}

fn fetch_arm64_kernel() -> Result<Kernel> {
    let package = newest_package("linux-image-6.1.0-{}-arm64-unsigned")?;
    kernel_in(&unpacked(&format!("{package}:arm64"), &package)?)
}

/// The initramfs for the arm64 VM, written next to the test binaries.
fn arm64_initramfs(root: &Path, target: &dist::Target, binaries: &BTreeMap<String, PathBuf>) -> Result<PathBuf> {
    let out = crate::target_dir(root).join(target.triple).join("release");
    let tree = out.join("initramfs");
    let _ = fs::remove_dir_all(&tree);
    for dir in ["bin", "lib", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(tree.join(dir))?;
    }
    let busybox = unpacked("busybox-static:arm64", "busybox-static-arm64")?;
    fs::copy(busybox.join("bin/busybox"), tree.join("bin/busybox"))?;
    // The C library the binaries were linked against (Debian's cross packages).
    let cross_lib = Path::new("/usr/aarch64-linux-gnu/lib");
    for library in ["ld-linux-aarch64.so.1", "libc.so.6", "libm.so.6", "libgcc_s.so.1"] {
        fs::copy(cross_lib.join(library), tree.join("lib").join(library))
            .with_context(|| format!("copying {library} from {}", cross_lib.display()))?;
    }
    let mut script = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
         export PATH=/bin LD_LIBRARY_PATH=/lib\n",
    );
    script += &format!("echo {STARTED}\nexport {EMULATED}=1\n");
    script += &format!("mkdir -p {0}/profiler; cd {0}/profiler\n", root.display());
    for (binary, names) in ARM64_TESTS {
        let executable = binaries
            .get(*binary)
            .with_context(|| format!("no arm64 test binary {binary} was built"))?;
        script += &format!(
            "{} --include-ignored --test-threads=1 --exact {}\n",
            executable.display(),
            names.join(" ")
        );
    }
    script += "poweroff -f\n";
    let init = tree.join("init");
    fs::write(&init, script)?;
    dist::set_mode(&init, 0o755)?;
    // Everything the tests run, at the paths it was built at.
    let programs = ["syscall-profiler", "profiler-workload"].map(|name| out.join(name));
    for program in binaries.values().chain(&programs) {
        let inside = tree.join(program.strip_prefix("/").unwrap_or(program));
        fs::create_dir_all(inside.parent().expect("a directory"))?;
        fs::copy(program, &inside).with_context(|| format!("copying {}", program.display()))?;
    }
    let initrd = out.join("initramfs.cpio.gz");
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"cd "$1" && find . | cpio -o -H newc --quiet | gzip -1 > "$2""#)
        .args(["sh".as_ref(), tree.as_os_str(), initrd.as_os_str()])
        .status()?;
    if !status.success() {
        bail!("packing the initramfs failed");
    }
    Ok(initrd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_newest_abi_of_a_flavour() {
        let listing = "linux-image-6.1.0-9-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
                       linux-image-6.1.0-57-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
                       linux-image-6.1.0-56-amd64-unsigned - Linux 6.1 for 64-bit PCs\n\
                       linux-image-6.1.0-58-rt-amd64-unsigned - Linux 6.1 PREEMPT_RT\n";
        assert_eq!(
            newest_of(listing, "linux-image-6.1.0-", "-amd64-unsigned").as_deref(),
            Some("linux-image-6.1.0-57-amd64-unsigned")
        );
        assert_eq!(
            newest_of(listing, "linux-image-6.1.0-", "-rt-amd64-unsigned").as_deref(),
            Some("linux-image-6.1.0-58-rt-amd64-unsigned")
        );
        assert_eq!(newest_of("", "a-", "-b"), None);
    }

    #[test]
    fn finds_the_test_executables_in_cargos_messages() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["test"],"name":"report","src_path":"/r/tests/report.rs","test":true},"profile":{"test":true},"executable":"/r/target/release/deps/report-1a2b"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["bin"],"name":"syscall-profiler","test":true},"profile":{"test":false},"executable":"/r/target/release/syscall-profiler"}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let found = executables(messages);
        assert_eq!(found["report"], PathBuf::from("/r/target/release/deps/report-1a2b"));
        assert_eq!(found.len(), 1, "binaries built for running are not tests");
    }

    #[test]
    fn takes_the_newest_kernel_of_a_package_index() {
        let index = "Package: linux-image-5.10.0-9-amd64-unsigned\nVersion: 1\nFilename: pool/a_9.deb\nSHA256: aa\n\n\
                     Package: linux-image-5.10.0-32-amd64-unsigned\nFilename: pool/a_32.deb\nSHA256: bb\n\n\
                     Package: linux-image-5.10.0-40-rt-amd64-unsigned\nFilename: pool/rt.deb\nSHA256: cc\n";
        assert_eq!(
            newest_in_index(index, "linux-image-5.10.0-", "-amd64-unsigned"),
            Some((
                "linux-image-5.10.0-32-amd64-unsigned".into(),
                "pool/a_32.deb".into(),
                "bb".into()
            ))
        );
    }

    #[test]
    fn a_too_old_kernel_is_one_line_and_exit_status_1() {
        let said = "[ 4.7] virtme-ng-init: starting script\n\
                    syscall-profiler: Linux 5.10.0-32-amd64 is too old: syscall-profiler needs Linux 5.12 or later (BTF tracepoints, bpf_get_current_task_btf, BPF compare-and-swap)\n\
                    exit status 1\n";
        assert!(too_old_said_so(said, "5.10.0-32-amd64"));
        let verifier = "syscall-profiler: cannot load the eBPF programs: ... invalid func unknown#158\nexit status 1\n";
        assert!(!too_old_said_so(verifier, "5.10.0-32-amd64"));
        assert!(!too_old_said_so(
            &said.replace("exit status 1", "exit status 0"),
            "5.10.0-32-amd64"
        ));
    }

    #[test]
    fn the_vm_runs_every_listed_test_binary() {
        let binaries = TESTS
            .iter()
            .map(|(name, _)| (name.to_string(), PathBuf::from(format!("/t/{name}-0"))))
            .collect();
        let script = vm_script(
            Path::new("/r"),
            &binaries,
            Path::new("/r/target/matrix/share/tests.out"),
        )
        .unwrap();
        assert!(
            script.starts_with(
                "echo matrix: tests start\nexport PROFILER_TESTS_EMULATED=1\ncd /r/profiler\n(while sleep 30"
            ),
            "{script}"
        );
        assert!(
            script.ends_with("} 2>&1 | tee -a /r/target/matrix/share/tests.out\n"),
            "{script}"
        );
        // The watchdog writes to the file itself, outside the piped braces.
        assert!(
            script.contains("done) >> /r/target/matrix/share/tests.out 2>&1 &\n{\n"),
            "{script}"
        );
        assert!(
            script.contains("/t/report-0 --include-ignored --test-threads=1 --exact exact_number_of_trivial_syscalls ")
        );
        // The shell reads it (a stray `&;` once made every VM run nothing).
        let parsed = Command::new("sh").args(["-n", "-c", &script]).status().unwrap();
        assert!(parsed.success(), "{script}");
        assert!(vm_script(Path::new("/r"), &BTreeMap::new(), Path::new("/o")).is_err());
    }
}
