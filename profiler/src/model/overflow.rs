//! The calls the kernel side could not count - a map was full, or a call's exit was not
//! matched to it - by counter (the list and the names are `profiler_common::counter`'s). All
//! zero on a healthy run.
use profiler_common::counter;
use serde::{ser::SerializeMap, Serialize, Serializer};

/// The overflow counters, summed over CPUs, by [`counter`] index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overflow(pub [u64; counter::COUNT as usize]);

impl Overflow {
    pub fn any(&self) -> bool {
        self.total() > 0
    }

    /// Every event lost, whatever the reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(name, count)` of every counter, in [`counter`] order.
    pub fn by_name(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        counter::NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

/// As an object keyed by counter name.
impl Serialize for Overflow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, count) in self.by_name() {
            map.serialize_entry(name, &count)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_name() {
        let mut overflow = Overflow::default();
        assert!(!overflow.any());
        overflow.0[counter::STATS_FULL as usize] = 3;
        overflow.0[counter::FOLLOW_FULL as usize] = 2;
        assert!(overflow.any());
        assert_eq!(overflow.total(), 5);
        let json = serde_json::to_value(overflow).unwrap();
        assert_eq!(json.as_object().unwrap().len(), counter::COUNT as usize);
        assert_eq!(json["stats_full"], 3);
        assert_eq!(json["follow_full"], 2);
        assert_eq!(json["slot_collision"], 0);
    }
}
