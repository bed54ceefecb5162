//! Mutated wire messages into the core: valid client and worker messages
//! are encoded as on the wire, bytes are flipped, inserted or cut, and
//! whatever still decodes is applied. The core must neither panic nor break
//! an invariant (the test environment checks them after every event), and
//! requests must still be answered.

mod env;

use bytes::Bytes;
use env::{submission, task, Env};
use proptest::prelude::*;
use shoal_core::Event;
use shoal_proto::{
    ClientToScheduler, CoordOp, Held, LimitSpec, Payload, TaskError, WorkerToScheduler,
};

fn client_seeds() -> Vec<ClientToScheduler> {
    let tasks = submission(vec![
        task("a"),
        task("b").deps(&["a"]).retries(2),
        task("c")
            .deps(&["a", "b"])
            .limits(&["L"])
            .resources(&[("GPU", 1.0)]),
    ]);
    vec![
        ClientToScheduler::Submit(tasks.clone()),
        ClientToScheduler::SubmitPart(tasks),
        ClientToScheduler::Disown(vec!["a".into(), "b".into()]),
        ClientToScheduler::Want(vec!["c".into(), "nope".into()]),
        ClientToScheduler::Identify,
        ClientToScheduler::GetTaskStream { since: 0, limit: 5 },
        ClientToScheduler::Preload(vec!["os".into()]),
        ClientToScheduler::SetLimit(LimitSpec {
            name: "L".into(),
            concurrency: Some(1),
            rate: Some(2.0),
            burst: Some(1.0),
        }),
        ClientToScheduler::Coord {
            req: 1,
            op: CoordOp::QueuePut {
                name: "q".into(),
                item: Held {
                    value: Payload::single(Bytes::from_static(b"v")),
                    keys: vec!["a".into()],
                },
            },
            timeout: Some(0.5),
        },
        ClientToScheduler::Coord {
            req: 2,
            op: CoordOp::Replicate {
                keys: vec!["a".into()],
                n: 2,
                workers: vec![],
                branching: 2,
            },
            timeout: None,
        },
        ClientToScheduler::Coord {
            req: 3,
            op: CoordOp::Acquire {
                name: "s".into(),
                max_leases: 2,
                lease: 7,
            },
            timeout: Some(1.0),
        },
    ]
}

fn worker_seeds() -> Vec<WorkerToScheduler> {
    vec![
        WorkerToScheduler::TaskStarted { ids: vec![1, 2] },
        WorkerToScheduler::TaskFinished {
            id: 1,
            nbytes: 10,
            type_name: "int".into(),
            inline: Some(Payload::single(Bytes::from_static(b"1"))),
            duration: 0.01,
            timing: None,
        },
        WorkerToScheduler::TaskFailed {
            id: 2,
            error: TaskError::Raised {
                exception: Payload::default(),
                type_name: "ValueError".into(),
                message: "m".into(),
                traceback: String::new(),
            },
            retryable: true,
            timing: None,
        },
        WorkerToScheduler::GaveBack { ids: vec![3] },
        WorkerToScheduler::Capacity { slots: 3 },
        WorkerToScheduler::MissingDeps {
            id: 2,
            keys: vec!["a".into()],
        },
        WorkerToScheduler::Fetched {
            keys: vec!["a".into()],
            missing: vec!["b".into()],
        },
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Cut(usize),
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if bytes.is_empty() {
            break;
        }
        match *e {
            Edit::Set(i, v) => {
                let i = i % bytes.len();
                bytes[i] = v;
            }
            Edit::Insert(i, v) => {
                let i = i % (bytes.len() + 1);
                bytes.insert(i, v);
            }
            Edit::Cut(i) => bytes.truncate(i % bytes.len()),
        }
    }
    bytes
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Edit::Set(i, v)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => any::<usize>().prop_map(Edit::Cut),
    ]
}

fn encode<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    rmp_serde::encode::write_named(&mut out, &vec![msg]).expect("seed messages encode");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn mutated_messages_never_break_the_core(
        picks in prop::collection::vec((any::<bool>(), any::<u16>(), prop::collection::vec(edit(), 0..4)), 1..24),
    ) {
        let clients = client_seeds();
        let workers = worker_seeds();
        let mut env = Env::new();
        let w = env.worker(2);
        env.submit(vec![task("a"), task("b").deps(&["a"])]);
        for (from_client, pick, edits) in picks {
            if from_client {
                let seed = &clients[pick as usize % clients.len()];
                let bytes = apply(encode(seed), &edits);
                if let Ok(msgs) = rmp_serde::from_slice::<Vec<ClientToScheduler>>(&bytes) {
                    for m in msgs {
                        // A client may say anything but ask to stop us.
                        if !matches!(m, ClientToScheduler::Shutdown) {
                            env.send(1, m);
                        }
                    }
                }
            } else {
                let seed = &workers[pick as usize % workers.len()];
                let bytes = apply(encode(seed), &edits);
                if let Ok(msgs) = rmp_serde::from_slice::<Vec<WorkerToScheduler>>(&bytes) {
                    for m in msgs {
                        env.event(Event::FromWorker(w, m));
                    }
                }
            }
        }
        // Still answering: a fresh request gets its reply.
        env.take();
        env.send(1, ClientToScheduler::Coord { req: 99, op: CoordOp::DatasetList, timeout: None });
        let replied = env.take().into_iter().any(|c| matches!(c,
            shoal_core::Command::ToClient(1, shoal_proto::SchedulerToClient::CoordReply { req: 99, .. })));
        prop_assert!(replied);
    }
}
