//! Counters by one label whose values are known up front: outcomes, object tables.

use std::sync::Arc;

use prometheus_client::metrics::{counter::Counter, family::Family};

type OneLabel = [(&'static str, &'static str); 1];

/// One label's counters. Every value's series exists (at zero) from the start, so `rate()`
/// and `increase()` see the first count. Clones count into the same series: the part that
/// counts holds one, the registry another.
#[derive(Clone, Debug)]
pub struct Counts {
    label: &'static str,
    values: Arc<[&'static str]>,
    family: Family<OneLabel, Counter>,
}

impl Counts {
    pub fn new(label: &'static str, values: impl IntoIterator<Item = &'static str>) -> Counts {
        let counts = Counts { label, values: values.into_iter().collect(), family: Family::default() };
        for value in counts.values.iter() {
            drop(counts.family.get_or_create(&[(label, value)]));
        }
        counts
    }

    pub fn add(&self, value: &'static str, n: u64) {
        self.family.get_or_create(&[(self.label, value)]).inc_by(n);
    }

    /// The count under `value` so far (0 for a value never counted).
    pub fn get(&self, value: &'static str) -> u64 {
        self.family.get(&[(self.label, value)]).map_or(0, |c| c.get())
    }

    /// The counts under the values given up front, added up.
    pub fn total(&self) -> u64 {
        self.values.iter().map(|v| self.get(v)).sum()
    }

    /// The series, for the registry.
    pub(super) fn family(&self) -> Family<OneLabel, Counter> {
        self.family.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_counts_into_the_same_series_and_unknown_values_read_zero() {
        let counts = Counts::new("outcome", ["succeeded", "failed"]);
        let held = counts.clone();
        held.add("failed", 2);
        assert_eq!((counts.get("succeeded"), counts.get("failed")), (0, 2));
        assert_eq!(counts.get("other"), 0);
        counts.add("other", 5);
        assert_eq!(counts.total(), 2, "the values given up front, added up");
        assert!(counts.family().get(&[("outcome", "succeeded")]).is_some(), "every value's series exists from the start");
    }
}
