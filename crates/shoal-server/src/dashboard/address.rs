//! Where the dashboard listens, in Dask's conventions: `":8787"` (the
//! scheduler's host, port 8787), `"host:port"`, `"8787"`; port 0 picks any
//! free port, and a port that is taken moves on to the next free one.

use tokio::net::TcpListener;

/// Ports tried after a taken one before letting the system pick.
const NEXT_PORTS: u16 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardAddress {
    pub host: String,
    pub port: u16,
}

/// Parses a dashboard address; `default_host` fills in a missing host.
pub fn parse_address(spec: &str, default_host: &str) -> Result<DashboardAddress, String> {
    let spec = spec.trim();
    let spec = spec
        .strip_prefix("http://")
        .unwrap_or_else(|| shoal_proto::addr::strip_scheme(spec));
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
        None if spec.bytes().all(|b| b.is_ascii_digit()) => ("", spec),
        None => (spec, "8787"),
    };
    let port = port.parse::<u16>().map_err(|_| {
        format!("dashboard address {spec:?}: the port must be a number from 0 to 65535")
    })?;
    let host = if host.is_empty() { default_host } else { host };
    Ok(DashboardAddress {
        host: host.to_string(),
        port,
    })
}

/// Binds `at`, or the next free port after it.
pub(crate) async fn bind(at: &DashboardAddress) -> std::io::Result<TcpListener> {
    let first = match TcpListener::bind((at.host.as_str(), at.port)).await {
        Ok(l) => return Ok(l),
        Err(e) if at.port == 0 || e.kind() != std::io::ErrorKind::AddrInUse => return Err(e),
        Err(e) => e,
    };
    for port in at.port.saturating_add(1)..=at.port.saturating_add(NEXT_PORTS) {
        if let Ok(l) = TcpListener::bind((at.host.as_str(), port)).await {
            return Ok(l);
        }
    }
    TcpListener::bind((at.host.as_str(), 0))
        .await
        .map_err(|_| first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(String, u16), String> {
        parse_address(s, "127.0.0.1").map(|a| (a.host, a.port))
    }

    #[test]
    fn dask_spellings() {
        assert_eq!(parse(":8787"), Ok(("127.0.0.1".into(), 8787)));
        assert_eq!(parse("8788"), Ok(("127.0.0.1".into(), 8788)));
        assert_eq!(parse("0.0.0.0:0"), Ok(("0.0.0.0".into(), 0)));
        assert_eq!(parse("localhost:9000"), Ok(("localhost".into(), 9000)));
        assert_eq!(parse("http://10.0.0.1:80"), Ok(("10.0.0.1".into(), 80)));
        assert_eq!(parse("[::1]:8787"), Ok(("::1".into(), 8787)));
        assert_eq!(parse("myhost"), Ok(("myhost".into(), 8787)));
        assert!(parse(":http")
            .unwrap_err()
            .contains("port must be a number"));
        assert!(parse(":70000").is_err());
    }

    #[tokio::test]
    async fn a_taken_port_moves_to_the_next() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = taken.local_addr().unwrap().port();
        let at = DashboardAddress {
            host: "127.0.0.1".into(),
            port,
        };
        let l = bind(&at).await.unwrap();
        assert_ne!(l.local_addr().unwrap().port(), port);
    }
}
