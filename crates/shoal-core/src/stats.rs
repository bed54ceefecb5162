//! What the dashboard and `get_task_stream` read: counts of tasks by state
//! per task prefix (the function name a key starts with), and a bounded ring
//! of recently finished tasks.
//!
//! Both cost O(1) per task transition and a bounded amount of memory,
//! whatever the number of tasks: a prefix is interned once, and the ring
//! forgets the oldest event when it is full. Keys named without a shared
//! prefix (`task_1`, `task_2`, ...) make a prefix each: once the table holds
//! [`PREFIXES_KEPT`] or twice its live prefixes, those with no task left are
//! dropped (their history with them) and their slots used again.

use std::collections::VecDeque;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::Serialize;
use shoal_proto::Timing;

use crate::task::TaskState;

/// The states a task is counted in, as the dashboard names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    Released = 0,
    Waiting = 1,
    Queued = 2,
    Processing = 3,
    Memory = 4,
    Erred = 5,
}

const BUCKETS: usize = 6;

impl Bucket {
    pub fn of(state: &TaskState) -> Bucket {
        match state {
            TaskState::Released => Bucket::Released,
            TaskState::Waiting => Bucket::Waiting,
            TaskState::Ready => Bucket::Queued,
            TaskState::Assigned { .. } => Bucket::Processing,
            TaskState::Memory { .. } => Bucket::Memory,
            TaskState::Erred => Bucket::Erred,
        }
    }
}

/// Counts of tasks in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub released: u64,
    pub waiting: u64,
    pub queued: u64,
    pub processing: u64,
    pub memory: u64,
    pub erred: u64,
}

impl StateCounts {
    fn from_array(a: &[u64; BUCKETS]) -> StateCounts {
        StateCounts {
            released: a[0],
            waiting: a[1],
            queued: a[2],
            processing: a[3],
            memory: a[4],
            erred: a[5],
        }
    }

    /// Tasks the scheduler remembers.
    pub fn total(&self) -> u64 {
        self.released + self.waiting + self.queued + self.processing + self.memory + self.erred
    }
}

/// One task prefix's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixStats {
    pub name: Arc<str>,
    /// Tasks now in each state.
    pub states: StateCounts,
    /// Computations that finished (successfully) since the start.
    pub completed: u64,
    /// Computations that raised since the start (retried ones included).
    pub failed: u64,
    /// Seconds spent computing by the completed ones.
    pub compute_seconds: f64,
}

/// A task that finished or failed on a worker. Serialized for the
/// dashboard's pages, which show functions, without its key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskEvent {
    /// Position in the stream since the scheduler started (from 0).
    pub seq: u64,
    #[serde(skip)]
    pub key: Box<str>,
    /// Its key's prefix (its function's name).
    pub name: Arc<str>,
    /// The data address of the worker it ran on.
    pub worker: Arc<str>,
    /// The worker's clock: seconds since the epoch; and its thread id.
    pub start: f64,
    pub stop: f64,
    pub thread: u64,
    pub ok: bool,
    pub nbytes: u64,
}

/// What a worker said about a computation that ended.
pub(crate) struct Ran {
    /// False if it raised.
    pub ok: bool,
    /// Seconds it computed, as the worker measured.
    pub duration: f64,
    pub nbytes: u64,
    pub timing: Option<Timing>,
}

/// Events kept when nothing else is said: a few megabytes.
pub const DEFAULT_STREAM_LEN: usize = 50_000;

pub(crate) struct Stats {
    /// Each slot's prefix; empty for a slot free to be used again.
    names: Vec<Arc<str>>,
    index: FxHashMap<Arc<str>, u32>,
    counts: Vec<[u64; BUCKETS]>,
    completed: Vec<u64>,
    failed: Vec<u64>,
    seconds: Vec<f64>,
    /// Slots whose prefix was dropped.
    free: Vec<u32>,
    /// The table's size at which prefixes without tasks are dropped next.
    sweep_at: usize,
    /// Tasks completed and failed ever, across dropped prefixes too.
    completed_total: u64,
    failed_total: u64,
    stream: VecDeque<TaskEvent>,
    stream_len: usize,
    next_seq: u64,
}

/// Prefixes kept, at least, before those without tasks are dropped.
pub const PREFIXES_KEPT: usize = 4096;

/// The prefix of a key, as Dask's `key_split` finds it: the name before a
/// trailing token (`inc-5f4e...` -> `inc`), without tuple decoration
/// (`('sum-abc', 3)` -> `sum`), and with lambdas and wrappers kept readable.
pub fn key_prefix(key: &str) -> &str {
    let mut k = key;
    if let Some(rest) = k.strip_prefix("('") {
        k = rest.split('\'').next().unwrap_or(rest);
    }
    let mut end = 0;
    for (i, word) in k.split('-').enumerate() {
        if i > 0 && looks_like_token(word) {
            break;
        }
        end += word.len() + usize::from(i > 0);
    }
    let head = &k[..end.min(k.len())];
    if head.is_empty() {
        k
    } else {
        head
    }
}

/// A word that is a hash or a counter rather than part of a name.
fn looks_like_token(word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    let hex = word.len() >= 8 && word.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = word.bytes().all(|b| b.is_ascii_digit());
    hex || digits
}

impl Stats {
    pub fn new(stream_len: usize) -> Stats {
        Stats {
            names: Vec::new(),
            index: FxHashMap::default(),
            counts: Vec::new(),
            completed: Vec::new(),
            failed: Vec::new(),
            seconds: Vec::new(),
            free: Vec::new(),
            sweep_at: PREFIXES_KEPT,
            completed_total: 0,
            failed_total: 0,
            stream: VecDeque::new(),
            stream_len,
            next_seq: 0,
        }
    }

    /// The prefix id of `key`, interning its prefix on first sight.
    pub fn prefix_of(&mut self, key: &str) -> u32 {
        let name = key_prefix(key);
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        if self.free.is_empty() && self.names.len() >= self.sweep_at {
            self.drop_idle_prefixes();
        }
        let name: Arc<str> = Arc::from(name);
        if let Some(i) = self.free.pop() {
            self.names[i as usize] = name.clone();
            self.index.insert(name, i);
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.clone());
        self.index.insert(name, i);
        self.counts.push([0; BUCKETS]);
        self.completed.push(0);
        self.failed.push(0);
        self.seconds.push(0.0);
        i
    }

    /// Frees the slots of prefixes no task is counted under (O(table),
    /// at most once per doubling of the live prefixes).
    fn drop_idle_prefixes(&mut self) {
        for i in 0..self.names.len() {
            if self.names[i].is_empty() || self.counts[i] != [0; BUCKETS] {
                continue;
            }
            self.index.remove(&self.names[i]);
            self.names[i] = Arc::from("");
            self.completed[i] = 0;
            self.failed[i] = 0;
            self.seconds[i] = 0.0;
            self.free.push(i as u32);
        }
        let live = self.names.len() - self.free.len();
        self.sweep_at = PREFIXES_KEPT.max(2 * live);
    }

    /// Prefix slots in use and free, for tests of the bound.
    pub fn prefix_slots(&self) -> usize {
        self.names.len()
    }

    /// The free slots are empty and unnamed, and the index names exactly
    /// the others.
    pub fn check_slots(&self) -> Result<(), String> {
        for &i in &self.free {
            let i = i as usize;
            if !self.names[i].is_empty() || self.counts[i] != [0; BUCKETS] {
                return Err(format!("free prefix slot {i} is in use"));
            }
        }
        if self.index.len() + self.free.len() != self.names.len() {
            return Err(format!(
                "{} prefixes indexed, {} free, {} slots",
                self.index.len(),
                self.free.len(),
                self.names.len()
            ));
        }
        Ok(())
    }

    /// The mean seconds a completed task of `prefix` computed for, once
    /// one has.
    pub fn mean_seconds(&self, prefix: u32) -> Option<f64> {
        let p = prefix as usize;
        let n = *self.completed.get(p)?;
        (n > 0).then(|| self.seconds[p] / n as f64)
    }

    pub fn added(&mut self, prefix: u32, to: Bucket) {
        self.counts[prefix as usize][to as usize] += 1;
    }

    pub fn moved(&mut self, prefix: u32, from: Bucket, to: Bucket) {
        if from != to {
            let c = &mut self.counts[prefix as usize];
            c[from as usize] = c[from as usize].saturating_sub(1);
            c[to as usize] += 1;
        }
    }

    pub fn removed(&mut self, prefix: u32, from: Bucket) {
        let c = &mut self.counts[prefix as usize];
        c[from as usize] = c[from as usize].saturating_sub(1);
    }

    /// A computation of `key` ended on `worker`.
    pub fn ran(&mut self, key: &str, prefix: u32, worker: &Arc<str>, ran: &Ran) {
        let p = prefix as usize;
        if ran.ok {
            self.completed_total += 1;
            self.completed[p] += 1;
            if ran.duration.is_finite() && ran.duration > 0.0 {
                self.seconds[p] += ran.duration;
            }
        } else {
            self.failed_total += 1;
            self.failed[p] += 1;
        }
        if self.stream_len == 0 {
            return;
        }
        let Some(t) = &ran.timing else {
            return;
        };
        if self.stream.len() >= self.stream_len {
            self.stream.pop_front();
        }
        self.stream.push_back(TaskEvent {
            seq: self.next_seq,
            key: key.into(),
            name: self.names[p].clone(),
            worker: worker.clone(),
            start: t.start,
            stop: t.stop,
            thread: t.thread,
            ok: ran.ok,
            nbytes: ran.nbytes,
        });
        self.next_seq += 1;
    }

    pub fn prefix_names(&self) -> &[Arc<str>] {
        &self.names
    }

    /// Tasks completed and failed ever.
    pub fn ran_totals(&self) -> (u64, u64) {
        (self.completed_total, self.failed_total)
    }

    /// Every slot's figures, a free slot's (its name empty) included.
    pub fn prefixes(&self) -> Vec<PrefixStats> {
        (0..self.names.len())
            .map(|i| PrefixStats {
                name: self.names[i].clone(),
                states: StateCounts::from_array(&self.counts[i]),
                completed: self.completed[i],
                failed: self.failed[i],
                compute_seconds: self.seconds[i],
            })
            .collect()
    }

    pub fn totals(&self) -> StateCounts {
        let mut sum = [0u64; BUCKETS];
        for c in &self.counts {
            for (s, v) in sum.iter_mut().zip(c) {
                *s += v;
            }
        }
        StateCounts::from_array(&sum)
    }

    /// Events from `since` on (at most `limit`, the newest if there are
    /// more), and the sequence number to ask from next time.
    pub fn stream_since(&self, since: u64, limit: usize) -> (Vec<TaskEvent>, u64) {
        let first = self.stream.front().map_or(self.next_seq, |e| e.seq);
        let from = since.clamp(first, self.next_seq);
        let available = self.next_seq.saturating_sub(from) as usize;
        let skip = (from - first) as usize + available.saturating_sub(limit);
        let events = self.stream.iter().skip(skip).cloned().collect();
        (events, self.next_seq)
    }

    /// The number of events ever recorded.
    #[cfg(test)]
    pub fn stream_end(&self) -> u64 {
        self.next_seq
    }

    #[cfg(test)]
    pub fn stream_len(&self) -> usize {
        self.stream.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(ok: bool, timing: Option<f64>) -> Ran {
        Ran {
            ok,
            duration: 0.5,
            nbytes: 8,
            timing: timing.map(|start| Timing {
                start,
                stop: start + 1.0,
                thread: 7,
            }),
        }
    }

    #[test]
    fn prefixes_follow_dask_key_names() {
        assert_eq!(key_prefix("inc-5f4e3c2b1a0d9e8f"), "inc");
        assert_eq!(
            key_prefix("scrape_tag-0a1b2c3d4e5f6789abcdef"),
            "scrape_tag"
        );
        assert_eq!(key_prefix("read-csv-5f4e3c2b1a0d9e8f"), "read-csv");
        assert_eq!(key_prefix("('sum-5f4e3c2b1a0d9e8f', 3)"), "sum");
        assert_eq!(key_prefix("x-1"), "x");
        assert_eq!(key_prefix("lambda-deadbeefdeadbeef"), "lambda");
        assert_eq!(key_prefix("plain"), "plain");
        assert_eq!(key_prefix("-"), "-");
        assert_eq!(key_prefix(""), "");
    }

    #[test]
    fn counts_move_between_states() {
        let mut s = Stats::new(10);
        let a = s.prefix_of("inc-11111111");
        let b = s.prefix_of("add-22222222");
        assert_eq!(s.prefix_of("inc-33333333"), a, "one prefix per name");
        s.added(a, Bucket::Released);
        s.added(a, Bucket::Released);
        s.added(b, Bucket::Released);
        s.moved(a, Bucket::Released, Bucket::Queued);
        s.moved(a, Bucket::Queued, Bucket::Processing);
        s.moved(b, Bucket::Released, Bucket::Waiting);
        s.removed(a, Bucket::Released);
        let p = s.prefixes();
        assert_eq!(p[0].states.processing, 1);
        assert_eq!(p[0].states.released, 0);
        assert_eq!(p[1].states.waiting, 1);
        assert_eq!(s.totals().total(), 2);
    }

    #[test]
    fn the_stream_is_bounded_at_any_task_count() {
        let w: Arc<str> = "127.0.0.1:1".into();
        let mut s = Stats::new(100);
        let p = s.prefix_of("f-1");
        for i in 0..100_000 {
            s.ran("f-1", p, &w, &ran(i % 7 != 0, Some(i as f64)));
            assert!(s.stream_len() <= 100);
        }
        assert_eq!(s.stream_end(), 100_000);
        let (events, next) = s.stream_since(0, usize::MAX);
        assert_eq!(events.len(), 100, "only the newest are kept");
        assert_eq!(events[0].seq, 99_900);
        assert_eq!(next, 100_000);
        let (events, _) = s.stream_since(99_990, usize::MAX);
        assert_eq!(events.len(), 10);
        let (events, _) = s.stream_since(99_900, 3);
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![99_997, 99_998, 99_999],
            "a limit keeps the newest"
        );
        assert!(s.stream_since(next, 10).0.is_empty());
        let p = &s.prefixes()[0];
        assert_eq!(p.completed + p.failed, 100_000);
        assert_eq!(p.failed, (0..100_000).filter(|i| i % 7 == 0).count() as u64);
    }

    #[test]
    fn no_stream_without_timing_or_room() {
        let w: Arc<str> = "127.0.0.1:1".into();
        let mut s = Stats::new(0);
        let p = s.prefix_of("f-1");
        s.ran("f-1", p, &w, &ran(true, Some(0.0)));
        assert_eq!(s.stream_len(), 0);
        assert_eq!(s.prefixes()[0].completed, 1);
        let mut s = Stats::new(10);
        s.prefix_of("f-1");
        s.ran("f-1", p, &w, &ran(true, None));
        assert_eq!(s.stream_len(), 0);
    }
}
