//! `story`: the scheduler's kept transitions of a key, with their causes,
//! also after the task is forgotten.

mod env;

use env::{task, Env};
use shoal_proto::{ClientToScheduler, CoordOp, CoordReply, StoryEntry};

fn story(env: &mut Env, keys: &[&str]) -> Vec<StoryEntry> {
    let op = CoordOp::Story {
        keys: keys.iter().map(|k| k.to_string()).collect(),
    };
    env.send(
        1,
        ClientToScheduler::Coord {
            req: 9,
            op,
            timeout: None,
        },
    );
    match env.said().replies.pop() {
        Some((9, CoordReply::Story { entries, .. })) => entries,
        other => panic!("not a story: {other:?}"),
    }
}

fn steps(entries: &[StoryEntry]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| (e.start.clone(), e.finish.clone(), e.stimulus.clone()))
        .collect()
}

fn step(start: &str, finish: &str, stimulus: &str) -> (String, String, String) {
    (start.into(), finish.into(), stimulus.into())
}

#[test]
fn a_task_story_names_each_transition_and_its_cause_after_it_is_forgotten() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a").unwanted(), task("b").deps(&["a"])]);
    env.advance(2.0);
    env.finish(w, "a");
    env.finish(w, "b");
    env.disown(&["b"]);
    let a = story(&mut env, &["a"]);
    assert_eq!(
        steps(&a),
        vec![
            step("released", "queued", "update-graph"),
            step("queued", "processing", "schedule"),
            step("processing", "memory", "task-finished"),
            // b read it: a is released once b is done, and forgotten with
            // b when the client lets b go.
            step("memory", "released", "task-finished"),
            step("released", "forgotten", "client-releases-keys"),
        ]
    );
    assert!(a.iter().all(|e| e.key == "a"));
    assert_eq!(a[0].time, 0.0);
    assert_eq!(a[2].time, 2.0, "times are the core's clock");
    let b = story(&mut env, &["b"]);
    assert_eq!(
        steps(&b).first(),
        Some(&step("released", "waiting", "update-graph"))
    );
    assert_eq!(
        steps(&b).last(),
        Some(&step("released", "forgotten", "client-releases-keys"))
    );
    assert!(story(&mut env, &["never"]).is_empty());
}

#[test]
fn a_lost_worker_shows_in_the_story_of_what_it_held() {
    let mut env = Env::new();
    let w = env.worker(1);
    env.submit(vec![task("a")]);
    // Too large for the scheduler to keep a copy of.
    env.finish_large(w, "a");
    env.lose(w);
    let told = steps(&story(&mut env, &["a"]));
    assert_eq!(
        told[told.len() - 2..],
        [
            step("memory", "released", "worker-lost"),
            step("released", "queued", "worker-lost"),
        ]
    );
}
