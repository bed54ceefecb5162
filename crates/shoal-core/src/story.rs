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

/// One transition: 24 bytes, so the log costs 2.4 MB when full.
#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u64,
    time: f64,
    start: Phase,
    finish: Phase,
    stimulus: Stimulus,
}

/// The bounded log of transitions.
#[derive(Debug, Default)]
pub(crate) struct Story {
    entries: VecDeque<Entry>,
    /// What the event being handled is (see [`stimulus_of`]).
    pub stimulus: Stimulus,
}

impl Story {
    pub fn record(&mut self, key: &str, start: Phase, finish: Phase, time: f64) {
        if self.entries.len() == STORY_LENGTH {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            key: crate::keys::hash(key),
            time,
            start,
            finish,
            stimulus: self.stimulus,
        });
    }
}

/// Where a transition starts or ends: a task state, or forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Released,
    Waiting,
    Queued,
    Processing,
    Memory,
    Erred,
    Forgotten,
}

impl Phase {
    /// The phase of a task in state `s`.
    pub(crate) fn of(s: &TaskState) -> Self {
        match s {
            TaskState::Released => Phase::Released,
            TaskState::Waiting => Phase::Waiting,
            TaskState::Ready => Phase::Queued,
            TaskState::Assigned { .. } => Phase::Processing,
            TaskState::Memory { .. } => Phase::Memory,
            TaskState::Erred => Phase::Erred,
        }
    }

    /// Its name, as Dask names its scheduler's states.
    fn name(self) -> &'static str {
        match self {
            Phase::Released => "released",
            Phase::Waiting => "waiting",
            Phase::Queued => "queued",
            Phase::Processing => "processing",
            Phase::Memory => "memory",
            Phase::Erred => "erred",
            Phase::Forgotten => "forgotten",
        }
    }
}

/// What caused a transition: the kind of event being handled, or the
/// core's own passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Stimulus {
    #[default]
    Start,
    ClientConnected,
    ClientGone,
    WorkerJoined,
    WorkerLost,
    UpdateGraph,
    ClientReleasesKeys,
    Cancel,
    Retry,
    ClientRequest,
    ClientMessage,
    TaskFinished,
    TaskErred,
    Reschedule,
    StealResponse,
    MissingData,
    Fetched,
    WorkerMessage,
    Schedule,
    Timer,
}

impl Stimulus {
    /// Its name in a story.
    fn name(self) -> &'static str {
        match self {
            Stimulus::Start => "start",
            Stimulus::ClientConnected => "client-connected",
            Stimulus::ClientGone => "client-gone",
            Stimulus::WorkerJoined => "worker-joined",
            Stimulus::WorkerLost => "worker-lost",
            Stimulus::UpdateGraph => "update-graph",
            Stimulus::ClientReleasesKeys => "client-releases-keys",
            Stimulus::Cancel => "cancel",
            Stimulus::Retry => "retry",
            Stimulus::ClientRequest => "client-request",
            Stimulus::ClientMessage => "client-message",
            Stimulus::TaskFinished => "task-finished",
            Stimulus::TaskErred => "task-erred",
            Stimulus::Reschedule => "reschedule",
            Stimulus::StealResponse => "steal-response",
            Stimulus::MissingData => "missing-data",
            Stimulus::Fetched => "fetched",
            Stimulus::WorkerMessage => "worker-message",
            Stimulus::Schedule => "schedule",
            Stimulus::Timer => "timer",
        }
    }
}

/// What kind of event `e` is, as a story names its cause.
pub(crate) fn stimulus_of(e: &Event) -> Stimulus {
    match e {
        Event::ClientConnected(_) => Stimulus::ClientConnected,
        Event::ClientDisconnected(_) => Stimulus::ClientGone,
        Event::WorkerConnected(..) => Stimulus::WorkerJoined,
        Event::WorkerLost(_) => Stimulus::WorkerLost,
        Event::FromClient(_, m) => match m {
            ClientToScheduler::Submit(_) | ClientToScheduler::SubmitPart(_) => {
                Stimulus::UpdateGraph
            }
            ClientToScheduler::Disown(_) => Stimulus::ClientReleasesKeys,
            ClientToScheduler::Cancel(_) => Stimulus::Cancel,
            ClientToScheduler::Retry(_) => Stimulus::Retry,
            ClientToScheduler::Coord { .. } => Stimulus::ClientRequest,
            _ => Stimulus::ClientMessage,
        },
        Event::FromWorker(_, m) => match m {
            WorkerToScheduler::TaskFinished { .. } => Stimulus::TaskFinished,
            WorkerToScheduler::TaskFailed { .. } => Stimulus::TaskErred,
            WorkerToScheduler::TaskRescheduled { .. } => Stimulus::Reschedule,
            WorkerToScheduler::GaveBack { .. } => Stimulus::StealResponse,
            WorkerToScheduler::MissingDeps { .. } => Stimulus::MissingData,
            WorkerToScheduler::Fetched { .. } => Stimulus::Fetched,
            _ => Stimulus::WorkerMessage,
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
                    start: e.start.name().to_string(),
                    finish: e.finish.name().to_string(),
                    stimulus: e.stimulus.name().to_string(),
                    time: e.time,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_story_stays_small() {
        // 100,000 entries: 2.4 MB, not the 6.4 MB of names kept as text.
        assert_eq!(std::mem::size_of::<super::Entry>(), 24);
    }
}
