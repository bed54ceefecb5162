//! Addresses as users write them (`tcp://host:port`) and as sockets take
//! them (`host:port`). Every crate converts through here.

/// The scheme shoal addresses carry.
pub const SCHEME: &str = "tcp://";

/// `host:port` from `tcp://host:port` or `host:port`.
pub fn strip_scheme(addr: &str) -> &str {
    addr.strip_prefix(SCHEME).unwrap_or(addr)
}

/// `tcp://host:port` from `host:port` (or an address that has the scheme).
pub fn with_scheme(addr: &str) -> String {
    format!("{SCHEME}{}", strip_scheme(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_convert_both_ways() {
        assert_eq!(strip_scheme("tcp://1.2.3.4:5"), "1.2.3.4:5");
        assert_eq!(strip_scheme("1.2.3.4:5"), "1.2.3.4:5");
        assert_eq!(with_scheme("1.2.3.4:5"), "tcp://1.2.3.4:5");
        assert_eq!(with_scheme("tcp://1.2.3.4:5"), "tcp://1.2.3.4:5");
    }
}
