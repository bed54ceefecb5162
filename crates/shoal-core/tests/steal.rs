//! Work stealing: an idle worker takes queued tasks from a busy one, only
//! after the busy one gives them back.

mod env;

use env::{task, Env};
use shoal_core::Command;
use shoal_core::Event;
use shoal_core::TaskStateKind::*;
use shoal_proto::{SchedulerToWorker, WorkerToScheduler};

fn steal_requests(env: &mut Env) -> Vec<(u64, Vec<u64>)> {
    env.take()
        .into_iter()
        .filter_map(|c| match c {
            Command::ToWorker(w, SchedulerToWorker::Steal { ids }) => Some((w, ids)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_idle_worker_steals_what_queues_behind_a_long_task() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    let w2 = env.worker(1);
    env.submit(vec![task("long"), task("a"), task("b"), task("c")]);
    // Start "long" wherever it went.
    let Some(Assigned(busy)) = env.state("long") else {
        panic!()
    };
    let other = if busy == w1 { w2 } else { w1 };
    env.start(busy, "long");
    // The other worker finishes everything it has and goes idle.
    for k in ["a", "b", "c"] {
        if env.state(k) == Some(Assigned(other)) {
            env.start(other, k);
            env.finish_with(other, k, 8, 5.0);
        }
    }
    let queued: Vec<&str> = ["a", "b", "c"]
        .into_iter()
        .filter(|k| env.state(k) == Some(Assigned(busy)))
        .collect();
    assert_eq!(queued.len(), 1, "one task waits behind the long one");
    let requests = steal_requests(&mut env);
    assert_eq!(requests, vec![(busy, vec![env.id(queued[0])])]);
    // Until the busy worker answers, nothing moves.
    assert_eq!(env.state(queued[0]), Some(Assigned(busy)));
    env.event(Event::FromWorker(
        busy,
        WorkerToScheduler::GaveBack {
            ids: vec![env.id(queued[0])],
        },
    ));
    assert_eq!(env.state(queued[0]), Some(Assigned(other)));
}

#[test]
fn a_task_that_started_before_the_answer_stays_put() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("long"), task("q")]);
    env.start(w1, "long");
    let w2 = env.worker(1);
    let requests = steal_requests(&mut env);
    assert_eq!(requests, vec![(w1, vec![env.id("q")])]);
    // w1 started q meanwhile and gives nothing back.
    env.event(Event::FromWorker(
        w1,
        WorkerToScheduler::GaveBack { ids: vec![] },
    ));
    assert_eq!(env.state("q"), Some(Assigned(w1)));
    assert_eq!(env.core.assigned_to(w2), 0);
    env.finish(w1, "q");
    assert_eq!(env.state("q"), Some(Memory));
}

#[test]
fn only_one_steal_request_is_in_flight() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("long"), task("q")]);
    env.start(w1, "long");
    env.worker(1);
    assert_eq!(steal_requests(&mut env).len(), 1);
    env.worker(1);
    assert!(steal_requests(&mut env).is_empty());
}

#[test]
fn no_stealing_while_every_worker_is_busy() {
    let mut env = Env::new();
    env.worker(1);
    env.worker(1);
    env.submit((0..4).map(|i| task(&format!("t{i}"))).collect());
    assert!(steal_requests(&mut env).is_empty());
}
