//! What the dashboard reads from the core: counts per task prefix and state,
//! and the task stream (also served to clients by `GetTaskStream`).

mod env;

use env::{task, Env};
use shoal_core::{CoreConfig, Event};
use shoal_proto::{ClientToScheduler, SchedulerToClient, WorkerMetrics, WorkerToScheduler};

fn stream(env: &mut Env, since: u64, limit: u32) -> (Vec<shoal_proto::TaskRecord>, u64) {
    env.client_msgs();
    env.send(1, ClientToScheduler::GetTaskStream { since, limit });
    env.client_msgs()
        .into_iter()
        .find_map(|m| match m {
            SchedulerToClient::TaskStream { records, next } => Some((records, next)),
            _ => None,
        })
        .expect("the scheduler answers")
}

#[test]
fn counts_follow_tasks_through_their_states() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![
        task("inc-1111111111"),
        task("inc-2222222222"),
        task("add-3333333333").deps(&["inc-1111111111", "inc-2222222222"]),
    ]);
    let snap = env.core.snapshot();
    let inc = snap.prefixes.iter().find(|p| &*p.name == "inc").unwrap();
    let add = snap.prefixes.iter().find(|p| &*p.name == "add").unwrap();
    assert_eq!(inc.states.processing + inc.states.queued, 2);
    assert_eq!(add.states.waiting, 1);
    env.finish(w, "inc-1111111111");
    env.finish(w, "inc-2222222222");
    env.fail_final(w, "add-3333333333");
    let snap = env.core.snapshot();
    let inc = snap.prefixes.iter().find(|p| &*p.name == "inc").unwrap();
    let add = snap.prefixes.iter().find(|p| &*p.name == "add").unwrap();
    assert_eq!((inc.completed, inc.failed), (2, 0));
    assert_eq!((add.completed, add.failed, add.states.erred), (0, 1, 1));
    assert_eq!(snap.completed, 2);
    assert_eq!(snap.failed, 1);
    env.disown(&["inc-1111111111", "inc-2222222222", "add-3333333333"]);
    assert_eq!(
        env.core.snapshot().tasks.total(),
        0,
        "forgotten tasks are not counted"
    );
}

#[test]
fn the_task_stream_answers_clients_and_stays_bounded() {
    let mut env = Env::with_config(CoreConfig {
        task_stream_len: 4,
        ..CoreConfig::default()
    });
    let w = env.worker(1);
    let keys: Vec<String> = (0..10).map(|i| format!("f-{i}")).collect();
    env.submit(keys.iter().map(|k| task(k)).collect());
    for k in &keys {
        env.finish_with(w, k, 3, 0.5);
    }
    let (records, next) = stream(&mut env, 0, 100);
    assert_eq!(next, 10);
    assert_eq!(
        records.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        vec!["f-6", "f-7", "f-8", "f-9"],
        "only the newest four are kept"
    );
    assert!(records
        .iter()
        .all(|r| r.ok && r.nbytes == 3 && r.name == "f"));
    assert!(records[0].timing.stop - records[0].timing.start > 0.4);
    let (records, next) = stream(&mut env, 9, 100);
    assert_eq!((records.len(), next), (1, 10));
    let (records, _) = stream(&mut env, u64::MAX, 100);
    assert!(records.is_empty());
}

#[test]
fn a_workers_health_report_shows_in_the_snapshot() {
    let mut env = Env::new();
    let w = env.worker(2);
    env.event(Event::FromWorker(
        w,
        WorkerToScheduler::Metrics(WorkerMetrics {
            cpu: 50.0,
            rss: 1 << 20,
            managed: 7,
            spilled: 3,
            running: 1,
            queued: 2,
        }),
    ));
    let snap = env.core.snapshot();
    assert_eq!(snap.workers.len(), 1);
    assert_eq!(snap.workers[0].metrics.rss, 1 << 20);
    assert_eq!(snap.workers[0].metrics.queued, 2);
    assert_eq!(snap.workers[0].nthreads, 2);
}

#[test]
fn keys_without_a_shared_prefix_do_not_grow_the_table_for_ever() {
    let mut env = Env::new();
    let w = env.worker(1);
    // One task at a time, each key its own prefix (no dash: the whole key).
    // Past the table's first sweep (every event checks every slot: keep
    // it short for debug builds).
    let n = shoal_core::PREFIXES_KEPT + 300;
    for i in 0..n {
        let key = format!("task_{i}");
        env.submit(vec![task(&key)]);
        env.start(w, &key);
        env.finish(w, &key);
        env.disown(&[key.as_str()]);
    }
    assert_eq!(env.core.task_count(), 0);
    assert!(
        env.core.prefix_slots() <= shoal_core::PREFIXES_KEPT,
        "{} prefix slots",
        env.core.prefix_slots()
    );
    // Totals count every task, dropped prefixes' included.
    let snap = env.core.snapshot();
    assert_eq!(snap.completed, n as u64);
    // A prefix with live tasks is never dropped.
    env.submit(vec![task("inc-1111111111")]);
    for i in 0..n {
        let key = format!("other_{i}");
        env.submit(vec![task(&key)]);
        env.disown(&[key.as_str()]);
    }
    let snap = env.core.snapshot();
    assert!(snap.prefixes.iter().any(|p| &*p.name == "inc"));
}
