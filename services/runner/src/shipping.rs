//! What of an assignment goes on the stream, and when: its unsent lines in
//! `Logs` batches, then its final report (rules 4 and 5), and results in
//! groups while tests wait in the queue. No I/O: messages go to a `send`
//! callback, which the state machine turns into actions.

use testrunner_proto::v1::{Finished, runner_message::Message as Out};

use crate::outbox::{BatchLimit, Outbox};
use crate::wire;

/// How an assignment ends on the wire; kept until its `ResultAck`.
#[derive(Debug, Clone, PartialEq)]
pub enum Final {
    /// It ran (or was cancelled before it could): `Finished`.
    Finished(Finished),
    /// Handed back unfinished, to be requeued without using an attempt:
    /// `Release`.
    Released,
}

impl Final {
    pub fn message(&self, assignment_id: &str) -> Out {
        match self {
            Self::Finished(result) => Out::Finished(result.clone()),
            Self::Released => wire::release(assignment_id),
        }
    }
}

/// Sends an assignment's unsent lines in batches (only full ones if
/// `full_only`).
pub fn lines(
    assignment_id: &str,
    outbox: &mut Outbox,
    batch: BatchLimit,
    full_only: bool,
    send: &mut impl FnMut(Out),
) {
    while !full_only || outbox.fills(batch) {
        let Some((first_seq, lines)) = outbox.next_batch(batch) else {
            break;
        };
        send(wire::logs(assignment_id, first_seq, lines));
    }
}

/// Sends everything an assignment has unsent: its lines, then its final
/// report if it has one that did not go out on this stream (`sent`).
pub fn everything(
    assignment_id: &str,
    outbox: &mut Outbox,
    report: Option<(&Final, &mut bool)>,
    batch: BatchLimit,
    send: &mut impl FnMut(Out),
) {
    lines(assignment_id, outbox, batch, false, send);
    if let Some((report, sent)) = report
        && !*sent
    {
        *sent = true;
        send(report.message(assignment_id));
    }
}

/// Results that wait to go together. While tests wait in the queue every
/// slot stays busy, and the coordinator refills the queue half at a time:
/// results go in groups of that size, each stored in one transaction. Once
/// the queue is empty, at once; the flush timer bounds the wait in between.
#[derive(Debug)]
pub struct ResultGroup {
    ids: Vec<String>,
    size: usize,
}

impl ResultGroup {
    /// Groups for a queue of `queue_len` tests.
    pub fn new(queue_len: u32) -> Self {
        Self {
            ids: Vec::new(),
            size: (queue_len as usize).div_ceil(2),
        }
    }

    /// Adds a result; true if the group should go now.
    pub fn add(&mut self, assignment_id: String, queue_empty: bool) -> bool {
        self.ids.push(assignment_id);
        queue_empty || self.ids.len() >= self.size
    }

    /// The group's results, leaving it empty.
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.ids)
    }

    /// Forgets the group: its results are being sent with everything else.
    pub fn clear(&mut self) {
        self.ids.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn outbox_of(lines: usize) -> Outbox {
        let mut outbox = Outbox::new();
        for i in 0..lines {
            outbox.push(format!("{i}"), Instant::now());
        }
        outbox
    }

    const TWO_LINES: BatchLimit = BatchLimit {
        lines: 2,
        bytes: 1 << 20,
    };

    #[test]
    fn lines_go_before_the_report_and_the_report_once_per_stream() {
        let mut outbox = outbox_of(3);
        let report = Final::Finished(Finished::default());
        let mut sent = false;
        let mut out = Vec::new();
        let mut send = |m| out.push(m);
        everything(
            "a",
            &mut outbox,
            Some((&report, &mut sent)),
            TWO_LINES,
            &mut send,
        );
        everything(
            "a",
            &mut outbox,
            Some((&report, &mut sent)),
            TWO_LINES,
            &mut send,
        );
        assert!(
            matches!(&out[..], [Out::Logs(a), Out::Logs(b), Out::Finished(_)]
                if a.first_seq == 1 && a.lines.len() == 2 && b.first_seq == 3),
            "{out:?}"
        );
        assert!(sent);
        let mut out = Vec::new();
        let mut unsent = false;
        everything(
            "a",
            &mut outbox,
            Some((&Final::Released, &mut unsent)),
            TWO_LINES,
            &mut |m| out.push(m),
        );
        assert!(matches!(&out[..], [Out::Release(r)] if r.assignment_id == "a"));
    }

    #[test]
    fn only_full_batches_go_when_asked() {
        let mut outbox = outbox_of(3);
        let mut out = Vec::new();
        lines("a", &mut outbox, TWO_LINES, true, &mut |m| out.push(m));
        assert!(
            matches!(&out[..], [Out::Logs(l)] if l.lines.len() == 2),
            "{out:?}"
        );
    }

    #[test]
    fn results_go_in_groups_of_half_a_queue_or_at_once_when_it_is_empty() {
        let mut group = ResultGroup::new(5);
        assert!(!group.add("a".into(), false));
        assert!(!group.add("b".into(), false));
        assert!(group.add("c".into(), false), "3 of a queue of 5");
        assert_eq!(group.take(), ["a", "b", "c"]);
        assert!(group.add("d".into(), true), "the queue ran empty");
        group.clear();
        assert!(group.take().is_empty());
        assert!(
            ResultGroup::new(0).add("e".into(), false),
            "no queue: every result goes at once"
        );
    }
}
