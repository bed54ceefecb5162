//! Warnings about refused connections, at most one a second: a port scan or
//! a flood of garbage must not flood the log as well.

use std::sync::Mutex;
use std::time::{Duration, Instant};

static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// Logs `message` at warn level unless another was logged less than a
/// second ago; the next one logged says how many were left out.
pub fn warn(message: std::fmt::Arguments<'_>) {
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match &mut *last {
        Some((at, skipped)) if now.duration_since(*at) < Duration::from_secs(1) => {
            *skipped += 1;
        }
        slot => {
            let skipped = slot.map_or(0, |(_, s)| s);
            *slot = Some((now, 0));
            drop(last);
            if skipped > 0 {
                tracing::warn!("{message} ({skipped} more like it not shown)");
            } else {
                tracing::warn!("{message}");
            }
        }
    }
}
