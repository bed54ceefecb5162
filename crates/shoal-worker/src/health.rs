//! The worker's health reports: CPU, memory and task counts, sent to the
//! scheduler (for the dashboard) every [`PERIOD`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_proto::{WorkerMetrics, WorkerToScheduler};

use crate::state::Shared;

/// How often the worker reports.
pub const PERIOD: Duration = Duration::from_millis(500);

/// CPU time this process has used (user + system).
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes only `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Resident memory of this process in bytes (0 where it cannot be read).
pub fn process_rss() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages.saturating_mul(u64::try_from(page).unwrap_or(4096))
}

/// Sends a report every [`PERIOD`] until the worker closes.
pub(crate) async fn report(shared: Arc<Shared>) {
    let mut last = (Instant::now(), process_cpu());
    let mut stored = (0, 0);
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (now, cpu) = (Instant::now(), process_cpu());
        let wall = now.duration_since(last.0).as_secs_f64();
        let used = cpu.saturating_sub(last.1).as_secs_f64();
        last = (now, cpu);
        let metrics = {
            let st = shared.state.lock();
            if st.closed {
                return;
            }
            WorkerMetrics {
                cpu: if wall > 0.0 { 100.0 * used / wall } else { 0.0 },
                running: st.tasks.in_slots() + st.tasks.seceded(),
                queued: st.tasks.queued() as u32,
                ..WorkerMetrics::default()
            }
        };
        // Never wait on a spill in progress: report the last figures.
        if let Some(store) = shared.store.try_lock() {
            // Values scattered here and not claimed yet are managed too.
            let staged = shared.staged.lock().nbytes();
            stored = (store.memory_bytes() + staged, store.disk_bytes());
        }
        let (managed, spilled) = stored;
        let metrics = WorkerMetrics {
            rss: process_rss(),
            managed,
            spilled,
            ..metrics
        };
        if shared
            .out
            .send(WorkerToScheduler::Metrics(metrics))
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_uses_cpu() {
        assert!(process_rss() > 1 << 20, "a process holds more than 1 MiB");
        let before = process_cpu();
        let mut x = 0u64;
        while process_cpu() == before {
            x = x.wrapping_add(1);
        }
        assert!(process_cpu() > before, "{x}");
    }
}
