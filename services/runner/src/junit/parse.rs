//! JUnit XML to test cases, read as a stream of quick-xml events.
//!
//! Tolerant of what real producers write: a `<testsuites>` or a bare
//! `<testsuite>` root, suites nested to any depth (tracked in a plain
//! stack, never by recursion, so 10,000 levels cost nothing), `failure`,
//! `error`, `skipped`, Surefire's `flakyFailure`/`rerunFailure`,
//! `system-out`/`system-err` at case level, invalid UTF-8 (replaced) and
//! control characters (kept: quick-xml checks no character classes, and an
//! ANSI colour in a message is worth keeping). Bounded in what it keeps: at
//! most `max_cases` cases and `max_text` bytes per text field, cut with a
//! visible marker. Entities: only XML's five and character references are
//! resolved; anything a DTD declares stays as its literal `&name;`, so a
//! billion-laughs document is just text, and external entities are never
//! fetched (quick-xml has no such feature).

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use testrunner_proto::v1::{TestCase, test_case::Status};

/// How much of a report is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest report read at all, in bytes.
    pub max_bytes: u64,
    /// Most cases kept per report.
    pub max_cases: usize,
    /// Most bytes kept of each message, details, system-out and
    /// system-err text of a case (names and file get a quarter of it).
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 20,
            max_cases: 100_000,
            max_text: 64 << 10,
        }
    }
}

/// Suites deeper than this still count, but only the outer ones name
/// their cases' `suite`.
const MAX_SUITE_NAMES: usize = 32;

/// What a report held.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Cases in report order, at most `Limits::max_cases`.
    pub cases: Vec<TestCase>,
    /// Cases seen past the limit, not kept.
    pub dropped: usize,
    /// Why reading stopped early, as `line L, column C: cause`; the cases
    /// read before it are kept.
    pub error: Option<String>,
}

/// Where text inside a case goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Details,
    SystemOut,
    SystemErr,
    Ignore,
}

/// A text capped at a number of bytes; the cut is said in a marker.
#[derive(Debug, Default)]
struct Capped {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Capped {
    fn push(&mut self, data: &[u8], cap: usize) {
        let room = cap.saturating_sub(self.bytes.len());
        let take = data.len().min(room);
        self.bytes.extend_from_slice(&data[..take]);
        self.dropped += data.len() - take;
    }

    fn finish(self) -> String {
        let mut text = clean(&self.bytes);
        if self.dropped > 0 {
            text.push_str(&format!(" … [truncated {} bytes]", self.dropped));
        }
        text
    }
}

/// A case being read.
#[derive(Debug, Default)]
struct Open {
    case: TestCase,
    message: Capped,
    details: Capped,
    out: Capped,
    err: Capped,
    target: Option<Target>,
}

/// Text as UTF-8 (invalid sequences replaced) without NUL, which
/// Postgres refuses in text.
pub fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

fn capped(bytes: &[u8], cap: usize) -> String {
    let mut c = Capped::default();
    c.push(bytes, cap);
    c.finish()
}

/// An attribute's value with XML's predefined entities and character
/// references resolved; anything else is left as written.
fn unescape(raw: &[u8]) -> Vec<u8> {
    if !raw.contains(&b'&') {
        return raw.to_vec();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.iter().position(|b| *b == b'&') {
        out.extend_from_slice(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.iter().take(12).position(|b| *b == b';') else {
            out.push(b'&');
            rest = &rest[1..];
            continue;
        };
        match resolve(&rest[1..semi]) {
            Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            None => out.extend_from_slice(&rest[..=semi]),
        }
        rest = &rest[semi + 1..];
    }
    out.extend_from_slice(rest);
    out
}

/// The character an entity name stands for, if XML defines it.
fn resolve(name: &[u8]) -> Option<char> {
    match name {
        b"amp" => Some('&'),
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        [b'#', b'x' | b'X', hex @ ..] => std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32),
        [b'#', dec @ ..] => std::str::from_utf8(dec)
            .ok()
            .and_then(|d| d.parse().ok())
            .and_then(char::from_u32),
        _ => None,
    }
}

fn attr(e: &BytesStart<'_>, name: &[u8]) -> Option<Vec<u8>> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.local_name().as_ref() == name)
        .map(|a| unescape(&a.value))
}

/// Seconds as written by frameworks (`1.5`, `1,234.5`) in milliseconds.
fn duration_ms(e: &BytesStart<'_>) -> Option<prost_types::Duration> {
    let raw = attr(e, b"time")?;
    let text: String = String::from_utf8_lossy(&raw)
        .chars()
        .filter(|c| *c != ',')
        .collect();
    let secs: f64 = text.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    std::time::Duration::try_from_secs_f64(secs)
        .ok()
        .and_then(|d| d.try_into().ok())
}

/// Line and column (1-based) of byte `pos` of `data`.
pub fn line_column(data: &[u8], pos: usize) -> (usize, usize) {
    let before = &data[..pos.min(data.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    (
        line,
        String::from_utf8_lossy(&before[start..]).chars().count() + 1,
    )
}

/// Reads the cases of a JUnit XML document.
pub fn parse(data: &[u8], limits: Limits) -> Parsed {
    let mut reader = Reader::from_reader(data);
    let config = reader.config_mut();
    config.allow_dangling_amp = true;
    config.check_comments = false;
    let name_cap = (limits.max_text / 4).max(256);
    let mut parsed = Parsed::default();
    // Names of the open suites (the outer MAX_SUITE_NAMES of them).
    let mut suites: Vec<String> = Vec::new();
    let mut suite_depth = 0usize;
    // Whether each open element is a suite, to pop `suites` on its end.
    let mut open_kinds: Vec<bool> = Vec::new();
    let mut case: Option<Open> = None;
    // Depth of the open case element in `open_kinds`.
    let mut case_depth = 0usize;
    let mut seen_root = false;
    loop {
        let event = match reader.read_event() {
            Ok(event) => event,
            Err(error) => {
                let (line, column) = line_column(data, reader.error_position() as usize);
                parsed.error = Some(format!("line {line}, column {column}: {error}"));
                break;
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let local = e.local_name();
                let name = local.as_ref();
                if !seen_root {
                    seen_root = true;
                    if name != b"testsuites" && name != b"testsuite" {
                        parsed.error = Some(format!(
                            "the root element is <{}>, not <testsuites> or <testsuite>",
                            clean(name)
                        ));
                        break;
                    }
                }
                let is_suite = name == b"testsuite" && case.is_none();
                if is_suite && !empty {
                    suite_depth += 1;
                    if suite_depth <= MAX_SUITE_NAMES {
                        suites.push(capped(&attr(e, b"name").unwrap_or_default(), name_cap));
                    }
                }
                if let Some(open) = case.as_mut() {
                    // Inside a case: its outcome and texts.
                    let outcome = match name {
                        b"failure" => Some(Status::Failed),
                        b"error" => Some(Status::Error),
                        b"skipped" => Some(Status::Skipped),
                        _ => None,
                    };
                    if let Some(status) = outcome {
                        let rank = |s: Status| match s {
                            Status::Error => 3,
                            Status::Failed => 2,
                            Status::Skipped => 1,
                            _ => 0,
                        };
                        if rank(status) > rank(open.case.status()) {
                            open.case.set_status(status);
                        }
                        let message = attr(e, b"message")
                            .filter(|m| !m.is_empty())
                            .or_else(|| attr(e, b"type"))
                            .unwrap_or_default();
                        if open.message.bytes.is_empty() && open.message.dropped == 0 {
                            open.message.push(&message, limits.max_text);
                        }
                        open.target = Some(Target::Details);
                    } else {
                        open.target = Some(match name {
                            b"flakyFailure" | b"rerunFailure" | b"flakyError" | b"rerunError" => {
                                let header = format!(
                                    "\n[{}] {}\n",
                                    clean(name),
                                    clean(&attr(e, b"message").unwrap_or_default())
                                );
                                open.details.push(header.as_bytes(), limits.max_text);
                                Target::Details
                            }
                            b"system-out" => Target::SystemOut,
                            b"system-err" => Target::SystemErr,
                            _ => Target::Ignore,
                        });
                    }
                    if empty {
                        open.target = None;
                    }
                } else if name == b"testcase" {
                    if parsed.cases.len() >= limits.max_cases {
                        parsed.dropped += 1;
                    } else {
                        let index = parsed.cases.len() as u32;
                        let mut open = Open {
                            case: TestCase {
                                index,
                                suite: suites.join(" / "),
                                classname: capped(
                                    &attr(e, b"classname").unwrap_or_default(),
                                    name_cap,
                                ),
                                name: capped(&attr(e, b"name").unwrap_or_default(), name_cap),
                                file: capped(&attr(e, b"file").unwrap_or_default(), name_cap),
                                line: attr(e, b"line")
                                    .and_then(|l| String::from_utf8_lossy(&l).trim().parse().ok()),
                                duration: duration_ms(e),
                                ..TestCase::default()
                            },
                            ..Open::default()
                        };
                        open.case.set_status(Status::Passed);
                        if empty {
                            parsed.cases.push(finish(open));
                        } else {
                            case = Some(open);
                            case_depth = open_kinds.len() + 1;
                        }
                    }
                }
                if !empty {
                    open_kinds.push(is_suite);
                }
            }
            Event::End(_) => {
                let depth = open_kinds.len();
                if open_kinds.pop() == Some(true) {
                    if suite_depth <= MAX_SUITE_NAMES {
                        suites.pop();
                    }
                    suite_depth = suite_depth.saturating_sub(1);
                }
                if case.is_some() && depth == case_depth {
                    parsed.cases.extend(case.take().map(finish));
                } else if let Some(open) = case.as_mut()
                    && depth == case_depth + 1
                {
                    open.target = None;
                }
            }
            Event::Text(ref t) => push_text(&mut case, t.as_ref(), limits),
            Event::CData(ref t) => push_text(&mut case, t.as_ref(), limits),
            Event::GeneralRef(ref r) => match resolve(r.as_ref()) {
                Some(c) => push_text(&mut case, c.encode_utf8(&mut [0; 4]).as_bytes(), limits),
                None => {
                    let literal = [b"&".as_slice(), r.as_ref(), b";"].concat();
                    push_text(&mut case, &literal, limits);
                }
            },
            Event::Eof => {
                if !seen_root {
                    parsed.error = Some("no XML element in the report".into());
                } else if !open_kinds.is_empty() {
                    let (line, column) = line_column(data, data.len());
                    parsed.error = Some(format!(
                        "line {line}, column {column}: the document ends inside {} open elements",
                        open_kinds.len()
                    ));
                }
                break;
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    parsed
}

fn push_text(case: &mut Option<Open>, data: &[u8], limits: Limits) {
    let Some(open) = case.as_mut() else { return };
    match open.target {
        Some(Target::Details) => open.details.push(data, limits.max_text),
        Some(Target::SystemOut) => open.out.push(data, limits.max_text),
        Some(Target::SystemErr) => open.err.push(data, limits.max_text),
        Some(Target::Ignore) | None => {}
    }
}

fn finish(open: Open) -> TestCase {
    TestCase {
        message: open.message.finish(),
        details: open.details.finish().trim().to_owned(),
        system_out: open.out.finish(),
        system_err: open.err.finish(),
        ..open.case
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(p: &Parsed) -> Vec<(String, Status)> {
        p.cases
            .iter()
            .map(|c| (c.name.clone(), c.status()))
            .collect()
    }

    #[test]
    fn a_bare_testsuite_root_with_every_outcome_is_read() {
        let xml = br#"<?xml version="1.0"?>
<testsuite name="pytest" tests="4">
  <testcase classname="tests.test_x.TestA" name="test_ok" time="0.25" file="tests/test_x.py" line="3"/>
  <testcase classname="tests.test_x.TestA" name="test_b"><failure message="AssertionError: assert 1 == 2">trace &amp; more</failure></testcase>
  <testcase classname="c" name="test_e"><error message="boom"/></testcase>
  <testcase classname="c" name="test_s"><skipped message="not today"/></testcase>
</testsuite>"#;
        let p = parse(xml, Limits::default());
        assert_eq!(p.error, None);
        assert_eq!(
            statuses(&p),
            [
                ("test_ok".into(), Status::Passed),
                ("test_b".into(), Status::Failed),
                ("test_e".into(), Status::Error),
                ("test_s".into(), Status::Skipped)
            ]
        );
        let ok = &p.cases[0];
        assert_eq!((ok.file.as_str(), ok.line), ("tests/test_x.py", Some(3)));
        assert_eq!(
            ok.duration,
            Some(prost_types::Duration {
                seconds: 0,
                nanos: 250_000_000
            })
        );
        assert_eq!(ok.suite, "pytest");
        assert_eq!(p.cases[1].message, "AssertionError: assert 1 == 2");
        assert_eq!(p.cases[1].details, "trace & more");
        assert_eq!(p.cases[3].message, "not today");
        assert_eq!(
            p.cases.iter().map(|c| c.index).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn nested_suites_name_their_cases_and_surefire_reruns_go_into_details() {
        let xml = br#"<testsuites><testsuite name="outer"><testsuite name="inner">
<testcase name="flaky"><flakyFailure message="first try">t1</flakyFailure><system-out>out</system-out><system-err><![CDATA[err <raw>]]></system-err></testcase>
</testsuite><testcase name="after"/></testsuite></testsuites>"#;
        let p = parse(xml, Limits::default());
        assert_eq!(p.error, None);
        assert_eq!(p.cases[0].suite, "outer / inner");
        assert_eq!(p.cases[0].status(), Status::Passed, "passed on rerun");
        assert_eq!(p.cases[0].details, "[flakyFailure] first try\nt1");
        assert_eq!(p.cases[0].system_out, "out");
        assert_eq!(p.cases[0].system_err, "err <raw>");
        assert_eq!(p.cases[1].suite, "outer");
    }

    #[test]
    fn texts_are_capped_with_a_marker_and_cases_past_the_limit_are_counted() {
        let long = "x".repeat(100);
        let xml = format!(
            "<testsuite><testcase name=\"a\"><failure message=\"{long}\">{long}</failure></testcase>\
             <testcase name=\"b\"/><testcase name=\"c\"/></testsuite>"
        );
        let limits = Limits {
            max_cases: 2,
            max_text: 10,
            ..Limits::default()
        };
        let p = parse(xml.as_bytes(), limits);
        assert_eq!(p.cases.len(), 2);
        assert_eq!(p.dropped, 1);
        assert_eq!(p.cases[0].message, "xxxxxxxxxx … [truncated 90 bytes]");
        assert_eq!(p.cases[0].details, "xxxxxxxxxx … [truncated 90 bytes]");
    }

    #[test]
    fn control_characters_and_invalid_utf8_are_kept_readable() {
        let mut xml = b"<testsuite><testcase name=\"t\xff\"><failure message=\"\x1b[31mred\x1b[0m\">a\x00b\xfe</failure></testcase></testsuite>".to_vec();
        xml.extend_from_slice(b"\n");
        let p = parse(&xml, Limits::default());
        assert_eq!(p.error, None);
        assert_eq!(p.cases[0].name, "t\u{FFFD}");
        assert_eq!(p.cases[0].message, "\x1b[31mred\x1b[0m");
        assert_eq!(p.cases[0].details, "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn declared_entities_are_never_expanded() {
        let xml = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<testsuite><testcase name="t"><failure message="&lol1;">&lol1;&xxe;</failure></testcase></testsuite>"#;
        let p = parse(xml, Limits::default());
        assert_eq!(p.error, None);
        assert_eq!(p.cases[0].message, "&lol1;");
        assert_eq!(p.cases[0].details, "&lol1;&xxe;");
    }

    #[test]
    fn a_cut_off_document_keeps_the_cases_before_the_cut() {
        let xml =
            b"<testsuite>\n<testcase name=\"a\"/>\n<testcase name=\"b\"><failure message=\"m\">tra";
        let p = parse(xml, Limits::default());
        assert_eq!(statuses(&p), [("a".into(), Status::Passed)]);
        let error = p.error.unwrap();
        assert!(error.starts_with("line 3, column "), "{error}");
    }

    #[test]
    fn malformed_xml_says_where() {
        let p = parse(
            b"<testsuite>\n  <testcase name=\"a\"></testsuite>",
            Limits::default(),
        );
        let error = p.error.unwrap();
        assert!(error.starts_with("line 2, column "), "{error}");
        let p = parse(b"<html><body/></html>", Limits::default());
        assert_eq!(
            p.error.as_deref(),
            Some("the root element is <html>, not <testsuites> or <testsuite>")
        );
        assert_eq!(
            parse(b"  ", Limits::default()).error.as_deref(),
            Some("no XML element in the report")
        );
    }

    #[test]
    fn ten_thousand_nested_suites_are_read_without_recursion() {
        let depth = 10_000;
        let mut xml = String::from("<testsuites>");
        for i in 0..depth {
            xml.push_str(&format!("<testsuite name=\"s{i}\">"));
        }
        xml.push_str("<testcase name=\"deep\"/>");
        for _ in 0..depth {
            xml.push_str("</testsuite>");
        }
        xml.push_str("</testsuites>");
        let p = parse(xml.as_bytes(), Limits::default());
        assert_eq!(p.error, None);
        assert_eq!(p.cases.len(), 1);
        assert_eq!(p.cases[0].suite.matches(" / ").count(), MAX_SUITE_NAMES - 1);
    }

    #[test]
    fn escaped_markup_in_texts_reads_back_as_written() {
        let xml = b"<testsuite><testcase name=\"t\"><failure message=\"a &lt;b&gt;\">self = &lt;obj at 0x1&gt;\n\n    def f():\n&#x41;&#66;</failure></testcase></testsuite>";
        let p = parse(xml, Limits::default());
        assert_eq!(p.cases[0].message, "a <b>");
        assert_eq!(
            p.cases[0].details,
            "self = <obj at 0x1>\n\n    def f():\nAB"
        );
    }

    #[test]
    fn duplicate_names_are_distinct_cases() {
        let xml = b"<testsuite><testcase name=\"t\"/><testcase name=\"t\"><failure/></testcase></testsuite>";
        let p = parse(xml, Limits::default());
        assert_eq!(
            statuses(&p),
            [("t".into(), Status::Passed), ("t".into(), Status::Failed)]
        );
    }
}
