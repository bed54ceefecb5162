//! Queues, variables, locks, semaphores, events, datasets and topics held
//! by the scheduler: one reply per request, timeouts by the core's clock,
//! leases returned when their client goes, futures kept while held.

mod env;

use bytes::Bytes;
use env::{task, Env};
use shoal_core::{Command, CoreConfig, Event};
use shoal_proto::{
    ClientId, ClientToScheduler, CoordOp, CoordReply, Held, Payload, Removal, SchedulerToClient,
};

fn ask(env: &mut Env, c: ClientId, req: u64, op: CoordOp, timeout: Option<f64>) {
    env.send(c, ClientToScheduler::Coord { req, op, timeout });
}

/// The replies said so far, as (client, req, reply); takes all commands.
fn replies(env: &mut Env) -> Vec<(ClientId, u64, CoordReply)> {
    env.take()
        .into_iter()
        .filter_map(|c| match c {
            Command::ToClient(to, SchedulerToClient::CoordReply { req, reply }) => {
                Some((to, req, reply))
            }
            _ => None,
        })
        .collect()
}

fn value(b: &'static [u8]) -> Held {
    Held {
        value: Payload::single(Bytes::from_static(b)),
        keys: vec![],
    }
}

fn holding(key: &str) -> Held {
    Held {
        value: Payload::single(Bytes::from_static(b"future")),
        keys: vec![key.to_string()],
    }
}

fn put(name: &str, item: Held) -> CoordOp {
    CoordOp::QueuePut {
        name: name.into(),
        item,
    }
}

fn get(name: &str, count: u32) -> CoordOp {
    CoordOp::QueueGet {
        name: name.into(),
        count,
    }
}

fn acquire(name: &str, max: u32, lease: u64) -> CoordOp {
    CoordOp::Acquire {
        name: name.into(),
        max_leases: max,
        lease,
    }
}

#[test]
fn a_get_waits_for_a_put_and_items_come_out_in_order() {
    let mut env = Env::new();
    ask(&mut env, 1, 1, get("q", 1), None);
    assert!(replies(&mut env).is_empty(), "nothing to get yet");
    ask(&mut env, 1, 2, put("q", value(b"a")), None);
    ask(&mut env, 1, 3, put("q", value(b"b")), None);
    let r = replies(&mut env);
    assert!(r.contains(&(1, 2, CoordReply::Done)));
    assert!(r.contains(&(1, 1, CoordReply::Items(vec![value(b"a")]))));
    ask(
        &mut env,
        1,
        4,
        CoordOp::QueueSize { name: "q".into() },
        None,
    );
    assert_eq!(replies(&mut env), vec![(1, 4, CoordReply::Count(1))]);
    ask(&mut env, 1, 5, get("q", 0), None);
    assert_eq!(
        replies(&mut env),
        vec![(1, 5, CoordReply::Items(vec![value(b"b")]))]
    );
}

#[test]
fn a_batch_get_waits_for_all_its_items() {
    let mut env = Env::new();
    ask(&mut env, 1, 1, get("q", 3), None);
    ask(&mut env, 1, 2, put("q", value(b"1")), None);
    ask(&mut env, 1, 3, put("q", value(b"2")), None);
    assert!(!replies(&mut env).iter().any(|r| r.1 == 1));
    ask(&mut env, 1, 4, put("q", value(b"3")), None);
    let r = replies(&mut env);
    let expected = CoordReply::Items(vec![value(b"1"), value(b"2"), value(b"3")]);
    assert!(r.contains(&(1, 1, expected)));
}

#[test]
fn a_get_times_out_by_the_core_clock_and_a_late_put_stays_queued() {
    let mut env = Env::new();
    env.advance(10.0);
    ask(&mut env, 1, 1, get("q", 1), Some(0.2));
    assert!(replies(&mut env).is_empty());
    assert!(env.core.next_wakeup().is_some_and(|t| t <= 10.2 + 1e-6));
    env.advance(10.1);
    assert!(replies(&mut env).is_empty(), "not yet");
    env.advance(10.21);
    assert_eq!(replies(&mut env), vec![(1, 1, CoordReply::TimedOut)]);
    ask(&mut env, 1, 2, put("q", value(b"x")), None);
    ask(
        &mut env,
        1,
        3,
        CoordOp::QueueSize { name: "q".into() },
        None,
    );
    let r = replies(&mut env);
    assert!(r.contains(&(1, 3, CoordReply::Count(1))), "{r:?}");
}

#[test]
fn a_full_queue_holds_puts_until_there_is_room() {
    let mut env = Env::new();
    let create = CoordOp::QueueCreate {
        name: "q".into(),
        maxsize: 1,
    };
    ask(&mut env, 1, 1, create, None);
    ask(&mut env, 1, 2, put("q", value(b"a")), None);
    ask(&mut env, 1, 3, put("q", value(b"b")), None);
    let r = replies(&mut env);
    assert!(r.contains(&(1, 2, CoordReply::Done)));
    assert!(!r.iter().any(|x| x.1 == 3), "the second put waits");
    ask(&mut env, 1, 4, get("q", 1), None);
    let r = replies(&mut env);
    assert!(r.contains(&(1, 4, CoordReply::Items(vec![value(b"a")]))));
    assert!(
        r.contains(&(1, 3, CoordReply::Done)),
        "room: the put goes in"
    );
    // A put that times out waiting puts nothing.
    ask(&mut env, 1, 5, put("q", value(b"c")), Some(0.0));
    assert_eq!(replies(&mut env), vec![(1, 5, CoordReply::TimedOut)]);
}

#[test]
fn a_future_in_a_queue_is_kept_until_someone_takes_it() {
    let mut env = Env::new();
    let w = env.computed("x");
    ask(&mut env, 1, 1, put("q", holding("x")), None);
    env.take();
    env.disown(&["x"]);
    assert!(env.frees().is_empty(), "the queue keeps x");
    assert!(env.state("x").is_some());
    // Client 2 takes it: it now wants x; the queue lets go.
    env.event(Event::ClientConnected(2));
    ask(&mut env, 2, 1, get("q", 1), None);
    env.take();
    assert!(env.state("x").is_some());
    env.event(Event::ClientDisconnected(2));
    assert_eq!(
        env.frees(),
        vec![(w, "x".to_string())],
        "nobody holds it now"
    );
    assert!(env.state("x").is_none());
}

#[test]
fn a_value_naming_an_unknown_future_is_refused() {
    let mut env = Env::new();
    ask(&mut env, 1, 1, put("q", holding("nope")), None);
    let r = replies(&mut env);
    assert!(matches!(&r[..], [(1, 1, CoordReply::UnknownKeys(k))] if k == &["nope"]));
}

#[test]
fn a_variable_get_waits_for_set_and_a_new_value_releases_the_old_future() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a"), task("b")]);
    env.finish(w, "a");
    env.finish(w, "b");
    ask(
        &mut env,
        1,
        1,
        CoordOp::VariableGet { name: "v".into() },
        None,
    );
    assert!(replies(&mut env).is_empty());
    let set = |item| CoordOp::VariableSet {
        name: "v".into(),
        item,
    };
    ask(&mut env, 1, 2, set(holding("a")), None);
    let r = replies(&mut env);
    assert!(r.contains(&(1, 1, CoordReply::Items(vec![holding("a")]))));
    env.disown(&["a", "b"]);
    // The waiting get made client 1 want a; a disown drops that too.
    env.take();
    assert!(env.state("a").is_some(), "the variable keeps a");
    assert!(env.state("b").is_none());
    ask(&mut env, 1, 3, set(value(b"plain")), None);
    assert!(env.state("a").is_none(), "a new value lets a go");
    ask(
        &mut env,
        1,
        4,
        CoordOp::VariableDelete { name: "v".into() },
        None,
    );
    ask(
        &mut env,
        1,
        5,
        CoordOp::VariableGet { name: "v".into() },
        Some(0.0),
    );
    let r = replies(&mut env);
    assert!(r.contains(&(1, 5, CoordReply::TimedOut)));
}

#[test]
fn a_lock_is_granted_in_order_and_returned_when_its_client_goes() {
    let mut env = Env::new();
    env.event(Event::ClientConnected(2));
    env.event(Event::ClientConnected(3));
    ask(&mut env, 2, 1, acquire("L", 1, 7), None);
    ask(&mut env, 1, 1, acquire("L", 1, 8), None);
    ask(&mut env, 3, 1, acquire("L", 1, 9), None);
    assert_eq!(replies(&mut env), vec![(2, 1, CoordReply::Done)]);
    // Client 2 (say, a worker's client) dies holding the lock.
    env.event(Event::ClientDisconnected(2));
    assert_eq!(replies(&mut env), vec![(1, 1, CoordReply::Done)]);
    let release = |lease| CoordOp::Release {
        name: "L".into(),
        lease,
    };
    ask(&mut env, 1, 2, release(999), None);
    assert_eq!(replies(&mut env), vec![(1, 2, CoordReply::Flag(false))]);
    ask(&mut env, 1, 3, release(8), None);
    let r = replies(&mut env);
    assert!(r.contains(&(1, 3, CoordReply::Flag(true))));
    assert!(r.contains(&(3, 1, CoordReply::Done)));
}

#[test]
fn a_silent_client_loses_its_lock_after_the_lease_timeout_but_keeps_its_futures() {
    // A stopped process (SIGSTOP, a laptop asleep) keeps its connection
    // open: only its silence tells.
    let mut env = Env::new();
    env.event(Event::ClientConnected(2));
    env.submit_as(2, vec![task("mine")]);
    ask(&mut env, 2, 1, acquire("L", 1, 7), None);
    ask(&mut env, 1, 1, acquire("L", 1, 8), None);
    assert_eq!(replies(&mut env), vec![(2, 1, CoordReply::Done)]);
    // Client 1 keeps saying it is there; client 2 says nothing.
    for s in 1..30 {
        env.advance(f64::from(s));
        env.send(1, ClientToScheduler::Heartbeat);
    }
    assert!(
        replies(&mut env).is_empty(),
        "29 s of silence is not enough"
    );
    env.advance(30.0);
    env.send(1, ClientToScheduler::Heartbeat);
    assert_eq!(replies(&mut env), vec![(1, 1, CoordReply::Done)]);
    assert!(env.state("mine").is_some(), "its futures stay");
    // It wakes up: its old lease is gone, the lock is not its to release.
    let release = CoordOp::Release {
        name: "L".into(),
        lease: 7,
    };
    ask(&mut env, 2, 2, release, None);
    assert_eq!(replies(&mut env), vec![(2, 2, CoordReply::Flag(false))]);
}

#[test]
fn a_client_silent_past_the_client_timeout_is_removed_told_and_then_ignored() {
    let mut env = Env::with_config(CoreConfig {
        worker_ttl: None,
        client_timeout: Some(40.0),
        ..CoreConfig::default()
    });
    env.event(Event::ClientConnected(2));
    env.submit_as(2, vec![task("mine"), task("ours")]);
    env.submit_as(1, vec![task("ours")]);
    ask(&mut env, 2, 1, acquire("L", 1, 7), None);
    env.take();
    for s in 1..40 {
        env.advance(f64::from(s));
        env.send(1, ClientToScheduler::Heartbeat);
    }
    let removed = |out: Vec<Command>| -> Vec<(ClientId, SchedulerToClient)> {
        out.into_iter()
            .filter_map(|c| match c {
                Command::RemoveClient(c, m) => Some((c, m)),
                _ => None,
            })
            .collect()
    };
    assert!(
        removed(env.take()).is_empty(),
        "39 s of silence is not enough"
    );
    assert!(env.state("mine").is_some(), "its futures stay until then");
    env.advance(40.0);
    env.send(1, ClientToScheduler::Heartbeat);
    assert_eq!(
        removed(env.take()),
        vec![(
            2,
            SchedulerToClient::Removed(Removal::Silent { seconds: 40.0 })
        )],
        "the silent client alone is removed, and told why"
    );
    assert!(
        env.state("mine").is_none(),
        "what only it wanted is released"
    );
    assert!(
        env.state("ours").is_some(),
        "what another client wants stays"
    );
    ask(&mut env, 1, 2, acquire("L", 1, 8), None);
    assert_eq!(
        replies(&mut env),
        vec![(1, 2, CoordReply::Done)],
        "its lock is free"
    );
    // What it sent before its connection closed is ignored: it does not
    // come back as a client.
    env.submit_as(2, vec![task("late")]);
    env.event(Event::ClientDisconnected(2));
    assert!(env.state("late").is_none());
    for s in 41..100 {
        env.advance(f64::from(s));
        env.send(1, ClientToScheduler::Heartbeat);
    }
    assert!(
        removed(env.take()).is_empty(),
        "a removed client is removed once"
    );
}

#[test]
fn a_semaphore_lends_its_leases_and_a_timed_out_waiter_is_skipped() {
    let mut env = Env::new();
    ask(&mut env, 1, 1, acquire("S", 2, 1), None);
    ask(&mut env, 1, 2, acquire("S", 2, 2), None);
    ask(&mut env, 1, 3, acquire("S", 2, 3), Some(0.5));
    ask(&mut env, 1, 4, acquire("S", 2, 4), None);
    let r = replies(&mut env);
    assert_eq!(r.len(), 2);
    env.advance(1.0);
    assert_eq!(replies(&mut env), vec![(1, 3, CoordReply::TimedOut)]);
    ask(&mut env, 1, 5, CoordOp::Leases { name: "S".into() }, None);
    assert_eq!(replies(&mut env), vec![(1, 5, CoordReply::Count(2))]);
    let release = CoordOp::Release {
        name: "S".into(),
        lease: 1,
    };
    ask(&mut env, 1, 6, release, None);
    let r = replies(&mut env);
    assert!(
        r.contains(&(1, 4, CoordReply::Done)),
        "lease 4 is next, not 3"
    );
}

#[test]
fn a_multi_lock_waits_until_enough_of_its_names_are_free() {
    let mut env = Env::new();
    let multi = |names: &[&str], count, lease| CoordOp::MultiAcquire {
        names: names.iter().map(|s| s.to_string()).collect(),
        count,
        lease,
    };
    ask(&mut env, 1, 1, multi(&["a", "b"], 2, 1), None);
    ask(&mut env, 1, 2, multi(&["b", "c"], 2, 2), None);
    ask(&mut env, 1, 3, multi(&["c", "d"], 1, 3), None);
    let r = replies(&mut env);
    assert!(r.contains(&(1, 1, CoordReply::Done)));
    assert!(r.contains(&(1, 3, CoordReply::Done)), "c is free");
    assert!(!r.iter().any(|x| x.1 == 2));
    ask(&mut env, 1, 4, CoordOp::MultiRelease { lease: 1 }, None);
    assert!(
        !replies(&mut env).iter().any(|x| x.1 == 2),
        "c is still taken"
    );
    ask(&mut env, 1, 5, CoordOp::MultiRelease { lease: 3 }, None);
    assert!(replies(&mut env).contains(&(1, 2, CoordReply::Done)));
    ask(&mut env, 1, 6, multi(&["a"], 2, 9), None);
    assert!(matches!(
        &replies(&mut env)[..],
        [(1, 6, CoordReply::Invalid(_))]
    ));
}

#[test]
fn an_event_wakes_every_waiter_and_clear_makes_them_wait_again() {
    let mut env = Env::new();
    env.event(Event::ClientConnected(2));
    let wait = || CoordOp::EventWait { name: "e".into() };
    ask(&mut env, 1, 1, wait(), None);
    ask(&mut env, 2, 1, wait(), Some(5.0));
    assert!(replies(&mut env).is_empty());
    ask(&mut env, 1, 2, CoordOp::EventSet { name: "e".into() }, None);
    let r = replies(&mut env);
    assert!(r.contains(&(1, 1, CoordReply::Done)) && r.contains(&(2, 1, CoordReply::Done)));
    ask(
        &mut env,
        1,
        3,
        CoordOp::EventClear { name: "e".into() },
        None,
    );
    ask(&mut env, 1, 4, wait(), Some(0.0));
    assert!(replies(&mut env).contains(&(1, 4, CoordReply::TimedOut)));
}

#[test]
fn datasets_are_named_once_unless_replaced() {
    let mut env = Env::new();
    let publish = |replace| CoordOp::DatasetPublish {
        name: "d".into(),
        item: value(b"1"),
        replace,
    };
    ask(&mut env, 1, 1, publish(false), None);
    ask(&mut env, 1, 2, publish(false), None);
    ask(&mut env, 1, 3, publish(true), None);
    ask(&mut env, 1, 4, CoordOp::DatasetList, None);
    ask(
        &mut env,
        1,
        5,
        CoordOp::DatasetDelete { name: "d".into() },
        None,
    );
    ask(
        &mut env,
        1,
        6,
        CoordOp::DatasetGet { name: "d".into() },
        None,
    );
    assert_eq!(
        replies(&mut env),
        vec![
            (1, 1, CoordReply::Done),
            (1, 2, CoordReply::Exists),
            (1, 3, CoordReply::Done),
            (1, 4, CoordReply::Names(vec!["d".into()])),
            (1, 5, CoordReply::Done),
            (1, 6, CoordReply::Missing),
        ]
    );
}

#[test]
fn published_messages_reach_current_subscribers_only() {
    let mut env = Env::new();
    env.event(Event::ClientConnected(2));
    let sub = CoordOp::Subscribe {
        topic: "t".into(),
        sub: 5,
    };
    ask(&mut env, 2, 1, sub, None);
    env.take();
    let publish = || CoordOp::Publish {
        topic: "t".into(),
        message: Payload::single(Bytes::from_static(b"hi")),
    };
    ask(&mut env, 1, 1, publish(), None);
    let out = env.take();
    assert!(out.contains(&Command::ToClient(
        2,
        SchedulerToClient::Published {
            sub: 5,
            message: Payload::single(Bytes::from_static(b"hi")),
        }
    )));
    assert!(out.contains(&Command::ToClient(
        1,
        SchedulerToClient::CoordReply {
            req: 1,
            reply: CoordReply::Count(1)
        }
    )));
    env.event(Event::ClientDisconnected(2));
    ask(&mut env, 1, 2, publish(), None);
    assert_eq!(replies(&mut env), vec![(1, 2, CoordReply::Count(0))]);
}

#[test]
fn a_want_adopts_a_key_and_an_unknown_one_errs() {
    let mut env = Env::new();
    env.computed("x");
    env.event(Event::ClientConnected(2));
    env.send(2, ClientToScheduler::Want(vec!["x".into(), "ghost".into()]));
    let out = env.take();
    let to_2: Vec<_> = out
        .into_iter()
        .filter_map(|c| match c {
            Command::ToClient(2, m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(matches!(&to_2[0], SchedulerToClient::KeyMemory { key, .. } if key == "x"));
    assert!(matches!(&to_2[1], SchedulerToClient::KeyErred { key, .. } if key == "ghost"));
    env.disown(&["x"]);
    assert!(env.frees().is_empty(), "client 2 keeps x");
}

#[test]
fn who_has_what_and_processing_name_workers_by_address() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a"), task("b")]);
    env.finish(w, "a");
    ask(&mut env, 1, 1, CoordOp::WhoHas { keys: vec![] }, None);
    ask(&mut env, 1, 2, CoordOp::HasWhat, None);
    ask(&mut env, 1, 3, CoordOp::Processing, None);
    let r = replies(&mut env);
    let addr = match &r[0].2 {
        CoordReply::Map(m) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].0, "a");
            m[0].1[0].clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        r[1].2,
        CoordReply::Map(vec![(addr.clone(), vec!["a".into()])])
    );
    assert_eq!(r[2].2, CoordReply::Map(vec![(addr, vec!["b".into()])]));
}

#[test]
fn a_fired_and_forgotten_task_runs_to_the_end_without_a_client() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("side-effect")]);
    let ff = CoordOp::FireAndForget {
        keys: vec!["side-effect".into()],
    };
    ask(&mut env, 1, 1, ff, None);
    env.take();
    env.event(Event::ClientDisconnected(1));
    assert!(env.state("side-effect").is_some(), "still wanted: it runs");
    env.finish(w, "side-effect");
    assert!(env.state("side-effect").is_none(), "done: forgotten");
}

#[test]
fn task_call_gives_back_what_a_task_runs() {
    use shoal_proto::FunctionDef;
    let mut env = Env::new();
    env.send(
        1,
        ClientToScheduler::Functions(vec![FunctionDef {
            hash: env::FUNC,
            name: "f".into(),
            bytes: Bytes::from_static(b"pickled f"),
        }]),
    );
    env.submit(vec![task("a"), task("b").deps(&["a"])]);
    env.take();
    let call = |key: &str| CoordOp::TaskCall { key: key.into() };
    ask(&mut env, 1, 1, call("b"), None);
    ask(&mut env, 1, 2, call("nothing"), None);
    let got = replies(&mut env);
    let CoordReply::Items(items) = &got[0].2 else {
        panic!("{got:?}");
    };
    let frames: Vec<&[u8]> = items.iter().map(|h| &h.value.frames[0][..]).collect();
    assert_eq!(frames, vec![&b"pickled f"[..], &b"b"[..], &b"a"[..]]);
    assert_eq!(got[1], (1, 2, CoordReply::Missing));
}
