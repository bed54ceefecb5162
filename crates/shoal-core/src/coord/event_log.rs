//! The structured event log (Dask's `log_event`, `get_events`,
//! `subscribe_topic`): named topics, each keeping its latest
//! [`EVENTS_PER_TOPIC`] events, and the subscriptions that receive every
//! new one. An event is opaque to the scheduler: the client pickles its
//! time and message together. A topic of this log is not a pub/sub topic
//! of the same name.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use shoal_proto::{ClientId, Payload};

use super::WaitId;

/// How many events a topic keeps (Dask's default,
/// `distributed.admin.low-level-log-length`).
pub const EVENTS_PER_TOPIC: usize = 1_000;

#[derive(Default)]
struct Topic {
    events: VecDeque<Payload>,
    subscribers: Vec<WaitId>,
}

/// Every topic of the log, and the topic of each subscription.
#[derive(Default)]
pub(crate) struct EventLog {
    topics: FxHashMap<String, Topic>,
    subscriptions: FxHashMap<WaitId, String>,
}

impl EventLog {
    /// Keeps `event` under each of `topics` (the oldest of a full topic
    /// goes) and returns the subscriptions to deliver it to, one per
    /// topic it was logged under.
    pub fn log(&mut self, topics: &[String], event: &Payload) -> Vec<WaitId> {
        let mut to = Vec::new();
        for name in topics {
            let topic = self.topics.entry(name.clone()).or_default();
            if topic.events.len() == EVENTS_PER_TOPIC {
                topic.events.pop_front();
            }
            topic.events.push_back(event.clone());
            to.extend_from_slice(&topic.subscribers);
        }
        to
    }

    /// The events of `topic` kept now, oldest first.
    pub fn events(&self, topic: &str) -> Vec<Payload> {
        self.topics
            .get(topic)
            .map_or_else(Vec::new, |t| t.events.iter().cloned().collect())
    }

    /// The topics that have events, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .topics
            .iter()
            .filter(|(_, t)| !t.events.is_empty())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Delivers the topic's new events to subscription `s` from now on.
    pub fn subscribe(&mut self, topic: String, s: WaitId) {
        if self.subscriptions.insert(s, topic.clone()).is_none() {
            self.topics.entry(topic).or_default().subscribers.push(s);
        }
    }

    /// Ends subscription `s`; false if it was not one of this log's.
    pub fn unsubscribe(&mut self, s: WaitId) -> bool {
        let Some(name) = self.subscriptions.remove(&s) else {
            return false;
        };
        if let Some(topic) = self.topics.get_mut(&name) {
            topic.subscribers.retain(|x| *x != s);
            if topic.subscribers.is_empty() && topic.events.is_empty() {
                self.topics.remove(&name);
            }
        }
        true
    }

    /// Ends every subscription of client `c`.
    pub fn client_gone(&mut self, c: ClientId) {
        let mine: Vec<WaitId> = self
            .subscriptions
            .keys()
            .filter(|(sc, _)| *sc == c)
            .copied()
            .collect();
        for s in mine {
            self.unsubscribe(s);
        }
    }

    /// Each subscription is listed by its topic and the other way round;
    /// no topic keeps more than [`EVENTS_PER_TOPIC`] events.
    pub fn check(&self) -> Result<(), String> {
        for (s, name) in &self.subscriptions {
            let listed = self
                .topics
                .get(name)
                .is_some_and(|t| t.subscribers.contains(s));
            if !listed {
                return Err(format!("event subscription {s:?} is not listed by {name}"));
            }
        }
        for (name, t) in &self.topics {
            if t.events.len() > EVENTS_PER_TOPIC {
                return Err(format!(
                    "event topic {name} keeps {} events",
                    t.events.len()
                ));
            }
            for s in &t.subscribers {
                if self.subscriptions.get(s) != Some(name) {
                    return Err(format!(
                        "event topic {name} lists a stale subscription {s:?}"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(byte: u8) -> Payload {
        Payload {
            frames: vec![bytes::Bytes::from(vec![byte])],
        }
    }

    #[test]
    fn events_are_kept_per_topic_and_delivered_to_subscribers() {
        let mut log = EventLog::default();
        log.subscribe("a".into(), (1, 7));
        assert_eq!(log.log(&["a".into(), "b".into()], &event(1)), vec![(1, 7)]);
        assert_eq!(log.log(&["b".into()], &event(2)), vec![]);
        assert_eq!(log.events("a"), vec![event(1)]);
        assert_eq!(log.events("b"), vec![event(1), event(2)]);
        assert_eq!(log.topics(), vec!["a".to_string(), "b".to_string()]);
        assert!(log.unsubscribe((1, 7)));
        assert!(!log.unsubscribe((1, 7)));
        assert_eq!(log.log(&["a".into()], &event(3)), vec![]);
        log.check().unwrap();
    }

    #[test]
    fn a_full_topic_drops_its_oldest_event() {
        let mut log = EventLog::default();
        for i in 0..EVENTS_PER_TOPIC + 5 {
            log.log(&["t".into()], &event((i % 251) as u8));
        }
        let kept = log.events("t");
        assert_eq!(kept.len(), EVENTS_PER_TOPIC);
        assert_eq!(kept[0], event(5));
        log.check().unwrap();
    }

    #[test]
    fn a_client_leaving_ends_its_subscriptions_only() {
        let mut log = EventLog::default();
        log.subscribe("t".into(), (1, 1));
        log.subscribe("t".into(), (2, 1));
        log.client_gone(1);
        assert_eq!(log.log(&["t".into()], &event(0)), vec![(2, 1)]);
        log.check().unwrap();
    }
}
