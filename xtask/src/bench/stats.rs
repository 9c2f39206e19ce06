//! The statistics of the benchmark: medians, per-run ratios, shuffled orders, per-program
//! costs.

/// Per-program mean run times of one build over several runs, from the lines
/// `syscall-profiler attach --run-stats` prints: `NAME RUNS runs NS ns/run`.
#[derive(Clone, Default)]
pub(super) struct ProgramCosts {
    /// Program name, its run count in the last run, and its ns/run in each run.
    pub(super) programs: Vec<(String, u64, Vec<f64>)>,
}

impl ProgramCosts {
    pub(super) fn add_run(&mut self, printed: &str) {
        for line in printed.lines() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [name, runs, "runs", ns, "ns/run"] = parts.as_slice() else {
                continue;
            };
            let (Ok(runs), Ok(ns)) = (runs.parse::<u64>(), ns.parse::<f64>()) else {
                continue;
            };
            match self.programs.iter_mut().find(|(known, ..)| known == name) {
                Some((_, last_runs, values)) => {
                    *last_runs = runs;
                    values.push(ns);
                }
                None => self.programs.push((name.to_string(), runs, vec![ns])),
            }
        }
    }

    /// One build's costs from several loads of it: each program's median over the loads, run
    /// by run.
    pub(super) fn median_per_run(loads: &[ProgramCosts]) -> ProgramCosts {
        let Some(first) = loads.first() else {
            return ProgramCosts::default();
        };
        let programs = first
            .programs
            .iter()
            .map(|(name, runs, values)| {
                let per_run = (0..values.len())
                    .filter_map(|run| {
                        let at_run: Vec<f64> = loads
                            .iter()
                            .filter_map(|load| load.values(name)?.get(run).copied())
                            .collect();
                        median(&at_run)
                    })
                    .collect();
                (name.clone(), *runs, per_run)
            })
            .collect();
        ProgramCosts { programs }
    }

    pub(super) fn medians(&self) -> Vec<(String, u64, f64)> {
        self.programs
            .iter()
            .filter_map(|(name, runs, values)| Some((name.clone(), *runs, median(values)?)))
            .collect()
    }

    /// ns/run of program `name`, one value per run.
    fn values(&self, name: &str) -> Option<&[f64]> {
        Some(&self.programs.iter().find(|(known, ..)| known == name)?.2)
    }

    pub(super) fn median_of(&self, name: &str) -> Option<f64> {
        median(self.values(name)?)
    }

    /// Median over runs of (this build's ns/run - `other`'s ns/run in the same run).
    pub(super) fn median_difference(&self, other: &ProgramCosts, name: &str) -> Option<f64> {
        let (ours, theirs) = (self.values(name)?, other.values(name)?);
        let differences: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| a - b).collect();
        median(&differences)
    }
}

/// `0..len` in an order that depends on `seed` (Fisher-Yates with a xorshift generator:
/// reproducible, and no dependency for it).
pub(super) fn shuffled(len: usize, seed: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9) | 1;
    for i in (1..len).rev() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        order.swap(i, state as usize % (i + 1));
    }
    order
}

pub(super) fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut values = values.to_vec();
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Median over runs of `f(run's value, run's baseline, run's floor)`.
pub(super) fn median_per_run(
    row: &[f64],
    base: &[f64],
    floor: &[f64],
    f: impl Fn(f64, f64, f64) -> f64,
) -> Option<f64> {
    let values: Vec<f64> = row
        .iter()
        .zip(base.iter().zip(floor))
        .map(|(&value, (&base, &floor))| f(value, base, floor))
        .collect();
    median(&values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_costs_are_read_from_run_stats_lines() {
        let mut current = ProgramCosts::default();
        let mut against = ProgramCosts::default();
        for (ours, theirs) in [(100.0, 110.0), (90.0, 130.0), (300.0, 305.0)] {
            current.add_run(&format!(
                "attached 7 programs\nsys_enter 1000 runs {ours:.1} ns/run\nbogus line\n"
            ));
            against.add_run(&format!(
                "sys_enter 999 runs {theirs:.1} ns/run\nsys_exit 999 runs 5.0 ns/run\n"
            ));
        }
        assert_eq!(current.medians(), vec![("sys_enter".to_string(), 1000, 100.0)]);
        assert_eq!(against.median_of("sys_exit"), Some(5.0));
        // Per-run differences -10, -40, -5: median -10 (the difference of medians would be -20).
        assert_eq!(current.median_difference(&against, "sys_enter"), Some(-10.0));
        assert_eq!(current.median_difference(&against, "sys_exit"), None);
    }

    #[test]
    fn several_loads_of_a_build_make_one_reference_run_by_run() {
        let loads: Vec<ProgramCosts> = [[100.0, 50.0], [130.0, 52.0], [90.0, 70.0]]
            .iter()
            .map(|values| {
                let mut load = ProgramCosts::default();
                for ns in values {
                    load.add_run(&format!("sys_exit 10 runs {ns:.1} ns/run\n"));
                }
                load
            })
            .collect();
        let reference = ProgramCosts::median_per_run(&loads);
        // Run 1: median of 100, 130, 90; run 2: of 50, 52, 70.
        assert_eq!(reference.values("sys_exit"), Some(&[100.0, 52.0][..]));
        assert!(ProgramCosts::median_per_run(&[]).medians().is_empty());
    }

    #[test]
    fn shuffled_orders_are_permutations_and_vary() {
        let orders: Vec<Vec<usize>> = (0..33).map(|seed| shuffled(6, seed)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..6).collect::<Vec<_>>());
        }
        // Every configuration goes first at some point, and after different neighbours.
        for config in 0..6 {
            assert!(orders.iter().any(|o| o[0] == config), "{config} never first");
            let before: std::collections::BTreeSet<usize> = orders
                .iter()
                .filter_map(|o| o.iter().position(|&c| c == config).filter(|&p| p > 0).map(|p| o[p - 1]))
                .collect();
            assert!(before.len() >= 3, "{config} follows only {before:?}");
        }
    }
}
