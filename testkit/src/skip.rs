//! The project's rule for tests that need something from outside the
//! workspace (a Debian package, root, the lab): missing is a failure that
//! says how to get it, unless `VANTAGE_SKIP_LAB=1`, which skips the test
//! with the line `SKIPPED (VANTAGE_SKIP_LAB=1): <name>` that
//! deploy/scripts/test.sh counts.

use std::io::Write;
use std::path::PathBuf;

/// Whether `test` may go on: true when nothing is `missing`; false after
/// printing the skip line when `VANTAGE_SKIP_LAB=1`; otherwise a panic
/// naming what is missing and `how` to get it.
pub fn require(test: &str, missing: &[String], how: &str) -> bool {
    let skip = std::env::var("VANTAGE_SKIP_LAB").as_deref() == Ok("1");
    match decide(test, missing, how, skip) {
        Decision::Go => true,
        Decision::Skip(line) => {
            // Straight to stderr: libtest captures eprintln! of passing tests.
            let _ = writeln!(std::io::stderr(), "{line}");
            false
        }
        Decision::Fail(why) => panic!("{why}"),
    }
}

/// What [`require`] does, given whether skipping was asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Go,
    /// Skip, printing this line (deploy/scripts/test.sh counts them).
    Skip(String),
    /// Fail the test with this message.
    Fail(String),
}

/// The rule itself, without the environment or any printing (so its own
/// tests print no skip line for test.sh to count).
pub fn decide(test: &str, missing: &[String], how: &str, skip: bool) -> Decision {
    if missing.is_empty() {
        return Decision::Go;
    }
    let what = missing.join(", ");
    if skip {
        Decision::Skip(format!(
            "SKIPPED (VANTAGE_SKIP_LAB=1): {test} (missing: {what})"
        ))
    } else {
        Decision::Fail(format!(
            "{test}: needs {what} ({how}), or set VANTAGE_SKIP_LAB=1 to skip"
        ))
    }
}

/// The first of `names` on PATH (or in /usr/sbin, /sbin, /usr/bin, /bin:
/// root's tools are not always on a test's PATH).
pub fn find_tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .filter(|d| !d.as_os_str().is_empty())
            .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_missing_goes_on_and_tools_are_found() {
        assert!(require("t", &[], "nothing"));
        let missing = ["`frobnicate`".to_string()];
        match decide("my_test", &missing, "apt", false) {
            Decision::Fail(m) => assert!(
                m.starts_with("my_test: needs `frobnicate` (apt)")
                    && m.contains("VANTAGE_SKIP_LAB=1"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide("my_test", &missing, "apt", true),
            Decision::Skip("SKIPPED (VANTAGE_SKIP_LAB=1): my_test (missing: `frobnicate`)".into())
        );
        assert!(find_tool(&["no-such-tool-here", "sh"]).is_some());
        assert!(find_tool(&["no-such-tool-here"]).is_none());
    }
}
