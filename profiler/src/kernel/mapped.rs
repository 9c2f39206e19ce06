//! Memory-mapped BPF arrays: the statistics table and the in-flight slots are read (and
//! freed) through `mmap`, without a syscall per entry.
use std::io;

use aya::Ebpf;
use profiler_common::{StatsSlot, SyscallStats, SLOT_FREED};

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
}

impl MappedArray<StatsSlot> {
    pub(super) fn key_of(&self, index: usize) -> u64 {
        assert!(index < self.entries);
        // SAFETY: in bounds; `key` is the first field, an aligned u64.
        unsafe { std::ptr::read_volatile(self.base.as_ptr().add(index).cast::<u64>()) }
    }

    /// Zeroes the slot, then marks it free for the kernel to reuse. Only for slots of
    /// processes that are gone, which nothing updates any more.
    pub(super) fn free(&mut self, index: usize) {
        assert!(index < self.entries);
        // SAFETY: in bounds; the statistics are plain data.
        unsafe {
            let slot = self.base.as_ptr().add(index);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*slot).stats), SyscallStats::ZERO);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_volatile(std::ptr::addr_of_mut!((*slot).key), SLOT_FREED);
        }
    }
}

impl<T> Drop for MappedArray<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}
