//! Values a client scattered straight to this worker (`PeerRequest::Put`),
//! held until the scheduler claims them: a `Compute` of the key with
//! `LITERAL_FUNC` and no frames moves the value into the store. A value
//! nobody claims (its client died between the put and the submission, or
//! scattered a key the cluster already had) expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shoal_proto::Payload;

/// How long an unclaimed value is held.
const EXPIRES_AFTER: Duration = Duration::from_secs(600);

#[derive(Default)]
pub(crate) struct Staged {
    values: HashMap<String, (Payload, Instant)>,
}

impl Staged {
    /// Holds `items` from `now` on, dropping values that expired.
    pub fn hold(&mut self, items: Vec<(String, Payload)>, now: Instant) -> usize {
        self.values
            .retain(|_, (_, since)| now.saturating_duration_since(*since) < EXPIRES_AFTER);
        let n = items.len();
        for (k, v) in items {
            self.values.insert(k, (v, now));
        }
        n
    }

    /// The value held for `key`, once.
    pub fn claim(&mut self, key: &str) -> Option<Payload> {
        self.values.remove(key).map(|(v, _)| v)
    }

    /// Bytes held.
    pub fn nbytes(&self) -> u64 {
        self.values.values().map(|(v, _)| v.nbytes()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn value(n: usize) -> Payload {
        Payload {
            frames: vec![Bytes::from(vec![1u8; n])],
        }
    }

    #[test]
    fn a_held_value_is_claimed_once() {
        let mut s = Staged::default();
        let now = Instant::now();
        assert_eq!(s.hold(vec![("a".into(), value(10))], now), 1);
        assert_eq!(s.nbytes(), 10);
        assert_eq!(s.claim("a"), Some(value(10)));
        assert_eq!(s.claim("a"), None);
        assert_eq!(s.nbytes(), 0);
    }

    #[test]
    fn unclaimed_values_expire_when_more_arrive() {
        let mut s = Staged::default();
        let start = Instant::now();
        s.hold(vec![("old".into(), value(5))], start);
        s.hold(vec![("new".into(), value(7))], start + EXPIRES_AFTER);
        assert_eq!(s.claim("old"), None);
        assert_eq!(s.claim("new"), Some(value(7)));
    }
}
