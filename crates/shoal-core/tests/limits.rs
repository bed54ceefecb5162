//! Cluster-wide limits: concurrency and rate, held by the scheduler.

mod env;

use env::{task, Env};
use shoal_core::TaskStateKind::*;

fn keys(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn no_more_than_the_concurrency_run_and_the_rest_wait_unsent() {
    let mut env = Env::new();
    let w = env.worker(8);
    env.set_limit("db", Some(2), None, None);
    let names = keys(6, "q");
    env.submit(names.iter().map(|k| task(k).limits(&["db"])).collect());
    let sent = env.computes();
    assert_eq!(sent.len(), 2, "two at once");
    assert!(names.iter().filter(|k| env.state(k) == Some(Ready)).count() == 4);
    env.finish(w, &sent[0].1);
    assert_eq!(env.computes().len(), 1, "one finished, one more starts");
}

#[test]
fn a_limited_task_does_not_block_unlimited_ones() {
    let mut env = Env::new();
    let _w = env.worker(1);
    env.set_limit("api", Some(0), None, None);
    env.submit(vec![task("limited").limits(&["api"]), task("free")]);
    let sent: Vec<String> = env.computes().into_iter().map(|(_, k)| k).collect();
    assert_eq!(sent, vec!["free".to_string()]);
    assert_eq!(env.state("limited"), Some(Ready));
}

#[test]
fn a_rate_lets_a_burst_through_then_one_per_interval() {
    let mut env = Env::new();
    let w = env.worker(16);
    env.advance(10.0);
    env.set_limit("api", None, Some(2.0), Some(3.0));
    let names = keys(8, "r");
    env.submit(names.iter().map(|k| task(k).limits(&["api"])).collect());
    assert_eq!(env.computes().len(), 3, "the burst");
    let wake = env
        .core
        .next_wakeup()
        .expect("a wake-up for the next token");
    assert!((wake - 10.5).abs() < 1e-6, "{wake}");
    env.advance(10.49);
    assert!(env.computes().is_empty());
    env.advance(10.5);
    assert_eq!(env.computes().len(), 1, "one token every half second");
    env.advance(11.5);
    assert_eq!(env.computes().len(), 2);
    let _ = w;
}

#[test]
fn limits_change_while_tasks_wait() {
    let mut env = Env::new();
    let _w = env.worker(8);
    env.set_limit("db", Some(0), None, None);
    let names = keys(5, "c");
    env.submit(names.iter().map(|k| task(k).limits(&["db"])).collect());
    assert!(env.computes().is_empty(), "paused");
    env.set_limit("db", Some(3), None, None);
    assert_eq!(env.computes().len(), 3);
}

#[test]
fn slots_come_back_however_a_task_leaves_its_worker() {
    let mut env = Env::new();
    let w1 = env.worker(4);
    env.set_limit("db", Some(1), None, None);
    env.submit(vec![
        task("a").limits(&["db"]).retries(1),
        task("b").limits(&["db"]),
    ]);
    assert_eq!(env.state("a"), Some(Assigned(w1)));
    env.fail(w1, "a"); // retried: its slot is given back, then taken again
    assert_eq!(env.computes().len(), 2);
    let w2 = env.worker(4);
    env.lose(w1); // a goes elsewhere with its slot
    assert_eq!(env.state("a"), Some(Assigned(w2)));
    env.finish(w2, "a");
    assert_eq!(env.state("b"), Some(Assigned(w2)));
}

#[test]
fn every_waiting_task_gets_a_wake_up_until_none_is_left() {
    let mut env = Env::new();
    let w = env.worker(32);
    env.set_limit("api", None, Some(10.0), Some(1.0));
    let names = keys(5, "t");
    env.submit(names.iter().map(|k| task(k).limits(&["api"])).collect());
    let mut sent = env.computes().len();
    assert_eq!(sent, 1);
    // Only the timers the core asks for drive it: no other events come.
    while let Some(at) = env.core.next_wakeup() {
        env.advance(at);
        sent += env.computes().len();
    }
    assert_eq!(sent, 5, "all started on wake-ups alone");
    let _ = w;
}
