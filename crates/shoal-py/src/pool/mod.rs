//! Worker processes of a local cluster.
//!
//! Each worker is started (spawn + exec, never fork) and watched by its own
//! monitor thread, which lives exactly as long as its child: the child's
//! `PDEATHSIG` is tied to that thread. The monitor holds the write end of the
//! child's stdin, the lifeline whose end-of-file makes the child exit if this
//! process dies, even by SIGKILL. A worker that dies while the pool is open is
//! started again at once, so a cluster keeps its size after a crash; only a
//! worker that keeps exiting by itself soon after it started (it cannot
//! start: a broken environment, a bad option) is started again after a
//! growing pause. A worker killed by a signal is never held back. The pool
//! grows by `add`; a worker marked by `retire` is not started again when it
//! exits (a cluster scaling down retires it through the scheduler first).
//!
//! With a template (`template.rs`), a worker is a fork of that warm process
//! instead of a new interpreter; it is watched the same way, through what
//! the template reports. A worker that asks for a fresh process (it exits
//! with [`RESTART_EXIT_CODE`]: `Client.restart`) is started again at once
//! and not counted as a restart after a crash.

mod template;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;

use template::{Exit, Template};

/// The exit code of a worker that wants a fresh process in its place.
pub const RESTART_EXIT_CODE: i32 = 75;

struct Shared {
    closing: AtomicBool,
    pids: Mutex<Vec<Option<u32>>>,
    /// Each running child's lifeline (the write end of its stdin). Stored
    /// and dropped under this lock, after checking `closing`, so `close`
    /// cannot miss one.
    lifelines: Mutex<Vec<Option<ChildStdin>>>,
    restarts: AtomicU32,
    /// Slots whose worker is not started again when it exits.
    retired: Mutex<Vec<bool>>,
}

/// How every worker of the pool is started.
struct Spec {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// A line each child reads first from its stdin (`--credentials-stdin`:
    /// secrets stay out of its command line and `/proc/PID/environ`).
    stdin_line: Option<String>,
    /// The template that forks the workers, if the pool has one.
    template: Option<Arc<Template>>,
}

/// A set of worker processes kept alive until closed.
#[pyclass(module = "shoal._engine", frozen)]
pub struct WorkerPool {
    shared: Arc<Shared>,
    spec: Arc<Spec>,
    exited: Mutex<Option<Receiver<usize>>>,
    exited_tx: Mutex<Sender<usize>>,
    /// Monitor threads started (each sends on `exited` once, at its end).
    size: AtomicUsize,
}

fn spawn(program: &str, args: &[String], env: &[(String, String)]) -> std::io::Result<Child> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .env("SHOAL_PARENT_PID", std::process::id().to_string())
        // Own process group: a Ctrl-C in the terminal reaches the client,
        // which then shuts the workers down in order.
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn()
}

/// A worker process being watched: a child of this process, or a fork of
/// the template.
enum Running {
    Child(Child),
    Forked(template::Forked),
}

/// Starts slot `index`'s worker: a fork of the template while it serves,
/// a new process otherwise. `asked` is called once the worker is on its
/// way (a template may take a while: it imports first).
fn launch(
    shared: &Shared,
    index: usize,
    spec: &Spec,
    asked: &mut dyn FnMut(),
) -> std::io::Result<(u32, Running)> {
    if let Some(requested) = spec.template.as_ref().and_then(|t| t.request(index)) {
        asked();
        if let Some(forked) = requested.started() {
            return Ok((forked.pid, Running::Forked(forked)));
        }
        if shared.closing.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the pool is closing"));
        }
    }
    let mut child = spawn(&spec.program, &spec.args, &spec.env)?;
    asked();
    // `Child::wait` would close stdin first, cutting the lifeline: hold it
    // separately for as long as the child lives, or until the pool closes.
    let mut lifeline = child.stdin.take();
    if let (Some(line), Some(pipe)) = (&spec.stdin_line, lifeline.as_mut()) {
        // A line of a few KiB fits in the pipe: this does not block. A child
        // that died already is seen by `wait`.
        use std::io::Write;
        let _ = pipe.write_all(format!("{line}\n").as_bytes());
    }
    let mut lifelines = shared.lifelines.lock();
    if !shared.closing.load(Ordering::SeqCst) {
        lifelines[index] = lifeline;
    }
    Ok((child.id(), Running::Child(child)))
}

fn wait(running: Running) -> Exit {
    match running {
        Running::Child(mut child) => match child.wait() {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => Exit::Code(code),
                (None, Some(signal)) => Exit::Signal(signal),
                (None, None) => Exit::Unknown,
            },
            Err(_) => Exit::Unknown,
        },
        Running::Forked(forked) => forked.wait(),
    }
}

fn monitor(
    shared: Arc<Shared>,
    index: usize,
    spec: Arc<Spec>,
    first: Sender<std::io::Result<()>>,
    exited: Sender<usize>,
) {
    let mut first = Some(first);
    let mut quick_failures = 0u32;
    while !shared.closing.load(Ordering::SeqCst) && !shared.retired.lock()[index] {
        let started = Instant::now();
        let mut asked = || {
            if let Some(f) = first.take() {
                let _ = f.send(Ok(()));
            }
        };
        let (pid, running) = match launch(&shared, index, &spec, &mut asked) {
            Ok(r) => r,
            Err(e) => {
                if let Some(f) = first.take() {
                    let _ = f.send(Err(e));
                    break;
                }
                if shared.closing.load(Ordering::SeqCst) {
                    break;
                }
                tracing::error!("could not restart worker {index}: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        shared.pids.lock()[index] = Some(pid);
        let status = wait(running);
        shared.pids.lock()[index] = None;
        shared.lifelines.lock()[index] = None;
        if shared.closing.load(Ordering::SeqCst) || shared.retired.lock()[index] {
            break;
        }
        if status == Exit::Code(RESTART_EXIT_CODE) {
            tracing::debug!("worker process {index} asked for a fresh process");
            quick_failures = 0;
            continue;
        }
        tracing::info!("worker process {index} exited ({status:?}); starting a new one");
        shared.restarts.fetch_add(1, Ordering::SeqCst);
        // Killed from outside (SIGKILL, the OOM killer, a crash in a task):
        // start again at once. Exited by itself soon after starting: it
        // cannot start, so back off, but never give up.
        let by_signal = matches!(status, Exit::Signal(_) | Exit::Unknown);
        if by_signal || started.elapsed() >= Duration::from_secs(2) {
            quick_failures = 0;
        } else {
            quick_failures += 1;
            std::thread::sleep(Duration::from_millis(
                100 * u64::from(quick_failures.min(50)),
            ));
        }
    }
    let _ = exited.send(index);
}

#[pymethods]
impl WorkerPool {
    /// Starts `n` processes running `program args...` with `env` added;
    /// each reads `stdin_line` (if given) first from its standard input.
    /// With `template` (the arguments of `program` that run a worker
    /// template), workers are forks of that one process.
    #[new]
    #[pyo3(signature = (n, program, args, env, stdin_line=None, template=None))]
    fn new(
        py: Python<'_>,
        n: usize,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        stdin_line: Option<String>,
        template: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            pids: Mutex::new(Vec::new()),
            lifelines: Mutex::new(Vec::new()),
            restarts: AtomicU32::new(0),
            retired: Mutex::new(Vec::new()),
        });
        let template = match template {
            Some(targs) => Some(
                Template::start(&program, &targs, &env, stdin_line.as_deref())
                    .map_err(|e| start_error(&program, e))?,
            ),
            None => None,
        };
        let (exited_tx, exited_rx) = channel();
        let pool = WorkerPool {
            shared,
            spec: Arc::new(Spec {
                program,
                args,
                env,
                stdin_line,
                template,
            }),
            exited: Mutex::new(Some(exited_rx)),
            exited_tx: Mutex::new(exited_tx),
            size: AtomicUsize::new(0),
        };
        if let Err(e) = py.detach(|| pool.start(n)) {
            pool.close_now(Duration::from_secs(1));
            return Err(e);
        }
        Ok(pool)
    }

    /// Starts `n` more workers.
    fn add(&self, py: Python<'_>, n: usize) -> PyResult<()> {
        py.detach(|| self.start(n))
    }

    /// Marks the workers with these process ids so that they are not
    /// started again when they exit; returns the ids it found.
    fn retire(&self, pids: Vec<u32>) -> Vec<u32> {
        self.mark(&pids, true)
    }

    /// Undoes `retire` for workers still running (the scheduler kept them).
    fn unretire(&self, pids: Vec<u32>) -> Vec<u32> {
        self.mark(&pids, false)
    }

    /// Process ids of the running workers.
    fn pids(&self) -> Vec<u32> {
        self.shared.pids.lock().iter().flatten().copied().collect()
    }

    /// How many times a worker was started again after dying.
    #[getter]
    fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// From now on, a worker that exits is not started again.
    fn stop_restarting(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
    }

    /// Stops restarting workers, cuts their lifelines (each exits at once,
    /// connected or still starting), and waits up to `timeout` seconds for
    /// them to exit; then kills the rest.
    #[pyo3(signature = (timeout=2.0))]
    fn close(&self, py: Python<'_>, timeout: f64) {
        let t = Duration::from_secs_f64(timeout.max(0.0));
        py.detach(|| self.close_now(t));
    }
}

impl WorkerPool {
    /// Starts `n` more monitor threads, each starting one worker; returns
    /// once every worker was spawned or asked of the template (or one could
    /// not be).
    fn start(&self, n: usize) -> PyResult<()> {
        let first = {
            let mut pids = self.shared.pids.lock();
            let mut lifelines = self.shared.lifelines.lock();
            let mut retired = self.shared.retired.lock();
            let first = pids.len();
            pids.resize(first + n, None);
            lifelines.resize_with(first + n, || None);
            retired.resize(first + n, false);
            first
        };
        let mut waits = Vec::new();
        for i in first..first + n {
            let (tx, rx) = channel();
            let shared = self.shared.clone();
            let spec = self.spec.clone();
            let exited = self.exited_tx.lock().clone();
            let spawned = std::thread::Builder::new()
                .name(format!("shoal-worker-monitor-{i}"))
                .spawn(move || monitor(shared, i, spec, tx, exited));
            match spawned {
                Ok(_) => {
                    self.size.fetch_add(1, Ordering::SeqCst);
                    waits.push(rx);
                }
                Err(e) => return Err(start_error(&self.spec.program, e)),
            }
        }
        for rx in waits {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(start_error(&self.spec.program, e)),
                Err(_) => {
                    let e = std::io::Error::other("a monitor thread died");
                    return Err(start_error(&self.spec.program, e));
                }
            }
        }
        Ok(())
    }

    fn mark(&self, pids: &[u32], retired: bool) -> Vec<u32> {
        let running = self.shared.pids.lock();
        let mut flags = self.shared.retired.lock();
        let mut found = Vec::new();
        for (slot, pid) in running.iter().enumerate() {
            if let Some(pid) = pid.filter(|p| pids.contains(p)) {
                flags[slot] = retired;
                found.push(pid);
            }
        }
        found
    }

    fn close_now(&self, timeout: Duration) {
        self.shared.closing.store(true, Ordering::SeqCst);
        // Cut every lifeline: a worker still starting (a replacement not yet
        // connected) never hears the scheduler's shutdown, but exits at its
        // lifeline's end at once; connected ones are leaving anyway.
        for lifeline in self.shared.lifelines.lock().iter_mut() {
            drop(lifeline.take());
        }
        // The template cuts those of its forks.
        if let Some(t) = &self.spec.template {
            t.close();
        }
        let Some(rx) = self.exited.lock().take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        let mut left = self.size.load(Ordering::SeqCst);
        while left > 0 {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(_) => left -= 1,
                Err(_) => break,
            }
        }
        if left > 0 {
            if let Some(t) = &self.spec.template {
                t.kill();
            }
            for pid in self.pids() {
                // SAFETY: kill takes a pid and a signal number; the pid is a
                // worker this pool started whose exit it has not heard of.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            while left > 0 && rx.recv_timeout(Duration::from_secs(5)).is_ok() {
                left -= 1;
            }
        }
    }
}

fn start_error(program: &str, e: std::io::Error) -> PyErr {
    PyOSError::new_err(format!("could not start worker processes ({program}): {e}"))
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.close_now(Duration::from_secs(2));
    }
}
