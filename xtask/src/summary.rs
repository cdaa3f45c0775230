//! Aggregating libtest's `test result:` lines into one summary for the whole run.

use std::fmt;

/// Test counts summed over every test binary and doc-test run of a `cargo test`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestSummary {
    /// Tests that ran and passed.
    pub passed: u64,
    /// Tests that ran and failed.
    pub failed: u64,
    /// Tests marked `#[ignore]`, which did not run.
    pub skipped: u64,
    /// How many `test result:` lines were seen, one per test binary or doc-test run.
    pub runs: u64,
}

impl TestSummary {
    /// Adds the counts of one output line if it is a libtest result line, such as
    /// `test result: ok. 5 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
    /// Returns whether the line was one.
    pub fn add_line(&mut self, line: &str) -> bool {
        let Some(counts) = line.trim().strip_prefix("test result:") else {
            return false;
        };
        let words: Vec<&str> = counts.split_whitespace().collect();
        for pair in words.windows(2) {
            let Ok(count) = pair[0].parse::<u64>() else {
                continue;
            };
            match pair[1].trim_end_matches([';', '.', ',']) {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.skipped += count,
                _ => {}
            }
        }
        self.runs += 1;
        true
    }
}

impl TestSummary {
    /// Adds the counts of pytest's final line, such as
    /// `=== 57 passed, 1 skipped, 2 xfailed in 7.11s ===` (or without the rules under `-q`).
    /// Errors (a fixture or collection failure) count as failed, expected failures as
    /// skipped. Returns whether the line was one.
    pub fn add_pytest_line(&mut self, line: &str) -> bool {
        let line = line.trim().trim_matches('=').trim();
        let Some((counts, time)) = line.rsplit_once(" in ") else {
            return false;
        };
        if !time
            .split_whitespace()
            .next()
            .is_some_and(|t| t.ends_with('s'))
        {
            return false;
        }
        let mut parsed = TestSummary::default();
        for part in counts.split(", ") {
            let Some((count, what)) = part.split_once(' ') else {
                return false;
            };
            let Ok(count) = count.parse::<u64>() else {
                return false;
            };
            match what {
                "passed" | "xpassed" => parsed.passed += count,
                "failed" | "error" | "errors" => parsed.failed += count,
                "skipped" | "xfailed" | "deselected" => parsed.skipped += count,
                "warning" | "warnings" | "rerun" => {}
                _ => return false,
            }
        }
        self.passed += parsed.passed;
        self.failed += parsed.failed;
        self.skipped += parsed.skipped;
        self.runs += 1;
        true
    }

    /// Adds another step's counts.
    pub fn add(&mut self, other: TestSummary) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.runs += other.runs;
    }
}

impl fmt::Display for TestSummary {
    /// `test: N passed, M failed`, with `, K skipped` appended when tests were ignored.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test: {} passed, {} failed", self.passed, self.failed)?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        Ok(())
    }
}

/// Splits streamed output into whole lines, however the chunks happen to be cut.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds a chunk of output; calls `on_line` for every line the chunk completes.
    pub fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&str)) {
        self.pending.extend_from_slice(chunk);
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            on_line(String::from_utf8_lossy(&line).trim_end_matches(['\n', '\r']));
        }
    }

    /// Flushes the last line when the output did not end with a newline.
    pub fn finish(&mut self, mut on_line: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            on_line(&String::from_utf8_lossy(&line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_result_lines_of_every_run() {
        let output = "\
running 3 tests
test a ... ok
test b ... FAILED
test c ... ignored

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 2 filtered out; finished in 0.00s

   Doc-tests storage_core

running 4 tests
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.20s
";
        let mut summary = TestSummary::default();
        let recognised = output.lines().filter(|line| summary.add_line(line)).count();
        assert_eq!(recognised, 3);
        assert_eq!(
            summary,
            TestSummary {
                passed: 5,
                failed: 1,
                skipped: 1,
                runs: 3
            }
        );
    }

    #[test]
    fn other_lines_count_nothing() {
        let mut summary = TestSummary::default();
        for line in [
            "test result_parsing ... ok",
            "running 12 tests",
            "test: 3 passed, 0 failed",
            "",
        ] {
            assert!(!summary.add_line(line), "{line}");
        }
        assert_eq!(summary, TestSummary::default());
    }

    #[test]
    fn tolerates_indentation_and_large_counts() {
        let mut summary = TestSummary::default();
        assert!(summary.add_line(
            "  test result: ok. 12345 passed; 0 failed; 7 ignored; 0 measured; 0 filtered out; finished in 98.1s\r"
        ));
        assert_eq!(
            (summary.passed, summary.failed, summary.skipped),
            (12345, 0, 7)
        );
    }

    #[test]
    fn summary_line_appends_skipped_only_when_tests_were_ignored() {
        let mut summary = TestSummary {
            passed: 10,
            failed: 2,
            skipped: 0,
            runs: 4,
        };
        assert_eq!(summary.to_string(), "test: 10 passed, 2 failed");
        summary.skipped = 3;
        assert_eq!(summary.to_string(), "test: 10 passed, 2 failed, 3 skipped");
    }

    #[test]
    fn counts_pytest_final_lines() {
        let mut summary = TestSummary::default();
        assert!(summary.add_pytest_line("57 passed, 1 skipped in 7.11s"));
        assert!(summary.add_pytest_line(
            "==== 2 failed, 3 passed, 1 error, 1 xfailed, 4 warnings in 1.00s (0:00:01) ===="
        ));
        assert_eq!(
            summary,
            TestSummary {
                passed: 60,
                failed: 3,
                skipped: 2,
                runs: 2
            }
        );
        for other in [
            "test result: ok. 1 passed; 0 failed",
            "tests/test_storage.py ....  [100%]",
            "waited in 3s",
            "1 passed in the morning",
        ] {
            assert!(!summary.add_pytest_line(other), "{other}");
        }
        assert_eq!(summary.runs, 2);
    }

    #[test]
    fn splitter_reassembles_lines_cut_across_chunks() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in [
            "test res",
            "ult: ok. 1 pas",
            "sed; 0 failed\nrunning 1 test\r\nlast",
        ] {
            splitter.feed(chunk.as_bytes(), |line| lines.push(line.to_owned()));
        }
        assert_eq!(
            lines,
            ["test result: ok. 1 passed; 0 failed", "running 1 test"]
        );
        splitter.finish(|line| lines.push(line.to_owned()));
        assert_eq!(lines.last().map(String::as_str), Some("last"));
    }
}
