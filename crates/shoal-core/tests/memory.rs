//! The scheduler core's memory per task, measured with a counting allocator
//! while a map-then-tree-reduction graph is held in the core.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use shoal_core::{Command, Core, Event};
use shoal_proto::*;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Keys like the client makes: `name-<uuid>` (41 characters).
fn key(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i:08x}-0000-4000-8000-000000000000")
}

fn spec(key: String, deps: Vec<String>, wanted: bool) -> TaskSpec {
    TaskSpec {
        key,
        func: 7,
        // A pickled `((i,), {})` is about this long.
        args: Payload::single(Bytes::from(vec![0x80u8; 24])),
        deps,
        wanted,
        options: 0,
    }
}

#[test]
fn a_held_graph_costs_under_280_bytes_per_task() {
    let mut core = Core::default();
    let mut out: Vec<Command> = Vec::new();
    core.handle(Event::ClientConnected(1), &mut out);
    core.handle(
        Event::FromClient(
            1,
            ClientToScheduler::Functions(vec![FunctionDef {
                hash: 7,
                name: "f".into(),
                bytes: Bytes::from_static(b"f"),
            }]),
        ),
        &mut out,
    );
    let before = LIVE.load(Ordering::Relaxed);
    let leaves = 100_000;
    let mut level: Vec<String> = (0..leaves).map(|i| key("noop", i)).collect();
    let mut specs: Vec<TaskSpec> = level
        .iter()
        .map(|k| spec(k.clone(), vec![], false))
        .collect();
    let mut n = 0;
    while level.len() > 1 {
        let mut next = Vec::new();
        for pair in level.chunks(2) {
            if pair.len() == 1 {
                next.push(pair[0].clone());
                continue;
            }
            n += 1;
            let k = key("add", n);
            specs.push(spec(k.clone(), pair.to_vec(), false));
            next.push(k);
        }
        level = next;
    }
    if let Some(last) = specs.last_mut() {
        last.wanted = true;
    }
    let tasks = specs.len();
    drop(level);
    let chunks: Vec<Vec<TaskSpec>> = specs.chunks(10_000).map(|c| c.to_vec()).collect();
    drop(specs);
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let sub = Submission {
            options: vec![TaskOptions::default()],
            tasks: chunk,
        };
        let msg = if i == last {
            ClientToScheduler::Submit(sub)
        } else {
            ClientToScheduler::SubmitPart(sub)
        };
        core.handle(Event::FromClient(1, msg), &mut out);
    }
    out.clear();
    out.shrink_to_fit();
    let per_task = (LIVE.load(Ordering::Relaxed) - before) as f64 / tasks as f64;
    println!("core memory: {per_task:.0} bytes per task ({tasks} tasks)");
    assert_eq!(core.task_count(), tasks);
    assert!(per_task < 280.0, "{per_task:.0} bytes per task");
}
