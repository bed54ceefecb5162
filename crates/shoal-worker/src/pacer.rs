//! The pacer: how many tasks this worker runs at once.
//!
//! A worker starts with `nthreads` executor threads. Tasks that wait — on a
//! socket, a sleep, a subprocess, the disk — hold a thread while using no
//! CPU, so the cluster idles while every thread waits. Every few
//! milliseconds the pacer looks at the tasks running on threads:
//!
//! * each running thread's CPU clock says how much of the last tick it
//!   computed; a task that has run a whole tick using little CPU is
//!   *blocked*;
//! * a thread waiting for Python's interpreter lock (GIL) also uses no CPU,
//!   so before growing the pacer times how long it takes to get the GIL
//!   itself (a hook the Python layer provides): a free GIL means the tasks
//!   really wait on the outside world, a contended one means they compete
//!   for the interpreter, and more threads would only slow them down.
//!
//! While tasks are queued, running ones are blocked, the CPU has room and
//! the GIL is free, the pacer lets more tasks start (up to one per blocked
//! task each tick, so concurrency can double every tick) and starts executor
//! threads as needed, never more than the cap. When tasks compete for the
//! CPU or the GIL it stops letting extra tasks start, and the worker drifts
//! back to `nthreads` as they finish. Each change is reported to the
//! scheduler (`Capacity`), which sizes the worker's window from it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_proto::{FunctionKinds, WorkerToScheduler};

use crate::state::Shared;

/// How often the pacer looks while there is work.
pub const TICK: Duration = Duration::from_millis(5);

/// A running task that used less than this share of a tick computing is
/// blocked.
const BLOCKED_BELOW: f64 = 0.25;

/// A task that computed at least this share of its whole run (of at least a
/// tick) marks its function as computing.
const COMPUTED_ABOVE: f64 = 0.5;

/// Taking the GIL slower than this means threads compete for it. A free GIL
/// takes microseconds; a held one is let go within the 5 ms switch
/// interval, so a single lucky probe can be quick: the GIL counts as free
/// only if every one of `GIL_PROBES` probes is quick.
const GIL_BUSY: Duration = Duration::from_micros(500);
const GIL_PROBES: usize = 2;

/// What the Python layer lends the pacer.
pub struct PacerHooks {
    /// How long it took to take (and let go of) the interpreter lock.
    pub probe_gil: Box<dyn Fn() -> Duration + Send + Sync>,
    /// Starts one more executor thread.
    pub spawn_executor: Box<dyn Fn() + Send + Sync>,
    /// Stops handed-off tasks (coroutines) the scheduler cancelled.
    pub cancel_detached: Box<dyn Fn(Vec<shoal_proto::TaskId>) + Send + Sync>,
    /// Imports modules in the background (it must not block).
    pub preload: Box<dyn Fn(Vec<String>) + Send + Sync>,
}

/// A thread's CPU clock, read from any thread.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadClock(libc::clockid_t);

impl ThreadClock {
    /// The clock of the calling thread.
    pub fn current() -> Option<ThreadClock> {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is always valid; the call only writes `id`.
        let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
        (rc == 0).then_some(ThreadClock(id))
    }

    /// CPU time the thread has used.
    pub fn now(self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes only `ts`; a stale id makes it fail, not crash.
        let rc = unsafe { libc::clock_gettime(self.0, &mut ts) };
        if rc != 0 {
            return Duration::ZERO;
        }
        Duration::new(
            ts.tv_sec.max(0) as u64,
            ts.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }
}

/// A task running on an executor thread, as the pacer follows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running {
    pub func: shoal_proto::FuncHash,
    /// The kernel's id of the thread running it.
    pub tid: i32,
    pub clock: Option<ThreadClock>,
    pub started: Instant,
    /// The clock's reading when the pacer first looked (the start of what
    /// it measures), and at its last look. Not read when the task starts:
    /// tasks shorter than a tick never cost a clock read.
    pub cpu_start: Option<(Duration, Instant)>,
    pub cpu_seen: Duration,
    pub seen_at: Instant,
}

thread_local! {
    /// The calling thread's kernel id and CPU clock, found once per thread.
    static THIS_THREAD: (i32, Option<ThreadClock>) =
        // SAFETY: gettid has no preconditions.
        (unsafe { libc::gettid() }, ThreadClock::current());
}

impl Running {
    /// A task of `func` starting on the calling thread.
    pub fn now(func: shoal_proto::FuncHash) -> Running {
        let (tid, clock) = THIS_THREAD.with(|t| *t);
        let now = Instant::now();
        Running {
            func,
            tid,
            clock,
            started: now,
            cpu_start: None,
            cpu_seen: Duration::ZERO,
            seen_at: now,
        }
    }

    /// A task of `func` taken by the calling thread, which is still reading
    /// its inputs (perhaps from disk) and loading its function (perhaps
    /// importing modules): it holds its slot, but the pacer does not watch
    /// it until [`crate::WorkerRuntime::begin`], so loading never looks
    /// like the task blocking on I/O.
    pub fn reading(func: shoal_proto::FuncHash) -> Running {
        Running {
            clock: None,
            ..Running::now(func)
        }
    }

    /// When it started and stopped (now), by the wall clock, and where.
    pub fn timing(&self) -> shoal_proto::Timing {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        shoal_proto::Timing {
            start: now - self.started.elapsed().as_secs_f64(),
            stop: now,
            thread: u64::try_from(self.tid).unwrap_or_default(),
        }
    }

    /// Whether the task, ending now after at least a tick, computed most of
    /// the time the pacer watched it.
    pub fn computed_most(&self) -> bool {
        let (Some(clock), Some((start, since))) = (self.clock, self.cpu_start) else {
            return false;
        };
        let watched = since.elapsed();
        watched >= TICK
            && clock.now().saturating_sub(start).as_secs_f64() / watched.as_secs_f64()
                >= COMPUTED_ABOVE
    }
}

/// One look at the worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Look {
    pub nthreads: u32,
    pub cap: u32,
    /// How many tasks may run at once now.
    pub allowed: u32,
    /// Tasks running on threads.
    pub running: u32,
    /// Tasks waiting for a thread that may use room beyond `nthreads`
    /// (their function is known to block).
    pub queued: u32,
    /// Of `queued`, tasks of functions known to block before this look
    /// (learnt here or by another worker): they may start at once.
    pub known: u32,
    /// Running tasks that used little CPU over a whole tick.
    pub blocked: u32,
    /// CPU used by running tasks over the tick, in cores.
    pub busy: f64,
}

/// What to do after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Let this many run at once, if the GIL is free.
    Grow(u32),
    /// Let this many run at once.
    Set(u32),
}

/// The policy, without clocks or locks.
pub(crate) fn decide(l: Look) -> Step {
    let floor = l.nthreads.max(1);
    if l.queued == 0 {
        // Nothing waits: let the extra room go as tasks finish.
        return Step::Set(floor.max(l.running.min(l.allowed)));
    }
    let cpu_free = l.busy < f64::from(floor) - BLOCKED_BELOW;
    if !cpu_free {
        // Tasks compete for the CPU: start nothing beyond what runs.
        return Step::Set(floor.max(l.running.min(l.allowed)));
    }
    let extra = l.blocked.min(l.queued).max(l.known);
    let target = l.cap.min(l.running + extra).max(floor);
    if extra > 0 && target > l.allowed {
        Step::Grow(target)
    } else {
        Step::Set(l.allowed.max(floor))
    }
}

/// Runs the pacer until the worker closes.
pub(crate) fn run(shared: Arc<Shared>, hooks: PacerHooks) {
    let mut reported = 0u32;
    loop {
        let (look, blocked_funcs) = {
            let mut st = shared.state.lock();
            loop {
                if st.closed {
                    return;
                }
                if !st.preload.is_empty() {
                    let modules = std::mem::take(&mut st.preload);
                    drop(st);
                    (hooks.preload)(modules);
                    st = shared.state.lock();
                    continue;
                }
                if st.tasks.has_work() {
                    break;
                }
                // Idle: back to the threads' count, and sleep until work.
                st.allowed = st.nthreads;
                shared.pace.wait(&mut st);
            }
            look_at(&mut st)
        };
        // Tasks that wait with the GIL free wait on the outside world; with
        // the GIL taken they may only be waiting for it.
        let gil_free =
            blocked_funcs.is_empty() || (0..GIL_PROBES).all(|_| (hooks.probe_gil)() < GIL_BUSY);
        let allowed = match decide(look) {
            Step::Set(n) => n,
            Step::Grow(n) if gil_free => n,
            Step::Grow(_) => look.nthreads.max(look.running.min(look.allowed)),
        };
        let (spawn, capacity) = {
            let mut st = shared.state.lock();
            let mut grew = allowed > st.allowed;
            if gil_free {
                let learnt: Vec<_> = blocked_funcs
                    .into_iter()
                    .filter(|&f| st.blocking.insert(f))
                    .collect();
                if !learnt.is_empty() {
                    grew = true;
                    // The other workers start such tasks at once too.
                    let _ = shared
                        .out
                        .send(WorkerToScheduler::Learnt(FunctionKinds::blocks(learnt)));
                }
            }
            st.allowed = allowed;
            let spawn = allowed.saturating_sub(st.threads);
            st.threads += spawn;
            if grew {
                shared.work.notify_all();
            }
            (spawn, st.capacity())
        };
        for _ in 0..spawn {
            (hooks.spawn_executor)();
        }
        // Handed-off tasks the scheduler cancelled, each stopped once.
        let cancelled = shared.state.lock().tasks.take_cancelled_seceded();
        if !cancelled.is_empty() {
            (hooks.cancel_detached)(cancelled);
        }
        if capacity != reported {
            reported = capacity;
            let _ = shared
                .out
                .send(WorkerToScheduler::Capacity { slots: capacity });
        }
        std::thread::sleep(TICK);
    }
}

/// Whether thread `tid` of this process is asleep in the kernel waiting on
/// something other than a lock: a socket, a timer, a child process, a pipe,
/// the disk. A thread waiting for the GIL (or any lock) sleeps in a futex.
///
/// The kernel says which call a sleeping thread is in (`/proc/.../syscall`),
/// or else where it sleeps (`wchan`, which many kernels hide as `0`). Where
/// it says neither, the answer is yes: the GIL probe still guards growth.
fn waits_outside(tid: i32) -> bool {
    let dir = format!("/proc/self/task/{tid}");
    let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) else {
        return true;
    };
    // The state follows the command name, which is in parentheses.
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    if !matches!(state, Some("S") | Some("D")) {
        return false;
    }
    // The files are read one after the other while the thread runs on, so
    // they may disagree: a thread seen asleep may be running by the next
    // read. Only a wait seen in the call it sleeps in counts.
    if let Ok(call) = std::fs::read_to_string(format!("{dir}/syscall")) {
        return match call.split_whitespace().next() {
            Some("running") | None => false,
            // `-1` is no call: the thread woke and was stopped in between.
            Some(n) => n
                .parse::<libc::c_long>()
                .is_ok_and(|n| n >= 0 && !is_lock_wait(n)),
        };
    }
    match std::fs::read_to_string(format!("{dir}/wchan")) {
        Ok(w) if !matches!(w.trim(), "" | "0") => !w.contains("futex"),
        _ => true,
    }
}

/// Whether a thread blocked in system call `call` waits on a lock.
fn is_lock_wait(call: libc::c_long) -> bool {
    /// `futex_waitv`, the same number on every architecture (not in every
    /// libc's tables yet).
    const SYS_FUTEX_WAITV: libc::c_long = 449;
    call == libc::SYS_futex || call == SYS_FUTEX_WAITV
}

/// Reads the running tasks' clocks and sums up the worker; also returns the
/// functions of the tasks seen blocked.
fn look_at(st: &mut crate::state::State) -> (Look, Vec<shoal_proto::FuncHash>) {
    let now = Instant::now();
    let mut blocked = 0;
    let mut funcs = Vec::new();
    let mut busy = 0.0;
    let blocking = &st.blocking;
    for r in st.tasks.running_mut() {
        let Some(clock) = r.clock else { continue };
        let cpu = clock.now();
        let Some((start, since)) = r.cpu_start else {
            // First look: start measuring from here.
            r.cpu_start = Some((cpu, now));
            r.cpu_seen = cpu;
            r.seen_at = now;
            continue;
        };
        let wall = now.duration_since(r.seen_at).as_secs_f64();
        let share = if wall > 0.0 {
            (cpu.saturating_sub(r.cpu_seen).as_secs_f64() / wall).min(1.0)
        } else {
            1.0
        };
        r.cpu_seen = cpu;
        r.seen_at = now;
        busy += share;
        // Blocked over the last tick and over all the pacer saw of it: a
        // thread that only waited its turn for the GIL during one tick has
        // still computed a fair share overall.
        let age = now.duration_since(r.started);
        let watched = now.duration_since(since).as_secs_f64().max(1e-9);
        let overall = cpu.saturating_sub(start).as_secs_f64() / watched;
        if age >= 2 * TICK && share < BLOCKED_BELOW && overall < BLOCKED_BELOW {
            blocked += 1;
            // A function is learnt as blocking from a task seen asleep on
            // the outside world, never from one waiting for the GIL.
            if !blocking.contains(&r.func) && waits_outside(r.tid) {
                funcs.push(r.func);
            }
        }
    }
    // Only tasks of functions known to block may use the room growth makes.
    let (mut queued, mut known) = (0, 0);
    for f in st.tasks.queued_funcs() {
        if st.blocking.contains(&f) {
            known += 1;
            queued += 1;
        } else if funcs.contains(&f) {
            queued += 1;
        }
    }
    let look = Look {
        nthreads: st.nthreads,
        cap: st.max_threads,
        allowed: st.allowed,
        running: st.tasks.in_slots(),
        queued,
        known,
        blocked,
        busy,
    };
    (look, funcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(running: u32, queued: u32, blocked: u32, busy: f64) -> Look {
        Look {
            nthreads: 1,
            cap: 32,
            allowed: running.max(1),
            running,
            queued,
            known: 0,
            blocked,
            busy,
        }
    }

    #[test]
    fn blocked_tasks_with_work_queued_let_more_start() {
        assert_eq!(decide(look(1, 5, 1, 0.0)), Step::Grow(2));
        assert_eq!(
            decide(look(4, 50, 4, 0.1)),
            Step::Grow(8),
            "doubles per tick"
        );
        assert_eq!(
            decide(look(4, 2, 4, 0.1)),
            Step::Grow(6),
            "no more than is queued"
        );
        assert_eq!(
            decide(look(30, 50, 30, 0.1)),
            Step::Grow(32),
            "never past the cap"
        );
    }

    #[test]
    fn queued_tasks_of_a_function_known_to_block_start_at_once() {
        // Learnt by another worker: nothing here has been seen blocked yet.
        let l = Look {
            known: 12,
            ..look(1, 12, 0, 0.0)
        };
        assert_eq!(decide(l), Step::Grow(13), "all queued at once");
        let capped = Look {
            known: 50,
            ..look(1, 50, 0, 0.0)
        };
        assert_eq!(decide(capped), Step::Grow(32), "never past the cap");
        // Still never while the CPU is taken.
        let busy = Look {
            known: 12,
            ..look(1, 12, 0, 1.0)
        };
        assert_eq!(decide(busy), Step::Set(1));
    }

    #[test]
    fn busy_tasks_start_nothing_extra() {
        assert_eq!(
            decide(look(1, 5, 0, 1.0)),
            Step::Set(1),
            "one CPU-bound task"
        );
        // Ten waiting and one computing on a one-thread worker: the CPU is
        // taken, so no eleventh.
        assert_eq!(decide(look(11, 5, 10, 1.0)), Step::Set(11));
    }

    #[test]
    fn threads_sharing_the_gil_do_not_look_blocked() {
        // Two CPU-bound tasks on a two-thread worker share the GIL: each
        // computes half the time, which is not blocked.
        let l = Look {
            nthreads: 2,
            cap: 32,
            allowed: 2,
            running: 2,
            queued: 6,
            known: 0,
            blocked: 0,
            busy: 1.0,
        };
        assert_eq!(decide(l), Step::Set(2));
    }

    #[test]
    fn without_queued_work_the_extra_room_goes() {
        assert_eq!(decide(look(0, 0, 0, 0.0)), Step::Set(1));
        let l = Look {
            allowed: 16,
            ..look(3, 0, 3, 0.0)
        };
        assert_eq!(decide(l), Step::Set(3));
    }

    #[test]
    fn a_sleeping_thread_waits_outside_and_a_lock_waiter_does_not() {
        use std::sync::{Arc, Barrier, Condvar, Mutex};
        let (tx, rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let tid = rx.recv().unwrap();
        // It may not be asleep yet: look until it is (bounded).
        let seen = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            waits_outside(tid)
        });
        assert!(seen, "a sleeping thread waits outside");
        sleeper.join().unwrap();

        let pair = Arc::new((Mutex::new(false), Condvar::new()));
        let ready = Arc::new(Barrier::new(2));
        let (p, r) = (pair.clone(), ready.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            r.wait();
            let (m, c) = &*p;
            let mut done = m.lock().unwrap();
            while !*done {
                done = c.wait(done).unwrap();
            }
        });
        let tid = rx.recv().unwrap();
        ready.wait();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(1));
            assert!(!waits_outside(tid), "a lock waiter sleeps in a futex");
        }
        *pair.0.lock().unwrap() = true;
        pair.1.notify_all();
        waiter.join().unwrap();
    }

    #[test]
    fn threads_taking_turns_at_a_lock_never_look_waiting_outside() {
        // Two threads hand a lock back and forth, as two Python threads do
        // the GIL: each sleeps in a futex while the other computes. Read
        // often, the kernel's files sometimes catch a thread asleep in one
        // and running in the next; that must not look like I/O.
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let lock = Arc::new(Mutex::new(0u64));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (lock, stop, tx) = (lock.clone(), stop.clone(), tx.clone());
                std::thread::spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    tx.send(unsafe { libc::gettid() }).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let mut n = lock.lock().unwrap();
                        let until = Instant::now() + Duration::from_micros(300);
                        while Instant::now() < until {
                            *n = n.wrapping_add(1);
                        }
                    }
                })
            })
            .collect();
        let tids: Vec<i32> = rx.iter().take(2).collect();
        let seen = (0..3000)
            .flat_map(|_| tids.iter().map(|&t| waits_outside(t)))
            .filter(|&outside| outside)
            .count();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(seen, 0, "lock waiters taken for waiting outside");
    }

    #[test]
    fn a_thread_clock_counts_this_threads_work() {
        let clock = ThreadClock::current().expect("a CPU clock");
        let before = clock.now();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(clock.now() > before);
    }
}
