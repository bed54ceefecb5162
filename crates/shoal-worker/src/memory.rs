//! Memory management, Dask's model: a worker with a memory limit spills
//! results to disk above a `target` fraction of it (bytes held in the data
//! store, see [`crate::store`]) and above a `spill` fraction of the
//! process's resident memory; it takes no new task above `pause`, and
//! restarts above `terminate` (its running tasks then count that death, and
//! the scheduler names memory as the cause).
//!
//! [`MemoryPolicy::check`] is the decision, a pure function of what was
//! measured; [`monitor`] measures every [`PERIOD`] and carries it out.

use std::sync::Arc;
use std::time::Duration;

use crate::allocator::{give_free_pages_back, Mode};
use crate::state::Shared;

/// How often resident memory is measured.
pub const PERIOD: Duration = Duration::from_millis(100);

/// A worker's memory limit and the fractions of it that trigger each step
/// (`None`: that step is off), as Dask's `distributed.worker.memory.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPolicy {
    /// Bytes; 0 means no limit (nothing below applies).
    pub limit: u64,
    pub target: Option<f64>,
    pub spill: Option<f64>,
    pub pause: Option<f64>,
    pub terminate: Option<f64>,
    /// Whether the process's resident memory is this worker's alone (a
    /// worker process); workers on threads of another process only spill
    /// by `target`.
    pub whole_process: bool,
}

impl Default for MemoryPolicy {
    fn default() -> Self {
        MemoryPolicy {
            limit: 0,
            target: Some(0.6),
            spill: Some(0.7),
            pause: Some(0.8),
            terminate: Some(0.95),
            whole_process: true,
        }
    }
}

/// What to do after a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Bytes of managed memory to write to disk now.
    pub evict: u64,
    /// Whether the worker should take no new task.
    pub paused: bool,
    /// Whether the worker should restart.
    pub terminate: bool,
}

fn bytes_at(limit: u64, fraction: Option<f64>) -> Option<u64> {
    fraction.map(|f| (limit as f64 * f) as u64)
}

impl MemoryPolicy {
    /// Bytes held in the data store above which values spill (0: never).
    pub fn store_target(&self) -> u64 {
        if self.limit == 0 {
            return 0;
        }
        bytes_at(self.limit, self.target).unwrap_or(0)
    }

    /// Bytes of inputs fetched from peers at once: a tenth of the limit
    /// (Dask's `distributed.worker.memory.transfer`), 64 MiB without one.
    pub fn fetch_bytes(&self) -> u64 {
        if self.limit == 0 {
            64 << 20
        } else {
            self.limit / 10
        }
    }

    /// Whether the process's memory is watched at all.
    pub fn watches_process(&self) -> bool {
        self.limit > 0
            && self.whole_process
            && (self.spill.is_some() || self.pause.is_some() || self.terminate.is_some())
    }

    /// The decision for a process using `rss` bytes with `managed` bytes in
    /// the store's memory.
    pub fn check(&self, rss: u64, managed: u64) -> Verdict {
        if !self.watches_process() {
            return Verdict::default();
        }
        let over = |f| bytes_at(self.limit, f).is_some_and(|b| rss > b);
        let evict = if over(self.spill) {
            // Down to the target, or to the spill line if there is none.
            let goal = bytes_at(self.limit, self.target.or(self.spill)).unwrap_or(0);
            rss.saturating_sub(goal).min(managed)
        } else {
            0
        };
        Verdict {
            evict,
            paused: over(self.pause),
            terminate: over(self.terminate),
        }
    }

    /// Why a worker using `rss` bytes restarts, in words.
    pub fn terminate_reason(&self, rss: u64) -> String {
        format!(
            "it used {} of memory, more than {:.0}% of its memory limit of {}",
            human(rss),
            100.0 * self.terminate.unwrap_or(1.0),
            human(self.limit)
        )
    }
}

/// `1.5 GiB`, `300 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < units.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}

/// Measures the process every [`PERIOD`] and acts on the verdict until the
/// worker closes or decides to restart.
pub(crate) async fn monitor(shared: Arc<Shared>, policy: MemoryPolicy) {
    if !policy.watches_process() {
        return;
    }
    let mut mode = Mode::Roomy;
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.state.lock().closed {
            return;
        }
        let rss = crate::health::process_rss();
        let next = mode.next(rss, policy.limit);
        if next != mode {
            tracing::debug!("memory: {} resident, allocator {next:?}", human(rss));
            mode = next;
            let _ = tokio::task::spawn_blocking(move || next.apply()).await;
        }
        // A spill in progress holds the store: measure again next time.
        let Some(managed) = shared.store.try_lock().map(|mut s| {
            let managed = s.memory_bytes();
            s.set_unmanaged(rss.saturating_sub(managed));
            managed
        }) else {
            continue;
        };
        let verdict = policy.check(rss, managed);
        if verdict != Verdict::default() {
            tracing::debug!(
                "memory: {} resident, {} of results in memory: {verdict:?}",
                human(rss),
                human(managed)
            );
        }
        if verdict.terminate {
            let reason = policy.terminate_reason(rss);
            tracing::warn!("restarting this worker: {reason}");
            shared.leave(reason);
            return;
        }
        if verdict.evict > 0 || verdict.paused {
            let shared = shared.clone();
            // Disk writes, and waiting for the interpreter, stay off the
            // network thread.
            let _ = tokio::task::spawn_blocking(move || {
                if verdict.evict > 0 {
                    shared.store.lock().evict(verdict.evict);
                }
                let release = shared.release.lock().clone();
                if let Some(release) = release {
                    release();
                }
                give_free_pages_back();
            })
            .await;
        }
        shared.set_paused(verdict.paused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn policy() -> MemoryPolicy {
        MemoryPolicy {
            limit: 1000 * MB,
            ..MemoryPolicy::default()
        }
    }

    #[test]
    fn no_limit_means_nothing_is_watched() {
        let p = MemoryPolicy::default();
        assert_eq!(p.store_target(), 0);
        assert_eq!(p.check(u64::MAX, u64::MAX), Verdict::default());
    }

    #[test]
    fn the_store_spills_above_the_target_fraction() {
        assert_eq!(policy().store_target(), 600 * MB);
        let off = MemoryPolicy {
            target: None,
            ..policy()
        };
        assert_eq!(off.store_target(), 0);
    }

    #[test]
    fn each_threshold_in_turn() {
        let p = policy();
        assert_eq!(p.check(500 * MB, 400 * MB), Verdict::default());
        // Above spill: evict down to the target, at most what is managed.
        let v = p.check(750 * MB, 400 * MB);
        assert_eq!((v.evict, v.paused, v.terminate), (150 * MB, false, false));
        let v = p.check(750 * MB, 10 * MB);
        assert_eq!(v.evict, 10 * MB);
        let v = p.check(850 * MB, 0);
        assert_eq!((v.evict, v.paused, v.terminate), (0, true, false));
        let v = p.check(960 * MB, 0);
        assert!(v.paused && v.terminate);
    }

    #[test]
    fn a_step_that_is_off_never_triggers() {
        let p = MemoryPolicy {
            pause: None,
            terminate: None,
            ..policy()
        };
        let v = p.check(2000 * MB, 0);
        assert!(!v.paused && !v.terminate);
        let threads = MemoryPolicy {
            whole_process: false,
            ..policy()
        };
        assert_eq!(threads.check(2000 * MB, 2000 * MB), Verdict::default());
        assert_eq!(
            threads.store_target(),
            600 * MB,
            "threads still spill by target"
        );
    }

    #[test]
    fn the_reason_names_memory_and_the_limit() {
        let r = policy().terminate_reason(980 * MB);
        assert!(
            r.contains("980.0 MiB") && r.contains("95%") && r.contains("1000.0 MiB"),
            "{r}"
        );
    }
}
