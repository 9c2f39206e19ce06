//! Which keys (groups, or syscalls within a group) get series of their own, out of many: at
//! most `size`, chosen by recent activity. A key gets its own series only once it has been
//! active in several reads over a while, so a short-lived one (a one-shot command) never
//! does and leaves no trail; it loses them when it has been idle for the grace period, or
//! when a newcomer is far busier (then the least busy goes). Everything else is added into
//! `other`. Memory is bounded by the sizes, whatever the churn.
use std::{collections::HashMap, hash::Hash};

/// How [`Budget`] chooses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetRules {
    /// Keys with series of their own, at most.
    pub size: usize,
    /// A key is eligible after this many reads with activity...
    pub min_active_reads: u32,
    /// ...spanning at least this many seconds.
    pub min_age_secs: f64,
    /// A key's series end after it has been idle this long.
    pub grace_secs: f64,
    /// Activity halves every so many seconds (the ranking's memory).
    pub half_life_secs: f64,
    /// A newcomer displaces the least active key only when this many times busier.
    pub displace_factor: f64,
    /// Keys tracked while waiting (the least active are forgotten first).
    pub max_candidates: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Activity {
    /// Decayed activity (for a group, syscall time in ns).
    score: f64,
    /// When `score` was last decayed to.
    scored_at: f64,
    first_active: f64,
    last_active: f64,
    active_reads: u32,
}

impl Activity {
    fn new(now: f64) -> Activity {
        Activity {
            score: 0.0,
            scored_at: now,
            first_active: now,
            last_active: now,
            active_reads: 0,
        }
    }

    fn decayed(&self, now: f64, half_life: f64) -> f64 {
        self.score * 0.5f64.powf((now - self.scored_at).max(0.0) / half_life)
    }

    fn add(&mut self, amount: f64, now: f64, half_life: f64) {
        self.score = self.decayed(now, half_life) + amount;
        self.scored_at = now;
        if self.last_active < now || self.active_reads == 0 {
            self.active_reads += 1;
        }
        self.last_active = now;
    }
}

/// What a [`Budget::rebalance`] changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changes<K> {
    /// Keys that got series of their own.
    pub promoted: Vec<K>,
    /// Keys whose series end (idle past the grace period, or displaced).
    pub retired: Vec<K>,
}

pub struct Budget<K> {
    rules: BudgetRules,
    own: HashMap<K, Activity>,
    candidates: HashMap<K, Activity>,
}

impl<K: Clone + Eq + Hash + Ord> Budget<K> {
    pub fn new(rules: BudgetRules) -> Budget<K> {
        Budget {
            rules,
            own: HashMap::new(),
            candidates: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub fn is_own(&self, key: &K) -> bool {
        self.own.contains_key(key)
    }

    /// Records `amount` of activity of `key` in the read at `now` (seconds).
    pub fn observe(&mut self, key: &K, amount: f64, now: f64) {
        let half_life = self.rules.half_life_secs;
        if let Some(activity) = self.own.get_mut(key) {
            activity.add(amount, now, half_life);
            return;
        }
        if !self.candidates.contains_key(key) && self.candidates.len() >= self.rules.max_candidates {
            // Forget the least active candidate to make room.
            if let Some(least) = self
                .candidates
                .iter()
                .min_by(|a, b| {
                    a.1.decayed(now, half_life)
                        .total_cmp(&b.1.decayed(now, half_life))
                        .then(a.0.cmp(b.0))
                })
                .map(|(key, _)| key.clone())
            {
                self.candidates.remove(&least);
            }
        }
        self.candidates
            .entry(key.clone())
            .or_insert_with(|| Activity::new(now))
            .add(amount, now, half_life);
    }

    /// Gives `key` (just observed) a place at once if one is free and the rules ask for no
    /// sustained activity; whether it has one now.
    pub fn admit(&mut self, key: &K) -> bool {
        if self.own.contains_key(key) {
            return true;
        }
        let immediate = self.rules.min_active_reads <= 1 && self.rules.min_age_secs <= 0.0;
        if !immediate || self.own.len() >= self.rules.size {
            return false;
        }
        match self.candidates.remove(key) {
            Some(activity) => {
                self.own.insert(key.clone(), activity);
                true
            }
            None => false,
        }
    }

    /// Ends the series of keys idle past the grace period, then gives free places (or the
    /// places of far less active keys) to the most active eligible candidates.
    pub fn rebalance(&mut self, now: f64) -> Changes<K> {
        let rules = self.rules;
        let mut changes = Changes {
            promoted: Vec::new(),
            retired: Vec::new(),
        };
        let idle: Vec<K> = self
            .own
            .iter()
            .filter(|(_, a)| now - a.last_active > rules.grace_secs)
            .map(|(key, _)| key.clone())
            .collect();
        for key in idle {
            self.own.remove(&key);
            changes.retired.push(key);
        }
        // Candidates idle past the grace period are forgotten too.
        self.candidates.retain(|_, a| now - a.last_active <= rules.grace_secs);
        let mut eligible: Vec<(f64, K)> = self
            .candidates
            .iter()
            .filter(|(_, a)| a.active_reads >= rules.min_active_reads && now - a.first_active >= rules.min_age_secs)
            .map(|(key, a)| (a.decayed(now, rules.half_life_secs), key.clone()))
            .collect();
        eligible.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (score, key) in eligible {
            if self.own.len() >= rules.size {
                let least = self
                    .own
                    .iter()
                    .map(|(key, a)| (a.decayed(now, rules.half_life_secs), key.clone()))
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                match least {
                    Some((least_score, least)) if score > rules.displace_factor * least_score => {
                        self.own.remove(&least);
                        changes.retired.push(least);
                    }
                    _ => break,
                }
            }
            let activity = self.candidates.remove(&key).expect("listed above");
            self.own.insert(key.clone(), activity);
            changes.promoted.push(key);
        }
        changes
    }

    /// Keys tracked (with series of their own, and waiting).
    pub fn tracked(&self) -> usize {
        self.own.len() + self.candidates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: BudgetRules = BudgetRules {
        size: 2,
        min_active_reads: 3,
        min_age_secs: 2.0,
        grace_secs: 10.0,
        half_life_secs: 5.0,
        displace_factor: 2.0,
        max_candidates: 4,
    };

    fn keys(changes: &[&str]) -> Vec<String> {
        changes.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_key_gets_its_own_series_only_once_it_has_been_active_for_a_while() {
        let mut budget: Budget<String> = Budget::new(RULES);
        let steady = "steady".to_string();
        let once = "date".to_string();
        budget.observe(&once, 1e9, 0.0);
        for second in 0..4 {
            budget.observe(&steady, 100.0, f64::from(second));
            let changes = budget.rebalance(f64::from(second));
            if second < 2 {
                assert!(changes.promoted.is_empty(), "second {second}: too early");
            } else if second == 2 {
                assert_eq!(changes.promoted, keys(&["steady"]));
            }
        }
        assert!(budget.is_own(&steady));
        assert!(!budget.is_own(&once), "a one-shot key never gets series, however busy");
    }

    #[test]
    fn idle_keys_lose_their_series_after_the_grace_period() {
        let mut budget: Budget<String> = Budget::new(RULES);
        let key = "a".to_string();
        for second in 0..3 {
            budget.observe(&key, 1.0, f64::from(second));
        }
        assert_eq!(budget.rebalance(2.0).promoted, keys(&["a"]));
        assert!(
            budget.rebalance(12.0).retired.is_empty(),
            "idle 10 s: still within grace"
        );
        assert_eq!(budget.rebalance(12.5).retired, keys(&["a"]));
        assert_eq!(budget.tracked(), 0);
    }

    #[test]
    fn a_far_busier_newcomer_displaces_the_least_active() {
        let mut budget: Budget<String> = Budget::new(RULES);
        for second in 0..3 {
            let now = f64::from(second);
            budget.observe(&"a".to_string(), 100.0, now);
            budget.observe(&"b".to_string(), 10.0, now);
        }
        assert_eq!(budget.rebalance(2.0).promoted.len(), 2);
        for second in 3..6 {
            let now = f64::from(second);
            budget.observe(&"a".to_string(), 100.0, now);
            budget.observe(&"b".to_string(), 10.0, now);
            budget.observe(&"c".to_string(), 15.0, now); // busier than b, but not twice
        }
        assert!(budget.rebalance(5.0).promoted.is_empty());
        for second in 6..9 {
            budget.observe(&"c".to_string(), 1000.0, f64::from(second));
        }
        let changes = budget.rebalance(8.0);
        assert_eq!(changes.promoted, keys(&["c"]));
        assert_eq!(changes.retired, keys(&["b"]));
        assert!(budget.is_own(&"a".to_string()));
    }

    #[test]
    fn candidates_are_bounded_whatever_the_churn() {
        let mut budget: Budget<u32> = Budget::new(RULES);
        for key in 0..10_000 {
            budget.observe(&key, f64::from(key), 0.0);
        }
        assert!(budget.tracked() <= RULES.max_candidates);
    }
}
