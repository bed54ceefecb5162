//! Scheduler, workers and client over real sockets, with a Rust executor that
//! "computes" a task by concatenating its argument with its inputs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shoal_client::{ClientConfig, ClientCore, ClientError, CompletionQueue, Outcome};
use shoal_proto::{FunctionDef, Payload, Security, TaskError, TaskOptions, TaskSpec, LITERAL_FUNC};
use shoal_worker::{Held, HeldObject, Value, WorkerConfig, WorkerRuntime};

const CONCAT: u64 = 7;
/// Like `CONCAT`, but the worker keeps the result as an object ([`Kept`]).
const HOLD: u64 = 9;

/// How many times a kept result was serialized.
static SERIALIZED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A result the test executor keeps as it is, as a Python worker keeps an
/// array: its bytes are read in place by tasks here, and serialized only
/// for whoever asks from elsewhere.
struct Kept(Vec<u8>);

impl HeldObject for Kept {
    fn serialize(&self) -> Result<Payload, String> {
        SERIALIZED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Payload::single(Bytes::from(self.0.clone())))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Runs a test body on its own thread and fails the test if it has not
/// finished within `secs`: a hang is a bug, reported as one.
fn within<T: Send + 'static>(secs: u64, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("hung for {secs} s"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("the test body panicked"),
    }
}
const FAIL: u64 = 8;

/// The secret of the test clusters.
fn secret() -> shoal_proto::Token {
    shoal_proto::Token::new("e2e-secret").unwrap()
}

/// The test clusters' token over plain TCP.
fn plain() -> Security {
    Security::token(secret())
}

/// The test clusters' token over TLS with certificates made for the test.
fn tls(ca: &str, cert: &str, key: &str) -> Security {
    let pem = shoal_proto::TlsPem {
        ca: Some(ca.into()),
        cert: Some(cert.into()),
        key: Some(key.into()),
        mutual: true,
    };
    Security {
        token: secret(),
        tls: shoal_proto::Tls::new(&pem).expect("TLS configures"),
    }
}

fn worker_config(addr: &str, security: Security) -> WorkerConfig {
    WorkerConfig {
        scheduler: format!("{}{addr}", security.tls.scheme()),
        nthreads: 1,
        name: None,
        listen_host: None,
        listen_ports: (0, 0),
        connect_timeout: Duration::from_secs(5),
        memory: shoal_worker::MemoryPolicy::default(),
        spill_root: std::env::temp_dir(),
        kill_on_leave: false,
        max_threads: 1,
        resources: vec![],
        security,
    }
}

fn client_config(addr: &str, security: Security) -> ClientConfig {
    ClientConfig {
        address: addr.to_string(),
        name: "test".into(),
        connect_timeout: Duration::from_secs(5),
        security,
    }
}

fn start_worker(addr: &str, security: &Security) -> Arc<WorkerRuntime> {
    let rt = WorkerRuntime::start(worker_config(addr, security.clone())).expect("worker starts");
    let exec = rt.clone();
    std::thread::spawn(move || {
        while let Some(a) = exec.next_task() {
            if a.func == FAIL {
                exec.fail(
                    a.id,
                    TaskError::Raised {
                        exception: Payload::default(),
                        type_name: "ValueError".into(),
                        message: "no".into(),
                        traceback: String::new(),
                    },
                    true,
                );
                continue;
            }
            let function = a.function.clone().or_else(|| exec.function(a.func));
            assert!(function.is_some(), "function bytes reach the worker");
            let mut out = a.args.frames[0].to_vec();
            for (_, v) in a.deps {
                match v {
                    Value::Frames(p) => out.extend_from_slice(&p.frames[0]),
                    Value::Held(h) => match h.object.as_any().downcast_ref::<Kept>() {
                        Some(kept) => out.extend_from_slice(&kept.0),
                        None => panic!("a held value the executor did not make"),
                    },
                }
            }
            let result = if a.func == HOLD {
                let nbytes = out.len() as u64;
                Value::Held(Held {
                    object: Arc::new(Kept(out)),
                    nbytes,
                })
            } else {
                Payload::single(Bytes::from(out)).into()
            };
            exec.finish(a.id, a.key, result, "bytes".into(), 0.0, false);
        }
    });
    rt
}

type Cluster = (
    shoal_server::ServerHandle,
    Vec<Arc<WorkerRuntime>>,
    ClientCore,
);

/// A scheduler, `n` workers and a connected client, with the token.
fn cluster(n: usize) -> Cluster {
    cluster_with(n, plain())
}

/// A scheduler, `n` workers and a connected client, all with `security`.
fn cluster_with(n: usize, security: Security) -> Cluster {
    let options = shoal_server::Options {
        security: security.clone(),
        ..Default::default()
    };
    let server = shoal_server::start("127.0.0.1", 0, options).expect("scheduler starts");
    let addr = server.address().to_string();
    let workers = (0..n).map(|_| start_worker(&addr, &security)).collect();
    let client = ClientCore::connect(client_config(&addr, security)).expect("client connects");
    assert!(client
        .wait_for_workers(n, &[], Some(Duration::from_secs(10)))
        .unwrap());
    (server, workers, client)
}

fn spec(key: &str, arg: &[u8], deps: &[&str]) -> TaskSpec {
    TaskSpec {
        key: key.into(),
        func: CONCAT,
        args: Payload::single(Bytes::from(arg.to_vec())),
        deps: deps.iter().map(|s| s.to_string()).collect(),
        wanted: true,
        options: 0,
    }
}

/// The one set of options every task here uses.
fn opts() -> Vec<TaskOptions> {
    vec![TaskOptions::default()]
}

fn funcs() -> Vec<FunctionDef> {
    vec![
        FunctionDef {
            hash: CONCAT,
            name: "concat".into(),
            bytes: Bytes::from_static(b"f"),
        },
        FunctionDef {
            hash: FAIL,
            name: "fail".into(),
            bytes: Bytes::from_static(b"g"),
        },
        FunctionDef {
            hash: HOLD,
            name: "hold".into(),
            bytes: Bytes::from_static(b"h"),
        },
    ]
}

fn value(o: &Outcome) -> Vec<u8> {
    match o {
        Outcome::Value(p) => p.frames[0].to_vec(),
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn tasks_run_across_workers_and_results_come_back() {
    within(60, || {
        let (_server, _workers, client) = cluster(2);

        let mut specs: Vec<TaskSpec> = (0..50)
            .map(|i| spec(&format!("t{i}"), format!("{i},").as_bytes(), &[]))
            .collect();
        specs.push(spec("sum", b"sum:", &["t1", "t2", "t3"]));
        client.submit(funcs(), opts(), specs).unwrap();
        let keys: Vec<String> = (0..50)
            .map(|i| format!("t{i}"))
            .chain(["sum".to_string()])
            .collect();
        let out = client
            .gather(&keys, Some(Duration::from_secs(20)), true)
            .unwrap()
            .expect("no timeout");
        assert_eq!(value(&out[7]), b"7,");
        assert_eq!(value(&out[50]), b"sum:1,2,3,");

        // as_completed-style watching.
        let q = Arc::new(CompletionQueue::default());
        client
            .submit(funcs(), opts(), vec![spec("late", b"x", &[])])
            .unwrap();
        client.watch(&["late".to_string(), "t0".to_string()], &q);
        let mut seen = vec![
            q.pop(Some(Duration::from_secs(10))).unwrap(),
            q.pop(Some(Duration::from_secs(10))).unwrap(),
        ];
        seen.sort();
        assert_eq!(seen, vec!["late".to_string(), "t0".to_string()]);
    });
}

#[test]
fn errors_and_scattered_data() {
    within(60, || {
        let (_server, _workers, client) = cluster(1);
        let mut bad = spec("bad", b"", &[]);
        bad.func = FAIL;
        let mut lit = spec("data", b"scattered", &[]);
        lit.func = LITERAL_FUNC;
        client
            .submit(
                funcs(),
                opts(),
                vec![bad, lit, spec("use", b"use:", &["data"])],
            )
            .unwrap();
        let keys = vec!["bad".to_string(), "data".to_string(), "use".to_string()];
        let out = client
            .gather(&keys, Some(Duration::from_secs(20)), true)
            .unwrap()
            .unwrap();
        assert!(
            matches!(&out[0], Outcome::Error(TaskError::Raised { type_name, .. }) if type_name == "ValueError")
        );
        assert_eq!(value(&out[1]), b"scattered");
        assert_eq!(value(&out[2]), b"use:scattered");
    });
}

#[test]
fn large_results_are_fetched_from_the_worker() {
    within(60, || {
        let (_server, _workers, client) = cluster(1);
        let big = vec![b'z'; 1 << 20];
        client
            .submit(funcs(), opts(), vec![spec("big", &big, &[])])
            .unwrap();
        let out = client
            .gather(&["big".to_string()], Some(Duration::from_secs(20)), true)
            .unwrap()
            .unwrap();
        assert_eq!(value(&out[0]).len(), 1 << 20);
    });
}

#[test]
fn a_kept_result_is_read_in_place_here_and_serialized_only_to_leave() {
    use std::sync::atomic::Ordering;
    within(60, || {
        let (_server, _workers, client) = cluster(1);
        let big = vec![b'k'; 1 << 20];
        let mut held = spec("held", &big, &[]);
        held.func = HOLD;
        let specs = vec![held, spec("reader", b"r:", &["held"])];
        client.submit(funcs(), opts(), specs).unwrap();
        let out = client
            .gather(&["reader".to_string()], Some(Duration::from_secs(20)), true)
            .unwrap()
            .unwrap();
        assert_eq!(value(&out[0]).len(), 2 + (1 << 20));
        assert_eq!(SERIALIZED.load(Ordering::SeqCst), 0, "read in place");
        let out = client
            .gather(&["held".to_string()], Some(Duration::from_secs(20)), true)
            .unwrap()
            .unwrap();
        assert_eq!(value(&out[0]), big);
        assert_eq!(SERIALIZED.load(Ordering::SeqCst), 1, "serialized to leave");
    });
}

#[test]
fn connecting_to_nothing_fails_within_the_timeout() {
    within(60, || {
        let err = ClientCore::connect(ClientConfig {
            address: "tcp://127.0.0.1:1".into(),
            name: "test".into(),
            connect_timeout: Duration::from_secs(2),
            security: plain(),
        })
        .err()
        .expect("no scheduler there");
        assert!(err.to_string().contains("could not connect"), "{err}");
    });
}

#[test]
fn a_fetch_after_the_scheduler_is_gone_fails_instead_of_hanging() {
    within(60, || {
        let (mut server, _workers, client) = cluster(1);
        let big = vec![b'z'; 1 << 20];
        client
            .submit(funcs(), opts(), vec![spec("big", &big, &[])])
            .unwrap();
        let keys = vec!["big".to_string()];
        assert!(client.wait(&keys, Some(Duration::from_secs(20))).unwrap());
        server.stop();
        // Blocks until the client has seen the connection end.
        let seen = client.wait_for_workers(usize::MAX, &[], Some(Duration::from_secs(20)));
        assert!(seen.is_err(), "the client notices the scheduler is gone");
        // The result lives on a worker; the client's network thread, which
        // would fetch it, has ended with the connection.
        let got = client.gather(&keys, None, true);
        assert!(matches!(got, Err(ClientError::Disconnected(_))), "{got:?}");
    });
}

#[test]
fn a_client_or_worker_without_the_right_token_is_refused() {
    within(60, || {
        let (server, _workers, _client) = cluster(1);
        let addr = server.address().to_string();
        let wrong = shoal_proto::Token::new("guess").unwrap();
        for (token, why) in [
            (wrong.clone(), "wrong token"),
            (shoal_proto::Token::none(), "a token is required"),
        ] {
            let err = ClientCore::connect(client_config(&addr, Security::token(token.clone())))
                .err()
                .expect("refused");
            assert!(matches!(err, ClientError::Refused { .. }), "{err}");
            assert!(err.to_string().contains(why), "{err}");
            let err = WorkerRuntime::start(worker_config(&addr, Security::token(token)))
                .err()
                .expect("refused");
            assert!(err.to_string().contains(why), "{err}");
        }
        // The right one still gets in.
        assert!(ClientCore::connect(client_config(&addr, plain())).is_ok());
    });
}

#[test]
fn a_data_fetch_without_the_token_is_refused() {
    within(60, || {
        let (_server, workers, client) = cluster(1);
        let big = vec![b'z'; 1 << 17];
        client
            .submit(funcs(), opts(), vec![spec("big", &big, &[])])
            .unwrap();
        let keys = vec!["big".to_string()];
        assert!(client.wait(&keys, Some(Duration::from_secs(20))).unwrap());
        let data = workers[0].address().to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let ask = |token: shoal_proto::Token| {
            rt.block_on(shoal_proto::get_data(
                &data,
                &Security::token(token),
                shoal_proto::Route::Direct,
                keys.clone(),
                Duration::from_secs(5),
            ))
        };
        let err = ask(shoal_proto::Token::none()).expect_err("refused");
        assert!(
            matches!(&err, shoal_proto::FetchError::Refused { reason, .. } if reason.contains("token")),
            "{err}"
        );
        let err = ask(shoal_proto::Token::new("guess").unwrap()).expect_err("refused");
        assert!(err.to_string().contains("wrong token"), "{err}");
        let items = ask(secret()).expect("the token lets it in");
        assert_eq!(items[0].1.as_ref().map(|p| p.nbytes()), Some(1 << 17));
    });
}

#[test]
fn a_cluster_over_tls_runs_a_graph_and_refuses_plain_tcp() {
    within(60, || {
        let (ca, cert, key) = shoal_proto::tls::temporary().unwrap();
        let security = tls(&ca, &cert, &key);
        let (server, workers, client) = cluster_with(2, security.clone());
        // A large value (fetched from the worker that made it) and a task
        // on every worker that needs it (moved between workers).
        let big = vec![b'x'; 1 << 20];
        let mut specs = vec![spec("big", &big, &[])];
        // Options 0: anywhere; 1 and 2: on one worker each.
        let mut options = opts();
        for w in &workers {
            options.push(TaskOptions {
                workers: vec![w.address().to_string()],
                ..TaskOptions::default()
            });
        }
        for i in 0..8 {
            let mut s = spec(&format!("use-{i}"), b"u", &["big"]);
            s.options = 1 + (i % 2) as u32;
            specs.push(s);
        }
        client.submit(funcs(), options, specs).unwrap();
        let keys: Vec<String> = (0..8).map(|i| format!("use-{i}")).collect();
        assert!(client.wait(&keys, Some(Duration::from_secs(20))).unwrap());
        let out = client
            .gather(&["big".to_string()], None, true)
            .unwrap()
            .unwrap();
        assert_eq!(value(&out[0]), big);
        let out = client.gather(&keys, None, true).unwrap().unwrap();
        assert!(out.iter().all(|o| value(o).len() == (1 << 20) + 1));

        let addr = server.address().to_string();
        // Plain TCP to the TLS port: refused with words that say why.
        let err = ClientCore::connect(client_config(&addr, plain()))
            .err()
            .expect("plain TCP is refused");
        assert!(err.to_string().contains("speaks TLS"), "{err}");
        // A tls:// address without TLS options, and the reverse.
        let err = ClientCore::connect(client_config(&format!("tls://{addr}"), plain()))
            .err()
            .expect("no TLS options");
        assert!(err.to_string().contains("no TLS options"), "{err}");
        let err = ClientCore::connect(client_config(&format!("tcp://{addr}"), security.clone()))
            .err()
            .expect("a tcp:// address with TLS options");
        assert!(err.to_string().contains("tls://"), "{err}");
        // Certificates of another CA.
        let (ca2, cert2, key2) = shoal_proto::tls::temporary().unwrap();
        let err = ClientCore::connect(client_config(&addr, tls(&ca2, &cert2, &key2)))
            .err()
            .expect("another CA is refused");
        assert!(err.to_string().contains("same CA"), "{err}");
        // A worker's data server refuses plain TCP too.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let data = workers[0].address().to_string();
        let err = rt
            .block_on(shoal_proto::get_data(
                &data,
                &plain(),
                shoal_proto::Route::Direct,
                vec!["big".into()],
                Duration::from_secs(5),
            ))
            .expect_err("plain TCP to a TLS data server");
        assert!(err.to_string().contains("speaks TLS"), "{err}");
        // The scheduler still serves.
        assert!(ClientCore::connect(client_config(&addr, security)).is_ok());
    });
}

#[test]
fn a_client_that_cannot_reach_workers_reads_results_through_the_scheduler() {
    within(60, || {
        let (server, workers, client) = cluster(1);
        let big = vec![b'r'; 3 << 20];
        client
            .submit(funcs(), opts(), vec![spec("big", &big, &[])])
            .unwrap();
        // Not direct: the scheduler carries the connection to the worker.
        let out = client
            .gather(&["big".to_string()], Some(Duration::from_secs(20)), false)
            .unwrap()
            .unwrap();
        assert_eq!(value(&out[0]), &big[..]);
        // The scheduler carries connections only to its own workers: not
        // to itself, nor to an address that is no worker.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let scheduler = server.address().to_string();
        for to in [scheduler.clone(), "127.0.0.1:1".to_string()] {
            let err = rt
                .block_on(shoal_proto::get_data(
                    &to,
                    &plain(),
                    shoal_proto::Route::Via(&scheduler),
                    vec!["big".into()],
                    Duration::from_secs(5),
                ))
                .expect_err("no worker there");
            assert!(
                err.to_string().contains("is not a worker of this cluster"),
                "{err}"
            );
        }
        // A worker the scheduler knows, by its address with a scheme.
        let got = rt
            .block_on(shoal_proto::get_data(
                &format!("tcp://{}", workers[0].address()),
                &plain(),
                shoal_proto::Route::Via(&scheduler),
                vec!["big".into()],
                Duration::from_secs(5),
            ))
            .unwrap();
        assert_eq!(got[0].1.as_ref().map(|p| p.nbytes()), Some(3 << 20));
    });
}
