//! Memory-mapped BPF arrays: every table the agent reads, and the few values it writes, go
//! through `mmap`, without a syscall per entry (and, once attached, without any `bpf()` call).
use std::{
    io,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::Ebpf;
use profiler_common::{ProcSlot, StatsSlot, SyscallStats, SLOT_EMPTY, SLOT_FREED};

use crate::kernel::error::{missing_map, ProbeError};

/// A memory-mapped BPF array (created with `BPF_F_MMAPABLE`): reads and writes without a
/// syscall per entry.
pub(super) struct MappedArray<T> {
    base: std::ptr::NonNull<T>,
    entries: usize,
    bytes: usize,
}

impl<T: Copy> MappedArray<T> {
    pub(super) fn new(ebpf: &Ebpf, map: &'static str, entries: u32) -> Result<MappedArray<T>, ProbeError> {
        use std::os::fd::{AsFd, AsRawFd};
        let data = ebpf.map(map).ok_or_else(|| missing_map(map))?;
        let aya::maps::Map::Array(data) = data else {
            return Err(ProbeError::Load(format!("map {map} is not an array")));
        };
        // The kernel lays values out every round_up(size, 8) bytes.
        assert_eq!(std::mem::size_of::<T>() % 8, 0, "array values must be 8-byte multiples");
        let page = 4096;
        let bytes = (entries as usize * std::mem::size_of::<T>()).div_ceil(page) * page;
        let fd = data.fd().as_fd().as_raw_fd();
        // SAFETY: mapping a BPF array fd; the kernel keeps the map alive while it is mapped.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ProbeError::Load(format!(
                "cannot mmap map {map}: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(MappedArray {
            base: std::ptr::NonNull::new(ptr.cast()).expect("mmap returned a pointer"),
            entries: entries as usize,
            bytes,
        })
    }

    pub(super) fn entries(&self) -> usize {
        self.entries
    }

    /// A copy of entry `index`; fields the kernel is updating come out as of some moment.
    pub(super) fn read(&self, index: usize) -> T {
        assert!(index < self.entries);
        // SAFETY: in bounds of the mapping; T is plain data valid for any bits.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(index)) }
    }

    /// Entry `index`, to change a field of in place.
    fn entry(&self, index: usize) -> *mut T {
        assert!(index < self.entries);
        // SAFETY: in bounds of the mapping.
        unsafe { self.base.as_ptr().add(index) }
    }
}

/// The first field of an entry, an aligned `u64` the kernel changes with atomic operations.
fn first_word<T>(entry: *mut T) -> &'static AtomicU64 {
    // SAFETY: every table whose first field this is (`StatsSlot::key`, `ProcSlot::state`) is an
    // 8-byte-aligned u64 at offset 0 of an entry of a mapping that lives as long as the probe.
    unsafe { AtomicU64::from_ptr(entry.cast::<u64>()) }
}

impl MappedArray<StatsSlot> {
    pub(super) fn key_of(&self, index: usize) -> u64 {
        first_word(self.entry(index)).load(Ordering::Relaxed)
    }

    /// Zeroes the slot, then marks it free for the kernel to reuse. Only for slots whose
    /// counts are final (their process exited, or its epoch ended).
    pub(super) fn free(&mut self, index: usize) {
        let slot = self.entry(index);
        // SAFETY: in bounds; the statistics are plain data.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*slot).stats), SyscallStats::ZERO) };
        first_word(slot).store(SLOT_FREED, Ordering::Release);
    }

    /// Makes a freed slot empty, with a compare-and-swap: false if it is not freed any more
    /// (the kernel side claimed it).
    pub(super) fn empty_if_freed(&self, index: usize) -> bool {
        first_word(self.entry(index))
            .compare_exchange(SLOT_FREED, SLOT_EMPTY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl MappedArray<ProcSlot> {
    pub(super) fn state_of(&self, index: usize) -> u64 {
        first_word(self.entry(index)).load(Ordering::Acquire)
    }

    /// Moves entry `index` from state `expected` to `state`, as the kernel side does: with a
    /// compare-and-swap. False if the entry was not in `expected` any more.
    pub(super) fn swap_state(&self, index: usize, expected: u64, state: u64) -> bool {
        first_word(self.entry(index))
            .compare_exchange(expected, state, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Writes the name and cgroup of entry `index` (just claimed).
    pub(super) fn name(&self, index: usize, comm: [u8; 16], cgroup_id: u64) {
        let entry = self.entry(index);
        // SAFETY: in bounds; plain data.
        unsafe {
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*entry).comm), comm);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*entry).cgroup_id), cgroup_id);
        }
    }
}

impl MappedArray<u64> {
    /// Adds `value` to entry `index` atomically (a counter the kernel side reads).
    pub(super) fn add(&self, index: usize, value: u64) {
        first_word(self.entry(index)).fetch_add(value, Ordering::AcqRel);
    }

    /// Zeroes byte `byte` of the array, its entries taken as bytes (a flag the kernel side
    /// sets with a plain store).
    pub(super) fn clear_byte(&self, byte: usize) {
        assert!(byte < self.entries * 8);
        // SAFETY: in bounds of the mapping; any byte value is valid.
        unsafe { std::ptr::write_volatile(self.base.as_ptr().cast::<u8>().add(byte), 0) };
    }

    /// Sets entry `index` to `value` atomically (a counter the kernel side adds to).
    pub(super) fn swap(&self, index: usize, value: u64) -> u64 {
        first_word(self.entry(index)).swap(value, Ordering::AcqRel)
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}
