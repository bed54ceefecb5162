//! Warnings about refused connections, at most one a second and at most
//! [`MAX_LINE`] characters each: a port scan or a flood of garbage must not
//! flood the log as well, nor fill it with text a peer chose (a decoding
//! error may quote what it could not decode).

use std::sync::Mutex;
use std::time::{Duration, Instant};

static LAST: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

/// The longest warning logged, in characters; longer ones are cut.
pub const MAX_LINE: usize = 300;

/// `text` cut to at most `max` characters, marked with `…` when cut.
fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((at, _)) => format!("{}…", &text[..at]).into(),
    }
}

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
            let text = message.to_string();
            let text = clip(&text, MAX_LINE);
            if skipped > 0 {
                tracing::warn!("{text} ({skipped} more like it not shown)");
            } else {
                tracing::warn!("{text}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_at_a_character_and_marked() {
        assert_eq!(clip("short", 10), "short");
        let peer = "é".repeat(70_000);
        let cut = clip(&peer, MAX_LINE);
        assert_eq!(cut.chars().count(), MAX_LINE + 1);
        assert!(cut.ends_with('…'));
    }
}
