//! The dashboard: a web server on the scheduler's runtime showing what the
//! cluster does.
//!
//! The core loop *publishes* to a [`Board`] at most every [`PERIOD`]: a
//! [`Snapshot`] of counts (O(task prefixes + workers), never O(tasks)) and
//! the task-stream events that finished since the last publication, of
//! which the board keeps a bounded window. HTTP handlers read only the board,
//! never the core, so an open page costs the scheduler one snapshot per
//! period whatever the number of tasks.

mod address;
mod connections;
mod hosts;
mod prometheus;
mod routes;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use shoal_core::{Core, Snapshot, TaskEvent};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use address::{parse_address, DashboardAddress};
pub use routes::asset;

/// The shortest time between two publications (and two page updates).
pub const PERIOD: Duration = Duration::from_millis(250);

/// Task-stream events the board keeps for pages (the newest). Pages draw
/// a sample when tasks finish faster than this per period: at tens of
/// thousands of tasks a second a bar is narrower than a pixel anyway.
const BOARD_EVENTS: usize = 500;

/// What the pages show, as of the last publication.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Seconds since the epoch, when published and when the scheduler started.
    pub time: f64,
    pub started: f64,
    /// Computations ended per second over the last few publications.
    pub rate: f64,
    /// Total ever recorded in the task stream.
    pub stream_end: u64,
    #[serde(flatten)]
    pub snapshot: Snapshot,
}

struct Published {
    status: Arc<Status>,
    /// `status` as JSON, made on first request.
    json: Option<Arc<str>>,
    events: VecDeque<TaskEvent>,
}

/// The latest publication, shared by the core loop and the HTTP handlers.
pub struct Board {
    published: Mutex<Published>,
    version: watch::Sender<u64>,
}

fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Board {
    fn new(status: Status) -> Board {
        Board {
            published: Mutex::new(Published {
                status: Arc::new(status),
                json: None,
                events: VecDeque::new(),
            }),
            version: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        // A handler that panicked while holding the lock left whole data.
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last publication.
    pub fn status(&self) -> Arc<Status> {
        self.lock().status.clone()
    }

    /// The last publication as JSON.
    pub fn status_json(&self) -> Arc<str> {
        let mut p = self.lock();
        if let Some(j) = &p.json {
            return j.clone();
        }
        let j: Arc<str> = serde_json::to_string(&*p.status)
            .unwrap_or_else(|_| "{}".into())
            .into();
        p.json = Some(j.clone());
        j
    }

    /// Events from `since` on that the board still has (at most `limit`, the
    /// newest), and the position to ask from next.
    pub fn events_since(&self, since: u64, limit: usize) -> (Vec<TaskEvent>, u64) {
        let p = self.lock();
        let end = p.status.stream_end;
        let skip_old = p.events.iter().take_while(|e| e.seq < since).count();
        let available = p.events.len() - skip_old;
        let skip = skip_old + available.saturating_sub(limit);
        (p.events.iter().skip(skip).cloned().collect(), end)
    }

    /// Events from `since` on, oldest first (at most `limit`), and the
    /// position to ask from next: the end of the stream when all were
    /// returned, else the first one left out. A page that fell behind gets
    /// every event the board still has, `limit` at a time.
    pub fn events_after(&self, since: u64, limit: usize) -> (Vec<TaskEvent>, u64) {
        let p = self.lock();
        let skip = p.events.iter().take_while(|e| e.seq < since).count();
        let events: Vec<TaskEvent> = p.events.iter().skip(skip).take(limit).cloned().collect();
        let next = match events.last() {
            Some(e) if skip + events.len() < p.events.len() => e.seq + 1,
            _ => p.status.stream_end,
        };
        (events, next)
    }

    /// Pages following the live updates now.
    fn pages(&self) -> usize {
        self.version.receiver_count()
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

/// The core loop's side: when and what to publish.
pub(crate) struct Publisher {
    board: Arc<Board>,
    address: std::net::SocketAddr,
    started: f64,
    last: Option<Instant>,
    cursor: u64,
    /// (time, computations ended) at recent publications, for the rate.
    history: VecDeque<(Instant, u64)>,
    dirty: bool,
}

impl Publisher {
    /// Where the dashboard listens.
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// When the next publication is due, if something changed.
    pub fn due(&self) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        Some(self.last.map_or_else(Instant::now, |t| t + PERIOD))
    }

    /// Called after every turn of the core loop: publishes if a period has
    /// passed since the last publication.
    pub fn turn(&mut self, core: &Core) {
        self.dirty = true;
        let now = Instant::now();
        if self.last.is_some_and(|t| now < t + PERIOD) {
            return;
        }
        self.publish(core, now);
    }

    fn publish(&mut self, core: &Core, now: Instant) {
        self.last = Some(now);
        self.dirty = false;
        let snapshot = core.snapshot();
        let ended = snapshot.completed + snapshot.failed;
        self.history.push_back((now, ended));
        while self.history.len() > 8 {
            self.history.pop_front();
        }
        let rate = match (self.history.front(), self.history.back()) {
            (Some(&(t0, n0)), Some(&(t1, n1))) if t1 > t0 => {
                n1.saturating_sub(n0) as f64 / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        };
        let (events, next) = core.task_stream(self.cursor, BOARD_EVENTS);
        self.cursor = next;
        let status = Status {
            time: epoch_now(),
            started: self.started,
            rate,
            stream_end: next,
            snapshot,
        };
        {
            let mut p = self.board.lock();
            p.status = Arc::new(status);
            p.json = None;
            p.events.extend(events);
            while p.events.len() > BOARD_EVENTS {
                p.events.pop_front();
            }
        }
        self.board.version.send_modify(|v| *v += 1);
    }
}

/// Binds the dashboard (trying the next ports if asked and the port is
/// taken) and serves it on the current runtime. Returns the publisher the
/// core loop feeds, and the bound address.
pub(crate) async fn start(
    at: &DashboardAddress,
) -> std::io::Result<(Publisher, std::net::SocketAddr)> {
    let listener = address::bind(at).await?;
    let addr = listener.local_addr()?;
    let started = epoch_now();
    let board = Arc::new(Board::new(Status {
        time: started,
        started,
        rate: 0.0,
        stream_end: 0,
        snapshot: Core::default().snapshot(),
    }));
    let hosts = hosts::AllowedHosts::from_environment(&at.host);
    tokio::spawn(serve(listener, board.clone(), hosts));
    Ok((
        Publisher {
            board,
            address: addr,
            started,
            last: None,
            cursor: 0,
            history: VecDeque::new(),
            dirty: true,
        },
        addr,
    ))
}

async fn serve(listener: TcpListener, board: Arc<Board>, hosts: hosts::AllowedHosts) {
    let app = routes::router(board).layer(axum::middleware::from_fn_with_state(
        Arc::new(hosts),
        hosts::check,
    ));
    if let Err(e) = axum::serve(connections::Bounded::new(listener), app).await {
        tracing::warn!("the dashboard stopped: {e}");
    }
}
