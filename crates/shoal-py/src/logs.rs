//! The engine's log lines: to stderr (warnings by default, more with
//! `SHOAL_LOG`), and the recent ones, info and above, kept in memory for
//! `get_logs()` (as Dask keeps a deque of each process's log records).

use std::collections::VecDeque;
use std::fmt::Write as _;

use parking_lot::Mutex;
use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Most lines kept.
const KEPT: usize = 10_000;

static RECENT: Mutex<VecDeque<(String, String)>> = Mutex::new(VecDeque::new());

fn keep(level: &str, line: String) {
    let mut recent = RECENT.lock();
    if recent.len() == KEPT {
        recent.pop_front();
    }
    recent.push_back((level.to_string(), line));
}

/// Keeps every event at info or above in [`RECENT`].
struct Recent;

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Recent {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO {
            return;
        }
        let mut line = Line(String::new());
        event.record(&mut line);
        keep(meta.level().as_str(), line.0);
    }
}

/// Sets up both: called once when the module loads.
pub(crate) fn init() {
    let filter = std::env::var("SHOAL_LOG").unwrap_or_default();
    let filter = tracing_subscriber::EnvFilter::try_new(if filter.is_empty() {
        "warn"
    } else {
        filter.as_str()
    })
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let ours = [
        "shoal_proto",
        "shoal_core",
        "shoal_server",
        "shoal_worker",
        "shoal_client",
        "_engine",
    ];
    let targets = ours.iter().fold(
        tracing_subscriber::filter::Targets::new().with_default(Level::WARN),
        |t, name| t.with_target(*name, Level::INFO),
    );
    let recent = Recent.with_filter(targets);
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(recent)
        .try_init();
}

/// The last `n` (all if None) log lines of this process, oldest first, as
/// `(level, message)`.
#[pyfunction]
#[pyo3(signature = (n=None))]
pub fn recent_logs(n: Option<usize>) -> Vec<(String, String)> {
    let recent = RECENT.lock();
    let skip = n.map_or(0, |n| recent.len().saturating_sub(n));
    recent.iter().skip(skip).cloned().collect()
}

/// Adds a line from Python (the `shoal` logger) to the recent ones.
#[pyfunction]
pub fn log_line(level: &str, message: String) {
    keep(level, message);
}
