//! Failures: exceptions, retries, dead workers, lost data.

mod env;

use env::{task, Env};
use shoal_core::Command;
use shoal_core::TaskStateKind::*;
use shoal_proto::{SchedulerToClient, SchedulerToWorker, TaskError, WorkerToScheduler};

#[test]
fn an_exception_errs_the_task_and_every_dependent() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![
        task("a"),
        task("b").deps(&["a"]),
        task("c").deps(&["b"]),
    ]);
    env.take();
    env.fail(w, "a");
    assert_eq!(env.state("a"), Some(Erred));
    assert_eq!(env.state("b"), Some(Erred));
    assert_eq!(env.state("c"), Some(Erred));
    let msgs = env.client_msgs();
    let erred: Vec<&str> = msgs
        .iter()
        .filter_map(|m| match m {
            SchedulerToClient::KeyErred {
                key,
                error: TaskError::Raised { type_name, .. },
            } => {
                assert_eq!(type_name, "ZeroDivisionError");
                Some(key.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(erred.len(), 3);
}

#[test]
fn a_task_submitted_on_an_erred_input_errs_at_once() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a")]);
    env.fail(w, "a");
    env.submit(vec![task("b").deps(&["a"])]);
    assert_eq!(env.state("b"), Some(Erred));
}

#[test]
fn a_retry_goes_to_another_worker_as_free() {
    // The failure may be the worker's (a missing file, a bad disk): with
    // another as free, the retry runs there, and back again after that.
    let mut env = Env::new();
    let w1 = env.worker(1);
    let w2 = env.worker(1);
    env.submit(vec![task("a").retries(3)]);
    let first = match env.state("a") {
        Some(Assigned(w)) => w,
        other => panic!("assigned, not {other:?}"),
    };
    let other = if first == w1 { w2 } else { w1 };
    env.take();
    env.fail(first, "a");
    assert_eq!(env.state("a"), Some(Assigned(other)));
    env.fail(other, "a");
    assert_eq!(env.state("a"), Some(Assigned(first)));
}

#[test]
fn retries_run_a_failed_task_again_then_give_up() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a").retries(1)]);
    env.take();
    env.fail(w, "a");
    assert_eq!(env.state("a"), Some(Assigned(w)));
    assert_eq!(env.computes().len(), 1);
    env.fail(w, "a");
    assert_eq!(env.state("a"), Some(Erred));
}

#[test]
fn tasks_of_a_lost_worker_run_elsewhere() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("a")]);
    assert_eq!(env.state("a"), Some(Assigned(w1)));
    let w2 = env.worker(1);
    env.take();
    env.lose(w1);
    assert_eq!(env.state("a"), Some(Assigned(w2)));
    let msgs = env.take();
    assert!(msgs.iter().any(|c| matches!(
        c,
        Command::ToClient(1, SchedulerToClient::WorkerRemoved { .. })
    )));
    assert!(msgs
        .iter()
        .any(|c| matches!(c, Command::ToWorker(w, SchedulerToWorker::Compute(_)) if *w == w2)));
}

#[test]
fn a_task_that_kills_four_workers_errs_with_killed_worker() {
    let mut env = Env::new();
    env.submit(vec![task("bomb")]);
    for round in 0..4 {
        let w = env.worker(1);
        assert_eq!(env.state("bomb"), Some(Assigned(w)), "round {round}");
        env.start(w, "bomb");
        env.take();
        env.lose(w);
    }
    assert_eq!(env.state("bomb"), Some(Erred));
    let msgs = env.client_msgs();
    assert!(msgs.iter().any(|m| matches!(m,
        SchedulerToClient::KeyErred { error: TaskError::KilledWorker { key, attempts: 4, .. }, .. } if key == "bomb")));
}

#[test]
fn queued_tasks_of_a_lost_worker_do_not_count_as_suspects() {
    let mut env = Env::new();
    env.submit(vec![task("a")]);
    for _ in 0..5 {
        let w = env.worker(1);
        env.lose(w);
    }
    assert_eq!(env.state("a"), Some(Ready));
}

#[test]
fn lost_data_that_is_still_wanted_is_recomputed_with_its_released_inputs() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("a").unwanted(), task("b").deps(&["a"])]);
    env.finish_large(w1, "a");
    env.finish_large(w1, "b");
    assert_eq!(env.state("a"), Some(Released));
    let w2 = env.worker(1);
    env.take();
    env.lose(w1);
    let msgs = env.take();
    assert!(msgs.iter().any(
        |c| matches!(c, Command::ToClient(1, SchedulerToClient::KeyLost { key }) if key == "b")
    ));
    assert_eq!(env.state("a"), Some(Assigned(w2)));
    assert_eq!(env.state("b"), Some(Waiting));
    env.finish(w2, "a");
    env.finish(w2, "b");
    assert_eq!(env.state("b"), Some(Memory));
    assert!(env
        .client_msgs()
        .iter()
        .any(|m| matches!(m, SchedulerToClient::KeyMemory { key, .. } if key == "b")));
}

#[test]
fn a_ready_dependent_waits_again_when_its_input_is_lost() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    // w1 has two slots; the blockers (of higher priority, so a task
    // reading a result does not overtake them) keep c from being assigned.
    env.submit(vec![
        task("a").unwanted().priority(1),
        task("block1").priority(1),
        task("block2").priority(1),
        task("c").deps(&["a"]),
    ]);
    // A long duration keeps the window at one queued task.
    env.finish_with(w1, "a", 1 << 20, 10.0);
    assert_eq!(env.state("c"), Some(Ready));
    env.lose(w1);
    assert_eq!(env.state("c"), Some(Waiting));
    assert_eq!(env.state("a"), Some(Ready));
    let w2 = env.worker(4);
    assert_eq!(env.state("a"), Some(Assigned(w2)));
    env.finish(w2, "a");
    assert_eq!(env.state("c"), Some(Assigned(w2)));
}

#[test]
fn a_task_forgotten_while_it_runs_has_its_result_freed_where_it_ends() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("t"), task("quick")]);
    env.start(w, "t");
    env.start(w, "quick");
    let (t, quick) = (env.id("t"), env.id("quick"));
    // Nobody wants them any more while they run.
    env.disown(&["t", "quick"]);
    assert_eq!(env.state("t"), None, "forgotten");
    env.take();
    // Both runs still end, reported by id: the one that stored a result
    // has it freed by key; the one that failed stored nothing.
    env.finish_task(w, t, 1 << 20, 0.1);
    env.fail_task(w, quick, "ValueError", true);
    assert_eq!(env.frees(), vec![(w, "t".to_string())]);
}

#[test]
fn unneeded_data_on_a_lost_worker_is_just_forgotten() {
    let mut env = Env::new();
    let w1 = env.computed("a");
    env.disown(&["a"]);
    env.lose(w1);
    assert_eq!(env.core.task_count(), 0);
}

#[test]
fn missing_dependencies_reported_by_a_worker_are_recomputed() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("a")]);
    env.finish_large(w1, "a");
    let w2 = env.worker(1);
    env.submit(vec![task("b").deps(&["a"]).on(&["w2"])]);
    assert_eq!(env.state("b"), Some(Assigned(w2)));
    let b = env.id("b");
    env.take();
    env.event(shoal_core::Event::FromWorker(
        w2,
        WorkerToScheduler::MissingDeps {
            id: b,
            keys: vec!["a".into()],
        },
    ));
    assert!(matches!(env.state("a"), Some(Assigned(_))));
    assert_eq!(env.state("b"), Some(Waiting));
    let aw = match env.state("a") {
        Some(Assigned(w)) => w,
        _ => unreachable!(),
    };
    env.finish(aw, "a");
    assert_eq!(env.state("b"), Some(Assigned(w2)));
}

#[test]
fn a_result_from_a_superseded_assignment_is_accepted_once_and_a_second_refused() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("a"), task("b")]);
    assert_eq!(env.state("a"), Some(Assigned(w1)));
    assert_eq!(env.state("b"), Some(Assigned(w1)));
    let w2 = env.worker(1);
    // w1 reports a's inputs missing: the scheduler takes a back and, w1
    // still being busy with b, gives it to w2.
    let a = env.id("a");
    env.event(shoal_core::Event::FromWorker(
        w1,
        WorkerToScheduler::MissingDeps {
            id: a,
            keys: vec![],
        },
    ));
    assert_eq!(env.state("a"), Some(Assigned(w2)), "a moved to w2");
    env.take();
    // w1 had computed a after all: its result is valid and taken, and w2 is
    // told to drop its copy of the assignment.
    env.finish(w1, "a");
    assert_eq!(env.state("a"), Some(Memory));
    assert_eq!(env.core.holders_of("a"), vec![w1]);
    assert_eq!(env.core.assigned_to(w2), 0);
    let cancelled = env.take().into_iter().any(|c| {
        matches!(c, Command::ToWorker(w, SchedulerToWorker::Cancel { ids }) if w == w2 && ids == vec![a])
    });
    assert!(cancelled, "w2 is told to drop a");
    // w2 had started a, ran on, and reports its own result: a second value
    // (different, if a is impure) is refused, and w2 frees it.
    env.finish(w2, "a");
    assert_eq!(env.core.holders_of("a"), vec![w1], "one value per key");
    assert_eq!(env.frees(), vec![(w2, "a".to_string())]);
    // A repeat from the holder itself changes nothing.
    env.finish(w1, "a");
    assert_eq!(env.core.holders_of("a"), vec![w1]);
    assert!(env.frees().is_empty());
}

#[test]
fn a_retry_with_back_off_waits_then_runs() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.advance(100.0);
    env.submit(vec![task("a").retries(3).backoff(2.0, 5.0), task("b")]);
    env.take();
    env.fail(w, "a");
    // Waiting out its back-off, a is not sent; b runs meanwhile.
    assert!(env.computes().is_empty());
    let first = env.core.next_wakeup().expect("a timer");
    assert!(
        (101.0..=102.0).contains(&first),
        "first wait in [1, 2] s: {first}"
    );
    env.advance(first - 0.01);
    assert!(env.computes().is_empty(), "not before its time");
    env.advance(first);
    assert_eq!(env.computes(), vec![(w, "a".to_string())]);
    // The second retry waits about twice as long, the third is capped.
    env.fail(w, "a");
    let second = env.core.next_wakeup().unwrap() - first;
    assert!((2.0..=4.0).contains(&second), "{second}");
    env.advance(first + second);
    env.fail(w, "a");
    let third = env.core.next_wakeup().unwrap() - first - second;
    assert!((2.5..=5.0).contains(&third), "capped at 5 s: {third}");
    env.advance(first + second + third);
    env.fail(w, "a");
    assert_eq!(env.state("a"), Some(Erred), "out of retries");
}

#[test]
fn an_error_the_filter_rejects_is_not_retried() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a").retries(3)]);
    env.fail_final(w, "a");
    assert_eq!(env.state("a"), Some(Erred));
}

#[test]
fn a_task_waiting_to_retry_can_be_forgotten() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a").retries(1).backoff(10.0, 10.0)]);
    env.fail(w, "a");
    env.take();
    env.disown(&["a"]);
    assert_eq!(env.state("a"), None);
    env.advance(60.0);
    assert!(env.computes().is_empty());
}

fn with_ttl(ttl: f64) -> Env {
    Env::with_config(shoal_core::CoreConfig {
        worker_ttl: Some(ttl),
        ..Default::default()
    })
}

#[test]
fn a_silent_worker_is_declared_dead_and_its_task_runs_elsewhere() {
    let mut env = with_ttl(5.0);
    let w1 = env.worker(1);
    env.submit(vec![task("t").on(&["w1"]).loose()]);
    assert_eq!(env.state("t"), Some(Assigned(w1)));
    env.start(w1, "t");
    let w2 = env.worker(1);
    env.take();
    // w2 keeps reporting; w1 says nothing.
    for s in 1..=4 {
        env.advance(f64::from(s));
        env.capacity(w2, 1);
    }
    assert_eq!(
        env.state("t"),
        Some(Assigned(w1)),
        "not silent long enough yet"
    );
    env.advance(5.0);
    env.capacity(w2, 1);
    assert_eq!(env.state("t"), Some(Assigned(w2)));
    let said = env.take();
    assert!(said
        .iter()
        .any(|c| matches!(c, Command::ToWorker(w, SchedulerToWorker::Shutdown) if *w == w1)));
    // It wakes up and reports the task finished: ignored, it is gone.
    env.finish(w1, "t");
    assert_eq!(env.state("t"), Some(Assigned(w2)));
    assert_eq!(env.core.holders_of("t"), vec![]);
    env.finish(w2, "t");
    assert_eq!(env.state("t"), Some(Memory));
    assert_eq!(env.core.holders_of("t"), vec![w2]);
}

#[test]
fn a_worker_that_reports_is_never_declared_dead() {
    let mut env = with_ttl(1.0);
    let w = env.worker(1);
    for tenth in 1..100 {
        env.advance(f64::from(tenth) / 10.0);
        env.event(shoal_core::Event::FromWorker(
            w,
            shoal_proto::WorkerToScheduler::Capacity { slots: 1 },
        ));
    }
    env.submit(vec![task("t")]);
    assert_eq!(env.state("t"), Some(Assigned(w)));
    // The core asks to be woken to check: the shell needs no timer of its own.
    assert!(env.core.next_wakeup().is_some());
}

#[test]
fn without_a_ttl_silence_is_never_held_against_a_worker() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("t")]);
    env.advance(1e6);
    assert_eq!(env.state("t"), Some(Assigned(w)));
}

/// The inputs of the `Compute` messages sent to `w`: (key, holders, whether
/// the value came along).
fn inputs_sent(env: &mut Env, w: shoal_proto::WorkerId) -> Vec<(String, Vec<String>, bool)> {
    env.take()
        .into_iter()
        .filter_map(|c| match c {
            Command::ToWorker(to, SchedulerToWorker::Compute(t)) if to == w => Some(t.deps),
            _ => None,
        })
        .flatten()
        .map(|d| (d.key, d.holders, d.inline.is_some()))
        .collect()
}

#[test]
fn a_small_result_outlives_every_worker_that_held_it() {
    let mut env = Env::new();
    let w1 = env.computed("a");
    env.take();
    env.lose(w1);
    // Not lost: the scheduler kept the value, so nothing runs again and the
    // client is told nothing.
    assert_eq!(env.state("a"), Some(Memory));
    assert!(env.core.holders_of("a").is_empty());
    assert!(!env
        .client_msgs()
        .iter()
        .any(|m| matches!(m, SchedulerToClient::KeyLost { .. })));
    // A task that needs it gets the value with it.
    let w2 = env.worker(1);
    env.submit(vec![task("b").deps(&["a"])]);
    assert_eq!(
        inputs_sent(&mut env, w2),
        vec![("a".to_string(), vec![], true)]
    );
    // Once the worker reports its copy, it is a holder again.
    env.event(shoal_core::Event::FromWorker(
        w2,
        WorkerToScheduler::Fetched {
            keys: vec!["a".into()],
            missing: vec![],
        },
    ));
    assert_eq!(env.core.holders_of("a"), vec![w2]);
}

#[test]
fn a_worker_holding_the_input_gets_no_copy_of_it() {
    let mut env = Env::new();
    let w1 = env.computed("a");
    env.take();
    env.submit(vec![task("b").deps(&["a"])]);
    assert_eq!(
        inputs_sent(&mut env, w1),
        vec![(
            "a".to_string(),
            vec![format!("127.0.0.1:{}", 9000 + w1)],
            false
        )]
    );
}

#[test]
fn an_input_a_worker_could_not_fetch_comes_with_the_task_when_kept() {
    let mut env = Env::new();
    env.computed("a");
    let w2 = env.worker(1);
    env.submit(vec![task("b").deps(&["a"]).on(&["w2"])]);
    let b = env.id("b");
    env.take();
    env.event(shoal_core::Event::FromWorker(
        w2,
        WorkerToScheduler::MissingDeps {
            id: b,
            keys: vec!["a".into()],
        },
    ));
    assert_eq!(env.state("a"), Some(Memory));
    assert_eq!(
        inputs_sent(&mut env, w2),
        vec![("a".to_string(), vec![], true)]
    );
}

#[test]
fn without_a_budget_nothing_is_kept_and_lost_results_run_again() {
    let mut env = Env::with_config(shoal_core::CoreConfig {
        worker_ttl: None,
        keep_bytes: 0,
        ..Default::default()
    });
    let w1 = env.computed("a");
    env.take();
    let w2 = env.worker(1);
    env.take();
    env.lose(w1);
    assert_eq!(env.state("a"), Some(Assigned(w2)));
}

#[test]
fn a_released_result_is_no_longer_kept() {
    let mut env = Env::new();
    let w1 = env.computed("a");
    env.disown(&["a"]);
    env.take();
    // Submitted again after its release: it runs again, as nothing is kept.
    env.submit(vec![task("a")]);
    assert_eq!(env.state("a"), Some(Assigned(w1)));
}

#[test]
fn a_kept_input_travels_to_a_worker_once() {
    let mut env = Env::new();
    let w1 = env.computed("a");
    env.lose(w1);
    let w2 = env.worker(4);
    env.take();
    env.submit(vec![task("b").deps(&["a"]), task("c").deps(&["a"])]);
    let sent = inputs_sent(&mut env, w2);
    // The first task carries the value; the worker holds it from then on.
    assert_eq!(sent.len(), 2);
    assert_eq!(sent.iter().filter(|(_, _, inline)| *inline).count(), 1);
    assert_eq!(env.core.holders_of("a"), vec![w2]);
}

#[test]
fn a_paused_worker_is_sent_nothing_and_its_queue_moves_away() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.event(shoal_core::Event::FromWorker(
        w1,
        WorkerToScheduler::Paused { paused: true },
    ));
    env.submit(vec![task("a"), task("b")]);
    assert_eq!(
        env.state("a"),
        Some(Ready),
        "nothing goes to a paused worker"
    );
    let w2 = env.worker(1);
    assert_eq!(env.state("a"), Some(Assigned(w2)));
    env.event(shoal_core::Event::FromWorker(
        w1,
        WorkerToScheduler::Paused { paused: false },
    ));
    env.finish(w2, "a");
    assert!(matches!(env.state("b"), Some(Assigned(_))));
    // Paused with work queued: what has not started is asked back.
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("x"), task("y")]);
    assert_eq!(env.state("y"), Some(Assigned(w1)));
    env.start(w1, "x");
    env.take();
    env.event(shoal_core::Event::FromWorker(
        w1,
        WorkerToScheduler::Paused { paused: true },
    ));
    let _w2 = env.worker(1);
    let steals = env.take();
    assert!(steals
        .iter()
        .any(|c| matches!(c, Command::ToWorker(w, SchedulerToWorker::Steal { .. }) if *w == w1)));
}

#[test]
fn killed_worker_names_the_cause_the_last_worker_gave() {
    let mut env = Env::new();
    env.submit(vec![task("hog")]);
    for _ in 0..4 {
        let w = env.worker(1);
        env.start(w, "hog");
        env.event(shoal_core::Event::FromWorker(
            w,
            WorkerToScheduler::Leaving {
                reason: "it used 980 MiB of memory".into(),
            },
        ));
        env.take();
        env.lose(w);
    }
    let msgs = env.client_msgs();
    assert!(
        msgs.iter().any(|m| matches!(m,
        SchedulerToClient::KeyErred { error: TaskError::KilledWorker { cause, .. }, .. }
            if cause.contains("980 MiB"))),
        "{msgs:?}"
    );
}

#[test]
fn a_result_a_worker_could_not_read_back_is_computed_again_or_read_elsewhere() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.submit(vec![task("a"), task("b")]);
    env.finish_large(w1, "a");
    env.finish_large(w1, "b");
    let w2 = env.worker(1);
    // A second copy of b on w2 (as a fetch for a task there would make).
    env.fetched(w2, &["b"], &[]);
    env.take();
    env.event(shoal_core::Event::FromWorker(
        w1,
        WorkerToScheduler::Lost {
            keys: vec!["a".into(), "b".into(), "never-heard-of".into()],
        },
    ));
    let msgs = env.take();
    let lost: Vec<&str> = msgs
        .iter()
        .filter_map(|c| match c {
            Command::ToClient(1, SchedulerToClient::KeyLost { key }) => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec!["a"], "b still has a copy on w2");
    assert_eq!(env.core.holders_of("b"), vec![w2]);
    assert!(matches!(env.state("a"), Some(Assigned(_))), "a runs again");
    // The same report again changes nothing.
    env.event(shoal_core::Event::FromWorker(
        w1,
        WorkerToScheduler::Lost {
            keys: vec!["b".into()],
        },
    ));
    assert_eq!(env.core.holders_of("b"), vec![w2]);
}
