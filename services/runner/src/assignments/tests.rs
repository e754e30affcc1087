//! The state machine's rules, event by event: no runtime, no processes, no
//! sockets, no timers; time is a value moved forward by hand. (Longer than
//! 500 lines: one test per rule, all sharing the small harness below.)

use std::time::{Duration, Instant};

use testrunner_proto::v1::{self as pb, Outcome, runner_message::Message as Out};

use super::*;
use crate::outbox::HEAVY_LINES;

const BATCH: BatchLimit = BatchLimit {
    lines: 100,
    bytes: 1 << 20,
};

fn settings() -> Settings {
    Settings {
        slots: 1,
        queue_len: 4,
        queue_wait: Duration::from_secs(1),
        drain_timeout: Duration::from_secs(60),
        max_buffered_bytes: 1 << 20,
        line_delay: None,
    }
}

/// A runner's assignments and the time of the next event.
struct Runner {
    m: Assignments,
    now: Instant,
}

impl Runner {
    fn new(settings: Settings) -> Self {
        Self {
            m: Assignments::new(settings),
            now: Instant::now(),
        }
    }

    /// Attached with the default settings and no lease from the coordinator.
    fn attached() -> Self {
        let mut r = Self::new(settings());
        assert!(r.on(up()).is_empty());
        r
    }

    fn later(&mut self, by: Duration) -> &mut Self {
        self.now += by;
        self
    }

    /// Feeds one event; what the runner does, in words.
    fn on(&mut self, event: Event) -> Vec<String> {
        let actions = self.m.handle(self.now, event);
        self.check();
        actions.iter().map(describe).collect()
    }

    fn state(&self, id: &str) -> Option<&State> {
        self.m.state(id)
    }

    fn queue(&self) -> Vec<&str> {
        self.m.queue().collect()
    }

    /// What the counters and the queue say matches the assignments.
    fn check(&self) {
        let m = &self.m;
        let running = m.held.values().filter(|a| a.state.is_running()).count();
        assert_eq!(m.running, running, "running count");
        let bytes: usize = m.held.values().map(|a| a.outbox.bytes()).sum();
        assert_eq!(m.buffered, bytes, "buffered bytes");
        let mut queued: Vec<&String> = m
            .held
            .iter()
            .filter(|(_, a)| matches!(a.state, State::Queued(_)))
            .map(|(id, _)| id)
            .collect();
        let mut queue: Vec<&String> = m.queue.iter().collect();
        queued.sort();
        queue.sort();
        assert_eq!(queue, queued, "the queue holds exactly the queued");
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Start(job) => format!("start {}", job.assignment_id),
        Action::Kill(id) => format!("kill {id}"),
        Action::Send(Out::Logs(l)) => format!(
            "logs {} {}..{}",
            l.assignment_id,
            l.first_seq,
            l.first_seq + l.lines.len() as u64 - 1
        ),
        Action::Send(Out::Finished(f)) => {
            let outcome = Outcome::try_from(f.outcome).expect("an outcome");
            let unstarted = if f.error == "cancelled before it started" {
                " unstarted"
            } else {
                ""
            };
            format!(
                "finished {} {outcome:?}{unstarted} lines={}",
                f.assignment_id, f.log_lines
            )
        }
        Action::Send(Out::Release(r)) => format!("release {}", r.assignment_id),
        Action::Send(Out::Drain(_)) => "drain".into(),
        Action::Send(Out::SetupStarted(s)) => format!("setup started {}", s.testrun_id),
        Action::Send(Out::SetupFinished(s)) => {
            format!("setup finished {} ok={}", s.testrun_id, s.ok)
        }
        Action::Prepare { testrun_id, .. } => format!("prepare {testrun_id}"),
        Action::Send(other) => format!("{other:?}"),
    }
}

/// Actions that may come in any order among themselves (one per
/// assignment, over the whole table).
fn sorted(mut actions: Vec<String>) -> Vec<String> {
    actions.sort();
    actions
}

fn up() -> Event {
    Event::Attached {
        lease: None,
        batch: BATCH,
    }
}

fn up_with_lease(lease: Duration) -> Event {
    Event::Attached {
        lease: Some(lease),
        batch: BATCH,
    }
}

fn assign(id: &str, testrun_id: i64) -> Event {
    Event::Assign(pb::Assign {
        assignment_id: id.into(),
        testrun_id,
        name: format!("{id}.sh"),
        content: "exit 0\n".into(),
        attempt: 1,
        ..pb::Assign::default()
    })
}

fn cancel(id: &str) -> Event {
    Event::Cancel(pb::Cancel {
        assignment_id: id.into(),
        reason: "testrun cancelled".into(),
        forget: false,
    })
}

fn forget(id: &str) -> Event {
    Event::Cancel(pb::Cancel {
        assignment_id: id.into(),
        reason: "unknown assignment".into(),
        forget: true,
    })
}

fn line(id: &str, text: &str) -> Event {
    Event::Line {
        assignment_id: id.into(),
        text: text.into(),
    }
}

fn ended(id: &str, outcome: Outcome) -> Event {
    Event::Ended {
        assignment_id: id.into(),
        report: Report {
            outcome,
            exit_code: (outcome == Outcome::Passed).then_some(0),
            duration: Duration::from_millis(5),
            error: String::new(),
        },
    }
}

fn log_ack(id: &str, seq: u64) -> Event {
    Event::LogAck(pb::LogAck {
        assignment_id: id.into(),
        seq,
    })
}

fn result_ack(id: &str) -> Event {
    Event::ResultAck(pb::ResultAck {
        assignment_id: id.into(),
        accepted: true,
    })
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_test_starts_reports_its_lines_and_result_and_is_forgotten_once_acknowledged() {
    let mut r = Runner::attached();
    assert_eq!(r.on(assign("a", 1)), ["start a"]);
    assert_eq!(r.state("a"), Some(&State::Running));
    assert!(r.on(line("a", "one")).is_empty(), "a part batch waits");
    assert!(r.on(line("a", "two")).is_empty());
    assert_eq!(r.m.buffered(), 6);
    assert_eq!(r.on(Event::FlushTick), ["logs a 1..2"]);
    assert_eq!(
        r.on(ended("a", Outcome::Passed)),
        ["finished a Passed lines=2"],
        "with an empty queue, at once"
    );
    assert!(matches!(
        r.state("a"),
        Some(State::Reported { sent: true, .. })
    ));
    assert!(r.on(Event::FlushTick).is_empty(), "nothing goes twice");
    assert!(r.on(log_ack("a", 2)).is_empty());
    assert_eq!(r.m.buffered(), 0);
    assert_eq!(r.m.resume(), ["a"], "held until its ResultAck");
    assert!(r.on(result_ack("a")).is_empty());
    assert_eq!(r.state("a"), None);
    assert_eq!(r.m.held(), 0);
}

#[test]
fn full_batches_go_at_once_and_the_rest_at_the_flush_tick() {
    let mut r = Runner::new(settings());
    r.on(Event::Attached {
        lease: None,
        batch: BatchLimit {
            lines: 2,
            bytes: 1 << 20,
        },
    });
    r.on(assign("a", 1));
    assert!(r.on(line("a", "1")).is_empty());
    assert_eq!(r.on(line("a", "2")), ["logs a 1..2"]);
    assert!(r.on(line("a", "3")).is_empty());
    assert_eq!(r.on(Event::FlushTick), ["logs a 3..3"]);
}

/// Attached with `--line-delay` on (2 ms) and two slots.
fn prompt() -> Runner {
    let mut r = Runner::new(Settings {
        slots: 2,
        line_delay: Some(Duration::from_millis(2)),
        ..settings()
    });
    assert!(r.on(up()).is_empty());
    r
}

#[test]
fn a_line_after_a_quiet_moment_goes_at_once() {
    let mut r = prompt();
    r.on(assign("a", 1));
    assert_eq!(
        r.on(line("a", "first")),
        ["logs a 1..1"],
        "nothing went before"
    );
    r.later(Duration::from_millis(10));
    assert_eq!(r.on(line("a", "quiet since")), ["logs a 2..2"]);
    assert_eq!(r.m.lines_due(), None, "nothing held back");
    assert!(r.on(Event::FlushTick).is_empty(), "nothing goes twice");
}

#[test]
fn lines_close_together_share_one_send_a_line_delay_later() {
    let mut r = prompt();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    let t0 = r.now;
    assert_eq!(r.on(line("a", "1")), ["logs a 1..1"]);
    r.later(Duration::from_millis(1));
    assert!(r.on(line("a", "2")).is_empty(), "within the delay: held");
    assert!(r.on(line("b", "1")).is_empty(), "any assignment's line");
    assert_eq!(r.m.lines_due(), Some(t0 + Duration::from_millis(2)));
    r.later(Duration::from_millis(1));
    let mut sent = r.on(Event::LinesDue);
    sent.sort();
    assert_eq!(sent, ["logs a 2..2", "logs b 1..1"]);
    assert_eq!(r.m.lines_due(), None);
    assert!(r.on(line("a", "3")).is_empty(), "just sent: held again");
    assert_eq!(r.on(Event::FlushTick), ["logs a 3..3"]);
    assert_eq!(r.m.lines_due(), None, "the tick took what was held");
}

#[test]
fn more_than_light_output_waits_for_the_flush_tick_even_with_a_line_delay() {
    let mut r = prompt();
    r.on(assign("a", 1));
    assert_eq!(r.on(line("a", "0")), ["logs a 1..1"]);
    for i in 1..=LIGHT_LINES + 1 {
        r.on(line("a", &i.to_string()));
    }
    r.later(Duration::from_millis(5));
    assert!(
        r.on(Event::LinesDue).is_empty(),
        "a backlog is not light output"
    );
    assert_eq!(
        r.on(Event::FlushTick),
        [format!("logs a 2..{}", LIGHT_LINES + 2)]
    );
}

#[test]
fn heavy_output_waits_for_full_batches_while_its_test_runs() {
    let mut r = Runner::new(settings());
    r.on(Event::Attached {
        lease: None,
        batch: BatchLimit {
            lines: 50_000,
            bytes: 1 << 20,
        },
    });
    for id in ["a", "b", "c"] {
        r.on(assign(id, 1));
    }
    for i in 0..HEAVY_LINES {
        assert!(r.on(line("a", &i.to_string())).is_empty());
    }
    assert!(
        r.on(Event::FlushTick).is_empty(),
        "held back for a fuller batch"
    );
    // Its test ended: everything goes at the next tick, with its result
    // (held for a group while b and c wait).
    assert_eq!(r.on(ended("a", Outcome::Passed)), ["start b"]);
    assert_eq!(
        r.on(Event::FlushTick),
        [
            format!("logs a 1..{HEAVY_LINES}"),
            format!("finished a Passed lines={HEAVY_LINES}")
        ]
    );
}

#[test]
fn tests_wait_in_the_queue_in_the_order_they_came_and_results_go_in_groups() {
    let mut r = Runner::attached();
    assert_eq!(r.on(assign("a", 1)), ["start a"]);
    for id in ["b", "c", "d", "e"] {
        assert!(r.on(assign(id, 1)).is_empty(), "one slot: {id} waits");
    }
    assert_eq!(r.queue(), ["b", "c", "d", "e"]);
    assert!(matches!(r.state("b"), Some(State::Queued(job)) if job.name == "b.sh"));
    // The next test starts first, without waiting for this result to go;
    // while tests wait, results go in groups of half the queue (4 / 2).
    assert_eq!(r.on(ended("a", Outcome::Passed)), ["start b"]);
    assert_eq!(
        r.on(ended("b", Outcome::Failed)),
        [
            "start c",
            "finished a Passed lines=0",
            "finished b Failed lines=0"
        ]
    );
    assert_eq!(r.on(ended("c", Outcome::Passed)), ["start d"]);
    assert_eq!(
        r.on(Event::FlushTick),
        ["finished c Passed lines=0"],
        "the flush tick bounds the wait"
    );
    assert_eq!(
        r.on(ended("d", Outcome::Passed)),
        ["start e", "finished d Passed lines=0"],
        "the queue ran empty: at once"
    );
}

#[test]
fn without_a_queue_every_result_goes_at_once() {
    let mut r = Runner::new(Settings {
        slots: 2,
        queue_len: 0,
        ..settings()
    });
    r.on(up());
    assert_eq!(r.on(assign("a", 1)), ["start a"]);
    assert_eq!(r.on(assign("b", 1)), ["start b"]);
    assert_eq!(
        r.on(ended("a", Outcome::Passed)),
        ["finished a Passed lines=0"]
    );
}

#[test]
fn a_cancel_takes_every_queued_test_of_its_testrun_out_of_the_queue() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    for (id, testrun) in [("b", 1), ("c", 2), ("d", 1)] {
        r.on(assign(id, testrun));
    }
    // The Cancel of the running test comes first; those of b and d would
    // come after it was killed, too late.
    assert_eq!(
        r.on(cancel("a")),
        [
            "kill a",
            "finished b Cancelled unstarted lines=0",
            "finished d Cancelled unstarted lines=0"
        ]
    );
    assert_eq!(r.queue(), ["c"], "another Testrun's test stays");
    assert_eq!(r.state("a"), Some(&State::Running), "reported as it ends");
    assert_eq!(
        r.on(ended("a", Outcome::Cancelled)),
        ["start c", "finished a Cancelled lines=0"],
        "the freed slot takes c"
    );
    // Their own Cancels change nothing now.
    assert!(r.on(cancel("b")).is_empty());
    assert!(r.on(cancel("d")).is_empty());
    assert!(matches!(
        r.state("b"),
        Some(State::Reported {
            report: Final::Finished(f),
            sent: true
        }) if f.outcome == Outcome::Cancelled as i32
    ));
}

#[test]
fn a_cancel_of_a_queued_test_reports_it_cancelled_without_running_it() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 2));
    assert_eq!(
        r.on(cancel("b")),
        ["finished b Cancelled unstarted lines=0"]
    );
    assert!(r.queue().is_empty());
    assert!(
        r.on(ended("a", Outcome::Passed))
            .iter()
            .all(|a| !a.starts_with("start")),
        "b never starts"
    );
}

#[test]
fn a_cancel_of_a_finished_test_leaves_its_result_as_it_finished() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(ended("a", Outcome::Passed));
    assert!(r.on(cancel("a")).is_empty());
    assert!(matches!(
        r.state("a"),
        Some(State::Reported { report: Final::Finished(f), .. }) if f.outcome == Outcome::Passed as i32
    ));
}

#[test]
fn a_cancel_that_overtakes_its_assign_reports_the_test_cancelled_without_running_it() {
    let mut r = Runner::attached();
    assert!(r.on(cancel("x")).is_empty());
    assert_eq!(
        r.on(assign("x", 1)),
        ["finished x Cancelled unstarted lines=0"]
    );
    // Forgetting needs no memory: an unknown assignment stays unknown.
    assert!(r.on(forget("y")).is_empty());
    assert_eq!(r.on(assign("y", 1)), ["start y"]);
}

#[test]
fn a_disowned_running_test_is_killed_and_its_lines_and_end_are_dropped() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.on(line("a", "kept until now"));
    assert_eq!(r.on(forget("a")), ["kill a"]);
    assert_eq!(
        r.state("a"),
        Some(&State::Discarding {
            handing_back: false
        })
    );
    assert!(r.on(line("a", "dropped")).is_empty());
    assert!(r.on(Event::FlushTick).is_empty(), "nothing of it goes");
    assert_eq!(sorted(r.m.resume()), ["a", "b"], "still held");
    assert_eq!(r.on(ended("a", Outcome::Cancelled)), ["start b"]);
    assert_eq!(r.state("a"), None, "gone without a report");
    assert_eq!(r.m.buffered(), 0);
}

#[test]
fn a_disowned_queued_or_reported_test_is_dropped_without_a_word() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    assert!(r.on(forget("b")).is_empty());
    assert_eq!(r.state("b"), None);
    r.on(line("a", "x"));
    r.on(ended("a", Outcome::Passed));
    assert!(r.on(forget("a")).is_empty());
    assert_eq!((r.m.held(), r.m.buffered()), (0, 0));
}

#[test]
fn a_plain_cancel_after_forget_makes_a_killed_test_report_again() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(forget("a"));
    assert_eq!(r.on(cancel("a")), ["kill a"]);
    assert_eq!(r.state("a"), Some(&State::Running));
    assert_eq!(
        r.on(ended("a", Outcome::Cancelled)),
        ["finished a Cancelled lines=0"]
    );
}

#[test]
fn a_result_ack_for_a_running_test_changes_nothing() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    assert!(r.on(result_ack("a")).is_empty());
    assert_eq!(r.state("a"), Some(&State::Running));
}

#[test]
fn draining_hands_back_the_queue_and_new_work_and_lets_running_tests_finish() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.on(line("a", "x"));
    let t0 = r.now;
    let out = r.on(Event::Signal);
    assert_eq!(out[0], "drain", "first, so no Assign is sent");
    assert_eq!(sorted(out[1..].to_vec()), ["logs a 1..1", "release b"]);
    assert_eq!(
        r.m.drain(),
        Drain::Finishing {
            deadline: t0 + Duration::from_secs(60)
        }
    );
    assert_eq!(r.m.drain().deadline(), Some(t0 + Duration::from_secs(60)));
    assert_eq!(
        r.on(assign("c", 1)),
        ["release c"],
        "at once, never started"
    );
    assert_eq!(
        r.on(ended("a", Outcome::Passed)),
        ["finished a Passed lines=1"]
    );
    for id in ["a", "b"] {
        r.on(result_ack(id));
        assert!(!r.m.drained());
    }
    r.on(result_ack("c"));
    assert!(r.m.drained(), "nothing held: exit");
}

#[test]
fn past_the_drain_deadline_running_tests_are_killed_and_handed_back() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(Event::Signal);
    assert_eq!(
        r.later(Duration::from_secs(60)).on(Event::DrainDeadline),
        ["kill a"]
    );
    assert_eq!(r.state("a"), Some(&State::HandingBack));
    assert_eq!(r.m.drain(), Drain::HandedBack);
    assert_eq!(r.m.drain().deadline(), None, "nothing more to wait for");
    assert_eq!(r.on(ended("a", Outcome::Cancelled)), ["release a"]);
    r.on(result_ack("a"));
    assert!(r.m.drained());
}

#[test]
fn a_second_signal_hands_back_every_running_test_at_once() {
    let mut r = Runner::new(Settings {
        slots: 2,
        ..settings()
    });
    r.on(up());
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.on(Event::Signal);
    assert_eq!(sorted(r.on(Event::Signal)), ["kill a", "kill b"]);
    assert_eq!(r.m.drain(), Drain::HandedBack);
    // A test disowned meanwhile stays dropped.
    r.on(forget("b"));
    assert_eq!(
        r.state("b"),
        Some(&State::Discarding { handing_back: true })
    );
    assert!(r.on(ended("b", Outcome::Cancelled)).is_empty());
}

#[test]
fn without_a_stream_no_queued_test_starts_and_the_next_one_hands_back_the_stale() {
    // A long queue wait: only the lease makes b stale.
    let mut r = Runner::new(Settings {
        queue_wait: Duration::from_secs(60),
        ..settings()
    });
    r.on(up_with_lease(2 * SECOND));
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.later(Duration::from_millis(900)).on(assign("c", 1));
    // The stream ends; then the running test ends.
    assert!(r.on(Event::Detached).is_empty());
    r.on(line("a", "x"));
    assert!(
        r.later(Duration::from_millis(50))
            .on(ended("a", Outcome::Passed))
            .is_empty(),
        "nothing starts, nothing is sent"
    );
    assert_eq!(r.queue(), ["b", "c"]);
    // Everything held is listed on the next Register.
    assert_eq!(sorted(r.m.resume()), ["a", "b", "c"]);
    // b waited for more than half a lease: by now it may be another
    // runner's. c came just before the stream ended: the rest starts,
    // after what was not acknowledged.
    assert_eq!(
        r.later(Duration::from_millis(250))
            .on(up_with_lease(2 * SECOND)),
        [
            "release b",
            "logs a 1..1",
            "finished a Passed lines=1",
            "start c"
        ]
    );
}

#[test]
fn the_queue_wait_applies_on_reconnect_when_shorter_than_half_a_lease() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.on(Event::Detached);
    // The default lease is 15 s: --queue-wait (1 s) is shorter.
    assert_eq!(r.later(SECOND).on(up()), ["release b"]);
}

#[test]
fn a_queued_test_that_waited_past_the_queue_wait_is_handed_back_at_a_flush_tick() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.later(Duration::from_millis(500)).on(assign("c", 1));
    assert!(r.on(Event::FlushTick).is_empty());
    assert_eq!(
        r.later(Duration::from_millis(500)).on(Event::FlushTick),
        ["release b"]
    );
    assert_eq!(r.queue(), ["c"]);
    assert_eq!(
        r.later(Duration::from_millis(500)).on(Event::FlushTick),
        ["release c"]
    );
    assert!(matches!(
        r.state("c"),
        Some(State::Reported {
            report: Final::Released,
            sent: true
        })
    ));
}

#[test]
fn a_new_stream_resends_every_unacknowledged_line_and_result() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    for text in ["1", "2", "3"] {
        r.on(line("a", text));
    }
    r.on(Event::FlushTick);
    r.on(log_ack("a", 1));
    r.on(ended("a", Outcome::Passed));
    r.on(Event::Detached);
    assert_eq!(
        r.on(up()),
        ["logs a 2..3", "finished a Passed lines=3"],
        "from the first unacknowledged line"
    );
}

#[test]
fn a_drain_without_a_stream_is_said_first_on_the_next_one() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.on(Event::Detached);
    assert!(r.on(Event::Signal).is_empty(), "no stream to say it on");
    assert_eq!(r.on(up()), ["drain", "release b"]);
}

#[test]
fn it_abandons_only_while_draining_and_longer_than_a_lease_without_a_stream() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    let t0 = r.now;
    r.on(Event::Detached);
    r.later(Duration::from_secs(10)).on(Event::Detached);
    assert_eq!(
        r.m.stream(),
        Stream::Down { since: t0 },
        "since the first failure"
    );
    assert!(!r.m.abandons(t0 + Duration::from_secs(16)), "not draining");
    r.on(Event::Signal);
    assert!(!r.m.abandons(t0 + Duration::from_secs(15)));
    assert!(r.m.abandons(t0 + Duration::from_secs(16)));
    assert_eq!(r.on(Event::Abandon), ["kill a"]);
    assert_eq!(r.state("a"), Some(&State::HandingBack));
    assert!(r.on(ended("a", Outcome::Cancelled)).is_empty(), "no stream");
    assert_eq!(r.m.running(), 0);
}

#[test]
fn output_is_not_taken_past_the_buffer_limit_until_acknowledged() {
    let mut r = Runner::new(Settings {
        max_buffered_bytes: 10,
        ..settings()
    });
    r.on(up());
    r.on(assign("a", 1));
    r.on(line("a", "12345"));
    assert!(r.m.has_room());
    r.on(line("a", "67890"));
    assert!(!r.m.has_room());
    r.on(Event::FlushTick);
    r.on(log_ack("a", 1));
    assert!(r.m.has_room());
}

#[test]
fn flush_ticks_come_only_while_a_stream_is_up() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(assign("b", 1));
    r.on(Event::Detached);
    assert!(
        r.later(Duration::from_secs(5))
            .on(Event::FlushTick)
            .is_empty()
    );
    assert_eq!(r.queue(), ["b"], "handed back only when a stream is there");
}

#[test]
fn a_refused_result_is_forgotten_as_well() {
    let mut r = Runner::attached();
    r.on(assign("a", 1));
    r.on(ended("a", Outcome::Passed));
    r.on(Event::ResultAck(pb::ResultAck {
        assignment_id: "a".into(),
        accepted: false,
    }));
    assert_eq!(r.state("a"), None);
}

#[test]
fn a_test_cancelled_before_it_came_is_reported_cancelled_even_while_draining() {
    let mut r = Runner::attached();
    r.on(cancel("x"));
    r.on(Event::Signal);
    assert_eq!(
        r.on(assign("x", 1)),
        ["finished x Cancelled unstarted lines=0"]
    );
    assert_eq!(r.on(assign("y", 1)), ["release y"]);
}

// Workspaces (rule 12): see `setups.rs`.

fn assign_in_workspace(id: &str, testrun_id: i64) -> Event {
    Event::Assign(pb::Assign {
        assignment_id: id.into(),
        testrun_id,
        name: format!("tests/{id}.py"),
        attempt: 1,
        workspace: Some(crate::workspace::digest::BlobId::of_bytes(b"tree").to_proto()),
        setup: "pip install -e .".into(),
        ..pb::Assign::default()
    })
}

fn prepared(testrun_id: i64, ok: bool) -> (Event, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let base = ok.then(|| {
        std::sync::Arc::new(
            crate::workspace::copies::Base::new(
                "key".into(),
                tmp.path().join("base"),
                tmp.path().join("copies"),
            )
            .unwrap(),
        )
    });
    let report = pb::SetupFinished {
        testrun_id,
        ok,
        error: if ok {
            String::new()
        } else {
            "set-up failed: exit 1".into()
        },
        ..Default::default()
    };
    (
        Event::Prepared(crate::workspace::Preparation { base, report }),
        tmp,
    )
}

#[test]
fn a_workspace_test_waits_for_its_preparation_while_other_tests_go_ahead() {
    let mut r = Runner::new(Settings {
        slots: 2,
        ..settings()
    });
    r.on(up());
    assert_eq!(
        r.on(assign_in_workspace("w1", 7)),
        ["setup started 7", "prepare 7"]
    );
    assert!(r.m.preparing(7));
    assert_eq!(
        r.on(assign_in_workspace("w2", 7)),
        Vec::<String>::new(),
        "prepared once"
    );
    assert_eq!(r.on(assign("plain", 8)), ["start plain"], "not held up");
    // Waiting for a preparation is not waiting for a slot.
    r.later(10 * SECOND);
    assert!(r.on(Event::FlushTick).is_empty());
    assert_eq!(r.queue(), ["w1", "w2"]);
    let (done, _tmp) = prepared(7, true);
    assert_eq!(r.on(done), ["setup finished 7 ok=true", "start w1"]);
    // w2's wait for a slot starts now: not handed back at the next tick.
    r.later(SECOND / 2);
    assert!(r.on(Event::FlushTick).is_empty());
    assert_eq!(
        r.on(ended("w1", Outcome::Passed)),
        ["start w2", "finished w1 Passed lines=0"]
    );
    let Some(State::Running) = r.state("w2") else {
        panic!("w2 runs");
    };
}

#[test]
fn a_started_workspace_test_carries_its_prepared_workspace() {
    let mut r = Runner::attached();
    let actions = r.m.handle(r.now, assign_in_workspace("w1", 7));
    assert!(matches!(
        actions.last(),
        Some(Action::Prepare { testrun_id: 7, .. })
    ));
    let (done, _tmp) = prepared(7, true);
    let actions = r.m.handle(r.now, done);
    let Some(Action::Start(job)) = actions.last() else {
        panic!("{actions:?}");
    };
    assert!(job.wants_workspace);
    assert_eq!(job.workspace.as_ref().map(|b| b.key.as_str()), Some("key"));
}

#[test]
fn a_failed_set_up_is_reported_first_then_its_tests_are_released_now_and_later() {
    let mut r = Runner::new(Settings {
        slots: 2,
        ..settings()
    });
    r.on(up());
    r.on(assign_in_workspace("w1", 7));
    r.on(assign_in_workspace("w2", 7));
    let (failed, _tmp) = prepared(7, false);
    assert_eq!(
        r.on(failed),
        ["setup finished 7 ok=false", "release w1", "release w2"]
    );
    assert_eq!(
        r.on(assign_in_workspace("w3", 7)),
        ["release w3"],
        "never retried per test"
    );
    assert!(r.queue().is_empty());
}

#[test]
fn a_set_up_report_is_resent_on_every_new_stream_until_acknowledged() {
    let mut r = Runner::attached();
    r.on(assign_in_workspace("w1", 7));
    r.on(Event::Detached);
    let (done, _tmp) = prepared(7, true);
    assert!(r.on(done).is_empty(), "no stream: kept, nothing starts");
    assert_eq!(r.on(up()), ["setup finished 7 ok=true", "start w1"]);
    r.on(Event::Detached);
    assert_eq!(r.on(up()), ["setup finished 7 ok=true"]);
    r.on(Event::SetupAck(pb::SetupAck { testrun_id: 7 }));
    r.on(Event::Detached);
    assert!(r.on(up()).is_empty());
}

#[test]
fn a_preparation_under_way_is_announced_again_on_a_new_stream() {
    let mut r = Runner::attached();
    r.on(assign_in_workspace("w1", 7));
    r.on(Event::Detached);
    assert_eq!(r.on(up()), ["setup started 7"]);
}
