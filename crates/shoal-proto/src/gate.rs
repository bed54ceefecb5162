//! A bound on connections that have not proved the token yet.
//!
//! Every accepted connection holds a file descriptor and a task until its
//! handshake ends (at most the handshake's time limit). Without a bound, a
//! few hundred silent connections a second exhaust a process's file
//! descriptors and nobody, not even a rightful client, gets in. So each
//! server admits connections through a [`Gate`]: when an address already
//! has its share of handshakes under way, or the process has its total,
//! the oldest one is closed to make room. A caller that proves its token
//! within a few milliseconds is never the oldest for long; a flood only
//! ever holds the gate's total.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::task::AbortHandle;

/// Handshakes under way, by caller address, oldest first.
pub struct Gate {
    per_address: usize,
    total: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    by_address: HashMap<IpAddr, VecDeque<Entry>>,
    count: usize,
    /// Evicted before their task was attached (each is attached right
    /// after it enters, so this holds a few ids at most).
    evicted_early: std::collections::HashSet<u64>,
}

struct Entry {
    id: u64,
    /// None until the task that runs the handshake is attached.
    task: Option<AbortHandle>,
}

impl Gate {
    /// A gate admitting at most `per_address` handshakes at once from one
    /// address and `total` from all.
    pub fn new(per_address: usize, total: usize) -> Arc<Gate> {
        Arc::new(Gate {
            per_address: per_address.max(1),
            total: total.max(1),
            state: Mutex::default(),
        })
    }

    /// A gate sized for this process's file-descriptor limit: at most a
    /// quarter of it (and 1,024) for handshakes, half of that per address.
    pub fn for_this_process() -> Arc<Gate> {
        let total = open_files_limit().map_or(1024, |n| (n / 4).clamp(16, 1024));
        Gate::new(total / 2, total)
    }

    /// Registers a handshake from `addr`, closing the oldest ones if the
    /// gate is full. The handshake counts until the returned pass drops.
    pub fn enter(self: &Arc<Self>, addr: IpAddr) -> Pass {
        let mut st = self.state.lock();
        let id = st.next;
        st.next += 1;
        let queue = st.by_address.entry(addr).or_default();
        queue.push_back(Entry { id, task: None });
        let over_address = queue.len() > self.per_address;
        st.count += 1;
        if over_address {
            st.evict_oldest_of(addr);
        }
        while st.count > self.total {
            if !st.evict_oldest() {
                break;
            }
        }
        Pass {
            gate: self.clone(),
            addr,
            id,
        }
    }

    /// Runs `handshake(pass)` on a task of its own, counted by the gate
    /// from now until the pass drops, and closed if the gate evicts it: how
    /// an accept loop hands over each connection from `addr`.
    pub fn spawn<F>(self: &Arc<Self>, addr: IpAddr, handshake: impl FnOnce(Pass) -> F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let pass = self.enter(addr);
        let place = pass.place();
        let task = tokio::spawn(handshake(pass));
        self.attach(place, task.abort_handle());
    }

    /// Handshakes under way.
    pub fn len(&self) -> usize {
        self.state.lock().count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    fn evict_oldest_of(&mut self, addr: IpAddr) {
        if let Some(queue) = self.by_address.get_mut(&addr) {
            if let Some(oldest) = queue.pop_front() {
                self.count -= 1;
                match oldest.task {
                    Some(task) => task.abort(),
                    None => {
                        self.evicted_early.insert(oldest.id);
                    }
                }
            }
            if queue.is_empty() {
                self.by_address.remove(&addr);
            }
        }
    }

    /// Closes the oldest handshake under way (each address's queue is
    /// oldest first, so it is the oldest of their fronts; a scan of the
    /// addresses, done only when the gate is full); false if there is none.
    fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .by_address
            .iter()
            .filter_map(|(addr, q)| Some((q.front()?.id, *addr)))
            .min();
        match oldest {
            Some((_, addr)) => {
                self.evict_oldest_of(addr);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, addr: IpAddr, id: u64) {
        if let Some(queue) = self.by_address.get_mut(&addr) {
            if let Some(i) = queue.iter().position(|e| e.id == id) {
                queue.remove(i);
                self.count -= 1;
            }
            if queue.is_empty() {
                self.by_address.remove(&addr);
            }
        }
    }
}

/// A handshake's place in the [`Gate`]; leaves it when dropped.
pub struct Pass {
    gate: Arc<Gate>,
    addr: IpAddr,
    id: u64,
}

impl Pass {
    /// Where this pass stands, to attach its task once the pass has
    /// moved into it.
    pub fn place(&self) -> Place {
        Place {
            addr: self.addr,
            id: self.id,
        }
    }
}

/// A [`Pass`]'s place in its gate.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    addr: IpAddr,
    id: u64,
}

impl Gate {
    /// [`Pass::attach`] for a pass that moved into its task: a task whose
    /// handshake already ended or was evicted is left alone or closed.
    pub fn attach(&self, place: Place, task: AbortHandle) {
        let mut st = self.state.lock();
        let st = &mut *st;
        let live = st
            .by_address
            .get_mut(&place.addr)
            .and_then(|q| q.iter_mut().find(|e| e.id == place.id));
        match live {
            Some(e) => e.task = Some(task),
            // Evicted before its task was known: close it now.
            None if st.evicted_early.remove(&place.id) => task.abort(),
            // Its handshake ended (the connection may be admitted).
            None => {}
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.state.lock().remove(self.addr, self.id);
    }
}

/// What an accept loop does when `accept` fails: out of file descriptors
/// (or another passing error), it says so at most once a second and waits
/// a moment, rather than spinning on a listener that fails at once.
pub async fn accept_failed(e: std::io::Error) {
    crate::throttle::warn(format_args!(
        "could not accept a connection: {e} (connections are being closed to make room)"
    ));
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}

/// This process's soft limit on open files, if it can be read.
fn open_files_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// A task that runs until aborted, and whether it was.
    fn task(rt: &tokio::runtime::Runtime) -> tokio::task::JoinHandle<()> {
        rt.spawn(std::future::pending::<()>())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn one_address_over_its_share_loses_its_oldest_handshake() {
        let rt = runtime();
        let gate = Gate::new(2, 100);
        let tasks: Vec<_> = (0..3).map(|_| task(&rt)).collect();
        let passes: Vec<_> = tasks
            .iter()
            .map(|t| {
                let p = gate.enter(ip(1));
                gate.attach(p.place(), t.abort_handle());
                p
            })
            .collect();
        rt.block_on(tokio::task::yield_now());
        assert!(tasks[0].is_finished(), "the oldest was closed");
        assert!(!tasks[1].is_finished() && !tasks[2].is_finished());
        assert_eq!(gate.len(), 2);
        // Another address has a share of its own.
        let other = gate.enter(ip(2));
        assert_eq!(gate.len(), 3);
        drop(passes);
        drop(other);
        assert!(gate.is_empty());
    }

    #[test]
    fn the_total_evicts_the_oldest_of_any_address() {
        let rt = runtime();
        let gate = Gate::new(10, 3);
        let first = task(&rt);
        let a = gate.enter(ip(1));
        gate.attach(a.place(), first.abort_handle());
        let _b = gate.enter(ip(2));
        let _c = gate.enter(ip(3));
        assert!(!first.is_finished());
        let _d = gate.enter(ip(4));
        rt.block_on(tokio::task::yield_now());
        assert!(first.is_finished(), "the oldest was closed");
        assert_eq!(gate.len(), 3);
        drop(a); // its pass drops after eviction: nothing counted twice
        assert_eq!(gate.len(), 3);
    }

    #[test]
    fn a_pass_evicted_before_its_task_is_attached_closes_the_task() {
        let rt = runtime();
        let gate = Gate::new(1, 10);
        let early = gate.enter(ip(1));
        let _late = gate.enter(ip(1));
        let t = task(&rt);
        gate.attach(early.place(), t.abort_handle());
        rt.block_on(tokio::task::yield_now());
        assert!(t.is_finished());
    }

    #[test]
    fn a_handshake_that_ended_before_its_task_was_attached_is_left_alone() {
        let rt = runtime();
        let gate = Gate::new(1, 10);
        let pass = gate.enter(ip(1));
        let place = pass.place();
        drop(pass); // admitted, say: the connection lives on
        let t = task(&rt);
        gate.attach(place, t.abort_handle());
        rt.block_on(tokio::task::yield_now());
        assert!(!t.is_finished());
    }

    #[test]
    fn spawned_handshakes_count_until_they_end_and_the_oldest_is_closed() {
        let rt = runtime();
        let gate = Gate::new(1, 10);
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        let (second_tx, second_rx) = tokio::sync::oneshot::channel::<()>();
        rt.block_on(async {
            // Each holds its pass until told to finish (or closed).
            gate.spawn(ip(1), |pass| async move {
                let _ = first_rx.await;
                drop(pass);
            });
            assert_eq!(gate.len(), 1);
            gate.spawn(ip(1), |pass| async move {
                let _ = second_rx.await;
                drop(pass);
            });
            tokio::task::yield_now().await;
        });
        // Over its address's share: the first was closed (its receiver
        // dropped with it), the second still counts until it ends.
        assert!(first_tx.send(()).is_err(), "the oldest was closed");
        assert_eq!(gate.len(), 1);
        second_tx.send(()).unwrap();
        rt.block_on(async {
            while !gate.is_empty() {
                tokio::task::yield_now().await;
            }
        });
    }

    #[test]
    fn bookkeeping_stays_bounded_under_a_flood_of_short_handshakes() {
        let gate = Gate::new(4, 8);
        let mut held = VecDeque::new();
        for i in 0..100_000u32 {
            held.push_back(gate.enter(ip((i % 7) as u8)));
            if held.len() > 3 {
                // Finish out of order now and then.
                let j = (i as usize * 7) % held.len();
                held.remove(j);
            }
            let st = gate.state.lock();
            assert!(st.count <= 8);
            assert!(st.by_address.len() <= 8);
        }
        held.clear();
        assert!(gate.is_empty());
    }
}
