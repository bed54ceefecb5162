//! Addresses as users write them (`tcp://host:port`, `tls://host:port`)
//! and as sockets take them (`host:port`). Every crate converts through
//! here.

/// The scheme of plain TCP addresses.
pub const SCHEME: &str = "tcp://";

/// The scheme of TLS addresses.
pub const TLS_SCHEME: &str = "tls://";

/// The scheme of a process with TLS on (or off).
pub fn scheme(tls: bool) -> &'static str {
    if tls {
        TLS_SCHEME
    } else {
        SCHEME
    }
}

/// `host:port` from `tcp://host:port`, `tls://host:port` or `host:port`.
pub fn strip_scheme(addr: &str) -> &str {
    addr.strip_prefix(SCHEME)
        .or_else(|| addr.strip_prefix(TLS_SCHEME))
        .unwrap_or(addr)
}

/// `tcp://host:port` from `host:port` (or an address that has a scheme).
pub fn with_scheme(addr: &str) -> String {
    in_scheme(SCHEME, addr)
}

/// `addr` written with `scheme` (`"tcp://"` or `"tls://"`).
pub fn in_scheme(scheme: &str, addr: &str) -> String {
    format!("{scheme}{}", strip_scheme(addr))
}

/// An address whose scheme does not match how this process connects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("{0} is a TLS address, but no TLS options were given: pass Security(tls_ca_file=..., ...) or --tls-ca-file")]
    TlsWithoutOptions(String),
    #[error("{0} is a plain TCP address, but TLS options were given: write it as tls://{1}")]
    TcpWithTls(String, String),
    #[error("{0}: shoal speaks tcp:// and tls:// only")]
    Unsupported(String),
}

/// Checks that `addr`'s scheme (if it has one) is the one a process with
/// TLS on (or off) speaks.
pub fn check_scheme(addr: &str, tls: bool) -> Result<(), SchemeError> {
    if addr.starts_with(TLS_SCHEME) && !tls {
        return Err(SchemeError::TlsWithoutOptions(addr.to_string()));
    }
    if addr.starts_with(SCHEME) && tls {
        return Err(SchemeError::TcpWithTls(
            addr.to_string(),
            strip_scheme(addr).to_string(),
        ));
    }
    if !addr.starts_with(SCHEME) && !addr.starts_with(TLS_SCHEME) && addr.contains("://") {
        return Err(SchemeError::Unsupported(addr.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_convert_both_ways() {
        assert_eq!(strip_scheme("tcp://1.2.3.4:5"), "1.2.3.4:5");
        assert_eq!(strip_scheme("tls://1.2.3.4:5"), "1.2.3.4:5");
        assert_eq!(strip_scheme("1.2.3.4:5"), "1.2.3.4:5");
        assert_eq!(with_scheme("1.2.3.4:5"), "tcp://1.2.3.4:5");
        assert_eq!(with_scheme("tcp://1.2.3.4:5"), "tcp://1.2.3.4:5");
        assert_eq!(in_scheme(TLS_SCHEME, "tcp://1.2.3.4:5"), "tls://1.2.3.4:5");
    }

    #[test]
    fn a_scheme_must_match_the_tls_options() {
        assert_eq!(check_scheme("tcp://h:1", false), Ok(()));
        assert_eq!(check_scheme("h:1", true), Ok(()));
        assert_eq!(check_scheme("tls://h:1", true), Ok(()));
        assert!(matches!(
            check_scheme("tls://h:1", false),
            Err(SchemeError::TlsWithoutOptions(_))
        ));
        let e = check_scheme("tcp://h:1", true).unwrap_err();
        assert!(e.to_string().contains("tls://h:1"), "{e}");
        assert!(matches!(
            check_scheme("ucx://h:1", false),
            Err(SchemeError::Unsupported(_))
        ));
    }
}
