//! The balancing policy: least outstanding work first, ties taken in turn.
//!
//! Outstanding work is the number of leases a replica has handed out and not got back (reads
//! routed to it and not finished). Counting work in flight, rather than only rotating, keeps
//! long reads from piling up on one replica while another sits idle; rotating among equals keeps
//! a quiet system from sending everything to the first replica.

/// Among `candidates` (`(index, outstanding)` pairs, indexes below `len`), the one with the
/// least outstanding work; among equals, the first at or after `turn` in circular order.
pub(crate) fn least_outstanding(
    candidates: impl IntoIterator<Item = (usize, usize)>,
    turn: usize,
    len: usize,
) -> Option<usize> {
    if len == 0 {
        return None;
    }
    let start = turn % len;
    let distance = |index: usize| (index + len - start) % len;
    candidates
        .into_iter()
        .min_by_key(|&(index, outstanding)| (outstanding, distance(index)))
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::least_outstanding;

    #[test]
    fn least_outstanding_wins() {
        assert_eq!(least_outstanding([(0, 3), (1, 1), (2, 2)], 0, 3), Some(1));
        assert_eq!(least_outstanding([(0, 3), (1, 1), (2, 2)], 2, 3), Some(1));
        assert_eq!(least_outstanding([(2, 0)], 0, 3), Some(2));
        assert_eq!(least_outstanding([], 0, 3), None);
        assert_eq!(least_outstanding([], 0, 0), None);
    }

    #[test]
    fn equals_are_taken_in_turn() {
        let all = [(0, 0), (1, 0), (2, 0)];
        let picks: Vec<_> = (0..6)
            .map(|turn| least_outstanding(all, turn, 3).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        // A missing candidate (unhealthy) is skipped, the turn moving on to the next one.
        let some = [(0, 0), (2, 0)];
        assert_eq!(least_outstanding(some, 1, 3), Some(2));
        assert_eq!(least_outstanding(some, 2, 3), Some(2));
        assert_eq!(least_outstanding(some, 3, 3), Some(0));
    }
}
