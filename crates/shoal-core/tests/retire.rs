//! Retiring workers gracefully: no new tasks, unique results copied to
//! workers that stay, then `Shutdown`; the answer names who was retired.

mod env;

use env::{task, Env};
use shoal_core::{Event, TaskStateKind};
use shoal_proto::{CoordOp, CoordReply};

fn retire(env: &mut Env, req: u64, workers: &[&str], n: u32) {
    retire_as(env, 1, req, workers, n);
}

fn retire_as(env: &mut Env, client: u64, req: u64, workers: &[&str], n: u32) {
    let op = CoordOp::RetireWorkers {
        workers: workers.iter().map(|w| w.to_string()).collect(),
        n,
    };
    env.coord(client, req, op);
}

fn names(reply: &CoordReply) -> Vec<String> {
    match reply {
        CoordReply::Names(n) => n.clone(),
        other => panic!("expected names, got {other:?}"),
    }
}

#[test]
fn an_idle_worker_without_data_is_told_to_close_at_once() {
    let mut env = Env::new();
    let ws = [env.worker(1), env.worker(1)];
    env.take();
    retire(&mut env, 1, &["127.0.0.1:9002"], 0);
    let s = env.said();
    assert_eq!(s.shutdowns, vec![ws[1]]);
    assert_eq!(names(&s.replies[0].1), vec!["127.0.0.1:9002".to_string()]);
    env.lose(ws[1]);
}

#[test]
fn unique_results_move_to_a_worker_that_stays_before_the_worker_closes() {
    let mut env = Env::new();
    let ws = [env.worker(1), env.worker(1)];
    env.submit(vec![task("big").on(&["w2"]), task("small").on(&["w2"])]);
    env.finish_large(ws[1], "big");
    env.finish(ws[1], "small");
    env.take();
    retire(&mut env, 1, &["127.0.0.1:9002"], 0);
    let s = env.said();
    // Only the large one moves: the scheduler keeps the small one.
    assert_eq!(
        s.fetches,
        vec![(ws[0], "big".to_string(), vec!["127.0.0.1:9002".to_string()])]
    );
    assert!(s.shutdowns.is_empty() && s.replies.is_empty());
    env.fetched(ws[0], &["big"], &[]);
    let s = env.said();
    assert_eq!(s.shutdowns, vec![ws[1]]);
    assert_eq!(names(&s.replies[0].1), vec!["127.0.0.1:9002".to_string()]);
    env.lose(ws[1]);
    assert_eq!(env.core.holders_of("big"), vec![ws[0]]);
    assert_eq!(env.state("small"), Some(TaskStateKind::Memory));
}

#[test]
fn a_retiring_worker_gets_no_new_task_and_finishes_what_it_runs() {
    let mut env = Env::new();
    let ws = [env.worker(1), env.worker(1)];
    env.submit(vec![task("running").on(&["w2"])]);
    env.start(ws[1], "running");
    env.take();
    retire(&mut env, 1, &["127.0.0.1:9002"], 0);
    env.submit(vec![task("later")]);
    let s = env.said();
    assert_eq!(s.computes, vec![(ws[0], "later".to_string())]);
    assert!(s.shutdowns.is_empty());
    env.finish_large(ws[1], "running");
    let s = env.said();
    assert_eq!(s.fetches.len(), 1);
    env.fetched(ws[0], &["running"], &[]);
    assert_eq!(env.said().shutdowns, vec![ws[1]]);
}

#[test]
fn a_worker_whose_data_has_nowhere_to_go_stays() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("big")]);
    env.finish_large(w, "big");
    env.take();
    retire(&mut env, 1, &[], 1);
    let s = env.said();
    assert!(s.shutdowns.is_empty());
    assert_eq!(names(&s.replies[0].1), Vec::<String>::new());
    // It takes work again.
    env.submit(vec![task("next")]);
    assert_eq!(env.said().computes, vec![(w, "next".to_string())]);
}

#[test]
fn failed_copies_are_tried_again_then_the_worker_stays() {
    let mut env = Env::new();
    let ws = [env.worker(1), env.worker(1)];
    env.submit(vec![task("big").on(&["w2"])]);
    env.finish_large(ws[1], "big");
    env.take();
    retire(&mut env, 1, &["w2"], 0);
    for _ in 0..3 {
        let s = env.said();
        assert_eq!(s.fetches.len(), 1, "{s:?}");
        env.fetched(ws[0], &[], &["big"]);
    }
    let s = env.said();
    assert!(s.shutdowns.is_empty() && s.fetches.is_empty());
    assert_eq!(names(&s.replies[0].1), Vec::<String>::new());
}

#[test]
fn n_picks_the_workers_holding_least() {
    let mut env = Env::new();
    let ws = [env.worker(1), env.worker(1), env.worker(1)];
    env.submit(vec![task("a").on(&["w1"]), task("b").on(&["w3"])]);
    env.finish_large(ws[0], "a");
    env.finish_large(ws[2], "b");
    env.take();
    retire(&mut env, 1, &[], 1);
    let s = env.said();
    assert_eq!(s.shutdowns, vec![ws[1]]);
    // A recipient that dies before its copy arrives: another is asked.
    retire(&mut env, 2, &["w3"], 0);
    let s = env.said();
    assert_eq!(s.fetches.len(), 1);
    let to = s.fetches[0].0;
    env.lose(to);
    let s = env.said();
    assert!(s.fetches.iter().all(|f| f.0 != to && f.1 == "b"), "{s:?}");
}

#[test]
fn a_client_that_leaves_stops_its_retirements() {
    let mut env = Env::new();
    let ws = [env.worker(1), env.worker(1)];
    env.submit(vec![task("big").on(&["w2"])]);
    env.finish_large(ws[1], "big");
    env.take();
    env.event(Event::ClientConnected(2));
    retire_as(&mut env, 2, 1, &["w2"], 0);
    assert_eq!(env.said().fetches.len(), 1);
    env.event(Event::ClientDisconnected(2));
    env.submit(vec![task("next").on(&["w2"])]);
    assert_eq!(env.said().computes, vec![(ws[1], "next".to_string())]);
}

fn target(env: &mut Env, req: u64, target_ms: u32) -> u64 {
    env.coord(1, req, CoordOp::AdaptiveTarget { target_ms });
    match env.said().replies.pop() {
        Some((_, CoordReply::Count(n))) => n,
        other => panic!("expected a count, got {other:?}"),
    }
}

#[test]
fn the_adaptive_target_follows_the_work() {
    let mut env = Env::new();
    assert_eq!(target(&mut env, 1, 5000), 0);
    // Work and no worker: one, at the assumed 0.5 s a task.
    env.submit((0..40).map(|i| task(&format!("t{i}"))).collect());
    assert_eq!(target(&mut env, 2, 5000), 4);
    assert_eq!(target(&mut env, 3, 100_000), 1);
    // Never more workers than tasks.
    assert_eq!(target(&mut env, 4, 1), 40);
    // Work done: none wanted.
    let w = env.worker(1);
    for _ in 0..100 {
        let running: Vec<String> = (0..40)
            .map(|i| format!("t{i}"))
            .filter(|k| env.state(k) == Some(TaskStateKind::Assigned(w)))
            .collect();
        if running.is_empty() {
            break;
        }
        for key in running {
            env.finish(w, &key);
        }
    }
    assert!((0..40).all(|i| env.state(&format!("t{i}")) == Some(TaskStateKind::Memory)));
    assert_eq!(target(&mut env, 5, 5000), 0);
}
