//! Kernel function names from `/proc/kallsyms`, to name the frames of wait-site stacks. Held
//! compactly (sorted start addresses, and the names in one string): the kernel has over
//! 100,000 symbols, which as a map of owned strings (aya's `kernel_symbols`) raised a
//! report's peak memory by 5 MiB more. Names need root: with `kptr_restrict` every address
//! reads as 0.
use std::io::{self, BufRead, BufReader};

/// The kernel's symbols, by start address.
#[derive(Debug, Default)]
pub(crate) struct KernelSymbols {
    /// `(start address, its name's range in names)`, by address; of symbols at the same
    /// address, the one listed last is found.
    starts: Vec<(u64, u32, u32)>,
    names: String,
}

impl KernelSymbols {
    /// `/proc/kallsyms`, or no symbols at all when it cannot be read.
    pub(crate) fn read() -> KernelSymbols {
        std::fs::File::open("/proc/kallsyms")
            .and_then(|file| KernelSymbols::parse(BufReader::new(file)))
            .unwrap_or_default()
    }

    /// Lines of `ADDRESS TYPE NAME [MODULE]`; a line that is not is skipped.
    fn parse(text: impl BufRead) -> io::Result<KernelSymbols> {
        let mut symbols = KernelSymbols::default();
        for line in text.lines() {
            let line = line?;
            let mut fields = line.split_ascii_whitespace();
            let (Some(address), Some(_kind), Some(name)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let Ok(address) = u64::from_str_radix(address, 16) else {
                continue;
            };
            let from = symbols.names.len() as u32;
            symbols.names.push_str(name);
            symbols.starts.push((address, from, symbols.names.len() as u32));
        }
        // Stable: of one address, the last listed stays last.
        symbols.starts.sort_by_key(|&(address, _, _)| address);
        symbols.starts.shrink_to_fit();
        symbols.names.shrink_to_fit();
        Ok(symbols)
    }

    /// The function `address` is in: the symbol that starts last at or before it.
    pub(crate) fn name_of(&self, address: u64) -> Option<&str> {
        let at = self
            .starts
            .partition_point(|&(start, _, _)| start <= address)
            .checked_sub(1)?;
        let (_, from, to) = self.starts[at];
        Some(&self.names[from as usize..to as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_named_by_the_symbol_they_fall_in() {
        let text = "\
ffffffff81000000 T _stext
ffffffff81002000 t do_nanosleep
ffffffff81001000 T hrtimer_nanosleep
ffffffffc0001000 t ext4_sync_file\t[ext4]
not a line
ffffffff81002000 T do_nanosleep_alias
";
        let symbols = KernelSymbols::parse(text.as_bytes()).unwrap();
        assert_eq!(symbols.name_of(0xffffffff81000010), Some("_stext"));
        assert_eq!(symbols.name_of(0xffffffff81001fff), Some("hrtimer_nanosleep"));
        // Of two at one address, the one listed last.
        assert_eq!(symbols.name_of(0xffffffff81002040), Some("do_nanosleep_alias"));
        assert_eq!(symbols.name_of(0xffffffffc0001234), Some("ext4_sync_file"));
        assert_eq!(symbols.name_of(0x1000), None);
        assert_eq!(KernelSymbols::default().name_of(0xffffffff81000010), None);
    }
}
