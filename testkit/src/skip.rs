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
    if missing.is_empty() {
        return true;
    }
    if std::env::var("VANTAGE_SKIP_LAB").as_deref() == Ok("1") {
        // Straight to stderr: libtest captures eprintln! of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (VANTAGE_SKIP_LAB=1): {test} (missing: {})",
            missing.join(", ")
        );
        return false;
    }
    panic!(
        "{test}: needs {} ({how}), or set VANTAGE_SKIP_LAB=1 to skip",
        missing.join(", ")
    );
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
        assert!(find_tool(&["no-such-tool-here", "sh"]).is_some());
        assert!(find_tool(&["no-such-tool-here"]).is_none());
    }
}
