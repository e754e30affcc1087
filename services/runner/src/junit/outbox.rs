//! The cases of one assignment that the coordinator has not acknowledged
//! yet (runner.proto rule 11), like `crate::outbox` for log lines: batches
//! from index 0, the note on the last one, everything unacknowledged sent
//! again on a new stream. No I/O.

use std::collections::VecDeque;

use prost::Message as _;
use testrunner_proto::v1::{Cases, TestCase};

use super::Collected;

/// Most cases per `Cases` message (the coordinator refuses more).
pub const MAX_CASES_PER_BATCH: usize = 1_000;
/// Most encoded bytes of cases per message (a larger single case still goes
/// alone; each text of a case is capped, see `parse::Limits`).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// Unacknowledged cases of one assignment.
#[derive(Debug, Default)]
pub struct CaseOutbox {
    /// Cases from index `first` on.
    cases: VecDeque<TestCase>,
    first: u32,
    /// Next index to send on the current stream.
    next: u32,
    total: u32,
    note: String,
    /// The last batch (with the note) went out on the current stream.
    last_sent: bool,
    /// Everything, note included, is durable (or there never was anything).
    done: bool,
}

impl CaseOutbox {
    /// Nothing to send.
    pub fn new() -> Self {
        Self {
            done: true,
            ..Self::default()
        }
    }

    /// Holds a report's cases and note for sending.
    pub fn fill(&mut self, collected: Collected) {
        if collected.is_empty() {
            return;
        }
        self.total = collected.cases.len() as u32;
        self.cases = collected.cases.into();
        self.note = collected.note;
        self.first = 0;
        self.next = 0;
        self.last_sent = false;
        self.done = false;
    }

    /// The next batch to send, if any.
    pub fn next_batch(&mut self, assignment_id: &str) -> Option<Cases> {
        if self.done || self.last_sent {
            return None;
        }
        let skip = (self.next - self.first) as usize;
        let mut cases = Vec::new();
        let mut bytes = 0;
        for case in self.cases.iter().skip(skip).take(MAX_CASES_PER_BATCH) {
            let len = case.encoded_len();
            if !cases.is_empty() && bytes + len > MAX_BATCH_BYTES {
                break;
            }
            bytes += len;
            cases.push(case.clone());
        }
        let first_index = self.next;
        self.next += cases.len() as u32;
        let last = self.next >= self.total;
        self.last_sent = last;
        Some(Cases {
            assignment_id: assignment_id.to_owned(),
            first_index,
            cases,
            note: if last {
                self.note.clone()
            } else {
                String::new()
            },
            total: self.total,
        })
    }

    /// The coordinator has every case below `next_index` (and, once that
    /// is all of them, the note).
    pub fn ack(&mut self, next_index: u32) {
        if self.done {
            return;
        }
        while self.first < next_index.min(self.total) {
            self.cases.pop_front();
            self.first += 1;
        }
        self.next = self.next.max(self.first);
        if next_index >= self.total && self.last_sent {
            self.done = true;
            self.note.clear();
        }
    }

    /// A new stream: everything unacknowledged goes again.
    pub fn rewind(&mut self) {
        self.next = self.first;
        self.last_sent = false;
    }

    /// Whether everything is acknowledged.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collected(n: usize, note: &str) -> Collected {
        Collected {
            cases: (0..n)
                .map(|i| TestCase {
                    index: i as u32,
                    name: format!("c{i}"),
                    ..TestCase::default()
                })
                .collect(),
            note: note.into(),
        }
    }

    fn batches(o: &mut CaseOutbox) -> Vec<(u32, usize, String)> {
        std::iter::from_fn(|| o.next_batch("a"))
            .map(|b| (b.first_index, b.cases.len(), b.note))
            .collect()
    }

    #[test]
    fn cases_go_in_batches_with_the_note_on_the_last() {
        let mut o = CaseOutbox::new();
        o.fill(collected(2_500, "n"));
        assert_eq!(
            batches(&mut o),
            [
                (0, 1000, String::new()),
                (1000, 1000, String::new()),
                (2000, 500, "n".into())
            ]
        );
        assert!(batches(&mut o).is_empty(), "once per stream");
    }

    #[test]
    fn unacknowledged_cases_go_again_after_a_rewind_and_acknowledged_ones_never() {
        let mut o = CaseOutbox::new();
        o.fill(collected(2_500, ""));
        batches(&mut o);
        o.ack(1000);
        o.rewind();
        assert_eq!(
            batches(&mut o),
            [(1000, 1000, String::new()), (2000, 500, String::new())]
        );
        o.ack(2500);
        assert!(o.is_done());
        o.rewind();
        assert!(batches(&mut o).is_empty());
    }

    #[test]
    fn a_note_without_cases_is_one_empty_batch_until_acknowledged() {
        let mut o = CaseOutbox::new();
        o.fill(collected(0, "JUnit report missing"));
        assert_eq!(batches(&mut o), [(0, 0, "JUnit report missing".into())]);
        o.rewind();
        assert_eq!(batches(&mut o).len(), 1);
        o.ack(0);
        assert!(o.is_done());
    }

    #[test]
    fn nothing_to_say_sends_nothing() {
        let mut o = CaseOutbox::new();
        o.fill(Collected::default());
        assert!(o.is_done());
        assert!(batches(&mut o).is_empty());
    }
}
