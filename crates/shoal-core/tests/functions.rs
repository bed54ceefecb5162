//! The function table: kept while a connected client sent a function or a
//! task names it, dropped after; the first definition of a hash stays.

mod env;

use bytes::Bytes;
use env::{task, Env, FUNC};
use shoal_core::{Command, Event};
use shoal_proto::{ClientToScheduler, FuncHash, FunctionDef, SchedulerToWorker};

fn def(hash: FuncHash, bytes: &'static [u8]) -> FunctionDef {
    FunctionDef {
        hash,
        name: format!("f{hash}"),
        bytes: Bytes::from_static(bytes),
    }
}

fn send(env: &mut Env, client: u64, f: FunctionDef) {
    env.send(client, ClientToScheduler::Functions(vec![f]));
}

/// The definitions of functions sent to workers, among the commands.
fn sent_to_workers(env: &mut Env) -> Vec<FunctionDef> {
    env.take()
        .into_iter()
        .filter_map(|c| match c {
            Command::ToWorker(_, SchedulerToWorker::Functions(defs)) => Some(defs),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_function_stays_while_a_task_names_it_after_its_sender_left() {
    let mut env = Env::new();
    let w = env.worker(1);
    const G: FuncHash = 7;
    env.event(Event::ClientConnected(2));
    send(&mut env, 2, def(G, b"pickled g"));
    // Client 1 runs a task of the function client 2 sent.
    env.submit(vec![task("t").func(G)]);
    env.event(Event::ClientDisconnected(2));
    assert_eq!(env.core.function_count(), 2, "a task still names it");
    env.start(w, "t");
    env.finish(w, "t");
    env.disown(&["t"]);
    assert_eq!(env.core.task_count(), 0);
    assert_eq!(
        env.core.function_count(),
        1,
        "only client 1's, which is connected"
    );
}

#[test]
fn a_function_stays_while_its_sender_is_connected() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("t")]);
    env.start(w, "t");
    env.finish(w, "t");
    env.disown(&["t"]);
    assert_eq!(env.core.task_count(), 0);
    // Client 1 sent FUNC once on this connection and may name it again.
    assert_eq!(env.core.function_count(), 1);
    env.submit(vec![task("u")]);
    assert!(env.computes().iter().any(|(_, k)| k == "u"));
    env.event(Event::ClientDisconnected(1));
    assert_eq!(env.core.function_count(), 0);
}

#[test]
fn clients_that_come_and_go_leave_no_functions_behind() {
    let mut env = Env::new();
    let w = env.worker(1);
    for c in 2..500u64 {
        env.event(Event::ClientConnected(c));
        // A new lambda each time, as a notebook redefines one.
        send(&mut env, c, def(1000 + c, b"pickled lambda"));
        let key = format!("t{c}");
        env.submit_as(c, vec![task(&key).func(1000 + c)]);
        env.start(w, &key);
        env.finish(w, &key);
        env.event(Event::ClientDisconnected(c));
    }
    assert_eq!(env.core.task_count(), 0);
    assert_eq!(env.core.function_count(), 1, "client 1's only");
}

#[test]
fn a_later_client_cannot_replace_a_kept_function() {
    let mut env = Env::new();
    env.event(Event::ClientConnected(2));
    send(&mut env, 2, def(FUNC, b"something else"));
    let w = env.worker(1);
    env.take();
    env.submit_as(2, vec![task("t")]);
    let defs = sent_to_workers(&mut env);
    assert_eq!(defs.len(), 1);
    assert_eq!(
        &defs[0].bytes[..],
        b"pickled f",
        "the first definition runs"
    );
    env.start(w, "t");
    env.finish(w, "t");
    // Its sender leaves: the function is kept for client 2, who sent the
    // same hash, until it leaves too.
    env.event(Event::ClientDisconnected(1));
    assert_eq!(env.core.function_count(), 1);
    env.event(Event::ClientDisconnected(2));
    assert_eq!(env.core.function_count(), 0);
}

#[test]
fn a_function_dropped_is_forgotten_as_blocking_too() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.event(Event::FromWorker(
        w,
        shoal_proto::WorkerToScheduler::Learnt(shoal_proto::FunctionKinds::blocks(vec![FUNC])),
    ));
    env.event(Event::ClientDisconnected(1));
    assert_eq!(env.core.function_count(), 0);
    // The invariants (checked after every event) hold: no blocking
    // function the table does not keep; a joiner is told nothing.
    let _ = env.worker(1);
    let told = env
        .take()
        .into_iter()
        .any(|c| matches!(c, Command::ToWorker(_, SchedulerToWorker::Learnt(_))));
    assert!(!told);
}
