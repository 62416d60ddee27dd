//! A checker of recorded histories: is what clients saw of one key-value
//! key, read and compare-and-swapped through several nodes at once,
//! linearizable? That is: is there one order of the operations, each
//! taking effect at one instant between its call and its answer, in which
//! every read returns the last write before it and every compare-and-swap
//! succeeds exactly when its expected version is the current one?
//!
//! Every successful write gets a new version from one ascending sequence,
//! so the writes' order is known: the checker sorts them by version and
//! checks each rule against that order, in time linear to quadratic in
//! the history (a few thousand operations take milliseconds), rather than
//! searching all orders.
use std::time::Instant;

/// One operation on the key, with its call and answer instants.
#[derive(Debug, Clone)]
pub struct Op {
    pub start: Instant,
    pub end: Instant,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// A read: the value and its version, or absent.
    Read(Option<(String, u64)>),
    /// A write of `value` if the version is `expected` (`None`: if the key
    /// is absent): the new version, or refused (412).
    Cas {
        expected: Option<u64>,
        value: String,
        written: Option<u64>,
    },
}

struct Write<'a> {
    op: &'a Op,
    version: u64,
    expected: Option<u64>,
    value: &'a str,
}

/// `Ok` if the history of one key is linearizable, else what breaks it.
pub fn check(ops: &[Op]) -> Result<(), String> {
    let mut chain = ops
        .iter()
        .filter_map(|op| match &op.kind {
            Kind::Cas {
                expected,
                value,
                written: Some(version),
            } => Some(Write {
                op,
                version: *version,
                expected: *expected,
                value,
            }),
            _ => None,
        })
        .collect::<Vec<_>>();
    chain.sort_by_key(|write| write.version);
    // Each write succeeded from the version just before it: no two from
    // the same version (a lost update), none from an old one.
    for (i, write) in chain.iter().enumerate() {
        let before = i.checked_sub(1).map(|i| chain[i].version);
        if write.expected != before {
            return Err(format!(
                "the write of {:?} (version {}) expected version {:?}, but the version before it is {before:?}",
                write.value, write.version, write.expected
            ));
        }
    }
    // Writes take effect in an order their times allow.
    for (i, earlier) in chain.iter().enumerate() {
        if let Some(later) = chain[i + 1..]
            .iter()
            .find(|later| later.op.end < earlier.op.start)
        {
            return Err(format!(
                "the write of {:?} came after that of {:?}, which it had finished before",
                later.value, earlier.value
            ));
        }
    }
    let position = |version: u64| chain.iter().position(|write| write.version == version);
    // The latest start among the writes up to each one, and the earliest
    // end among the writes from each one on.
    let latest_start = chain
        .iter()
        .scan(None::<Instant>, |latest, write| {
            *latest = Some(latest.map_or(write.op.start, |at| at.max(write.op.start)));
            *latest
        })
        .collect::<Vec<_>>();
    let mut earliest_end = chain
        .iter()
        .rev()
        .scan(None::<Instant>, |earliest, write| {
            *earliest = Some(earliest.map_or(write.op.end, |at| at.min(write.op.end)));
            *earliest
        })
        .collect::<Vec<_>>();
    earliest_end.reverse();
    // Each read: the chain position it saw (`None`: before every write).
    let mut reads = Vec::new();
    for op in ops {
        let Kind::Read(seen) = &op.kind else { continue };
        let at = match seen {
            None => None,
            Some((value, version)) => {
                let Some(at) = position(*version) else {
                    return Err(format!("a read saw version {version}, which no write made"));
                };
                if chain[at].value != value {
                    return Err(format!(
                        "a read saw {value:?} at version {version}, written as {:?}",
                        chain[at].value
                    ));
                }
                if latest_start[at] > op.end {
                    return Err(format!(
                        "a read saw version {version} before a write it follows had started"
                    ));
                }
                Some(at)
            }
        };
        let next = at.map_or(0, |at| at + 1);
        if next < chain.len() && earliest_end[next] < op.start {
            return Err(format!(
                "a stale read: it saw {seen:?} after the write of {:?} had finished",
                chain[next].value
            ));
        }
        reads.push((op, at));
    }
    // A read that finished before another started saw no later write.
    for (first, first_at) in &reads {
        for (second, second_at) in &reads {
            if first.end < second.start && second_at < first_at {
                return Err(format!(
                    "a read saw {:?} after an earlier read had seen {:?}",
                    second.kind, first.kind
                ));
            }
        }
    }
    // A refused compare-and-swap: its expected version was not current at
    // some instant of its call.
    for op in ops {
        let Kind::Cas {
            expected: Some(expected),
            value,
            written: None,
        } = &op.kind
        else {
            continue;
        };
        let Some(at) = position(*expected) else {
            return Err(format!(
                "a write expected version {expected}, which no write made"
            ));
        };
        let current_before = chain[at].op.end < op.start;
        let current_after = chain.get(at + 1).is_none_or(|next| next.op.start > op.end);
        if current_before && current_after {
            return Err(format!(
                "the write of {value:?} was refused though version {expected} was current all along"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Kind, Op, check};
    use std::time::{Duration, Instant};

    /// An operation from `start` to `end` milliseconds.
    fn op(base: Instant, start: u64, end: u64, kind: Kind) -> Op {
        Op {
            start: base + Duration::from_millis(start),
            end: base + Duration::from_millis(end),
            kind,
        }
    }

    fn cas(expected: Option<u64>, value: &str, written: Option<u64>) -> Kind {
        Kind::Cas {
            expected,
            value: value.to_owned(),
            written,
        }
    }

    fn read(value: &str, version: u64) -> Kind {
        Kind::Read(Some((value.to_owned(), version)))
    }

    #[test]
    fn a_linearizable_history_passes_and_each_kind_of_anomaly_is_caught() {
        let t = Instant::now();
        let good = vec![
            op(t, 0, 1, cas(None, "a", Some(10))),
            op(t, 2, 5, read("a", 10)),
            op(t, 3, 6, cas(Some(10), "b", Some(12))),
            op(t, 4, 7, cas(Some(10), "c", None)),
            op(t, 4, 8, read("a", 10)),
            op(t, 9, 10, read("b", 12)),
        ];
        check(&good).unwrap();
        let broken = |replace: usize, kind: Kind| {
            let mut history = good.clone();
            history[replace].kind = kind;
            check(&history).unwrap_err()
        };
        // Two writes from version 10 both succeeded.
        assert!(broken(3, cas(Some(10), "c", Some(13))).contains("expected version"));
        // The last read saw the old value after the new one was written.
        assert!(broken(5, read("a", 10)).contains("stale"));
        // A refusal though 10 was current throughout.
        let mut refused = good[..2].to_vec();
        refused.push(op(t, 3, 4, cas(Some(10), "d", None)));
        assert!(check(&refused).unwrap_err().contains("refused"));
        // A read of a value no write made.
        assert!(broken(1, read("z", 10)).contains("written as"));
        // Reads going back in time.
        let mut back = good.clone();
        back.push(op(t, 11, 12, read("a", 10)));
        assert!(check(&back).is_err());
    }
}
