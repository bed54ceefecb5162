//! Which task runs where and when.

mod env;

use env::{task, Env};
use shoal_core::TaskStateKind::*;

#[test]
fn higher_priority_runs_first_then_submission_order() {
    let mut env = Env::new();
    env.submit(vec![task("low1"), task("low2"), task("high").priority(10)]);
    let w = env.worker(1);
    // One thread plus one queued slot while durations are unknown.
    let keys: Vec<String> = env.computes().into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, vec!["high".to_string(), "low1".to_string()]);
    env.finish(w, "high");
    let keys: Vec<String> = env.computes().into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, vec!["low2".to_string()]);
}

#[test]
fn a_task_reading_results_goes_before_new_roots() {
    // Dask's memory discipline: the step that consumes two fresh blocks
    // runs before more blocks are made, whatever their submission order.
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![
        task("r0").unwanted(),
        task("r1").unwanted(),
        task("r2"),
        task("r3"),
        task("sum").deps(&["r0", "r1"]),
    ]);
    let keys: Vec<String> = env.computes().into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, vec!["r0".to_string(), "r1".to_string()]);
    // Long tasks: the window stays at one queued task.
    env.finish_with(w, "r0", 8, 10.0);
    let keys: Vec<String> = env.computes().into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, vec!["r2".to_string()], "nothing reads r0 alone yet");
    env.finish_with(w, "r1", 8, 10.0);
    let keys: Vec<String> = env.computes().into_iter().map(|(_, k)| k).collect();
    assert_eq!(keys, vec!["sum".to_string()], "sum before r3");
}

#[test]
fn work_is_spread_over_workers_by_load() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    let w2 = env.worker(1);
    env.submit((0..4).map(|i| task(&format!("t{i}"))).collect());
    assert_eq!(env.core.assigned_to(w1), 2);
    assert_eq!(env.core.assigned_to(w2), 2);
}

/// Tasks a one-thread worker holds at most: the running one and the
/// largest queue.
fn full_window() -> usize {
    1 + shoal_core::CoreConfig::default().max_queued_per_thread as usize
}

#[test]
fn short_tasks_widen_the_window_and_long_ones_narrow_it() {
    let mut env = Env::new();
    let w = env.worker(1);
    let full = full_window();
    env.submit((0..2 * full).map(|i| task(&format!("t{i}"))).collect());
    assert_eq!(env.core.assigned_to(w), 2, "unknown durations: one queued");
    env.finish_with(w, "t0", 8, 0.000_01);
    assert_eq!(env.core.assigned_to(w), full, "tiny tasks: the full window");
    for i in 1..60 {
        env.finish_with(w, &format!("t{i}"), 8, 10.0);
    }
    assert_eq!(
        env.core.assigned_to(w),
        full - 59,
        "long tasks: none added until the queue is below one queued"
    );
}

#[test]
fn restricted_tasks_run_only_where_allowed_and_wait_for_that_worker() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("pinned").on(&["w2"]), task("free")]);
    assert_eq!(env.state("pinned"), Some(Ready));
    assert_eq!(env.state("free"), Some(Assigned(w1)));
    let w2 = env.worker(1);
    assert_eq!(env.state("pinned"), Some(Assigned(w2)));
}

#[test]
fn restriction_by_address_works_too() {
    let mut env = Env::new();
    env.worker(1);
    let w2 = env.worker(1);
    env.submit(vec![task("pinned").on(&["127.0.0.1:9002"])]);
    assert_eq!(env.state("pinned"), Some(Assigned(w2)));
}

#[test]
fn a_blocked_restricted_task_does_not_hold_up_others() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![
        task("pinned").on(&["nowhere"]).priority(5),
        task("a"),
        task("b"),
    ]);
    assert_eq!(env.state("a"), Some(Assigned(w1)));
    assert_eq!(env.state("b"), Some(Assigned(w1)));
    assert_eq!(env.state("pinned"), Some(Ready));
}

#[test]
fn a_reduction_tree_runs_depth_first_and_holds_few_results() {
    let mut env = Env::new();
    // 64 leaves and their pairwise sums, in the post-order the client uses.
    fn build(lo: usize, hi: usize, out: &mut Vec<env::TaskBuilder>) -> String {
        if hi - lo == 1 {
            let k = format!("l{lo}");
            out.push(task(&k).unwanted());
            return k;
        }
        let mid = (lo + hi) / 2;
        let a = build(lo, mid, out);
        let b = build(mid, hi, out);
        let k = format!("s{lo}-{hi}");
        out.push(task(&k).deps(&[&a, &b]).unwanted());
        k
    }
    let mut specs = Vec::new();
    let root = build(0, 64, &mut specs);
    let keys: Vec<String> = specs.iter().map(|t| t.clone_key()).collect();
    let last = specs.pop().expect("root");
    specs.push(last.wanted());
    env.submit(specs);
    let w = env.worker(1);
    let mut most_held = 0;
    while env.state(&root) != Some(Memory) {
        let running = keys
            .iter()
            .find(|k| env.state(k) == Some(Assigned(w)))
            .cloned()
            .expect("something runs");
        env.finish_with(w, &running, 8, 10.0);
        let held = keys.iter().filter(|k| env.state(k) == Some(Memory)).count();
        most_held = most_held.max(held);
    }
    // Depth-first: about one result per level (6) plus the lookahead, never
    // the 64 leaves a breadth-first order would hold.
    assert!(most_held <= 8, "held {most_held} results at once");
}

#[test]
fn the_window_follows_the_capacity_a_worker_reports() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    let w2 = env.worker(1);
    env.submit((0..100).map(|i| task(&format!("t{i}"))).collect());
    assert_eq!(env.core.assigned_to(w1), 2, "one thread, one queued");
    // w1's tasks wait on the network: it can run ten at once.
    env.capacity(w1, 10);
    assert_eq!(env.core.assigned_to(w1), 20, "ten running, ten queued");
    assert_eq!(env.core.assigned_to(w2), 2);
    // Back to CPU-bound work: it shrinks again, and keeps what it has.
    env.capacity(w1, 1);
    assert_eq!(env.core.assigned_to(w1), 20);
    for i in 0..20 {
        let key = format!("t{i}");
        if env.state(&key) == Some(Assigned(w1)) {
            // Long tasks: the queue per slot stays at one.
            env.finish_with(w1, &key, 8, 10.0);
        }
    }
    assert_eq!(env.core.assigned_to(w1), 2);
}

#[test]
fn a_capacity_report_is_bounded() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.capacity(w, u32::MAX);
    env.submit((0..10).map(|i| task(&format!("x{i}"))).collect());
    assert_eq!(env.core.assigned_to(w), 10, "all of them, and no overflow");
}

#[test]
fn a_worker_whose_threads_all_run_cancelled_tasks_gets_nothing_new() {
    // Its one thread still runs a task the scheduler cancelled: it reports
    // no slot, so new work goes to the idle worker.
    let mut env = Env::new();
    let busy = env.worker(1);
    env.capacity(busy, 0);
    let idle = env.worker(1);
    env.submit(vec![task("a"), task("b")]);
    assert_eq!(env.core.assigned_to(busy), 0);
    assert_eq!(env.core.assigned_to(idle), 2);
    // Alone, it takes work again once the cancelled task's thread is free.
    env.submit(vec![task("c"), task("d"), task("e")]);
    assert_eq!(env.state("e"), Some(Ready));
    env.capacity(busy, 1);
    assert_eq!(env.core.assigned_to(busy), 1 + 1, "a slot and its queue");
}

#[test]
fn a_task_waits_for_the_busy_holder_of_a_large_input_but_moves_a_small_one() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("big"), task("small")]);
    env.finish_with(w1, "big", 50_000_000, 0.01);
    env.finish_with(w1, "small", 1000, 0.01);
    // w1 busy with a queue of its own; then w2 joins, idle.
    env.submit((0..2).map(|i| task(&format!("busy{i}"))).collect());
    let w2 = env.worker(1);
    env.submit(vec![task("uses-big").deps(&["big"])]);
    assert_eq!(
        env.state("uses-big"),
        Some(Ready),
        "moving 50 MB takes longer than waiting for w1"
    );
    env.submit(vec![task("uses-small").deps(&["small"])]);
    assert!(matches!(env.state("uses-small"), Some(Assigned(_))));
    // Once w1 has room, the task goes where its input is.
    for i in 0..2 {
        let key = format!("busy{i}");
        if env.state(&key) == Some(Assigned(w1)) {
            env.finish(w1, &key);
        }
    }
    assert_eq!(env.state("uses-big"), Some(Assigned(w1)));
    assert_ne!(w1, w2);
}

#[test]
fn a_queue_of_slow_tasks_is_weighed_by_their_own_durations() {
    // A shuffle: thousands of tiny `getitem`s make the mean of all tasks
    // look like nothing, while its sorts take 50 ms each. A sort whose
    // input sits on a worker queued full of sorts must not wait there
    // while another worker idles: moving 2 MB is quicker.
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("part"), task("sort-0")]);
    env.finish_with(w1, "part", 2_000_000, 0.05);
    env.finish_with(w1, "sort-0", 10, 0.05);
    for i in 0..100 {
        let key = format!("getitem-{i}");
        env.submit(vec![task(&key)]);
        env.finish_with(w1, &key, 10, 0.000_01);
    }
    let full = full_window();
    env.submit((1..=full).map(|i| task(&format!("sort-{i}"))).collect());
    assert_eq!(env.core.assigned_to(w1), full, "the full window, all sorts");
    let w2 = env.worker(1);
    env.submit(vec![task("sort-x").deps(&["part"])]);
    assert_eq!(env.state("sort-x"), Some(Assigned(w2)));
}
