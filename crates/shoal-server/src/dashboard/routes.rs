//! The dashboard's HTTP routes: two pages, their script and style (bundled
//! into the binary), a JSON API, a stream of updates (server-sent events)
//! and `/metrics`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use super::{prometheus, Board};

const STATUS_HTML: &str = include_str!("assets/status.html");
const WORKERS_HTML: &str = include_str!("assets/workers.html");
const SCRIPT: &str = include_str!("assets/dashboard.js");
const STYLE: &str = include_str!("assets/style.css");
const REPORT_HTML: &str = include_str!("assets/report.html");

/// A bundled file by name (for reports written outside the server).
pub fn asset(name: &str) -> Option<&'static str> {
    match name {
        "status.html" => Some(STATUS_HTML),
        "workers.html" => Some(WORKERS_HTML),
        "report.html" => Some(REPORT_HTML),
        "dashboard.js" => Some(SCRIPT),
        "style.css" => Some(STYLE),
        _ => None,
    }
}

/// Events sent to a page per update, at most (the newest).
const EVENTS_PER_UPDATE: usize = 250;

pub(super) fn router(board: Arc<Board>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/status") }))
        .route("/status", get(|| async { html(STATUS_HTML) }))
        .route("/workers", get(|| async { html(WORKERS_HTML) }))
        .route("/static/dashboard.js", get(script))
        .route("/static/style.css", get(style))
        .route("/health", get(|| async { "ok" }))
        .route("/api/v1/status", get(status))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/task-stream", get(task_stream))
        .route("/api/v1/updates", get(updates))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "no such page on the shoal dashboard\n",
            )
        })
        .with_state(board)
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn json(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn status(State(board): State<Arc<Board>>) -> Response {
    json(board.status_json().to_string())
}

async fn workers(State(board): State<Arc<Board>>) -> Response {
    let status = board.status();
    json(serde_json::to_string(&status.snapshot.workers).unwrap_or_else(|_| "[]".into()))
}

#[derive(Debug, Deserialize)]
struct Since {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

fn events_json(board: &Board, since: u64, limit: usize) -> String {
    let (events, next) = board.events_since(since, limit);
    serde_json::json!({ "next": next, "events": events }).to_string()
}

async fn task_stream(State(board): State<Arc<Board>>, Query(q): Query<Since>) -> Response {
    let limit = q.limit.unwrap_or(EVENTS_PER_UPDATE).min(EVENTS_PER_UPDATE);
    json(events_json(&board, q.since, limit))
}

async fn metrics(State(board): State<Arc<Board>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus::render(&board.status()),
    )
        .into_response()
}

/// A page's stream: one `update` event per publication (at most one per
/// [`super::PERIOD`]), each with the status and the task-stream events since the
/// last one sent. A page behind by more than [`EVENTS_PER_UPDATE`] events gets
/// them in several updates at once, so none is skipped while the board has it.
async fn updates(
    State(board): State<Arc<Board>>,
    Query(q): Query<Since>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, (StatusCode, String)> {
    if board.pages() >= MAX_LIVE_PAGES {
        let refusal = format!(
            "{MAX_LIVE_PAGES} dashboard pages are following this scheduler already; close one\n"
        );
        return Err((StatusCode::SERVICE_UNAVAILABLE, refusal));
    }
    let rx = board.subscribe();
    let start = (board, rx, q.since, true);
    let s = stream::unfold(start, |(board, mut rx, since, now)| async move {
        if !now {
            // The next publication (they come at most one per period).
            rx.changed().await.ok()?;
        }
        rx.borrow_and_update();
        let (events, next) = board.events_after(since, EVENTS_PER_UPDATE);
        let behind = next < board.status().stream_end;
        let body = format!(
            "{{\"status\":{},\"events\":{},\"next\":{next}}}",
            board.status_json(),
            serde_json::to_string(&events).unwrap_or_else(|_| "[]".into())
        );
        let event = Event::default().event("update").data(body);
        Some((Ok(event), (board, rx, next, behind)))
    });
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The most pages that follow the live updates at once (each holds a
/// connection and a subscription to every publication).
pub(super) const MAX_LIVE_PAGES: usize = 64;
