//! The Vantage agent: probes, the durable outbox, the coordinator session and
//! the volunteer's configuration.

pub mod config;
pub mod enroll;
pub mod identity;
pub mod outbox;
pub mod probes;
pub mod session;
pub mod status;

/// The log filter from RUST_LOG: `level` or `target=level,...`
/// (tracing-subscriber's `Targets`: no span or field filters, and so no
/// regex engine in the binary). `info` when unset, and when it does not
/// parse (with a warning on stderr).
pub fn log_filter(spec: Option<&str>) -> tracing_subscriber::filter::Targets {
    let default = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => default(),
        Some(s) => s.parse().unwrap_or_else(|e| {
            eprintln!(
                "warning: RUST_LOG={s:?} is not `level` or `target=level,...` ({e}); logging at info"
            );
            default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    #[test]
    fn rust_log_takes_a_level_or_targets_and_falls_back_to_info() {
        let f = super::log_filter(None);
        assert!(f.would_enable("vantage_agent::session", &Level::INFO));
        assert!(!f.would_enable("vantage_agent::session", &Level::DEBUG));
        let f = super::log_filter(Some("warn,vantage_agent::outbox=trace"));
        assert!(f.would_enable("vantage_agent::outbox", &Level::TRACE));
        assert!(!f.would_enable("vantage_agent::session", &Level::INFO));
        assert!(f.would_enable("h2", &Level::WARN));
        let f = super::log_filter(Some("debug"));
        assert!(f.would_enable("anything", &Level::DEBUG));
        // EnvFilter's span syntax is refused, not half-applied.
        let f = super::log_filter(Some("[span{x=1}]=debug"));
        assert!(f.would_enable("vantage_agent", &Level::INFO));
        assert!(!f.would_enable("vantage_agent", &Level::DEBUG));
    }
}
