//! `profiler-workload`: a program with known syscall behaviour, for the profiler's tests
//! and benchmarks. Every mode issues its syscalls directly (`libc::syscall`), so the counts
//! are exact and no libc wrapper substitutes another call.
//!
//! Modes:
//!   getppid N              N getppid calls
//!   enoent N               N openat calls on a path that does not exist (ENOENT)
//!   sleep N MS             a thread sleeping N times MS milliseconds in nanosleep
//!   zero-read N BYTES      N reads of BYTES from /dev/zero
//!   pingpong ROUNDS SPIN   two threads ping-ponging a byte over pipes ROUNDS times, next to
//!                          SPIN busy threads (more runnable threads than CPUs: runqueue time)
//!   spin SECS              getppid in a loop for SECS seconds
//!   write-i386 PATH N      writes a static 32-bit (i386) program to PATH that makes N getpid
//!                          calls through `int 0x80` and exits
//!   exec-thread PATH       a second thread execs PATH (the thread takes over the leader's tid)
//!   busy SECS              for SECS seconds: a handful of different calls, then a 10 ms
//!                          sleep, over and over (many of these make a busy machine)
//!   time-getppid N         N getppid calls; prints the mean ns per call (benchmarks)
//!   time-pingpong ROUNDS   pipe ping-pong between two threads; prints ns per round trip
//!   hang-after N SECS      N sleeps of 1 ms, then one sleep of SECS seconds (with sampled
//!                          timing, that last call is most likely not timed at sys_enter)
//!   time-getppid-threads N T
//!                          T threads of this process make N getppid calls each, at once;
//!                          prints the mean ns per call as each thread sees it (benchmarks:
//!                          threads of one process making the same call on several CPUs)
//!   fork-storm N CALLS     N child processes forked as fast as this machine can (at most 64
//!                          alive at once), each making CALLS getppid calls; prints the rate (forks a second) on stderr
//!   churn-soak SECS LIVE RATE
//!                          a busy machine's process churn for SECS seconds: LIVE processes
//!                          under a few dozen names, each making a few calls every 200 ms
//!                          and now and then renaming itself; RATE new processes a second,
//!                          short-lived, most under one-shot names (date, id, ...), some
//!                          under names of their own, some exec'ing /bin/true, every tenth
//!                          taking the pid of the one before (ns_last_pid, needs root)
//!   steady N SECS          N getppid calls spread evenly over SECS seconds (in batches every
//!                          100 ms): a process that is busy for a while
//!   exit-wait N OUT        with a spinner on every CPU: N one-byte writes to a pipe from a
//!                          thread on CPU 0 whose reader, on CPU 0 too, is a SCHED_FIFO
//!                          thread that works 1 ms after each read: every write wakes it and
//!                          waits for the CPU on its way out of write (needs root). The
//!                          writer's own oracles go to OUT as JSON: the wall time of the
//!                          writes on its own clock (vDSO, no syscall), and its run delay
//!                          from /proc/thread-self/schedstat read just around each write
//!   read-spin N OUT        N reads of 64 KiB from /dev/zero on CPU 0, shared with a spinner
//!                          (one on every CPU): the reader's clock around each read to OUT
//!   named-threads N        three threads named by what they do: "getter" makes N getppid
//!                          calls, "sleeper" 5 nanosleeps of 20 ms, "opener" N failing openat
//!   renames N              N children, one after another, each making 10 getppid calls as
//!                          old-name-I, renaming itself new-name-I (prctl), and making 10 more
//!   churn ROUNDS N         ROUNDS times, one after another: a thread that makes N getppid
//!                          calls and exits, then a child process that does the same; the
//!                          leader itself makes none (new tasks reuse the kernel stacks of
//!                          those that just exited: who is calling must not be mistaken)
use std::{
    ffi::CString,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

fn usage() -> ! {
    eprintln!("usage: profiler-workload getppid N | enoent N | sleep N MS | zero-read N BYTES | pingpong ROUNDS SPIN | spin SECS | write-i386 PATH N | exec-thread PATH | busy SECS | time-getppid N | time-pingpong ROUNDS | hang-after N SECS | time-getppid-threads N T | churn ROUNDS N | steady N SECS | fork-storm N CALLS | churn-soak SECS LIVE RATE | exit-wait N OUT | read-spin N OUT | heavy-tail CYCLES OUT | waits ROUNDS DIR | renames N");
    std::process::exit(2);
}

fn arg(args: &[String], i: usize) -> u64 {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

fn getppid(n: u64) {
    for _ in 0..n {
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
}

fn enoent(n: u64) {
    let path = CString::new("/nonexistent/profiler-workload/missing").unwrap();
    for _ in 0..n {
        let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
        assert_eq!(fd, -1);
    }
}

fn named_threads(n: u64) {
    let getter = thread::spawn(move || {
        set_name("getter");
        getppid(n);
    });
    let sleeper = thread::spawn(|| {
        set_name("sleeper");
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 20_000_000,
        };
        for _ in 0..5 {
            unsafe { libc::syscall(libc::SYS_nanosleep, &ts, std::ptr::null_mut::<libc::timespec>()) };
        }
    });
    let opener = thread::spawn(move || {
        set_name("opener");
        enoent(n);
    });
    for worker in [getter, sleeper, opener] {
        worker.join().unwrap();
    }
}

fn sleep(n: u64, ms: u64) {
    thread::spawn(move || {
        let ts = libc::timespec {
            tv_sec: (ms / 1000) as i64,
            tv_nsec: ((ms % 1000) * 1_000_000) as i64,
        };
        for _ in 0..n {
            unsafe { libc::syscall(libc::SYS_nanosleep, &ts, std::ptr::null_mut::<libc::timespec>()) };
        }
    })
    .join()
    .unwrap();
}

fn zero_read(n: u64, bytes: u64) {
    let path = CString::new("/dev/zero").unwrap();
    let fd = unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0, "open /dev/zero");
    let mut buf = vec![1u8; bytes as usize];
    for _ in 0..n {
        let got = unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
        assert_eq!(got as u64, bytes);
    }
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn pingpong(rounds: u64, spinners: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let spin: Vec<_> = (0..spinners)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let (ping_r, ping_w) = pipe();
    let (pong_r, pong_w) = pipe();
    let echo = thread::spawn(move || {
        let mut byte = 0u8;
        for _ in 0..rounds {
            unsafe {
                libc::syscall(libc::SYS_read, ping_r, &mut byte as *mut u8, 1);
                libc::syscall(libc::SYS_write, pong_w, &byte as *const u8, 1);
            }
        }
    });
    let mut byte = 7u8;
    for _ in 0..rounds {
        unsafe {
            libc::syscall(libc::SYS_write, ping_w, &byte as *const u8, 1);
            libc::syscall(libc::SYS_read, pong_r, &mut byte as *mut u8, 1);
        }
    }
    echo.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for s in spin {
        s.join().unwrap();
    }
}

/// Busy threads, one per CPU, pinned, until `stop`: a machine with no idle CPU.
fn spinner_per_cpu(stop: &Arc<AtomicBool>) -> Vec<thread::JoinHandle<()>> {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    (0..cpus)
        .map(|cpu| {
            let stop = stop.clone();
            thread::spawn(move || {
                pin_to_cpu(cpu);
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    std::hint::black_box(x);
                }
            })
        })
        .collect()
}

fn pin_to_cpu(cpu: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // vDSO: no syscall, so the writer's own calls are only its writes and schedstat reads.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's `/proc/thread-self/schedstat`, opened once (for [`run_delay_ns`]):
/// a read per measurement, no open inside the measured loop.
fn open_schedstat() -> i32 {
    let path = CString::new("/proc/thread-self/schedstat").unwrap();
    let schedstat = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(schedstat >= 0, "no /proc/thread-self/schedstat");
    schedstat
}

/// The calling thread's run delay so far (ns waiting on a runqueue), read with one pread
/// from its open `/proc/thread-self/schedstat`.
fn run_delay_ns(schedstat: i32) -> u64 {
    let mut buf = [0u8; 128];
    let n = unsafe { libc::pread(schedstat, buf.as_mut_ptr().cast(), buf.len(), 0) };
    let text = std::str::from_utf8(&buf[..n.max(0) as usize]).unwrap_or("");
    text.split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("schedstat run delay")
}

fn exit_wait(writes: u64, out: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = spinner_per_cpu(&stop);
    let (read_end, write_end) = pipe();
    let reader = thread::spawn(move || {
        pin_to_cpu(0);
        let param = libc::sched_param { sched_priority: 10 };
        let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
        assert_eq!(set, 0, "SCHED_FIFO needs root: {}", std::io::Error::last_os_error());
        let mut byte = 0u8;
        while unsafe { libc::syscall(libc::SYS_read, read_end, &mut byte as *mut u8, 1) } == 1 {
            let until = Instant::now() + Duration::from_millis(1);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    });
    pin_to_cpu(0);
    thread::sleep(Duration::from_millis(50)); // the reader is waiting in read
    let byte = 1u8;
    let oracle = timed_calls(writes, || unsafe {
        libc::syscall(libc::SYS_write, write_end, &byte as *const u8, 1);
    });
    unsafe { libc::close(write_end) };
    reader.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    write_oracle(out, "writes", writes, oracle);
}

/// Makes `n` calls with `call`, each timed on the thread's own clock and with its run delay
/// read just around it: `(wall_ns, run_delay_ns)` in all.
fn timed_calls(n: u64, mut call: impl FnMut()) -> (u64, u64) {
    let schedstat = open_schedstat();
    let (mut wall_ns, mut run_delay_total_ns) = (0u64, 0u64);
    for _ in 0..n {
        let delay_before = run_delay_ns(schedstat);
        let start = monotonic_ns();
        call();
        wall_ns += monotonic_ns() - start;
        run_delay_total_ns += run_delay_ns(schedstat) - delay_before;
    }
    unsafe { libc::close(schedstat) };
    (wall_ns, run_delay_total_ns)
}

/// Writes the oracle figures to `out` as JSON, with pwrite: the writes a test counts are the
/// measured ones.
fn write_oracle(out: &str, calls_name: &str, calls: u64, (wall_ns, run_delay_ns): (u64, u64)) {
    let oracle = format!("{{\"{calls_name}\":{calls},\"wall_ns\":{wall_ns},\"run_delay_ns\":{run_delay_ns}}}\n");
    let file = std::fs::File::create(out).expect("create the oracle file");
    std::os::unix::fs::FileExt::write_all_at(&file, oracle.as_bytes(), 0).expect("write the oracle file");
}

/// `read-spin N OUT`: N reads of 64 KiB from /dev/zero on CPU 0, which a spinner on every CPU
/// shares: the scheduler tick preempts the reader wherever it is, and it is in a read most of
/// the time, so most of its waits come on its way out of one. The oracle is the reader's own
/// clock around each read (no schedstat reads in the loop: they would take most of its time
/// and most of the preemptions); `run_delay_ns` is the whole loop's.
fn read_spin(reads: u64, out: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let spinners = spinner_per_cpu(&stop);
    pin_to_cpu(0);
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&zero);
    let mut buf = vec![0u8; 64 << 10];
    let schedstat = open_schedstat();
    let delay_before = run_delay_ns(schedstat);
    let mut wall_ns = 0u64;
    for _ in 0..reads {
        let start = monotonic_ns();
        unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
        wall_ns += monotonic_ns() - start;
    }
    let run_delay = run_delay_ns(schedstat) - delay_before;
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
    write_oracle(out, "reads", reads, (wall_ns, run_delay));
}

/// `heavy-tail CYCLES OUT`: CYCLES of 15 one-byte reads and one 16 MiB read from /dev/zero,
/// nothing else: the reader is inside a read nearly all the time, and the long reads (~1-2
/// ms on the CPU) are a heavy tail that sampling 1 in 16 overweights whenever it picks one.
/// The oracle: the reader's own clock around each read (`wall_ns`), and its run delay.
fn heavy_tail(cycles: u64, out: &str) {
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&zero);
    let mut buf = vec![0u8; 16 << 20];
    buf.fill(1); // fault the buffer in before the clock starts
    let schedstat = open_schedstat();
    let delay_before = run_delay_ns(schedstat);
    let mut wall_ns = 0u64;
    for _ in 0..cycles {
        let start = monotonic_ns();
        for _ in 0..15 {
            unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), 1) };
        }
        unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
        wall_ns += monotonic_ns() - start;
    }
    let run_delay = run_delay_ns(schedstat) - delay_before;
    write_oracle(out, "reads", cycles * 16, (wall_ns, run_delay));
}

/// `waits ROUNDS DIR`: blocked calls with known wait sites, ROUNDS of each, one after the
/// other: a read of a pipe whose writer (a child process named `pipe-writer`) sleeps 20 ms
/// before each byte; a lock of a mutex (a futex) another thread holds for 20 ms; a 4 KiB
/// write to a file in DIR and its `fdatasync` (a disk wait).
fn waits(rounds: u64, dir: &str) {
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let [read_end, write_end] = fds;
    // SAFETY: the child sleeps, writes and exits with raw calls.
    let writer = match unsafe { libc::fork() } {
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        0 => {
            set_name("pipe-writer");
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 20_000_000,
            };
            for _ in 0..rounds {
                unsafe {
                    libc::nanosleep(&pause, std::ptr::null_mut());
                    libc::write(write_end, b"x".as_ptr().cast(), 1);
                }
            }
            unsafe { libc::_exit(0) };
        }
        child => child,
    };
    let mut byte = [0u8; 1];
    for _ in 0..rounds {
        unsafe { libc::read(read_end, byte.as_mut_ptr().cast(), 1) };
    }
    unsafe { libc::waitpid(writer, std::ptr::null_mut(), 0) };

    let lock = Arc::new(std::sync::Mutex::new(()));
    for _ in 0..rounds {
        let (held, holder_lock) = (Arc::new(AtomicBool::new(false)), lock.clone());
        let holder_held = held.clone();
        let holder = thread::spawn(move || {
            let _guard = holder_lock.lock().unwrap();
            holder_held.store(true, Ordering::Release);
            thread::sleep(Duration::from_millis(20));
        });
        while !held.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        drop(lock.lock().unwrap());
        holder.join().unwrap();
    }

    let path = std::path::Path::new(dir).join(format!("waits-{}", std::process::id()));
    let file = std::fs::File::create(&path).expect("a file to sync");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let block = vec![7u8; 4096];
    for round in 0..rounds {
        std::os::unix::fs::FileExt::write_all_at(&file, &block, round * 4096).unwrap();
        unsafe { libc::fdatasync(fd) };
    }
    // Open a moment longer, as a service's file would be: a report names what a call
    // waited on from /proc while the process lives.
    thread::sleep(Duration::from_millis(500));
    std::fs::remove_file(&path).ok();
}

/// `renames N`: N child processes, one after another, each making 10 getppid calls as
/// `old-name-I`, renaming itself `new-name-I` (prctl), and making 10 more.
fn renames(n: u64) {
    for i in 0..n {
        // SAFETY: the child makes raw syscalls and exits.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                set_name(&format!("old-name-{i}"));
                getppid(10);
                set_name(&format!("new-name-{i}"));
                getppid(10);
                unsafe { libc::_exit(0) };
            }
            child => unsafe {
                libc::waitpid(child, std::ptr::null_mut(), 0);
            },
        }
    }
}

fn spin(secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        getppid(1000);
    }
}

/// A minimal static i386 ELF executable: `N x getpid(); exit(0)`, all through `int 0x80`.
fn i386_program(calls: u32) -> Vec<u8> {
    const BASE: u32 = 0x0804_8000;
    const HEADERS: u32 = 52 + 32; // ELF header + one program header
    let mut code = vec![0xB9]; // mov ecx, calls
    code.extend_from_slice(&calls.max(1).to_le_bytes());
    code.extend_from_slice(&[
        0xB8, 0x14, 0x00, 0x00, 0x00, // loop: mov eax, 20 (getpid)
        0xCD, 0x80, //                         int 0x80
        0x49, //                               dec ecx
        0x75, 0xF6, //                         jnz loop
        0xB8, 0x01, 0x00, 0x00, 0x00, //       mov eax, 1 (exit)
        0x31, 0xDB, //                         xor ebx, ebx
        0xCD, 0x80, //                         int 0x80
    ]);
    let size = HEADERS + code.len() as u32;
    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    for half in [2u16, 3] {
        elf.extend_from_slice(&half.to_le_bytes()); // e_type EXEC, e_machine 386
    }
    for word in [1u32, BASE + HEADERS, 52, 0, 0] {
        elf.extend_from_slice(&word.to_le_bytes()); // version, entry, phoff, shoff, flags
    }
    for half in [52u16, 32, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes()); // ehsize, phentsize, phnum, sh*
    }
    for word in [1u32, 0, BASE, BASE, size, size, 5, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes()); // PT_LOAD of the whole file, R+X
    }
    elf.extend_from_slice(&code);
    elf
}

fn write_i386(path: &str, calls: u64) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, i386_program(calls as u32)).expect("write the program");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn exec_thread(path: &str) {
    let path = CString::new(path).unwrap();
    thread::spawn(move || {
        let argv = [path.as_ptr(), std::ptr::null()];
        unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
        panic!("execv failed");
    });
    thread::sleep(Duration::from_secs(10));
    panic!("exec did not happen");
}

fn busy(secs: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let null = CString::new("/dev/null").unwrap();
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 10_000_000,
    };
    while Instant::now() < end {
        unsafe {
            libc::syscall(libc::SYS_getppid);
            libc::syscall(libc::SYS_getuid);
            let fd = libc::syscall(libc::SYS_openat, libc::AT_FDCWD, null.as_ptr(), libc::O_WRONLY);
            libc::syscall(libc::SYS_write, fd, null.as_ptr(), 4);
            libc::syscall(libc::SYS_close, fd);
            libc::syscall(libc::SYS_nanosleep, &ts, std::ptr::null_mut::<libc::timespec>());
        }
    }
}

fn fork_storm(children: u64, calls: u64) {
    let start = Instant::now();
    let (mut forked, mut alive) = (0u64, 0u64);
    // Reaps one child (waiting for it), or every child that has exited (not waiting).
    let reap = |alive: &mut u64, block: bool| {
        let mut status = 0;
        let flags = if block { 0 } else { libc::WNOHANG };
        // SAFETY: waitpid on our own children.
        while *alive > 0 && unsafe { libc::waitpid(-1, &mut status, flags) } > 0 {
            *alive -= 1;
            if block {
                break;
            }
        }
    };
    while forked < children {
        if alive >= 64 {
            reap(&mut alive, true);
        }
        // SAFETY: the child makes only raw syscalls and exits.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                getppid(calls);
                unsafe { libc::_exit(0) };
            }
            _ => {
                forked += 1;
                alive += 1;
            }
        }
        reap(&mut alive, false);
    }
    while alive > 0 {
        reap(&mut alive, true);
    }
    eprintln!("{:.0} forks a second", children as f64 / start.elapsed().as_secs_f64());
}

/// Names the live processes of `churn-soak` run under, and rename themselves to.
const LIVE_NAMES: [&str; 24] = [
    "nginx",
    "postgres",
    "redis-server",
    "java",
    "node",
    "python3",
    "sshd",
    "containerd",
    "kubelet",
    "dockerd",
    "rsyslogd",
    "cron",
    "haproxy",
    "envoy",
    "memcached",
    "mysqld",
    "php-fpm",
    "ruby",
    "celery",
    "gunicorn",
    "prometheus",
    "grafana",
    "etcd",
    "coredns",
];

/// One-shot command names of `churn-soak`'s short-lived processes.
const ONE_SHOT_NAMES: [&str; 12] = [
    "date", "id", "ls", "cat", "grep", "awk", "sed", "hostname", "uname", "sleep", "tr", "wc",
];

fn set_name(name: &str) {
    let name = CString::new(name).unwrap();
    // SAFETY: prctl with a NUL-terminated name.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) };
}

/// A few calls of a busy service: getppid, a failing openat, a read, a write.
fn service_calls(null: i32, path: &CString) {
    let mut byte = 0u8;
    unsafe {
        libc::syscall(libc::SYS_getppid);
        libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY);
        libc::syscall(libc::SYS_read, null, &mut byte as *mut u8, 1);
        libc::syscall(libc::SYS_write, null, &byte as *const u8, 1);
    }
}

fn churn_soak(secs: u64, live: u64, rate: u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let missing = CString::new("/nonexistent/profiler-workload/churn").unwrap();
    let dev_null = CString::new("/dev/null").unwrap();
    let mut long_lived = Vec::new();
    for i in 0..live {
        // SAFETY: the child makes raw syscalls, sleeps and exits.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                // Killed with this process, should a failing test kill it before the end.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
                let null = unsafe { libc::open(dev_null.as_ptr(), libc::O_RDWR) };
                let mut name = i as usize % LIVE_NAMES.len();
                set_name(LIVE_NAMES[name]);
                let mut round = 0u64;
                while Instant::now() < end {
                    service_calls(null, &missing);
                    thread::sleep(Duration::from_millis(200));
                    round += 1;
                    // Now and then, a process renames itself (about every 60 s).
                    if (round + i).is_multiple_of(300) {
                        name = (name + 1) % LIVE_NAMES.len();
                        set_name(LIVE_NAMES[name]);
                    }
                }
                unsafe { libc::_exit(0) };
            }
            pid => long_lived.push(pid),
        }
    }
    let true_path = CString::new("/bin/true").unwrap();
    let argv = [true_path.as_ptr(), std::ptr::null()];
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut next = Instant::now();
    let mut previous = 0;
    let mut forked = 0u64;
    while Instant::now() < end {
        forked += 1;
        if forked.is_multiple_of(10) && previous > 1 {
            // The next fork takes the pid the previous child had (it has been reaped).
            let _ = std::fs::write("/proc/sys/kernel/ns_last_pid", (previous - 1).to_string());
        }
        // SAFETY: the child makes raw syscalls, maybe execs, and exits.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let name = if forked.is_multiple_of(3) {
                    format!("job-{forked}")
                } else {
                    ONE_SHOT_NAMES[forked as usize % ONE_SHOT_NAMES.len()].to_owned()
                };
                set_name(&name);
                let null = unsafe { libc::open(dev_null.as_ptr(), libc::O_RDWR) };
                for _ in 0..1 + forked % 5 {
                    service_calls(null, &missing);
                }
                if forked % 10 == 5 {
                    unsafe { libc::execv(true_path.as_ptr(), argv.as_ptr()) };
                }
                unsafe { libc::_exit(0) };
            }
            child => {
                let mut status = 0;
                // SAFETY: waitpid on our own child.
                unsafe { libc::waitpid(child, &mut status, 0) };
                previous = child;
            }
        }
        next += period;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    for pid in long_lived {
        let mut status = 0;
        // SAFETY: waitpid on our own children.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
}

fn steady(n: u64, secs: u64) {
    let batches = (secs * 10).max(1);
    let start = Instant::now();
    for batch in 0..batches {
        getppid(n * (batch + 1) / batches - n * batch / batches);
        let next = start + Duration::from_millis(100 * (batch + 1));
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn time_getppid(n: u64) {
    getppid(n / 10); // warm up
    let start = Instant::now();
    getppid(n);
    println!("{:.2}", start.elapsed().as_nanos() as f64 / n as f64);
}

fn time_getppid_threads(n: u64, threads: u64) {
    getppid(n / 10); // warm up
    let start = Instant::now();
    let workers: Vec<_> = (0..threads).map(|_| thread::spawn(move || getppid(n))).collect();
    for worker in workers {
        worker.join().unwrap();
    }
    println!("{:.2}", start.elapsed().as_nanos() as f64 / n as f64);
}

fn churn(rounds: u64, n: u64) {
    for _ in 0..rounds {
        thread::spawn(move || getppid(n)).join().unwrap();
        // SAFETY: the process has one thread here; the child only makes raw syscalls.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                getppid(n);
                unsafe { libc::_exit(0) };
            }
            child => {
                let mut status = 0;
                unsafe { libc::waitpid(child, &mut status, 0) };
            }
        }
    }
}

fn time_pingpong(rounds: u64) {
    let start = Instant::now();
    pingpong(rounds, 0);
    println!("{:.2}", start.elapsed().as_nanos() as f64 / rounds as f64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("getppid") => getppid(arg(&args, 2)),
        Some("enoent") => enoent(arg(&args, 2)),
        Some("sleep") => sleep(arg(&args, 2), arg(&args, 3)),
        Some("zero-read") => zero_read(arg(&args, 2), arg(&args, 3)),
        Some("pingpong") => pingpong(arg(&args, 2), arg(&args, 3)),
        Some("spin") => spin(arg(&args, 2)),
        Some("write-i386") => write_i386(args.get(2).unwrap_or_else(|| usage()), arg(&args, 3)),
        Some("busy") => busy(arg(&args, 2)),
        Some("time-getppid") => time_getppid(arg(&args, 2)),
        Some("time-pingpong") => time_pingpong(arg(&args, 2)),
        Some("hang-after") => {
            sleep(arg(&args, 2), 1);
            sleep(1, arg(&args, 3) * 1000);
        }
        Some("time-getppid-threads") => time_getppid_threads(arg(&args, 2), arg(&args, 3)),
        Some("churn") => churn(arg(&args, 2), arg(&args, 3)),
        Some("steady") => steady(arg(&args, 2), arg(&args, 3)),
        Some("fork-storm") => fork_storm(arg(&args, 2), arg(&args, 3)),
        Some("churn-soak") => churn_soak(arg(&args, 2), arg(&args, 3), arg(&args, 4)),
        Some("exit-wait") => exit_wait(arg(&args, 2), args.get(3).unwrap_or_else(|| usage())),
        Some("renames") => renames(arg(&args, 2)),
        Some("named-threads") => named_threads(arg(&args, 2)),
        Some("waits") => waits(arg(&args, 2), args.get(3).unwrap_or_else(|| usage())),
        Some("heavy-tail") => heavy_tail(arg(&args, 2), args.get(3).unwrap_or_else(|| usage())),
        Some("read-spin") => read_spin(arg(&args, 2), args.get(3).unwrap_or_else(|| usage())),
        Some("exec-thread") => exec_thread(args.get(2).unwrap_or_else(|| usage())),
        _ => usage(),
    }
}
