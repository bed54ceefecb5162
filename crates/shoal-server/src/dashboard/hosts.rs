//! Which names the dashboard answers to.
//!
//! A web page from another site can point a name of its own at this
//! machine's address (DNS rebinding): the browser then sends the page's
//! requests to the dashboard under that name, and lets the page read the
//! answers (task names, worker addresses, logs of what runs). So a request
//! must name this machine in its `Host` header: an IP address, `localhost`,
//! the machine's own name, the name the dashboard was told to listen on,
//! or a name listed in `SHOAL_DASHBOARD_HOSTS` (comma-separated; `*`
//! allows any, for a proxy that passes its public name on). A request
//! without a `Host` header (not from a browser) is served.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The environment variable naming more hosts the dashboard answers to.
const HOSTS_VARIABLE: &str = "SHOAL_DASHBOARD_HOSTS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    any: bool,
    /// Lowercase, without a trailing dot.
    names: Vec<String>,
}

fn normal(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// The host in a `Host` header value, without its port or brackets.
fn host_of(value: &str) -> &str {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

impl AllowedHosts {
    /// The names for a dashboard told to listen on `bound`, the machine's
    /// own name, and what `extra` lists (the variable's value).
    pub fn new(bound: &str, machine: Option<&str>, extra: Option<&str>) -> Self {
        let mut names = Vec::new();
        let mut any = false;
        for name in [bound].into_iter().chain(machine).chain(
            extra
                .unwrap_or_default()
                .split(',')
                .filter(|n| !n.trim().is_empty()),
        ) {
            if name.trim() == "*" {
                any = true;
            }
            let name = normal(name);
            if let Some((first, _)) = name.split_once('.') {
                names.push(first.to_string());
            }
            names.push(name);
        }
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        AllowedHosts { any, names }
    }

    /// From this process's environment and the machine's name.
    pub fn from_environment(bound: &str) -> Self {
        let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        let extra = std::env::var(HOSTS_VARIABLE).ok();
        AllowedHosts::new(bound, machine.as_deref(), extra.as_deref())
    }

    /// Whether a request with this `Host` header value is served.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(value) = host else {
            return true;
        };
        if self.any {
            return true;
        }
        let host = normal(host_of(value));
        host.parse::<IpAddr>().is_ok()
            || host == "localhost"
            || host.ends_with(".localhost")
            || self.names.contains(&host)
    }
}

/// Refuses requests whose `Host` names another machine.
pub(super) async fn check(
    State(hosts): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if hosts.allows(host) {
        return next.run(request).await;
    }
    (
        StatusCode::FORBIDDEN,
        format!(
            "this shoal dashboard answers only to this machine's names and addresses; \
             to reach it under another name, list that name in {HOSTS_VARIABLE}\n"
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_is_allowed_and_other_names_are_not() {
        let h = AllowedHosts::new("0.0.0.0", Some("node7.cluster.example\n"), None);
        for ok in [
            "127.0.0.1:8787",
            "10.1.2.3",
            "[::1]:8787",
            "localhost:8787",
            "LOCALHOST",
            "app.localhost:1",
            "node7:8787",
            "node7.cluster.example.:8787",
        ] {
            assert!(h.allows(Some(ok)), "{ok}");
        }
        for refused in [
            "evil.example:8787",
            "127.0.0.1.evil.example",
            "node8",
            "",
            "\u{fffd}",
        ] {
            assert!(!h.allows(Some(refused)), "{refused:?}");
        }
        assert!(h.allows(None), "not a browser");
    }

    #[test]
    fn names_can_be_added_or_every_name_allowed() {
        let h = AllowedHosts::new("127.0.0.1", None, Some("dash.example, other.example"));
        assert!(h.allows(Some("dash.example:443")));
        assert!(h.allows(Some("other.example")));
        assert!(!h.allows(Some("third.example")));
        let bound = AllowedHosts::new("sched.example", None, None);
        assert!(bound.allows(Some("sched.example:8787")));
        let any = AllowedHosts::new("127.0.0.1", None, Some("*"));
        assert!(any.allows(Some("whatever.example")));
    }
}
