//! The scheduler's record of one task.

use std::sync::Arc;

use shoal_proto::{ClientId, FuncHash, Payload, TaskError, TaskId, WorkerId};

/// Where a task is in its life. See ARCHITECTURE.md for the diagram.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TaskState {
    /// Known (its spec is kept) but neither computed, queued nor held anywhere.
    Released,
    /// Needed, waiting for `waiting_on` dependencies to reach memory.
    Waiting,
    /// Needed, every dependency in memory, queued for a worker.
    Ready,
    /// Sent to `worker`; `started` once the worker said an executor took it.
    Assigned { worker: WorkerId, started: bool },
    /// The result is held by these workers.
    Memory { holders: Vec<WorkerId> },
    /// Failed; `Task::error` says why.
    Erred,
}

pub(crate) struct Task {
    pub key: Arc<str>,
    pub func: FuncHash,
    pub args: Payload,
    pub deps: Vec<TaskId>,
    /// Tasks that depend on this one and are not forgotten.
    pub dependents: Vec<TaskId>,
    pub state: TaskState,
    /// In `Waiting`: how many dependencies are not yet in memory.
    pub waiting_on: u32,
    /// How many dependents are waiting, ready or assigned.
    pub pending_dependents: u32,
    /// Whether this task counts in its dependencies' `pending_dependents`.
    pub counted_pending: bool,
    pub wanted_by: Vec<ClientId>,
    pub priority: i32,
    /// Submission order; ties between equal priorities run first-in first-out.
    pub seq: u64,
    pub retries_left: u32,
    /// How many workers died while running this task.
    pub attempts: u32,
    pub restrictions: Vec<String>,
    pub nbytes: u64,
    pub type_name: Arc<str>,
    pub error: Option<Box<TaskError>>,
}

impl Task {
    /// Waiting, ready or assigned: someone will produce this task's result.
    pub fn is_pending(&self) -> bool {
        matches!(
            self.state,
            TaskState::Waiting | TaskState::Ready | TaskState::Assigned { .. }
        )
    }

    /// Someone still needs the result: a client, or a pending dependent.
    pub fn is_needed(&self) -> bool {
        !self.wanted_by.is_empty() || self.pending_dependents > 0
    }
}
