//! Reading a whole BPF hash map in a few `bpf()` calls (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6+)
//! instead of two an entry (`BPF_MAP_GET_NEXT_KEY`, then `BPF_MAP_LOOKUP_ELEM`), which is
//! how aya iterates. Each of those calls also runs the profiler's own programs: beside 1,000
//! busy processes, naming the wakers of a wait-site table of thousands of entries every
//! second was a quarter of a report's CPU.
use std::os::fd::{AsFd, AsRawFd};

use aya::{
    maps::{HashMap, MapData, MapError},
    sys::SyscallError,
    Pod,
};

use crate::kernel::{
    error::{missing_map, ProbeError},
    probe::Probe,
};

/// `BPF_MAP_LOOKUP_BATCH` (`enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Entries asked for per call, to start with (a hash bucket with more than this fails a call
/// with `ENOSPC`: the call is made again with room for more).
const ENTRIES_PER_CALL: usize = 4096;

/// `union bpf_attr`'s part for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    /// Where to start (a position the previous call returned); 0: from the beginning.
    in_batch: u64,
    /// Where the next call starts (for a hash map, a bucket index).
    out_batch: u64,
    keys: u64,
    values: u64,
    /// In: room for this many entries; out: how many were written.
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

impl Probe {
    /// Every entry of the hash map `name`, as of some moment during the read (entries added
    /// or removed meanwhile may be missed or not).
    pub(super) fn hash_entries<K: Pod, V: Pod>(&self, name: &'static str) -> Result<Vec<(K, V)>, ProbeError> {
        // aya checks the map's type and its key and value sizes against K and V.
        let _checked: HashMap<&MapData, K, V> = self.hash_map(name)?;
        let (aya::maps::Map::HashMap(map_data) | aya::maps::Map::LruHashMap(map_data)) =
            self.ebpf.map(name).ok_or_else(|| missing_map(name))?
        else {
            unreachable!("checked: a hash map")
        };
        lookup_batch(map_data).map_err(|io_error| ProbeError::Map {
            map: name,
            source: MapError::SyscallError(SyscallError {
                call: "bpf_map_lookup_batch",
                io_error,
            }),
        })
    }
}

fn lookup_batch<K: Pod, V: Pod>(map: &MapData) -> Result<Vec<(K, V)>, std::io::Error> {
    let fd = map.fd().as_fd().as_raw_fd() as u32;
    let mut entries = Vec::new();
    let mut room = ENTRIES_PER_CALL;
    // SAFETY: Pod types are plain data, valid for any bits (zeroes included).
    let mut keys: Vec<K> = vec![unsafe { std::mem::zeroed() }; room];
    let mut values: Vec<V> = vec![unsafe { std::mem::zeroed() }; room];
    let mut position: Option<u64> = None;
    loop {
        let mut next: u64 = 0;
        let mut attr = BatchAttr {
            in_batch: position.as_ref().map_or(0, |at| at as *const u64 as u64),
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: room as u32,
            map_fd: fd,
            ..BatchAttr::default()
        };
        // SAFETY: the attribute points at buffers of `room` keys and values of the map's
        // sizes (the same types the programs declare it with) and at two batch positions
        // (a hash map's is a u32 bucket index), all alive for the call.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                std::mem::size_of::<BatchAttr>() as u32,
            )
        };
        let error = (result < 0).then(std::io::Error::last_os_error);
        let written = attr.count as usize;
        entries.extend(keys[..written].iter().copied().zip(values[..written].iter().copied()));
        match error.as_ref().and_then(std::io::Error::raw_os_error) {
            None => position = Some(next),
            // The end of the map (with the last entries written).
            Some(libc::ENOENT) => return Ok(entries),
            // One bucket has more entries than there is room for: again, with more room.
            Some(libc::ENOSPC) if written == 0 => {
                room *= 2;
                // SAFETY: as above.
                keys.resize(room, unsafe { std::mem::zeroed() });
                values.resize(room, unsafe { std::mem::zeroed() });
            }
            _ => return Err(error.expect("an errno")),
        }
    }
}
