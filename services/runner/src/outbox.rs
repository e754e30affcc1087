//! Output of one assignment that the coordinator has not acknowledged yet.
//!
//! Lines are numbered from 1. They stay here until a `LogAck` covers them, so
//! after a reconnect everything unacknowledged is sent again; the coordinator
//! drops what it already has. No I/O and no clock: the time of a push or a
//! rewind is passed in.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Unsent lines that make output "heavy" at a flush tick: this many in one
/// flush interval (20 ms by default) is 50,000 lines a second.
pub const HEAVY_LINES: u64 = 1_000;
/// How long heavy output may wait for a fuller batch. Every batch is a
/// transaction and, for each of a Testrun's watchers, a message and a
/// socket write; at 400,000 lines a second, sending every 20 ms made 25
/// small batches a second where 10 large ones carry the same lines (bench
/// scenario 5: with 500 watchers, the coordinator's fan-out cost is mostly
/// per message). Light output still goes at every tick, so a line printed
/// now and then reaches watchers within the flush interval.
pub const MAX_HOLD: Duration = Duration::from_millis(100);

/// The most one Logs batch may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimit {
    pub lines: usize,
    /// Bytes of line text; a single longer line still goes alone.
    pub bytes: usize,
}

/// Unacknowledged lines of one assignment.
#[derive(Debug, Default)]
pub struct Outbox {
    lines: VecDeque<String>,
    /// Seq of `lines[0]`.
    first_seq: u64,
    /// Last seq sent on the current stream.
    sent: u64,
    /// Bytes held in `lines`.
    bytes: usize,
    /// Bytes of the held lines up to `sent`.
    sent_bytes: usize,
    /// When the current backlog of unsent lines began (none while all are
    /// sent); a full batch sent from it does not reset it, so the hold is
    /// counted from the backlog's start and ends early, never late.
    unsent_since: Option<Instant>,
}

impl Outbox {
    pub fn new() -> Self {
        Self {
            first_seq: 1,
            ..Self::default()
        }
    }

    /// Adds a line that came at `now`; returns its seq.
    pub fn push(&mut self, line: String, now: Instant) -> u64 {
        if self.unsent() == 0 {
            self.unsent_since = Some(now);
        }
        self.bytes += line.len();
        self.lines.push_back(line);
        self.last_seq()
    }

    /// Seq of the newest line (0 if none yet).
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.lines.len() as u64 - 1
    }

    /// Drops lines up to and including `seq`; returns bytes freed.
    pub fn ack(&mut self, seq: u64) -> usize {
        let mut freed = 0;
        while self.first_seq <= seq {
            let Some(line) = self.lines.pop_front() else {
                // Acknowledged past what we hold: keep numbering consistent.
                self.first_seq = seq + 1;
                break;
            };
            freed += line.len();
            self.first_seq += 1;
        }
        self.bytes -= freed;
        // Normally only sent lines are acknowledged; past `sent`, none of
        // the remaining lines has been sent.
        self.sent_bytes = self.sent_bytes.saturating_sub(freed);
        self.sent = self.sent.max(self.first_seq - 1);
        if self.unsent() == 0 {
            self.unsent_since = None;
        }
        freed
    }

    /// The next unsent batch within `limit` (never empty while lines are
    /// unsent): its first seq and lines.
    pub fn next_batch(&mut self, limit: BatchLimit) -> Option<(u64, Vec<String>)> {
        let start = self.sent.max(self.first_seq - 1) + 1;
        if start > self.last_seq() {
            return None;
        }
        let skip = (start - self.first_seq) as usize;
        let mut batch: Vec<String> = Vec::new();
        let mut bytes = 0;
        for line in self.lines.iter().skip(skip).take(limit.lines.max(1)) {
            if !batch.is_empty() && bytes + line.len() > limit.bytes {
                break;
            }
            bytes += line.len();
            batch.push(line.clone());
        }
        self.sent = start + batch.len() as u64 - 1;
        self.sent_bytes += bytes;
        if self.unsent() == 0 {
            self.unsent_since = None;
        }
        Some((start, batch))
    }

    /// Lines not sent on the current stream.
    pub fn unsent(&self) -> u64 {
        self.last_seq()
            .saturating_sub(self.sent.max(self.first_seq - 1))
    }

    /// Whether the unsent lines fill a batch.
    pub fn fills(&self, limit: BatchLimit) -> bool {
        self.unsent() >= limit.lines as u64 || self.bytes - self.sent_bytes >= limit.bytes
    }

    /// Whether a flush tick at `now` should send only full batches, if
    /// the test still runs (the caller knows): its output is heavy
    /// ([`HEAVY_LINES`]) and has waited less than [`MAX_HOLD`].
    pub fn holds_back(&self, now: Instant) -> bool {
        self.unsent() >= HEAVY_LINES
            && self
                .unsent_since
                .is_some_and(|since| now.saturating_duration_since(since) < MAX_HOLD)
    }

    /// A new stream, opened at `now`: everything unacknowledged must go
    /// again.
    pub fn rewind(&mut self, now: Instant) {
        self.sent = self.first_seq - 1;
        self.sent_bytes = 0;
        if self.unsent() > 0 {
            self.unsent_since.get_or_insert(now);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> BatchLimit {
        BatchLimit {
            lines: n,
            bytes: usize::MAX,
        }
    }

    fn filled(n: usize) -> Outbox {
        filled_at(n, Instant::now())
    }

    fn filled_at(n: usize, now: Instant) -> Outbox {
        let mut o = Outbox::new();
        for i in 1..=n {
            o.push(format!("line {i}"), now);
        }
        o
    }

    #[test]
    fn batches_continue_where_the_last_one_stopped() {
        let mut o = filled(5);
        assert_eq!(
            o.next_batch(lines(2)).unwrap(),
            (1, vec!["line 1".into(), "line 2".into()])
        );
        assert_eq!(o.next_batch(lines(10)).unwrap().0, 3);
        assert!(o.next_batch(lines(10)).is_none());
        assert!(!o.fills(lines(1)));
    }

    #[test]
    fn batches_stop_at_the_byte_limit_but_never_go_empty() {
        // "line N" is 6 bytes.
        let mut o = filled(5);
        let limit = BatchLimit {
            lines: 100,
            bytes: 13,
        };
        assert!(o.fills(limit));
        assert_eq!(o.next_batch(limit).unwrap().1.len(), 2);
        let tiny = BatchLimit {
            lines: 100,
            bytes: 1,
        };
        assert_eq!(o.next_batch(tiny).unwrap(), (3, vec!["line 3".into()]));
        // 2 lines (12 bytes) left unsent.
        assert!(!o.fills(limit));
        assert!(o.fills(BatchLimit {
            lines: 100,
            bytes: 12
        }));
        o.ack(3);
        o.rewind(Instant::now());
        assert!(o.fills(BatchLimit {
            lines: 100,
            bytes: 12
        }));
        assert_eq!(
            o.next_batch(limit).unwrap(),
            (4, vec!["line 4".into(), "line 5".into()])
        );
    }

    #[test]
    fn acknowledged_lines_are_dropped_and_the_rest_resent_after_rewind() {
        let mut o = filled(5);
        o.next_batch(lines(10));
        o.ack(3);
        assert_eq!(o.bytes(), "line 4".len() + "line 5".len());
        o.rewind(Instant::now());
        assert_eq!(
            o.next_batch(lines(10)).unwrap(),
            (4, vec!["line 4".into(), "line 5".into()])
        );
    }

    #[test]
    fn heavy_output_is_held_for_a_fuller_batch_until_it_waited_long_enough() {
        let now = Instant::now();
        let mut o = filled_at(HEAVY_LINES as usize - 1, now);
        assert!(!o.holds_back(now), "light output goes at every tick");
        o.push("one more".into(), now);
        assert!(o.holds_back(now), "heavy output waits");
        assert!(
            !o.holds_back(now + MAX_HOLD),
            "but not for longer than MAX_HOLD"
        );
        o.next_batch(lines(usize::MAX));
        assert!(!o.holds_back(now), "nothing unsent");
        // The age is the backlog's: once everything was sent, a new backlog
        // starts its own clock.
        let later = now + MAX_HOLD;
        for _ in 0..HEAVY_LINES {
            o.push("x".into(), later);
        }
        assert!(o.holds_back(later + MAX_HOLD / 2));
        assert!(!o.holds_back(later + MAX_HOLD));
    }

    #[test]
    fn a_rewound_backlog_keeps_its_age_or_starts_one() {
        let now = Instant::now();
        let mut o = filled_at(HEAVY_LINES as usize, now);
        o.rewind(now + MAX_HOLD / 2);
        assert!(!o.holds_back(now + MAX_HOLD), "the backlog's own age");
        o.next_batch(lines(usize::MAX));
        o.rewind(now + MAX_HOLD);
        assert!(
            o.holds_back(now + MAX_HOLD),
            "everything unacknowledged is unsent again, from the rewind"
        );
    }

    #[test]
    fn numbering_survives_an_empty_buffer() {
        let mut o = filled(2);
        o.next_batch(lines(10));
        o.ack(2);
        assert_eq!(o.push("three".into(), Instant::now()), 3);
        assert_eq!(o.next_batch(lines(10)).unwrap().0, 3);
    }
}
