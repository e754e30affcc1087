//! Output of one assignment that the coordinator has not acknowledged yet.
//!
//! Lines are numbered from 1. They stay here until a `LogAck` covers them, so
//! after a reconnect everything unacknowledged is sent again; the coordinator
//! drops what it already has.

use std::collections::VecDeque;

use testrunner_proto::v1::Finished;

/// Unacknowledged lines and result of one assignment.
#[derive(Debug, Default)]
pub struct Outbox {
    lines: VecDeque<String>,
    /// Seq of `lines[0]`.
    first_seq: u64,
    /// Last seq sent on the current stream.
    sent: u64,
    /// Bytes held in `lines`.
    bytes: usize,
    /// The result, once the test ended; kept until acknowledged.
    pub result: Option<Finished>,
    /// Whether `result` went out on the current stream.
    pub result_sent: bool,
}

impl Outbox {
    pub fn new() -> Self {
        Self {
            first_seq: 1,
            ..Self::default()
        }
    }

    /// Adds a line; returns its seq.
    pub fn push(&mut self, line: String) -> u64 {
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
        self.sent = self.sent.max(self.first_seq - 1);
        freed
    }

    /// The next unsent batch (at most `max` lines): its first seq and lines.
    pub fn next_batch(&mut self, max: usize) -> Option<(u64, Vec<String>)> {
        let start = self.sent.max(self.first_seq - 1) + 1;
        if start > self.last_seq() {
            return None;
        }
        let skip = (start - self.first_seq) as usize;
        let batch: Vec<String> = self.lines.iter().skip(skip).take(max).cloned().collect();
        self.sent = start + batch.len() as u64 - 1;
        Some((start, batch))
    }

    /// Lines not yet sent on this stream.
    pub fn unsent(&self) -> u64 {
        self.last_seq()
            .saturating_sub(self.sent.max(self.first_seq - 1))
    }

    /// A new stream: everything unacknowledged must go again.
    pub fn rewind(&mut self) {
        self.sent = self.first_seq - 1;
        self.result_sent = false;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize) -> Outbox {
        let mut o = Outbox::new();
        for i in 1..=n {
            o.push(format!("line {i}"));
        }
        o
    }

    #[test]
    fn batches_continue_where_the_last_one_stopped() {
        let mut o = filled(5);
        assert_eq!(
            o.next_batch(2).unwrap(),
            (1, vec!["line 1".into(), "line 2".into()])
        );
        assert_eq!(o.next_batch(10).unwrap().0, 3);
        assert!(o.next_batch(10).is_none());
        assert_eq!(o.unsent(), 0);
    }

    #[test]
    fn acknowledged_lines_are_dropped_and_the_rest_resent_after_rewind() {
        let mut o = filled(5);
        o.next_batch(10);
        o.ack(3);
        assert_eq!(o.bytes(), "line 4".len() + "line 5".len());
        o.rewind();
        assert_eq!(
            o.next_batch(10).unwrap(),
            (4, vec!["line 4".into(), "line 5".into()])
        );
    }

    #[test]
    fn numbering_survives_an_empty_buffer() {
        let mut o = filled(2);
        o.next_batch(10);
        o.ack(2);
        assert_eq!(o.push("three".into()), 3);
        assert_eq!(o.next_batch(10).unwrap().0, 3);
    }
}
