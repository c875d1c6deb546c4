//! The closed failure vocabulary (OONI's strings, so data interoperates) and
//! the operations a failure can be attributed to.
//!
//! A probe outcome is data, never a Rust error: probes build a
//! [`crate::v1::Failure`] with these names.

use crate::v1::Failure;

pub const CONNECTION_RESET: &str = "connection_reset";
pub const CONNECTION_REFUSED: &str = "connection_refused";
pub const GENERIC_TIMEOUT: &str = "generic_timeout_error";
pub const EOF: &str = "eof_error";
pub const HOST_UNREACHABLE: &str = "host_unreachable";
pub const NETWORK_UNREACHABLE: &str = "network_unreachable";
pub const DNS_NXDOMAIN: &str = "dns_nxdomain_error";
pub const DNS_NO_ANSWER: &str = "dns_no_answer";
pub const DNS_REFUSED: &str = "dns_refused_error";
pub const DNS_SERVFAIL: &str = "dns_servfail_error";
pub const SSL_INVALID_HOSTNAME: &str = "ssl_invalid_hostname";
pub const SSL_UNKNOWN_AUTHORITY: &str = "ssl_unknown_authority";
pub const SSL_INVALID_CERTIFICATE: &str = "ssl_invalid_certificate";
pub const SSL_FAILED_HANDSHAKE: &str = "ssl_failed_handshake";
/// An HTTP client ran out of redirects (a loop, or a chain longer than the
/// input's `max_redirects`): the page was never reached, so this is a
/// failure, never success. Browsers stop at 20 and say so
/// (`ERR_TOO_MANY_REDIRECTS`); OONI's Go client stops at 10.
pub const TOO_MANY_REDIRECTS: &str = "http_too_many_redirects";

/// Operations a failure is attributed to.
pub mod op {
    pub const RESOLVE: &str = "resolve";
    pub const CONNECT: &str = "connect";
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
    pub const QUIC_HANDSHAKE: &str = "quic_handshake";
    pub const HTTP_ROUND_TRIP: &str = "http_round_trip";
    pub const READ: &str = "read";
    pub const WRITE: &str = "write";
}

/// Every failure string except the open `unknown_failure: ...` form.
pub const VOCABULARY: &[&str] = &[
    CONNECTION_RESET,
    CONNECTION_REFUSED,
    GENERIC_TIMEOUT,
    EOF,
    HOST_UNREACHABLE,
    NETWORK_UNREACHABLE,
    DNS_NXDOMAIN,
    DNS_NO_ANSWER,
    DNS_REFUSED,
    DNS_SERVFAIL,
    SSL_INVALID_HOSTNAME,
    SSL_UNKNOWN_AUTHORITY,
    SSL_INVALID_CERTIFICATE,
    SSL_FAILED_HANDSHAKE,
    TOO_MANY_REDIRECTS,
];

/// Builds a failure record.
pub fn failure(failure: &str, operation: &str) -> Failure {
    Failure {
        failure: failure.to_string(),
        operation: operation.to_string(),
    }
}

/// Whether `s` belongs to the closed vocabulary.
pub fn is_known(s: &str) -> bool {
    VOCABULARY.contains(&s) || s.starts_with("unknown_failure: ")
}

/// Maps an I/O error to the vocabulary. Unknown kinds become
/// `unknown_failure: <msg>`, never a panic.
pub fn classify_io(err: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => CONNECTION_RESET.into(),
        K::ConnectionRefused => CONNECTION_REFUSED.into(),
        K::TimedOut | K::WouldBlock => GENERIC_TIMEOUT.into(),
        K::UnexpectedEof => EOF.into(),
        K::HostUnreachable => HOST_UNREACHABLE.into(),
        K::NetworkUnreachable => NETWORK_UNREACHABLE.into(),
        _ => match err.raw_os_error() {
            Some(113) => HOST_UNREACHABLE.into(),
            Some(101) => NETWORK_UNREACHABLE.into(),
            Some(104) => CONNECTION_RESET.into(),
            Some(111) => CONNECTION_REFUSED.into(),
            _ => format!("unknown_failure: {err}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_into_the_vocabulary() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify_io(&reset), CONNECTION_RESET);
        let refused = std::io::Error::from_raw_os_error(111);
        assert_eq!(classify_io(&refused), CONNECTION_REFUSED);
        let odd = std::io::Error::other("strange");
        let s = classify_io(&odd);
        assert!(s.starts_with("unknown_failure: "), "{s}");
        assert!(is_known(&s));
        assert!(!is_known("reset"));
    }
}
