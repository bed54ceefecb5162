//! `rebalance`: results move from the fullest workers to the emptiest until
//! each holds about the same bytes.

mod env;

use env::{task, Env};
use shoal_proto::{ClientToScheduler, CoordOp, CoordReply, WorkerId};

fn rebalance(env: &mut Env, req: u64, keys: &[&str], workers: &[&str]) {
    let op = CoordOp::Rebalance {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        workers: workers.iter().map(|w| w.to_string()).collect(),
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

/// `workers` one-thread workers, and results `k0`.. of `sizes` bytes all
/// computed on the first.
fn cluster(workers: usize, sizes: &[u64]) -> (Env, Vec<WorkerId>) {
    let mut env = Env::new();
    let ws: Vec<WorkerId> = (0..workers).map(|_| env.worker(1)).collect();
    let keys: Vec<String> = (0..sizes.len()).map(|i| format!("k{i}")).collect();
    env.submit(keys.iter().map(|k| task(k).on(&["w1"])).collect());
    for (k, &n) in keys.iter().zip(sizes) {
        env.finish_with(ws[0], k, n, 10.0);
    }
    env.take();
    (env, ws)
}

fn held_by(env: &Env, w: WorkerId, keys: usize) -> usize {
    (0..keys)
        .filter(|i| env.core.holders_of(&format!("k{i}")) == vec![w])
        .count()
}

#[test]
fn equal_results_on_one_worker_end_half_on_each() {
    let (mut env, ws) = cluster(2, &[100; 10]);
    rebalance(&mut env, 1, &[], &[]);
    let s = env.said();
    assert_eq!(s.fetches.len(), 5, "{s:?}");
    assert!(s
        .fetches
        .iter()
        .all(|(w, _, from)| *w == ws[1] && from == &vec!["127.0.0.1:9001".to_string()]));
    assert!(s.replies.is_empty(), "answered before the moves");
    let moved: Vec<String> = s.fetches.iter().map(|f| f.1.clone()).collect();
    for k in &moved {
        env.fetched(ws[1], &[k], &[]);
    }
    let s = env.said();
    assert_eq!(s.replies, vec![(1, CoordReply::Done)]);
    // The senders' copies are freed once the recipient has them.
    let mut freed: Vec<String> = s.frees.iter().map(|f| f.1.clone()).collect();
    freed.sort();
    let mut want = moved.clone();
    want.sort();
    assert_eq!(freed, want);
    assert!(s.frees.iter().all(|f| f.0 == ws[0]));
    assert_eq!(held_by(&env, ws[0], 10), 5);
    assert_eq!(held_by(&env, ws[1], 10), 5);
}

#[test]
fn the_largest_result_smaller_than_the_gap_moves_first() {
    // 600 against 0: the 500 moves (a gap of 400 is narrower than 600);
    // the recipient is then the fuller worker, with nothing to give back.
    let (mut env, ws) = cluster(2, &[500, 50, 50]);
    rebalance(&mut env, 1, &[], &[]);
    let s = env.said();
    let mut moved: Vec<String> = s.fetches.iter().map(|f| f.1.clone()).collect();
    moved.sort();
    assert_eq!(moved, vec!["k0".to_string()], "{s:?}");
    env.fetched(ws[1], &["k0"], &[]);
    assert_eq!(env.said().replies, vec![(1, CoordReply::Done)]);
}

#[test]
fn only_the_keys_named_move_and_only_among_the_workers_named() {
    let (mut env, ws) = cluster(3, &[100; 6]);
    rebalance(&mut env, 1, &["k0", "k1"], &["w1", "w3"]);
    let s = env.said();
    let mut moved: Vec<(WorkerId, String)> = s.fetches.iter().map(|f| (f.0, f.1.clone())).collect();
    moved.sort();
    // 600 against 0: both named keys go, to the third worker only.
    assert_eq!(
        moved,
        vec![(ws[2], "k0".to_string()), (ws[2], "k1".to_string())]
    );
}

#[test]
fn balanced_workers_are_answered_at_once() {
    let (mut env, ws) = cluster(2, &[100]);
    env.fetched(ws[1], &["k0"], &[]);
    env.take();
    rebalance(&mut env, 1, &[], &[]);
    let s = env.said();
    assert!(s.fetches.is_empty());
    assert_eq!(s.replies, vec![(1, CoordReply::Done)]);
}

#[test]
fn a_recipient_lost_or_failing_ends_its_moves_and_the_sender_keeps_them() {
    let (mut env, ws) = cluster(3, &[100; 6]);
    rebalance(&mut env, 1, &[], &[]);
    let s = env.said();
    assert_eq!(s.fetches.len(), 4, "{s:?}");
    let to_third: Vec<String> = s
        .fetches
        .iter()
        .filter(|f| f.0 == ws[2])
        .map(|f| f.1.clone())
        .collect();
    let to_second: Vec<String> = s
        .fetches
        .iter()
        .filter(|f| f.0 == ws[1])
        .map(|f| f.1.clone())
        .collect();
    env.lose(ws[2]);
    let failed: Vec<&str> = to_second.iter().map(String::as_str).collect();
    env.fetched(ws[1], &[], &failed);
    let s = env.said();
    assert_eq!(s.replies, vec![(1, CoordReply::Done)]);
    assert!(s.frees.is_empty(), "{s:?}");
    for k in to_third.iter().chain(&to_second) {
        assert_eq!(env.core.holders_of(k), vec![ws[0]]);
    }
}

#[test]
fn an_unknown_key_is_refused() {
    let (mut env, _) = cluster(2, &[100]);
    rebalance(&mut env, 1, &["nope"], &[]);
    let s = env.said();
    assert!(
        matches!(&s.replies[..], [(1, CoordReply::Invalid(why))] if why.contains("nope")),
        "{s:?}"
    );
}

#[test]
fn workers_naming_nobody_are_missing() {
    let (mut env, _) = cluster(2, &[100]);
    rebalance(&mut env, 1, &[], &["nowhere"]);
    assert_eq!(env.said().replies, vec![(1, CoordReply::Missing)]);
}
