//! Copies of results on more than one worker: copies workers report having
//! fetched, and `replicate` rounds.

mod env;

use env::{task, Env};
use shoal_core::{Command, Event};
use shoal_proto::{ClientToScheduler, CoordOp, CoordReply, SchedulerToWorker, WorkerId};

fn replicate(env: &mut Env, req: u64, keys: &[&str], n: u32, workers: &[&str], branching: u32) {
    let op = CoordOp::Replicate {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        n,
        workers: workers.iter().map(|w| w.to_string()).collect(),
        branching,
    };
    env.send(
        1,
        ClientToScheduler::Coord {
            req,
            op,
            timeout: None,
        },
    );
}

/// `n` workers, and `key` computed on the first.
fn cluster_with(n: usize, key: &str) -> (Env, Vec<WorkerId>) {
    let mut env = Env::new();
    let ws: Vec<WorkerId> = (0..n).map(|_| env.worker(1)).collect();
    env.submit(vec![task(key).on(&["w1"])]);
    env.finish(ws[0], key);
    env.take();
    (env, ws)
}

#[test]
fn a_fetched_copy_is_a_holder_and_is_freed_with_its_key() {
    let (mut env, ws) = cluster_with(2, "a");
    env.fetched(ws[1], &["a"], &[]);
    assert_eq!(env.core.holders_of("a"), vec![ws[0], ws[1]]);
    // The first holder dies: the copy keeps the result.
    env.lose(ws[0]);
    assert_eq!(env.core.holders_of("a"), vec![ws[1]]);
    env.disown(&["a"]);
    assert_eq!(env.frees(), vec![(ws[1], "a".to_string())]);
}

#[test]
fn a_copy_of_a_key_freed_meanwhile_is_freed_at_once() {
    let (mut env, ws) = cluster_with(2, "a");
    env.disown(&["a"]);
    env.take();
    env.fetched(ws[1], &["a", "unknown"], &[]);
    let s = env.said();
    assert_eq!(
        s.frees,
        vec![(ws[1], "a".to_string()), (ws[1], "unknown".to_string())]
    );
}

#[test]
fn replicate_copies_in_rounds_of_branching_factor_per_holder() {
    let (mut env, ws) = cluster_with(5, "a");
    replicate(&mut env, 7, &["a"], 0, &[], 2);
    // Round 1: one holder, two new copies.
    let s = env.said();
    assert_eq!(s.fetches.len(), 2, "{s:?}");
    assert!(s.replies.is_empty());
    let first: Vec<WorkerId> = s.fetches.iter().map(|f| f.0).collect();
    assert!(!first.contains(&ws[0]));
    for (w, _, holders) in &s.fetches {
        env.fetched(*w, &["a"], &[]);
        assert_eq!(holders, &vec!["127.0.0.1:9001".to_string()]);
    }
    // Round 2: three holders, the two workers left; each tries a different
    // holder first.
    let s = env.said();
    assert_eq!(s.fetches.len(), 2, "{s:?}");
    assert_ne!(s.fetches[0].2[0], s.fetches[1].2[0]);
    for (w, _, _) in &s.fetches {
        env.fetched(*w, &["a"], &[]);
    }
    let s = env.said();
    assert_eq!(s.replies, vec![(7, CoordReply::Done)]);
    assert_eq!(env.core.holders_of("a").len(), 5);
}

#[test]
fn replicate_to_n_drops_copies_beyond_n() {
    let (mut env, ws) = cluster_with(3, "a");
    env.fetched(ws[1], &["a"], &[]);
    env.fetched(ws[2], &["a"], &[]);
    env.take();
    replicate(&mut env, 1, &["a"], 1, &[], 2);
    let s = env.said();
    assert!(s.fetches.is_empty());
    assert_eq!(s.frees.len(), 2, "{s:?}");
    assert_eq!(s.replies, vec![(1, CoordReply::Done)]);
    assert_eq!(env.core.holders_of("a").len(), 1);
}

#[test]
fn replicate_onto_named_workers_only() {
    let (mut env, ws) = cluster_with(4, "a");
    replicate(&mut env, 1, &["a"], 0, &["w1", "w3"], 4);
    let s = env.said();
    assert_eq!(
        s.fetches,
        vec![(ws[2], "a".to_string(), vec!["127.0.0.1:9001".to_string()])]
    );
    env.fetched(ws[2], &["a"], &[]);
    assert_eq!(env.said().replies, vec![(1, CoordReply::Done)]);
}

#[test]
fn a_failed_or_lost_fetch_is_not_asked_again() {
    let (mut env, ws) = cluster_with(3, "a");
    replicate(&mut env, 1, &["a"], 0, &[], 2);
    let s = env.said();
    assert_eq!(s.fetches.len(), 2);
    env.fetched(ws[1], &[], &["a"]);
    env.lose(ws[2]);
    let s = env.said();
    assert!(s.fetches.is_empty(), "{s:?}");
    assert_eq!(s.replies, vec![(1, CoordReply::Done)]);
    assert_eq!(env.core.holders_of("a"), vec![ws[0]]);
}

#[test]
fn a_key_freed_during_replication_ends_it() {
    let (mut env, ws) = cluster_with(2, "a");
    replicate(&mut env, 1, &["a"], 0, &[], 2);
    assert_eq!(env.said().fetches.len(), 1);
    env.disown(&["a"]);
    env.take();
    env.fetched(ws[1], &["a"], &[]);
    let s = env.said();
    assert_eq!(s.frees, vec![(ws[1], "a".to_string())]);
    assert_eq!(s.replies, vec![(1, CoordReply::Done)]);
}

#[test]
fn bad_requests_are_answered_invalid() {
    let (mut env, _) = cluster_with(2, "a");
    replicate(&mut env, 1, &["a", "nope"], 0, &[], 2);
    replicate(&mut env, 2, &["a"], 0, &[], 0);
    replicate(&mut env, 3, &["a"], 0, &["w9"], 2);
    let s = env.said();
    assert!(s.fetches.is_empty());
    assert!(matches!(&s.replies[0], (1, CoordReply::Invalid(m)) if m.contains("nope")));
    assert!(matches!(&s.replies[1], (2, CoordReply::Invalid(m)) if m.contains("branching")));
    assert!(
        matches!(&s.replies[2], (3, CoordReply::Invalid(m)) if m.contains("no connected worker"))
    );
}

#[test]
fn a_key_not_in_memory_is_done_at_once() {
    let mut env = Env::new();
    env.worker(1);
    env.submit(vec![task("a")]);
    env.take();
    replicate(&mut env, 1, &["a"], 0, &[], 2);
    assert_eq!(env.said().replies, vec![(1, CoordReply::Done)]);
}

#[test]
fn a_client_leaving_ends_its_replications() {
    let (mut env, ws) = cluster_with(3, "a");
    env.event(Event::ClientConnected(2));
    env.send(
        2,
        ClientToScheduler::Coord {
            req: 1,
            op: CoordOp::Replicate {
                keys: vec!["a".into()],
                n: 0,
                workers: vec![],
                branching: 2,
            },
            timeout: None,
        },
    );
    env.take();
    env.event(Event::ClientDisconnected(2));
    // Copies asked for still count when they arrive.
    env.fetched(ws[1], &["a"], &[]);
    assert_eq!(env.core.holders_of("a"), vec![ws[0], ws[1]]);
}

#[test]
fn replicate_of_a_kept_result_with_no_holder_sends_the_value() {
    let (mut env, ws) = cluster_with(3, "a");
    env.lose(ws[0]);
    env.take();
    replicate(&mut env, 7, &["a"], 2, &[], 2);
    let mut asked = Vec::new();
    for c in env.take() {
        if let Command::ToWorker(w, SchedulerToWorker::Fetch { deps }) = c {
            for d in deps {
                assert!(d.holders.is_empty() && d.inline.is_some());
                asked.push(w);
            }
        }
    }
    assert_eq!(asked, vec![ws[1], ws[2]]);
    env.fetched(ws[1], &["a"], &[]);
    env.fetched(ws[2], &["a"], &[]);
    assert_eq!(env.said().replies, vec![(7, CoordReply::Done)]);
    assert_eq!(env.core.holders_of("a"), vec![ws[1], ws[2]]);
}
