//! Rules of a test's log stream: which lines of a (re)sent batch are new,
//! and what text a stored line may hold.

use crate::error::{Error, Result};

/// Works out which lines of a batch are new, given the last stored `seq`.
/// A resend may overlap what is stored (those lines are dropped); a batch
/// that starts past `last_seq + 1` would leave a gap: a protocol violation.
pub fn new_lines(last_seq: i64, first_seq: i64, lines: &[String]) -> Result<&[String]> {
    if first_seq < 1 {
        return Err(Error::invalid("logs.first_seq", "must be at least 1"));
    }
    if first_seq > last_seq + 1 {
        return Err(Error::invalid(
            "logs.first_seq",
            format!("{first_seq} leaves a gap: the last line stored is {last_seq}"),
        ));
    }
    let skip = ((last_seq + 1 - first_seq) as usize).min(lines.len());
    Ok(&lines[skip..])
}

/// Postgres text cannot hold NUL; neither store keeps it, so they agree.
pub fn sanitize(text: &str) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("l{i}")).collect()
    }

    #[test]
    fn a_resend_that_overlaps_stored_lines_keeps_only_the_new_ones() {
        let batch = lines(5);
        assert_eq!(new_lines(3, 2, &batch).unwrap(), &batch[2..]);
        assert_eq!(new_lines(0, 1, &batch).unwrap(), &batch[..]);
        assert!(new_lines(10, 1, &batch).unwrap().is_empty());
    }

    #[test]
    fn a_batch_past_the_next_line_is_a_gap() {
        assert!(new_lines(3, 5, &lines(1)).is_err());
        assert!(new_lines(0, 0, &lines(1)).is_err());
    }

    #[test]
    fn nul_is_replaced() {
        assert_eq!(sanitize("a\0b"), "a\u{FFFD}b");
        assert_eq!(sanitize("ab"), "ab");
    }
}
