//! Worker resources (`resources=`) and loose worker restrictions
//! (`allow_other_workers=`). Every event is followed by the invariant check,
//! which recounts each worker's used resources from its assigned tasks.

mod env;

use env::{task, Env};
use shoal_core::TaskStateKind::*;

#[test]
fn a_task_runs_only_where_its_resources_are_free() {
    let mut env = Env::new();
    let plain = env.worker(8);
    let gpu = env.worker_with(8, &[("GPU", 2.0)]);
    env.submit(vec![
        task("g1").resources(&[("GPU", 1.0)]),
        task("g2").resources(&[("GPU", 1.0)]),
        task("g3").resources(&[("GPU", 1.0)]),
    ]);
    let sent = env.computes();
    assert_eq!(sent.len(), 2, "two GPUs, two tasks");
    assert!(sent.iter().all(|(w, _)| *w == gpu));
    assert_eq!(env.state("g3"), Some(Ready));
    env.finish(gpu, &sent[0].1);
    assert_eq!(env.computes(), vec![(gpu, "g3".to_string())]);
    let _ = plain;
}

#[test]
fn a_task_waits_until_a_worker_with_its_resource_arrives() {
    let mut env = Env::new();
    let _w = env.worker(4);
    env.submit(vec![task("t").resources(&[("MEM", 10e9)])]);
    assert!(env.computes().is_empty());
    let small = env.worker_with(4, &[("MEM", 1e9)]);
    assert!(env.computes().is_empty(), "not enough on {small}");
    let big = env.worker_with(4, &[("MEM", 16e9)]);
    assert_eq!(env.computes(), vec![(big, "t".to_string())]);
}

#[test]
fn resources_come_back_however_a_task_leaves_its_worker() {
    let mut env = Env::new();
    let w1 = env.worker_with(4, &[("GPU", 1.0)]);
    env.submit(vec![
        task("a").resources(&[("GPU", 1.0)]).retries(1),
        task("b").resources(&[("GPU", 1.0)]),
    ]);
    assert_eq!(env.state("a"), Some(Assigned(w1)));
    assert_eq!(env.state("b"), Some(Ready));
    env.fail(w1, "a"); // retried: given back, then one of the two takes it
    assert_eq!(env.computes().len(), 2);
    let w2 = env.worker_with(4, &[("GPU", 1.0)]);
    env.lose(w1);
    let on_w2: Vec<_> = ["a", "b"]
        .iter()
        .filter(|k| env.state(k) == Some(Assigned(w2)))
        .collect();
    assert_eq!(on_w2.len(), 1, "one GPU on the new worker");
    env.finish(w2, on_w2[0]);
    assert!(["a", "b"]
        .iter()
        .any(|k| env.state(k) == Some(Assigned(w2))));
}

#[test]
fn tasks_needing_resources_are_not_stolen() {
    let mut env = Env::new();
    let busy = env.worker_with(1, &[("GPU", 100.0)]);
    env.submit(
        (0..20)
            .map(|i| task(&format!("g{i}")).resources(&[("GPU", 1.0)]))
            .collect(),
    );
    let _idle = env.worker(4);
    env.start(busy, "g0");
    assert!(env.computes().iter().all(|(w, _)| *w == busy));
}

#[test]
fn strict_restrictions_wait_for_their_worker() {
    let mut env = Env::new();
    let _w = env.worker(4);
    env.submit(vec![task("t").on(&["elsewhere"])]);
    assert!(env.computes().is_empty());
    assert_eq!(env.state("t"), Some(Ready));
}

#[test]
fn loose_restrictions_run_anywhere_when_their_worker_is_absent() {
    let mut env = Env::new();
    let w = env.worker(4);
    env.submit(vec![task("t").on(&["elsewhere"]).loose()]);
    assert_eq!(env.computes(), vec![(w, "t".to_string())]);
}

#[test]
fn loose_restrictions_still_prefer_their_worker() {
    let mut env = Env::new();
    let _a = env.worker(4);
    let b = env.worker(4);
    env.submit(
        (0..3)
            .map(|i| task(&format!("t{i}")).on(&[&format!("w{b}")]).loose())
            .collect(),
    );
    assert!(env.computes().iter().all(|(w, _)| *w == b));
}
