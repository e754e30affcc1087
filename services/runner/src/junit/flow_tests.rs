//! The JUnit cases in the runner's state machine (runner.proto rule 11):
//! after the log lines and before `Finished`, and after a reconnect only
//! what the coordinator has not acknowledged, still before `Finished`.

use std::time::{Duration, Instant};

use testrunner_proto::v1::{self as pb, Outcome, TestCase, runner_message::Message as Out};

use super::Collected;
use crate::assignments::{Action, Assignments, Event, Settings};
use crate::exec::Report;
use crate::outbox::BatchLimit;

fn attached() -> Event {
    Event::Attached {
        lease: None,
        batch: BatchLimit {
            lines: 100,
            bytes: 1 << 20,
        },
    }
}

/// What went on the wire, in words.
fn sent(actions: Vec<Action>) -> Vec<String> {
    actions
        .into_iter()
        .filter_map(|a| match a {
            Action::Send(Out::Logs(l)) => Some(format!("logs {}+{}", l.first_seq, l.lines.len())),
            Action::Send(Out::Cases(c)) => Some(format!(
                "cases {}+{}{}",
                c.first_index,
                c.cases.len(),
                if c.note.is_empty() { "" } else { " note" }
            )),
            Action::Send(Out::Finished(f)) => Some(format!("finished {}", f.assignment_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn cases_go_between_the_lines_and_the_result_and_only_unacknowledged_ones_again() {
    let mut m = Assignments::new(Settings {
        slots: 1,
        queue_len: 0,
        queue_wait: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(60),
        max_buffered_bytes: 1 << 20,
        line_delay: None,
    });
    let now = Instant::now();
    m.handle(now, attached());
    let started = m.handle(
        now,
        Event::Assign(pb::Assign {
            assignment_id: "a".into(),
            name: "t.py".into(),
            ..Default::default()
        }),
    );
    assert!(matches!(started[..], [Action::Start(_)]));
    m.handle(
        now,
        Event::Line {
            assignment_id: "a".into(),
            text: "collected 1500 items".into(),
        },
    );
    let collected = Collected {
        cases: (0..1500)
            .map(|i| TestCase {
                index: i,
                ..Default::default()
            })
            .collect(),
        note: "exit 0, but the report lists 1 failed case".into(),
    };
    assert!(
        sent(m.handle(
            now,
            Event::Cases {
                assignment_id: "a".into(),
                collected,
            }
        ))
        .is_empty()
    );
    let report = Report {
        outcome: Outcome::Passed,
        exit_code: Some(0),
        duration: Duration::from_millis(5),
        error: String::new(),
    };
    let ended = m.handle(
        now,
        Event::Ended {
            assignment_id: "a".into(),
            report,
        },
    );
    assert_eq!(
        sent(ended),
        [
            "logs 1+1",
            "cases 0+1000",
            "cases 1000+500 note",
            "finished a"
        ]
    );

    // The first batch is acknowledged; the stream is lost before anything
    // else is.
    m.handle(
        now,
        Event::CasesAck(pb::CasesAck {
            assignment_id: "a".into(),
            next_index: 1000,
        }),
    );
    m.handle(now, Event::Detached);
    assert_eq!(
        sent(m.handle(now, attached())),
        ["logs 1+1", "cases 1000+500 note", "finished a"]
    );

    // Everything acknowledged but the result: only the result goes again.
    m.handle(
        now,
        Event::CasesAck(pb::CasesAck {
            assignment_id: "a".into(),
            next_index: 1500,
        }),
    );
    m.handle(
        now,
        Event::LogAck(pb::LogAck {
            assignment_id: "a".into(),
            seq: 1,
        }),
    );
    m.handle(now, Event::Detached);
    assert_eq!(sent(m.handle(now, attached())), ["finished a"]);
}
