//! Cluster-wide limits: tasks tagged with a limit's name run at most
//! `concurrency` at once and start at most `rate` per second (a token bucket
//! holding up to `burst` starts).
//!
//! A ready task that a limit holds back is parked in that limit's queue —
//! not sent to a worker, so it holds no thread — and goes back to the ready
//! queue when a slot frees or a token comes (the core asks the shell to wake
//! it then). A task takes its slots when it is assigned and gives them back
//! when it leaves `Assigned`, whatever the reason, in `Core::transition`.

use std::collections::VecDeque;
use std::sync::Arc;

use shoal_proto::{LimitSpec, LimitStatus, TaskId};

use crate::core::Core;
use crate::placement::ReadyEntry;
use crate::task::TaskState;

/// The largest bucket and rate a limit may have.
const MAX_RATE: f64 = 1e9;

pub(crate) struct Limit {
    pub spec: LimitSpec,
    /// Tagged tasks assigned to workers now.
    pub running: u32,
    tokens: f64,
    refilled_at: f64,
    /// Ready tasks held back, oldest first (entries may be stale).
    pub waiting: VecDeque<TaskId>,
}

impl Limit {
    fn burst(&self) -> f64 {
        self.spec.burst.unwrap_or(1.0).clamp(1.0, MAX_RATE)
    }

    fn refill(&mut self, now: f64) {
        if let Some(rate) = self.spec.rate {
            let gained = (now - self.refilled_at).max(0.0) * rate;
            self.tokens = (self.tokens + gained).min(self.burst());
        }
        self.refilled_at = now;
    }

    /// How many more tagged tasks may start now.
    fn room(&self) -> u64 {
        let by_slots = self
            .spec
            .concurrency
            .map_or(u64::MAX, |c| u64::from(c.saturating_sub(self.running)));
        let by_tokens = match self.spec.rate {
            // A hair of tolerance: 0.99999999 tokens after a refill is one.
            Some(_) => (self.tokens.max(0.0) + 1e-9).floor() as u64,
            None => u64::MAX,
        };
        by_slots.min(by_tokens)
    }

    /// When the next token comes once `taken` more are spent, if the
    /// bucket is then short of one.
    fn next_token_at(&self, taken: f64) -> Option<f64> {
        let rate = self.spec.rate?;
        let left = self.tokens - taken;
        (left < 1.0).then(|| self.refilled_at + (1.0 - left) / rate)
    }
}

/// A spec with its numbers made safe: rates and bursts finite and positive.
fn sanitize(mut spec: LimitSpec) -> LimitSpec {
    spec.rate = spec
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|r| r.min(MAX_RATE));
    spec.burst = spec.burst.filter(|b| b.is_finite() && *b >= 1.0);
    spec
}

impl Core {
    /// Creates or changes a limit; it applies to waiting tasks at once.
    pub(crate) fn set_limit(&mut self, spec: LimitSpec) {
        let spec = sanitize(spec);
        let now = self.now;
        let name: Arc<str> = Arc::from(spec.name.as_str());
        // Tasks tagged before the limit existed and running now count.
        let running = if self.limits.contains_key(&name) {
            0
        } else {
            self.tasks
                .values()
                .filter(|t| {
                    t.extra
                        .as_ref()
                        .is_some_and(|e| e.holds_limits && e.limits.contains(&name))
                })
                .count() as u32
        };
        let limit = self.limits.entry(name).or_insert_with(|| Limit {
            tokens: spec.burst.unwrap_or(1.0),
            spec: spec.clone(),
            running,
            refilled_at: now,
            waiting: VecDeque::new(),
        });
        limit.refill(now);
        limit.spec = spec;
        limit.tokens = limit.tokens.min(limit.burst());
    }

    /// The name a limit is stored under (one shared copy per name).
    pub(crate) fn limit_name(&mut self, name: &str) -> Arc<str> {
        match self.limits.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => Arc::from(name),
        }
    }

    /// Whether task `id` may start now. If so it takes a slot (and a token)
    /// of each of its limits; if not, it waits in the first limit that holds
    /// it back. Limits nobody set do not hold anything back.
    pub(crate) fn admit(&mut self, id: TaskId) -> bool {
        let names: Vec<Arc<str>> = match self.tasks.get(&id).and_then(|t| t.extra.as_ref()) {
            Some(e) if !e.limits.is_empty() => e.limits.to_vec(),
            _ => return true,
        };
        let now = self.now;
        for name in &names {
            if let Some(limit) = self.limits.get_mut(name) {
                limit.refill(now);
                if limit.room() == 0 {
                    limit.waiting.push_back(id);
                    if let Some(at) = limit.next_token_at(0.0) {
                        self.wake_at(at);
                    }
                    return false;
                }
            }
        }
        for name in &names {
            if let Some(limit) = self.limits.get_mut(name) {
                limit.running += 1;
                if limit.spec.rate.is_some() {
                    limit.tokens -= 1.0;
                }
            }
        }
        if let Some(e) = self.tasks.get_mut(&id).and_then(|t| t.extra.as_mut()) {
            e.holds_limits = true;
        }
        true
    }

    /// Task `id` left `Assigned`: give its slots back.
    pub(crate) fn release_limits(&mut self, id: TaskId) {
        let Some(e) = self.tasks.get_mut(&id).and_then(|t| t.extra.as_mut()) else {
            return;
        };
        if !std::mem::take(&mut e.holds_limits) {
            return;
        }
        for name in e.limits.iter() {
            if let Some(limit) = self.limits.get_mut(name) {
                limit.running = limit.running.saturating_sub(1);
            }
        }
    }

    /// Sends tasks that limits held back to the ready queue, as many as
    /// each limit has room for now. Called before each scheduling pass.
    pub(crate) fn wake_limited(&mut self) {
        let now = self.now;
        let mut woken = Vec::new();
        let mut wake = Vec::new();
        for limit in self.limits.values_mut() {
            if limit.waiting.is_empty() {
                continue;
            }
            limit.refill(now);
            let room = limit.room().min(limit.waiting.len() as u64);
            woken.extend(limit.waiting.drain(..room as usize));
            // Tasks still waiting for a token: wake up when it comes (after
            // the ones released now have spent theirs).
            if !limit.waiting.is_empty() {
                wake.extend(limit.next_token_at(room as f64));
            }
        }
        for at in wake {
            self.wake_at(at);
        }
        for id in woken {
            if let Some(t) = self.tasks.get(&id) {
                if t.state == TaskState::Ready && !self.held.contains(&id) {
                    self.ready.push(ReadyEntry::of(t, id));
                }
            }
        }
    }

    /// Limits and how busy each is.
    pub(crate) fn limit_status(&self) -> Vec<LimitStatus> {
        let mut out: Vec<LimitStatus> = self
            .limits
            .values()
            .map(|l| LimitStatus {
                spec: l.spec.clone(),
                running: l.running,
                waiting: l
                    .waiting
                    .iter()
                    .filter(|id| {
                        self.tasks
                            .get(id)
                            .is_some_and(|t| t.state == TaskState::Ready)
                    })
                    .count() as u32,
            })
            .collect();
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        out
    }
}
