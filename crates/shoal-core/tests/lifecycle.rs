//! The life of tasks through the scheduler core: submission, dependencies,
//! completion, release and forgetting.

mod env;

use env::{task, Env};
use shoal_core::Command;
use shoal_core::TaskStateKind::*;
use shoal_proto::{ClientToScheduler, Payload, SchedulerToClient, SchedulerToWorker};

#[test]
fn a_task_runs_and_its_result_reaches_the_client_inline() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a")]);
    assert_eq!(env.state("a"), Some(Assigned(w)));
    assert_eq!(env.computes(), vec![(w, "a".to_string())]);
    env.finish(w, "a");
    assert_eq!(env.state("a"), Some(Memory));
    let msgs = env.client_msgs();
    assert!(matches!(
        &msgs[..],
        [SchedulerToClient::KeyMemory { key, inline: Some(p), holders, .. }]
            if key == "a" && p == &Payload::single(bytes::Bytes::from_static(b"r"))
                && holders == &vec!["127.0.0.1:9001".to_string()]
    ));
}

#[test]
fn tasks_wait_for_workers() {
    let mut env = Env::new();
    env.submit(vec![task("a")]);
    assert_eq!(env.state("a"), Some(Ready));
    let w = env.worker(1);
    assert_eq!(env.state("a"), Some(Assigned(w)));
}

#[test]
fn the_function_is_sent_once_per_worker_before_its_first_task() {
    let mut env = Env::new();
    let w = env.worker(4);
    env.take();
    env.submit(vec![task("a"), task("b")]);
    let cmds = env.take();
    let funcs: Vec<_> = cmds
        .iter()
        .filter(|c| matches!(c, Command::ToWorker(_, SchedulerToWorker::Functions(_))))
        .collect();
    assert_eq!(funcs.len(), 1);
    assert!(matches!(cmds[0], Command::ToWorker(x, SchedulerToWorker::Functions(_)) if x == w));
}

#[test]
fn a_dependent_waits_then_runs_where_its_input_lives() {
    let mut env = Env::new();
    let w1 = env.worker(1);
    let w2 = env.worker(1);
    env.submit(vec![task("a").unwanted(), task("b").deps(&["a"])]);
    assert_eq!(env.state("b"), Some(Waiting));
    let first = env.computes();
    assert_eq!(first.len(), 1);
    let holder = first[0].0;
    env.finish_with(holder, "a", 1 << 20, 0.001);
    let cmds = env.take();
    let compute = cmds.iter().find_map(|c| match c {
        Command::ToWorker(w, SchedulerToWorker::Compute(t)) => Some((*w, t.clone())),
        _ => None,
    });
    let (w, t) = compute.expect("b is sent out");
    assert_eq!(w, holder, "b runs where a's data is");
    assert_eq!(t.deps.len(), 1);
    assert_eq!(t.deps[0].key, "a");
    assert_eq!(t.deps[0].holders.len(), 1);
    assert!([w1, w2].contains(&w));
}

#[test]
fn an_intermediate_is_freed_once_its_dependents_are_done_and_forgotten_with_them() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a").unwanted(), task("b").deps(&["a"])]);
    env.finish(w, "a");
    assert!(env.frees().is_empty(), "a is still needed by b");
    env.finish(w, "b");
    assert_eq!(env.frees(), vec![(w, "a".to_string())]);
    assert_eq!(
        env.state("a"),
        Some(Released),
        "kept to recompute b if needed"
    );
    env.disown(&["b"]);
    assert_eq!(env.frees(), vec![(w, "b".to_string())]);
    assert_eq!(env.core.task_count(), 0);
}

#[test]
fn releasing_a_pending_task_cancels_it_on_its_worker() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a")]);
    let id = env.id("a");
    env.take();
    env.disown(&["a"]);
    let cmds = env.take();
    assert!(cmds.contains(&Command::ToWorker(
        w,
        SchedulerToWorker::Cancel { ids: vec![id] }
    )));
    assert_eq!(env.core.task_count(), 0);
    assert_eq!(env.core.assigned_to(w), 0);
}

#[test]
fn a_result_arriving_for_a_forgotten_task_is_ignored() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a")]);
    let id = env.id("a");
    env.disown(&["a"]);
    env.take();
    env.event(shoal_core::Event::FromWorker(
        w,
        shoal_proto::WorkerToScheduler::TaskFinished {
            id,
            nbytes: 1,
            type_name: "int".into(),
            inline: None,
            duration: 0.0,
            timing: None,
        },
    ));
    assert!(env.client_msgs().is_empty());
}

#[test]
fn equal_keys_run_once_and_a_late_asker_gets_the_kept_value_and_its_holders() {
    let mut env = Env::new();
    let w = env.worker(2);
    env.submit(vec![task("a")]);
    env.submit(vec![task("a")]);
    assert_eq!(env.computes().len(), 1);
    env.finish(w, "a");
    env.take();
    env.event(shoal_core::Event::ClientConnected(2));
    env.submit_as(2, vec![task("a")]);
    let cmds = env.take();
    assert!(cmds.iter().any(|c| matches!(c,
        Command::ToClient(2, SchedulerToClient::KeyMemory { key, inline: Some(_), holders, .. })
            if key == "a" && holders.len() == 1)));
    // Both clients hold it: one release keeps it.
    env.disown(&["a"]);
    assert_eq!(env.state("a"), Some(Memory));
    env.send(2, ClientToScheduler::Disown(vec!["a".into()]));
    assert_eq!(env.state("a"), None);
}

#[test]
fn a_disconnected_client_releases_everything_it_held() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a"), task("b")]);
    env.finish(w, "a");
    env.event(shoal_core::Event::ClientDisconnected(1));
    assert_eq!(env.core.task_count(), 0);
    assert_eq!(env.core.assigned_to(w), 0);
}

#[test]
fn an_unknown_dependency_errs_the_task_clearly() {
    let mut env = Env::new();
    env.worker(1);
    env.take();
    env.submit(vec![task("b").deps(&["nope"])]);
    let msgs = env.client_msgs();
    assert!(
        matches!(&msgs[..], [SchedulerToClient::KeyErred { key, error: shoal_proto::TaskError::Raised { type_name, message, .. } }]
        if key == "b" && type_name == "KeyError" && message.contains("nope"))
    );
}

#[test]
fn a_task_whose_function_was_never_sent_errs() {
    let mut env = Env::new();
    env.worker(1);
    env.submit(vec![task("a").func(999)]);
    assert_eq!(env.state("a"), Some(Erred));
}

#[test]
fn a_released_key_submitted_again_is_recomputed_from_released_inputs() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![
        task("a").unwanted(),
        task("b").deps(&["a"]),
        task("c").deps(&["a"]),
    ]);
    env.finish(w, "a");
    env.finish(w, "b");
    env.finish(w, "c");
    assert_eq!(env.state("a"), Some(Released));
    env.take();
    // b's data is released but c keeps a's spec alive; asking for b again
    // after release works from the spec.
    env.disown(&["b"]);
    env.submit(vec![task("b").deps(&["a"])]);
    let computes: Vec<String> = env.computes().into_iter().map(|(_, k)| k).collect();
    assert_eq!(computes, vec!["a".to_string()]);
    env.finish(w, "a");
    assert_eq!(env.computes(), vec![(w, "b".to_string())]);
}

#[test]
fn a_long_chain_is_released_and_forgotten_without_recursion() {
    let mut env = Env::new();
    let w = env.worker(1);
    let n = 200_000;
    let mut specs = vec![task("k0").unwanted()];
    let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    for i in 1..n {
        let t = task(&names[i]).deps(&[&names[i - 1]]);
        specs.push(if i == n - 1 { t } else { t.unwanted() });
    }
    env.submit(specs);
    env.take();
    env.disown(&[&names[n - 1]]);
    assert_eq!(env.core.task_count(), 0);
    assert_eq!(env.core.assigned_to(w), 0);
}

#[test]
fn a_graph_in_parts_keeps_early_results_until_it_is_whole() {
    let mut env = Env::new();
    let w = env.worker(1);
    let part = env::submission;
    env.send(
        1,
        ClientToScheduler::SubmitPart(part(vec![task("a").unwanted()])),
    );
    env.finish(w, "a");
    assert_eq!(
        env.state("a"),
        Some(Memory),
        "pinned: its dependent has not arrived"
    );
    env.send(
        1,
        ClientToScheduler::Submit(part(vec![task("b").deps(&["a"])])),
    );
    assert_eq!(env.state("b"), Some(Assigned(w)));
    env.finish(w, "b");
    assert_eq!(env.state("a"), Some(Released));
}

#[test]
fn a_client_leaving_mid_graph_releases_the_parts() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.send(
        1,
        ClientToScheduler::SubmitPart(env::submission(vec![task("a").unwanted()])),
    );
    env.finish(w, "a");
    env.event(shoal_core::Event::ClientDisconnected(1));
    assert_eq!(env.core.task_count(), 0);
}

#[test]
fn preloaded_modules_reach_current_and_future_workers() {
    use shoal_core::Command;
    use shoal_proto::{ClientToScheduler, SchedulerToWorker};
    let preloads = |cmds: Vec<Command>| -> Vec<(u64, Vec<String>)> {
        cmds.into_iter()
            .filter_map(|c| match c {
                Command::ToWorker(w, SchedulerToWorker::Preload { modules }) => Some((w, modules)),
                _ => None,
            })
            .collect()
    };
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.take();
    env.send(
        1,
        ClientToScheduler::Preload(vec!["pandas".into(), "os; rm -rf".into(), "bs4".into()]),
    );
    let names = vec!["pandas".to_string(), "bs4".to_string()];
    assert_eq!(
        preloads(env.take()),
        vec![(w1, names.clone())],
        "bad names are dropped"
    );
    env.send(1, ClientToScheduler::Preload(vec!["pandas".into()]));
    assert_eq!(preloads(env.take()), vec![], "nothing new, nothing sent");
    let w2 = env.worker(1);
    assert_eq!(
        preloads(env.take()),
        vec![(w2, names)],
        "a new worker hears at once"
    );
}

#[test]
fn uploaded_files_reach_current_and_future_workers_latest_version_only() {
    use bytes::Bytes;
    use shoal_core::Command;
    use shoal_proto::{ClientToScheduler, SchedulerToWorker};
    let uploads = |cmds: Vec<Command>| -> Vec<(u64, String, Bytes)> {
        cmds.into_iter()
            .filter_map(|c| match c {
                Command::ToWorker(w, SchedulerToWorker::Upload { name, data }) => {
                    Some((w, name, data))
                }
                _ => None,
            })
            .collect()
    };
    let upload = |name: &str, data: &'static [u8]| ClientToScheduler::Upload {
        name: name.into(),
        data: Bytes::from_static(data),
    };
    let mut env = Env::new();
    let w1 = env.worker(1);
    env.take();
    env.send(1, upload("a.py", b"v1"));
    env.send(1, upload("b.zip", b"zip"));
    env.send(1, upload("a.py", b"v2"));
    assert_eq!(
        uploads(env.take()).len(),
        3,
        "each goes out to {w1} at once"
    );
    let w2 = env.worker(1);
    assert_eq!(
        uploads(env.take()),
        vec![
            (w2, "b.zip".to_string(), Bytes::from_static(b"zip")),
            (w2, "a.py".to_string(), Bytes::from_static(b"v2")),
        ],
        "a new worker gets the latest version of each"
    );
}

#[test]
fn a_retried_task_runs_again_with_its_failed_inputs_and_nothing_else() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![
        task("ok").unwanted(),
        task("bad").unwanted(),
        task("top").deps(&["ok", "bad"]),
    ]);
    env.finish(w, "ok");
    env.fail_final(w, "bad");
    assert_eq!(env.state("top"), Some(Erred));
    env.take();
    env.send(1, ClientToScheduler::Retry(vec!["top".into()]));
    // The client hears the key is pending again, and its inputs run first.
    let cmds = env.take();
    assert!(
        cmds.iter().any(|c| matches!(c,
            Command::ToClient(1, SchedulerToClient::KeyLost { key }) if key == "top")),
        "{cmds:?}"
    );
    assert_eq!(env.state("top"), Some(Waiting));
    for _ in 0..2 {
        for key in ["ok", "bad"] {
            if matches!(env.state(key), Some(Assigned(_))) {
                env.finish(w, key);
            }
        }
    }
    assert_eq!(env.computes(), vec![(w, "top".to_string())]);
    env.finish(w, "top");
    assert!(matches!(env.state("top"), Some(Memory)));
}

#[test]
fn retrying_a_key_that_did_not_fail_changes_nothing() {
    let mut env = Env::new();
    env.computed("a");
    env.take();
    env.send(
        1,
        ClientToScheduler::Retry(vec!["a".into(), "unknown".into()]),
    );
    assert!(env.take().is_empty());
    assert!(matches!(env.state("a"), Some(Memory)));
}

#[test]
fn cancelling_a_key_cancels_what_only_its_client_wants_downstream() {
    let mut env = Env::new();
    env.worker(1);
    env.event(shoal_core::Event::ClientConnected(2));
    env.submit(vec![
        task("x"),
        task("y").deps(&["x"]),
        task("mid").unwanted().deps(&["y"]),
        task("z").deps(&["mid"]),
    ]);
    env.submit_as(2, vec![task("shared").deps(&["y"])]);
    env.take();
    env.send(1, ClientToScheduler::Cancel(vec!["y".into()]));
    let cancelled: Vec<String> = env
        .take()
        .into_iter()
        .filter_map(|c| match c {
            Command::ToClient(1, SchedulerToClient::KeyCancelled { key }) => Some(key),
            _ => None,
        })
        .collect();
    // z (through mid, which nobody wants) goes; "shared", client 2's, stays,
    // so y is still computed for it; x, upstream, is untouched.
    assert_eq!(cancelled, vec!["z".to_string()]);
    assert!(env.state("shared").is_some());
    assert!(env.state("x").is_some());
}

#[test]
fn a_rescheduled_task_is_placed_again_and_keeps_its_retries() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a")]);
    assert_eq!(env.computes(), vec![(w, "a".to_string())]);
    let id = env.id("a");
    env.event(shoal_core::Event::FromWorker(
        w,
        shoal_proto::WorkerToScheduler::TaskRescheduled { id, timing: None },
    ));
    // placed again (here, the one worker there is), not erred
    assert_eq!(env.computes(), vec![(w, "a".to_string())]);
    env.fail(w, "a"); // no retries were given: this failure is final
    assert_eq!(env.state("a"), Some(Erred));
}

#[test]
fn a_joining_worker_gets_its_plugins_then_joined() {
    let mut env = Env::new();
    env.send(
        1,
        ClientToScheduler::RegisterPlugin {
            name: "p".into(),
            plugin: Payload::default(),
        },
    );
    env.take();
    let w = env.worker(1);
    let to_worker: Vec<SchedulerToWorker> = env
        .take()
        .into_iter()
        .filter_map(|c| match c {
            Command::ToWorker(x, m) if x == w => Some(m),
            _ => None,
        })
        .collect();
    let plugin = to_worker
        .iter()
        .position(|m| matches!(m, SchedulerToWorker::Plugin { .. }));
    let joined = to_worker
        .iter()
        .position(|m| matches!(m, SchedulerToWorker::Joined));
    assert!(plugin.is_some() && joined.is_some(), "{to_worker:?}");
    assert!(
        plugin < joined,
        "the plugin must come before Joined: {to_worker:?}"
    );
}
