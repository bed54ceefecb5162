use std::collections::HashSet;

use shoal_proto::Payload;

use super::*;

fn ready(id: TaskId, func: FuncHash, priority: i32) -> ReadyTask {
    ReadyTask {
        id,
        key: format!("t-{id}"),
        func,
        args: Payload::default(),
        deps: Vec::new(),
        priority,
        seq: 0,
    }
}

/// Assigns `id` and makes its inputs local.
fn queue(tasks: &mut Tasks, id: TaskId, func: FuncHash) {
    assert!(tasks.assign(id));
    assert!(tasks.inputs_local(ready(id, func, 0)));
    tasks.validate();
}

fn none() -> HashSet<FuncHash> {
    HashSet::new()
}

#[test]
fn a_task_goes_fetching_queued_running_gone() {
    let mut t = Tasks::default();
    assert!(t.assign(1));
    assert_eq!(t.phase(1), Some(Phase::Fetching));
    assert!(!t.assign(1), "assigned twice");
    assert!(t.inputs_local(ready(1, 7, 0)));
    assert_eq!(t.phase(1), Some(Phase::Queued));
    assert_eq!(t.queued(), 1);
    let started = t.start(1, &none(), 16).map(|r| r.id);
    assert_eq!(started, Some(1));
    assert_eq!(t.phase(1), Some(Phase::Running));
    assert_eq!(t.in_slots(), 1);
    let ended = t.end(1);
    assert!(ended.freed_slot);
    assert!(ended.ran.is_some());
    assert_eq!(t.phase(1), None);
    assert!(!t.has_work());
    t.validate();
}

#[test]
fn only_nthreads_computing_tasks_start_but_known_blocking_ones_may_go_beyond() {
    let mut t = Tasks::default();
    queue(&mut t, 1, 10);
    queue(&mut t, 2, 10);
    queue(&mut t, 3, 20);
    assert!(t.start(1, &none(), 16).is_some());
    assert!(
        t.start(1, &none(), 16).is_none(),
        "the one base slot is taken"
    );
    let blocking: HashSet<FuncHash> = [20].into();
    assert_eq!(t.start(1, &blocking, 16).map(|r| r.id), Some(3));
    assert_eq!(t.queued(), 1);
    t.validate();
}

#[test]
fn the_highest_priority_starts_first_then_the_earliest() {
    let mut t = Tasks::default();
    for (id, prio) in [(1, 0), (2, 5), (3, 5), (4, -1)] {
        assert!(t.assign(id));
        assert!(t.inputs_local(ready(id, 1, prio)));
    }
    let order: Vec<TaskId> = (0..4)
        .filter_map(|_| {
            let r = t.start(100, &none(), 16)?;
            Some(r.id)
        })
        .collect();
    assert_eq!(order, vec![2, 3, 1, 4]);
    t.validate();
}

#[test]
fn a_seceded_task_frees_its_slot_and_takes_one_again_even_when_none_is_free() {
    let mut t = Tasks::default();
    queue(&mut t, 1, 1);
    queue(&mut t, 2, 1);
    assert!(t.start(1, &none(), 16).is_some());
    assert!(t.secede(1));
    assert_eq!((t.in_slots(), t.seceded()), (0, 1));
    assert!(t.start(1, &none(), 16).is_some(), "the freed slot is used");
    assert!(t.rejoin(1));
    assert_eq!((t.in_slots(), t.seceded()), (2, 0), "one over the slots");
    assert!(!t.rejoin(1), "not seceded any more");
    t.validate();
}

/// The recursive secede/rejoin deadlock: a queued task waited behind a
/// rejoined one, and when that one ended nothing woke an executor. The
/// end of a task that held a slot says so, and the runtime wakes one.
#[test]
fn the_end_of_a_rejoined_task_says_a_slot_is_free() {
    let mut t = Tasks::default();
    queue(&mut t, 1, 1);
    assert!(t.start(1, &none(), 16).is_some());
    assert!(t.secede(1));
    queue(&mut t, 2, 1);
    assert!(t.start(1, &none(), 16).is_some());
    assert!(t.rejoin(1));
    queue(&mut t, 3, 1);
    // Task 2 ends: its executor takes the next task itself, but there is
    // no room while task 1 (rejoined) holds a slot too.
    assert!(t.end(2).freed_slot);
    assert!(t.start(1, &none(), 16).is_none());
    // Task 1 ends on a thread that then exits: the freed slot must be
    // announced, since task 3 waits for it.
    assert!(t.end(1).freed_slot);
    assert_eq!(t.start(1, &none(), 16).map(|r| r.id), Some(3));
    t.validate();
}

#[test]
fn a_seceded_task_ending_frees_no_slot() {
    let mut t = Tasks::default();
    queue(&mut t, 1, 1);
    assert!(t.start(1, &none(), 16).is_some());
    assert!(t.secede(1));
    let ended = t.end(1);
    assert!(!ended.freed_slot);
    assert!(ended.ran.is_some());
    t.validate();
}

#[test]
fn a_stolen_task_is_given_back_only_before_it_starts() {
    let mut t = Tasks::default();
    assert!(t.assign(1));
    assert!(t.give_back(1), "fetching");
    assert!(
        !t.inputs_local(ready(1, 1, 0)),
        "its fetch ends after the steal"
    );
    queue(&mut t, 2, 1);
    assert!(t.give_back(2), "queued");
    queue(&mut t, 3, 1);
    assert!(t.start(1, &none(), 16).is_some());
    assert!(!t.give_back(3), "running");
    assert_eq!(t.phase(3), Some(Phase::Running));
    t.validate();
}

/// A task stolen while queued and assigned here again starts once.
#[test]
fn a_task_given_back_and_assigned_again_starts_once() {
    let mut t = Tasks::default();
    queue(&mut t, 1, 1);
    assert!(t.give_back(1));
    queue(&mut t, 1, 1);
    assert_eq!(t.start(10, &none(), 16).map(|r| r.id), Some(1));
    assert!(
        t.start(10, &none(), 16).is_none(),
        "the stale entry is skipped"
    );
    t.validate();
}

#[test]
fn cancelling_drops_a_waiting_task_and_marks_a_running_one() {
    let mut t = Tasks::default();
    queue(&mut t, 1, 1);
    t.cancel(1);
    assert_eq!(t.phase(1), None);
    assert!(t.start(1, &none(), 16).is_none());
    queue(&mut t, 2, 1);
    assert!(t.start(1, &none(), 16).is_some());
    assert!(t.secede(2));
    t.cancel(2);
    assert_eq!(t.phase(2), Some(Phase::Seceded), "it keeps running");
    assert_eq!(t.take_cancelled_seceded(), vec![2]);
    assert!(t.take_cancelled_seceded().is_empty(), "returned once");
    t.validate();
}

#[test]
fn stale_queue_entries_are_dropped_once_they_outnumber_live_ones() {
    let mut t = Tasks::default();
    for id in 0..1000 {
        queue(&mut t, id, 1);
    }
    for id in 0..1000 {
        t.cancel(id);
    }
    assert!(t.queue.len() <= 64, "{} stale entries kept", t.queue.len());
    t.validate();
}

/// Random events in any order: the invariants hold after each, a task is
/// never in two phases, and every task that started ended exactly once.
#[test]
fn random_event_sequences_keep_the_invariants() {
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for _ in 0..200 {
        let mut t = Tasks::default();
        let blocking: HashSet<FuncHash> = [2].into();
        let mut started = HashSet::new();
        for _ in 0..300 {
            let id = next(12);
            match next(9) {
                0 => {
                    t.assign(id);
                }
                1 => {
                    t.inputs_local(ready(id, next(3), next(3) as i32));
                }
                2 => {
                    if let Some(r) = t.start(2, &blocking, 4) {
                        assert!(started.insert(r.id), "{} started twice", r.id);
                    }
                }
                3 => {
                    t.secede(id);
                }
                4 => {
                    t.rejoin(id);
                }
                5 => {
                    let running = matches!(t.phase(id), Some(Phase::Running | Phase::Seceded));
                    let ended = t.end(id);
                    assert_eq!(ended.ran.is_some(), running);
                    if running {
                        started.remove(&id);
                    }
                }
                6 => {
                    t.give_back(id);
                }
                7 => {
                    t.cancel(id);
                }
                _ => {
                    t.inputs_lost(id);
                    started.remove(&id);
                }
            }
            t.validate();
            let slots = t.in_slots() + t.seceded();
            assert_eq!(slots as usize, started.len(), "running tasks counted");
        }
    }
}
