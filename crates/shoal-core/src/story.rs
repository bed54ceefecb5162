//! The scheduler's story of each task (`Client.story`): the latest
//! [`STORY_LENGTH`] transitions, each with the kind of event that caused it
//! and the core's clock. An entry names its task by the 64-bit hash of the
//! key (see [`crate::keys`]), so the story of a key outlives the task: a
//! forgotten task, or every earlier run of a key submitted again.

use std::collections::VecDeque;

use shoal_proto::{ClientToScheduler, StoryEntry, WorkerToScheduler};

use crate::core::Core;
use crate::events::Event;
use crate::task::TaskState;

/// Transitions kept (Dask's `distributed.admin.low-level-log-length`
/// keeps as many in its scheduler's transition log).
pub const STORY_LENGTH: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u64,
    start: &'static str,
    finish: &'static str,
    stimulus: &'static str,
    time: f64,
}

/// The bounded log of transitions.
#[derive(Debug, Default)]
pub(crate) struct Story {
    entries: VecDeque<Entry>,
    /// What the event being handled is (see [`stimulus_of`]).
    pub stimulus: &'static str,
}

impl Story {
    pub fn record(&mut self, key: &str, start: &'static str, finish: &'static str, time: f64) {
        if self.entries.len() == STORY_LENGTH {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            key: crate::keys::hash(key),
            start,
            finish,
            stimulus: self.stimulus,
            time,
        });
    }
}

/// A task state's name, as Dask names its scheduler's states.
pub(crate) fn state_name(s: &TaskState) -> &'static str {
    match s {
        TaskState::Released => "released",
        TaskState::Waiting => "waiting",
        TaskState::Ready => "queued",
        TaskState::Assigned { .. } => "processing",
        TaskState::Memory { .. } => "memory",
        TaskState::Erred => "erred",
    }
}

/// What kind of event `e` is, as a story names its cause.
pub(crate) fn stimulus_of(e: &Event) -> &'static str {
    match e {
        Event::ClientConnected(_) => "client-connected",
        Event::ClientDisconnected(_) => "client-gone",
        Event::WorkerConnected(..) => "worker-joined",
        Event::WorkerLost(_) => "worker-lost",
        Event::FromClient(_, m) => match m {
            ClientToScheduler::Submit(_) | ClientToScheduler::SubmitPart(_) => "update-graph",
            ClientToScheduler::Disown(_) => "client-releases-keys",
            ClientToScheduler::Cancel(_) => "cancel",
            ClientToScheduler::Retry(_) => "retry",
            ClientToScheduler::Coord { .. } => "client-request",
            _ => "client-message",
        },
        Event::FromWorker(_, m) => match m {
            WorkerToScheduler::TaskFinished { .. } => "task-finished",
            WorkerToScheduler::TaskFailed { .. } => "task-erred",
            WorkerToScheduler::TaskRescheduled { .. } => "reschedule",
            WorkerToScheduler::GaveBack { .. } => "steal-response",
            WorkerToScheduler::MissingDeps { .. } => "missing-data",
            WorkerToScheduler::Fetched { .. } => "fetched",
            _ => "worker-message",
        },
    }
}

impl Core {
    /// Every kept transition of the tasks named `keys`, oldest first.
    pub(crate) fn story_of(&self, keys: &[String]) -> Vec<StoryEntry> {
        let wanted: Vec<(u64, &String)> = keys.iter().map(|k| (crate::keys::hash(k), k)).collect();
        self.story
            .entries
            .iter()
            .filter_map(|e| {
                let (_, key) = wanted.iter().find(|(h, _)| *h == e.key)?;
                Some(StoryEntry {
                    key: (*key).clone(),
                    start: e.start.to_string(),
                    finish: e.finish.to_string(),
                    stimulus: e.stimulus.to_string(),
                    time: e.time,
                })
            })
            .collect()
    }
}
