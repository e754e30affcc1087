//! Following Testruns live: from history to the live tail with no gap and no
//! duplicate, resumable from a cursor, and never slowed by a slow watcher.

use std::time::Duration;

use testkit::e2e::*;
use testrunner_proto::v1::testrun_event::Event;
use testrunner_proto::v1::testruns_event::Event as ListEvent;
use testrunner_proto::v1::{
    GetTestLogRequest, TestrunEvent, WatchTestrunRequest, WatchTestrunsRequest,
    get_test_log_request, testrun,
};
use tonic::Streaming;

const LINES: usize = 100_000;

/// Reads events, appending lines of `name`, until the stream ends or
/// `stop_after` lines were seen; returns the last cursor.
async fn collect(
    stream: &mut Streaming<TestrunEvent>,
    name: &str,
    lines: &mut Vec<String>,
    stop_after: Option<usize>,
) -> u64 {
    let mut cursor = 0;
    while let Some(event) = stream.message().await.expect("stream stays healthy") {
        assert!(event.cursor >= cursor, "cursors never go back");
        cursor = event.cursor;
        if let Some(Event::Log(log)) = event.event
            && log.test_name == name
        {
            assert_eq!(log.first_line as usize, lines.len(), "no gap, no repeat");
            lines.extend(log.lines);
        }
        if stop_after.is_some_and(|n| lines.len() >= n) {
            break;
        }
    }
    cursor
}

fn expected() -> Vec<String> {
    (1..=LINES).map(|i| i.to_string()).collect()
}

on_both_stores! {
    a_watcher_that_accepts_gzip_gets_every_line_compressed(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("big.sh", &format!("seq 1 {LINES}\n"))], None, None).await;
        // Both watch before a runner starts, so the live events they get
        // are the shared ones, compressed once for whoever accepts gzip.
        let request = WatchTestrunRequest { id: run.id, after: 0, from_end: false };
        let gzipped = client
            .clone()
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .watch_testrun(request)
            .await
            .unwrap();
        let plain = client.watch_testrun(request).await.unwrap();
        assert_eq!(
            gzipped.metadata().get("grpc-encoding").map(|v| v.to_str().unwrap()),
            Some("gzip")
        );
        assert_eq!(plain.metadata().get("grpc-encoding"), None, "only to clients that ask");
        let _r = Runner::start(&coord, "r1", 1);
        for response in [gzipped, plain] {
            let mut lines = Vec::new();
            collect(&mut response.into_inner(), "big.sh", &mut lines, None).await;
            assert!(lines == expected(), "every line once, in order");
        }
    }

    a_watcher_receives_100000_lines_in_order_exactly_once(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("big.sh", &format!("seq 1 {LINES}\n"))], None, None).await;
        let mut stream = client
            .watch_testrun(WatchTestrunRequest { id: run.id, after: 0, from_end: false })
            .await
            .unwrap()
            .into_inner();
        let mut lines = Vec::new();
        collect(&mut stream, "big.sh", &mut lines, None).await;
        assert_eq!(lines.len(), LINES);
        assert!(lines == expected(), "lines arrive in order");
        let done = get(&mut client, run.id).await;
        assert_eq!(done.status, testrun::Status::Success as i32, "the stream ends after the run");

        // Paging the stored log returns exactly the requested lines.
        let page = client
            .get_test_log(GetTestLogRequest {
                testrun_id: run.id,
                test: Some(get_test_log_request::Test::TestName("big.sh".into())),
                offset: 50_000,
                limit: 100,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.lines, (50_001..=50_100).map(|i| i.to_string()).collect::<Vec<_>>());
        assert_eq!((page.next_offset, page.total), (50_100, LINES as u64));
        let past_end = client
            .get_test_log(GetTestLogRequest {
                testrun_id: run.id,
                test: Some(get_test_log_request::Test::TestId(done.tests[0].id)),
                offset: LINES as u64,
                limit: 10,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(past_end.lines.is_empty());
    }

    a_watcher_that_reconnects_with_its_cursor_gets_the_rest(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let script = format!("seq 1 {}\nsleep 0.5\nseq {} {LINES}\n", LINES / 2, LINES / 2 + 1);
        let run = create(&mut client, vec![file("big.sh", &script)], None, None).await;
        let mut lines = Vec::new();
        let mut first = client.watch_testrun(WatchTestrunRequest { id: run.id, after: 0, from_end: false }).await.unwrap().into_inner();
        let cursor = collect(&mut first, "big.sh", &mut lines, Some(30_000)).await;
        drop(first);
        assert!(lines.len() >= 30_000 && cursor >= 30_000);
        let mut second = client.watch_testrun(WatchTestrunRequest { id: run.id, after: cursor, from_end: false }).await.unwrap().into_inner();
        // The resumed stream starts where the first stopped.
        let mut rest = Vec::new();
        while let Some(event) = second.message().await.unwrap() {
            if let Some(Event::Log(log)) = event.event {
                assert_eq!(log.first_line as usize, lines.len() + rest.len(), "resumes at the cursor");
                rest.extend(log.lines);
            }
        }
        lines.extend(rest);
        assert_eq!(lines.len(), LINES);
        assert!(lines == expected());
    }

    a_watcher_can_skip_the_stored_history(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("t.sh", "seq 1 5000\necho ready\nsleep 1\necho after\n")], None, None).await;
        wait_until(&mut client, run.id, Duration::from_secs(30), "the first lines", |r| r.tests[0].log_lines >= 5001).await;
        let mut stream = client
            .watch_testrun(WatchTestrunRequest { id: run.id, after: 0, from_end: true })
            .await
            .unwrap()
            .into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert!(matches!(first.event, Some(Event::Snapshot(_))));
        assert!(first.cursor >= 5001, "the snapshot's cursor is the stored end: {}", first.cursor);
        let mut lines = Vec::new();
        while let Some(event) = stream.message().await.unwrap() {
            if let Some(Event::Log(log)) = event.event {
                assert_eq!(log.first_line as usize, 5001 + lines.len(), "positions stay true");
                lines.extend(log.lines);
            }
        }
        assert_eq!(lines, ["after"], "only lines stored after the snapshot");
    }

    a_stalled_watcher_does_not_hold_up_the_run_and_catches_up_later(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut client = coord.client().await;
        let run = create(&mut client, vec![file("big.sh", &format!("seq 1 {LINES}\n"))], None, None).await;
        // Opened, then not read until the run is over.
        let mut stalled = client.watch_testrun(WatchTestrunRequest { id: run.id, after: 0, from_end: false }).await.unwrap().into_inner();
        let done = wait_done(&mut client, run.id).await;
        assert_eq!(done.status, testrun::Status::Success as i32);
        let mut lines = Vec::new();
        collect(&mut stalled, "big.sh", &mut lines, None).await;
        assert!(lines == expected(), "caught up from storage: {} lines", lines.len());
    }

    the_list_stream_reports_new_testruns_and_their_status_changes(backend) {
        let coord = Coordinator::start(backend, &[]).await;
        let mut client = coord.client().await;
        let mut list = client.watch_testruns(WatchTestrunsRequest::default()).await.unwrap().into_inner();
        let run = create(&mut client, vec![file("a.sh", "echo a\n")], None, None).await;
        let _r = Runner::start(&coord, "r1", 1);
        let mut seen = Vec::new();
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), list.message())
                .await
                .expect("list events arrive")
                .unwrap()
                .expect("stream open");
            let (kind, r) = match event.event.unwrap() {
                ListEvent::Created(r) => ("created", r),
                ListEvent::Changed(r) => ("changed", r),
                ListEvent::Deleted(_) => continue,
            };
            assert_eq!(r.id, run.id);
            seen.push((kind, testrun::Status::try_from(r.status).unwrap()));
            if r.status == testrun::Status::Success as i32 {
                break;
            }
        }
        assert_eq!(seen.first(), Some(&("created", testrun::Status::Created)));
        assert!(seen.contains(&("changed", testrun::Status::Running)), "{seen:?}");
        client.delete_testrun(testrunner_proto::v1::DeleteTestrunRequest { id: run.id }).await.unwrap();
        let deleted = list.message().await.unwrap().unwrap();
        assert_eq!(deleted.event, Some(ListEvent::Deleted(run.id)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_downloads_as_plain_text_over_http() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let coord = Coordinator::start(Backend::Sqlite, &[]).await;
    let _r = Runner::start(&coord, "r1", 1);
    let mut client = coord.client().await;
    let run = create(
        &mut client,
        vec![file("t 1.sh", "seq 1 25000\n")],
        None,
        None,
    )
    .await;
    wait_done(&mut client, run.id).await;

    let fetch = |path: String| {
        let addr = coord.addr.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut body = Vec::new();
            s.read_to_end(&mut body).await.unwrap();
            String::from_utf8(body).unwrap()
        }
    };
    let response = fetch(format!("/testruns/{}/tests/t%201.sh/log", run.id)).await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{}",
        &response[..200.min(response.len())]
    );
    assert!(response.contains("text/plain"));
    // Chunked transfer: check the lines, not the framing.
    let numbers: Vec<u32> = response
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .filter(|n| *n >= 1 && *n <= 25000)
        .collect();
    assert!(
        numbers.len() >= 25000,
        "all lines present ({})",
        numbers.len()
    );
    let missing = fetch(format!("/testruns/{}/tests/nope.sh/log", run.id)).await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}
