//! The client's table of keys and what the scheduler told it about them.
//!
//! Only this module changes an entry's status. The network thread applies
//! scheduler messages with [`State::apply`]; the blocking API reads entries
//! with [`State::collect`] and reports results that vanished from their
//! holders with [`State::lost`] — the same path a `KeyLost` message takes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use shoal_proto::{
    ClientToScheduler, CoordReply, FuncHash, LimitStatus, Payload, SchedulerToClient, TaskError,
    TaskRecord, WorkerInfo, WorkerStatus,
};

use crate::api::{ClientError, Outcome};
use crate::queue::CompletionQueue;

/// Where a key is, as far as this client knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Pending,
    Finished,
    Erred,
    Cancelled,
}

impl KeyStatus {
    pub fn is_done(self) -> bool {
        self != KeyStatus::Pending
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Pending => "pending",
            KeyStatus::Finished => "finished",
            KeyStatus::Erred => "error",
            KeyStatus::Cancelled => "cancelled",
        }
    }
}

pub(crate) struct KeyEntry {
    /// Futures pointing at this key.
    pub refs: u32,
    pub status: KeyStatus,
    pub inline: Option<Payload>,
    pub holders: Vec<String>,
    pub nbytes: u64,
    pub type_name: String,
    pub error: Option<TaskError>,
    /// Whether the scheduler still counts this client as wanting the key.
    pub wanted: bool,
    pub watchers: Vec<Arc<CompletionQueue>>,
}

impl KeyEntry {
    pub fn new() -> Self {
        KeyEntry {
            refs: 0,
            status: KeyStatus::Pending,
            inline: None,
            holders: Vec::new(),
            nbytes: 0,
            type_name: String::new(),
            error: None,
            wanted: true,
            watchers: Vec::new(),
        }
    }

    /// Moves to a done state and wakes the watchers.
    pub fn complete(&mut self, key: &str, status: KeyStatus) {
        self.status = status;
        for w in self.watchers.drain(..) {
            w.push(key.to_string());
        }
    }

    /// The result held remotely is gone: wait for it to be computed again.
    /// A result that came inline is still here, so it stays.
    /// An erred key being retried is pending again too.
    fn lost(&mut self) {
        if self.status == KeyStatus::Finished && self.inline.is_none() {
            self.status = KeyStatus::Pending;
            self.holders.clear();
        }
        if self.status == KeyStatus::Erred {
            self.status = KeyStatus::Pending;
            self.error = None;
        }
    }

    /// Whether scheduler reports about this key still matter to us.
    fn listening(&self) -> bool {
        self.status != KeyStatus::Cancelled && self.wanted
    }
}

/// What [`State::collect`] found.
pub(crate) enum Collected {
    /// Every key is done: outcomes, with `None` where the value must be
    /// fetched from the worker at the address given in `remote`.
    Done {
        outcomes: Vec<Option<Outcome>>,
        /// Holder address -> (position, key) of values to fetch there.
        remote: BTreeMap<String, Vec<(usize, String)>>,
    },
    /// Some key is pending again (its result was lost meanwhile).
    NotReady,
}

/// Everything the client knows, behind one lock.
pub(crate) struct State {
    pub keys: HashMap<String, KeyEntry>,
    pub workers: BTreeMap<String, WorkerInfo>,
    pub sent_functions: HashSet<FuncHash>,
    /// Parts of a graph were sent (`SubmitPart`) and its last part was not.
    pub parts_open: bool,
    /// Set once the connection is gone, with the reason.
    pub broken: Option<ClientError>,
    pub shutting_down: bool,
    /// How many times a key erred (a waiter for the first error searches
    /// again only when this changed).
    pub errors: u64,
    /// How many `Identity` answers arrived, and the latest.
    pub identities: u64,
    pub identity: (Vec<WorkerStatus>, u64),
    /// Limits, as of the latest `Identity`.
    pub limits: Vec<LimitStatus>,
    /// How many `TaskStream` answers arrived, and the latest.
    pub task_streams: u64,
    pub task_stream: (Vec<TaskRecord>, u64),
    /// The scheduler's id and start time, from the latest `Identity`.
    pub scheduler: (String, f64),
    /// The number of the next `Coord` request, and answers not yet taken.
    pub next_request: u64,
    pub replies: HashMap<u64, CoordReply>,
    /// Messages received for each subscription, not yet taken.
    pub published: HashMap<u64, VecDeque<Payload>>,
    /// Keys whose last reference went, not sent yet: they go as one
    /// `Disown`, before any other message (`ClientCore::send_locked`) or
    /// when the queue reaches the marker queued with the first of them.
    pub disowned: Vec<String>,
    /// How many times `disowned` was emptied: a marker of an older flush
    /// finds nothing to send.
    pub disown_epoch: u64,
}

impl State {
    pub fn new() -> Self {
        State {
            keys: HashMap::new(),
            workers: BTreeMap::new(),
            sent_functions: HashSet::new(),
            parts_open: false,
            broken: None,
            shutting_down: false,
            errors: 0,
            identities: 0,
            identity: (Vec::new(), 0),
            limits: Vec::new(),
            task_streams: 0,
            task_stream: (Vec::new(), 0),
            scheduler: (String::new(), 0.0),
            next_request: 1,
            replies: HashMap::new(),
            published: HashMap::new(),
            disowned: Vec::new(),
            disown_epoch: 0,
        }
    }

    /// Notes that the last reference to `key`, which the scheduler keeps
    /// for this client, went; true if it is the first since the last
    /// flush, when the caller queues the marker that sends them.
    pub fn disown(&mut self, key: String) -> bool {
        self.disowned.push(key);
        self.disowned.len() == 1
    }

    /// The `Disown` of every key noted since the last flush, emptying the
    /// list; None if there is none.
    pub fn flush_disowned(&mut self) -> Option<ClientToScheduler> {
        if self.disowned.is_empty() {
            return None;
        }
        self.disown_epoch += 1;
        Some(ClientToScheduler::Disown(std::mem::take(
            &mut self.disowned,
        )))
    }

    /// What the marker queued at flush number `epoch` sends: the keys
    /// disowned since, unless another flush sent them (then a later marker
    /// is queued for any disowned after).
    pub fn take_disowned(&mut self, epoch: u64) -> Option<ClientToScheduler> {
        if epoch != self.disown_epoch {
            return None;
        }
        self.flush_disowned()
    }

    /// Errs if the connection is gone.
    pub fn check(&self) -> Result<(), ClientError> {
        match &self.broken {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Applies one message from the scheduler.
    pub fn apply(&mut self, msg: SchedulerToClient) {
        match msg {
            SchedulerToClient::KeyMemory {
                key,
                nbytes,
                type_name,
                inline,
                holders,
            } => {
                if let Some(e) = self.keys.get_mut(&key).filter(|e| e.listening()) {
                    e.nbytes = nbytes;
                    e.type_name = type_name;
                    e.holders = holders;
                    if inline.is_some() {
                        e.inline = inline;
                    }
                    e.error = None;
                    e.complete(&key, KeyStatus::Finished);
                }
            }
            SchedulerToClient::KeyErred { key, error } => {
                if let Some(e) = self.keys.get_mut(&key).filter(|e| e.listening()) {
                    e.error = Some(error);
                    e.complete(&key, KeyStatus::Erred);
                    self.errors += 1;
                }
            }
            SchedulerToClient::KeyLost { key } => self.lost(&[key]),
            SchedulerToClient::KeyCancelled { key } => {
                if let Some(e) = self.keys.get_mut(&key) {
                    // The scheduler no longer counts it as wanted here.
                    e.wanted = false;
                    if e.status == KeyStatus::Pending || e.status == KeyStatus::Finished {
                        e.inline = None;
                        e.complete(&key, KeyStatus::Cancelled);
                    }
                }
            }
            SchedulerToClient::Identity {
                workers,
                tasks,
                limits,
                scheduler_id,
                started,
            } => {
                self.identities += 1;
                self.scheduler = (scheduler_id, started);
                self.limits = limits;
                self.workers = workers
                    .iter()
                    .map(|w| (w.info.data_address.clone(), w.info.clone()))
                    .collect();
                self.identity = (workers, tasks);
            }
            SchedulerToClient::TaskStream { records, next } => {
                self.task_streams += 1;
                self.task_stream = (records, next);
            }
            SchedulerToClient::CoordReply { req, reply } => {
                self.replies.insert(req, reply);
            }
            SchedulerToClient::Published { sub, message } => {
                // A subscription closed meanwhile takes nothing more.
                if let Some(q) = self.published.get_mut(&sub) {
                    q.push_back(message);
                }
            }
            SchedulerToClient::WorkerAdded(info) => {
                self.workers.insert(info.data_address.clone(), info);
            }
            SchedulerToClient::WorkerRemoved { data_address } => {
                self.workers.remove(&data_address);
            }
            SchedulerToClient::ShuttingDown => {
                self.broken = Some(ClientError::Disconnected("the scheduler shut down".into()));
            }
            SchedulerToClient::Removed(why) => {
                self.broken = Some(ClientError::Removed(why));
            }
        }
    }

    /// These keys' remote results are gone (the scheduler said so, or no
    /// holder had them): they are pending until computed again.
    pub fn lost(&mut self, keys: &[String]) {
        for k in keys {
            if let Some(e) = self.keys.get_mut(k) {
                e.lost();
            }
        }
    }

    /// These results could not be had from these holders: forget those
    /// holders; a key left with none is pending again. Returns those keys.
    pub fn unreachable(&mut self, failed: &[(String, String)]) -> Vec<String> {
        let mut none_left = Vec::new();
        for (k, holder) in failed {
            let Some(e) = self.keys.get_mut(k) else {
                continue;
            };
            e.holders.retain(|h| h != holder);
            if e.holders.is_empty() && e.status == KeyStatus::Finished && e.inline.is_none() {
                e.lost();
                if e.listening() && !none_left.contains(k) {
                    none_left.push(k.clone());
                }
            }
        }
        none_left
    }

    /// What each key came to, if all are done.
    pub fn collect(&self, keys: &[String]) -> Result<Collected, ClientError> {
        let mut outcomes = Vec::with_capacity(keys.len());
        let mut remote: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            let e = self
                .keys
                .get(k)
                .ok_or_else(|| ClientError::UnknownKey(k.clone()))?;
            outcomes.push(match e.status {
                KeyStatus::Pending => return Ok(Collected::NotReady),
                KeyStatus::Erred => Some(Outcome::Error(
                    e.error.clone().unwrap_or_else(|| lost_error(k)),
                )),
                KeyStatus::Cancelled => Some(Outcome::Cancelled),
                KeyStatus::Finished => match (&e.inline, e.holders.first()) {
                    (Some(p), _) => Some(Outcome::Value(p.clone())),
                    (None, Some(holder)) => {
                        remote
                            .entry(holder.clone())
                            .or_default()
                            .push((i, k.clone()));
                        None
                    }
                    (None, None) => Some(Outcome::Error(lost_error(k))),
                },
            });
        }
        Ok(Collected::Done { outcomes, remote })
    }

    /// Errs every pending key; `type_name` is the Python exception to raise.
    pub fn fail_pending(&mut self, type_name: &str, reason: &str) {
        for (k, e) in self.keys.iter_mut() {
            if e.status == KeyStatus::Pending {
                e.error = Some(TaskError::Raised {
                    exception: Payload::default(),
                    type_name: type_name.into(),
                    message: format!("{k} was not computed: {reason}"),
                    traceback: String::new(),
                });
                e.complete(k, KeyStatus::Erred);
                self.errors += 1;
            }
        }
    }
}

fn lost_error(key: &str) -> TaskError {
    TaskError::Raised {
        exception: Payload::default(),
        type_name: "RuntimeError".into(),
        message: format!("the result of {key} is unavailable"),
        traceback: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disowned(msg: Option<ClientToScheduler>) -> Vec<String> {
        match msg {
            Some(ClientToScheduler::Disown(keys)) => keys,
            None => Vec::new(),
            Some(other) => panic!("not a Disown: {other:?}"),
        }
    }

    #[test]
    fn disowns_go_once_in_order_whatever_flushes_them() {
        let mut st = State::new();
        // The first key asks for a marker; the next ride along with it.
        assert!(st.disown("a".into()));
        let marker = st.disown_epoch;
        assert!(!st.disown("b".into()));
        assert_eq!(disowned(st.take_disowned(marker)), ["a", "b"]);
        assert_eq!(disowned(st.take_disowned(marker)), Vec::<String>::new());
        // A message sent meanwhile flushed them first: the marker queued
        // before it sends nothing, and the key disowned after that message
        // waits for its own marker, which comes after the message.
        assert!(st.disown("c".into()));
        let stale = st.disown_epoch;
        assert_eq!(disowned(st.flush_disowned()), ["c"]);
        assert!(st.disown("d".into()));
        let fresh = st.disown_epoch;
        assert_eq!(disowned(st.take_disowned(stale)), Vec::<String>::new());
        assert_eq!(disowned(st.take_disowned(fresh)), ["d"]);
        assert!(st.flush_disowned().is_none());
    }

    fn finished_remotely(st: &mut State, key: &str) {
        st.keys.insert(key.into(), KeyEntry::new());
        st.apply(SchedulerToClient::KeyMemory {
            key: key.into(),
            nbytes: 1 << 20,
            type_name: "bytes".into(),
            inline: None,
            holders: vec!["127.0.0.1:9".into()],
        });
    }

    /// `wait` saw the key finished and let go of the lock; a `KeyLost`
    /// arrived before `gather` took it again. `gather` must wait again, not
    /// assume every key is done.
    #[test]
    fn a_key_lost_between_wait_and_gather_is_not_ready() {
        let mut st = State::new();
        finished_remotely(&mut st, "big");
        let keys = vec!["big".to_string()];
        assert!(matches!(
            st.collect(&keys),
            Ok(Collected::Done { ref remote, .. }) if remote.len() == 1
        ));
        st.apply(SchedulerToClient::KeyLost { key: "big".into() });
        assert!(matches!(st.collect(&keys), Ok(Collected::NotReady)));
        // Then the recomputed result arrives.
        st.apply(SchedulerToClient::KeyMemory {
            key: "big".into(),
            nbytes: 3,
            type_name: "bytes".into(),
            inline: Some(Payload::single(bytes::Bytes::from_static(b"abc"))),
            holders: vec!["127.0.0.1:10".into()],
        });
        assert!(matches!(
            st.collect(&keys),
            Ok(Collected::Done { ref remote, .. }) if remote.is_empty()
        ));
    }

    #[test]
    fn an_inline_result_survives_the_loss_of_its_holder() {
        let mut st = State::new();
        st.keys.insert("small".into(), KeyEntry::new());
        st.apply(SchedulerToClient::KeyMemory {
            key: "small".into(),
            nbytes: 1,
            type_name: "int".into(),
            inline: Some(Payload::single(bytes::Bytes::from_static(b"1"))),
            holders: vec!["127.0.0.1:9".into()],
        });
        st.apply(SchedulerToClient::KeyLost {
            key: "small".into(),
        });
        assert_eq!(st.keys["small"].status, KeyStatus::Finished);
    }

    /// A holder that cannot give a result is dropped and the next one is
    /// tried; with none left the key is pending and asked for again.
    #[test]
    fn an_unreachable_holder_falls_back_to_the_next_then_asks_again() {
        let mut st = State::new();
        st.keys.insert("big".into(), KeyEntry::new());
        st.apply(SchedulerToClient::KeyMemory {
            key: "big".into(),
            nbytes: 1 << 20,
            type_name: "bytes".into(),
            inline: None,
            holders: vec!["127.0.0.1:9".into(), "127.0.0.1:10".into()],
        });
        let keys = vec!["big".to_string()];
        let failed = vec![("big".to_string(), "127.0.0.1:9".to_string())];
        assert!(st.unreachable(&failed).is_empty());
        assert!(matches!(
            st.collect(&keys),
            Ok(Collected::Done { ref remote, .. }) if remote.contains_key("127.0.0.1:10")
        ));
        let failed = vec![("big".to_string(), "127.0.0.1:10".to_string())];
        assert_eq!(st.unreachable(&failed), keys);
        assert!(matches!(st.collect(&keys), Ok(Collected::NotReady)));
    }
}
