//! What one worker learns about a function reaches every worker.

mod env;

use env::{Env, FUNC};
use shoal_core::{Command, Event};
use shoal_proto::{FunctionKinds, SchedulerToWorker, WorkerId, WorkerToScheduler};

/// The `Learnt` messages sent, by worker, taking all commands.
fn learnt(env: &mut Env) -> Vec<(WorkerId, FunctionKinds)> {
    env.take()
        .into_iter()
        .filter_map(|c| match c {
            Command::ToWorker(w, SchedulerToWorker::Learnt(k)) => Some((w, k)),
            _ => None,
        })
        .collect()
}

fn kinds(blocking: &[u64], computing: &[u64]) -> FunctionKinds {
    FunctionKinds {
        blocking: blocking.to_vec(),
        computing: computing.to_vec(),
    }
}

fn report(env: &mut Env, w: WorkerId, k: FunctionKinds) {
    env.event(Event::FromWorker(w, WorkerToScheduler::Learnt(k)));
}

#[test]
fn a_function_seen_blocking_is_told_to_the_other_workers_and_to_joiners() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    let w2 = env.worker(1);
    let w3 = env.worker(1);
    env.take();
    report(&mut env, w1, kinds(&[FUNC], &[]));
    let mut told = learnt(&mut env);
    told.sort_by_key(|(w, _)| *w);
    assert_eq!(
        told,
        vec![(w2, kinds(&[FUNC], &[])), (w3, kinds(&[FUNC], &[]))],
        "everyone but the worker that learnt it"
    );
    // Said again by another worker: nothing new, nothing sent.
    report(&mut env, w2, kinds(&[FUNC], &[]));
    assert_eq!(learnt(&mut env), vec![]);
    // A worker that joins later knows it before its first task.
    let w4 = env.worker(1);
    assert_eq!(learnt(&mut env), vec![(w4, kinds(&[FUNC], &[]))]);
    // Then a worker finds its tasks compute after all: everyone unlearns.
    report(&mut env, w3, kinds(&[], &[FUNC]));
    let told: Vec<WorkerId> = learnt(&mut env).into_iter().map(|(w, _)| w).collect();
    assert_eq!(told.len(), 3);
    assert!(!told.contains(&w3));
    let w5 = env.worker(1);
    assert_eq!(learnt(&mut env), vec![], "nothing known to tell {w5}");
}

#[test]
fn a_function_no_client_sent_is_not_kept() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    let _w2 = env.worker(1);
    env.take();
    report(&mut env, w1, kinds(&[FUNC + 1, FUNC + 2], &[]));
    assert_eq!(learnt(&mut env), vec![]);
    let _w3 = env.worker(1);
    assert_eq!(learnt(&mut env), vec![]);
}
