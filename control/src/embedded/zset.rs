//! [`ZSet`]: the twin of a Redis sorted set — members ordered by (score, member), O(log n)
//! insert, remove and first, as `ZADD`, `ZREM` and `ZRANGE … LIMIT 0 1` are.

use std::collections::{BTreeSet, HashMap};

/// A sorted set: members ordered by (score, member), like a Redis ZSET.
#[derive(Debug, Default)]
pub(crate) struct ZSet {
    scores: HashMap<String, f64>,
    order: BTreeSet<(Score, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Score(f64);
impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl ZSet {
    pub(crate) fn add(&mut self, member: &str, score: f64) {
        if let Some(old) = self.scores.insert(member.to_owned(), score) {
            self.order.remove(&(Score(old), member.to_owned()));
        }
        self.order.insert((Score(score), member.to_owned()));
    }
    pub(crate) fn rem(&mut self, member: &str) {
        if let Some(old) = self.scores.remove(member) {
            self.order.remove(&(Score(old), member.to_owned()));
        }
    }
    pub(crate) fn score(&self, member: &str) -> Option<f64> {
        self.scores.get(member).copied()
    }
    pub(crate) fn len(&self) -> usize {
        self.scores.len()
    }
    pub(crate) fn first(&self) -> Option<String> {
        self.order.first().map(|(_, m)| m.clone())
    }
    /// First member with a score strictly above `score`.
    pub(crate) fn first_above(&self, score: f64) -> Option<String> {
        // Seek to the score (O(log n)), then skip members with exactly that score (round-robin
        // scores are unique sequence numbers: at most one).
        self.order
            .range((Score(score), String::new())..)
            .find(|(s, _)| s.0 > score)
            .map(|(_, m)| m.clone())
    }
    /// Members with score <= `max`, lowest first, at most `limit`.
    pub(crate) fn up_to(&self, max: f64, limit: usize) -> Vec<String> {
        self.order
            .iter()
            .take_while(|(s, _)| s.0 <= max)
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect()
    }
    pub(crate) fn clear(&mut self) {
        self.scores.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_score_then_member() {
        let mut z = ZSet::default();
        for (m, s) in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("b2", 2.0)] {
            z.add(m, s);
        }
        assert_eq!(z.first().as_deref(), Some("a"));
        assert_eq!(z.first_above(1.0).as_deref(), Some("b"));
        assert_eq!(z.first_above(2.0).as_deref(), Some("c"));
        assert_eq!(z.first_above(3.0), None);
        assert_eq!(z.first_above(-1.0).as_deref(), Some("a"));
        assert_eq!(z.up_to(2.0, 10), vec!["a", "b", "b2"]);
        z.add("a", 5.0);
        assert_eq!(z.first().as_deref(), Some("b"));
        assert_eq!(z.score("a"), Some(5.0));
        z.rem("b");
        assert_eq!(z.len(), 3);
        assert_eq!(z.first().as_deref(), Some("b2"));
    }
}
