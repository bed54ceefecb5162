//! The client's table of keys.

use std::collections::HashMap;
use std::sync::Arc;

use shoal_proto::{Payload, TaskError};

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
}

pub(crate) type Table = HashMap<String, KeyEntry>;
