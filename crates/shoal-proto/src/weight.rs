//! How many bytes a message to a client holds, roughly: what the
//! scheduler's queue to a client is bounded by (see `shoal-server`'s
//! `Connections`). Values count in full; everything else is a small
//! allowance per field, so the figure tracks memory within a small factor.

use crate::coord::{CoordReply, MetaEntry};
use crate::messages::{Payload, SchedulerToClient, TaskError};

/// Bytes counted for a message's fixed part.
const BASE: u64 = 64;

/// Bytes counted for one record of a list (a worker, a task-stream record,
/// a story entry).
const RECORD: u64 = 256;

fn text(s: &str) -> u64 {
    s.len() as u64
}

fn texts(v: &[String]) -> u64 {
    v.iter().map(|s| text(s) + 8).sum()
}

fn payload(p: &Payload) -> u64 {
    p.nbytes()
}

fn error(e: &TaskError) -> u64 {
    match e {
        TaskError::Raised {
            exception,
            type_name,
            message,
            traceback,
        } => payload(exception) + text(type_name) + text(message) + text(traceback),
        TaskError::KilledWorker {
            key,
            last_worker,
            cause,
            ..
        } => text(key) + text(last_worker) + text(cause),
    }
}

fn reply(r: &CoordReply) -> u64 {
    match r {
        CoordReply::Items(items) => items
            .iter()
            .map(|h| payload(&h.value) + texts(&h.keys))
            .sum(),
        CoordReply::Names(v) | CoordReply::UnknownKeys(v) => texts(v),
        CoordReply::Map(m) => m.iter().map(|(k, v)| text(k) + texts(v)).sum(),
        CoordReply::Metadata(entries) => entries.iter().map(meta).sum(),
        CoordReply::Invalid(s) => text(s),
        CoordReply::Story { entries, .. } => RECORD * entries.len() as u64,
        CoordReply::Done
        | CoordReply::Count(_)
        | CoordReply::Flag(_)
        | CoordReply::TimedOut
        | CoordReply::Missing
        | CoordReply::Exists => 0,
    }
}

fn meta(e: &MetaEntry) -> u64 {
    texts(&e.path) + e.value.as_ref().map_or(0, payload)
}

impl SchedulerToClient {
    /// The bytes this message holds, roughly (never less than its values).
    pub fn weight(&self) -> u64 {
        BASE + match self {
            SchedulerToClient::KeyMemory {
                key,
                type_name,
                inline,
                holders,
                ..
            } => text(key) + text(type_name) + inline.as_ref().map_or(0, payload) + texts(holders),
            SchedulerToClient::KeyErred { key, error: e } => text(key) + error(e),
            SchedulerToClient::KeyLost { key } | SchedulerToClient::KeyCancelled { key } => {
                text(key)
            }
            SchedulerToClient::Identity {
                workers, limits, ..
            } => RECORD * (workers.len() + limits.len()) as u64,
            SchedulerToClient::TaskStream { records, .. } => RECORD * records.len() as u64,
            SchedulerToClient::CoordReply { reply: r, .. } => reply(r),
            SchedulerToClient::Published { message, .. } => payload(message),
            SchedulerToClient::WorkerAdded(_) => RECORD,
            SchedulerToClient::WorkerRemoved { data_address } => text(data_address),
            SchedulerToClient::ShuttingDown | SchedulerToClient::Removed(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::coord::Held;

    #[test]
    fn a_message_weighs_at_least_the_values_it_carries() {
        let value = Payload::single(Bytes::from(vec![0u8; 100_000]));
        let memory = SchedulerToClient::KeyMemory {
            key: "k".into(),
            nbytes: 100_000,
            type_name: "bytes".into(),
            inline: Some(value.clone()),
            holders: vec![],
        };
        assert!(memory.weight() >= 100_000);
        let items = SchedulerToClient::CoordReply {
            req: 1,
            reply: CoordReply::Items(vec![
                Held {
                    value: value.clone(),
                    keys: vec![],
                };
                3
            ]),
        };
        assert!(items.weight() >= 300_000);
        assert!(SchedulerToClient::KeyLost { key: "k".into() }.weight() < 100);
    }
}
