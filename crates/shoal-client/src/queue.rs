//! A queue of keys in the order they complete (for `as_completed`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Keys pushed as they finish; readers block until one arrives.
#[derive(Default)]
pub struct CompletionQueue {
    items: Mutex<VecDeque<String>>,
    ready: Condvar,
}

impl CompletionQueue {
    pub fn push(&self, key: String) {
        self.items.lock().push_back(key);
        self.ready.notify_all();
    }

    /// Waits up to `timeout` (forever if `None`) for the next completed key.
    pub fn pop(&self, timeout: Option<Duration>) -> Option<String> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut items = self.items.lock();
        loop {
            if let Some(k) = items.pop_front() {
                return Some(k);
            }
            match deadline {
                None => self.ready.wait(&mut items),
                Some(d) => {
                    if self.ready.wait_until(&mut items, d).timed_out() && items.is_empty() {
                        return None;
                    }
                }
            }
        }
    }

    /// Takes every completed key without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.items.lock().drain(..).collect()
    }

    pub fn len(&self) -> usize {
        self.items.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
