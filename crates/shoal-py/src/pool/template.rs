//! The pool's link to its worker template: one Python process that
//! imported what the workers need once and forks each of them
//! (`python/shoal/worker/template.py`).
//!
//! The link is the template's standard input, a Unix socket: the pool
//! writes `credentials TEXT` (once, first, if the workers read a line) and
//! `start SLOT`; the template answers `started SLOT PID`, `refused SLOT WHY`
//! and, when it has reaped a worker, `exited SLOT STATUS` (the exit code, or
//! minus the signal that killed it). The socket is also the template's
//! lifeline: at its end of file the template cuts every worker's lifeline,
//! reports their exits and exits itself.
//!
//! A template that is gone or refuses (a package it imported started a
//! thread, and forking then is unsafe) is not asked again: the pool starts
//! its workers as new processes instead.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use parking_lot::Mutex;

/// How a worker process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Its template died first (and took it along): nobody saw its status.
    Unknown,
}

/// What the template says about one slot's worker.
enum Event {
    Started(u32),
    Refused(String),
    Exited(Exit),
}

/// A worker asked for: the template has not said yet whether it forked it.
pub struct Requested {
    events: Receiver<Event>,
    template: Arc<Template>,
}

impl Requested {
    /// Blocks until the template has forked the worker (`None`: it refused,
    /// or is gone; the caller starts the worker itself).
    pub fn started(self) -> Option<Forked> {
        loop {
            match self.events.recv() {
                Ok(Event::Started(pid)) => {
                    return Some(Forked {
                        pid,
                        events: self.events,
                    })
                }
                Ok(Event::Refused(why)) => {
                    self.template.give_up(&why);
                    return None;
                }
                Ok(Event::Exited(_)) => continue, // an earlier worker of this slot
                Err(_) => return None,
            }
        }
    }
}

/// A forked worker: its pid, and where its exit is reported.
pub struct Forked {
    pub pid: u32,
    events: Receiver<Event>,
}

impl Forked {
    /// Blocks until the worker exits.
    pub fn wait(self) -> Exit {
        loop {
            match self.events.recv() {
                Ok(Event::Exited(e)) => return e,
                Ok(_) => continue,
                Err(_) => return Exit::Unknown,
            }
        }
    }
}

pub struct Template {
    writer: Mutex<UnixStream>,
    /// Slots waiting for news of their worker.
    waiting: Mutex<HashMap<usize, Sender<Event>>>,
    /// Cleared when the template is gone or refused once.
    usable: AtomicBool,
    /// The template's process id (0 once it closed its end of the link).
    pid: AtomicU32,
}

/// The longest line the template sends (a refusal's reason included).
const MAX_LINE: u64 = 4096;

impl Template {
    /// Starts `program args...` with `env` as the template, from a thread
    /// of its own that lives as long as the template (the template's
    /// `PDEATHSIG` is tied to it) and reads what it reports.
    pub fn start(
        program: &str,
        args: &[String],
        env: &[(String, String)],
        credentials: Option<&str>,
    ) -> std::io::Result<Arc<Template>> {
        let (ours, theirs) = UnixStream::pair()?;
        let reader = ours.try_clone()?;
        let template = Arc::new(Template {
            writer: Mutex::new(ours),
            waiting: Mutex::new(HashMap::new()),
            usable: AtomicBool::new(true),
            pid: AtomicU32::new(0),
        });
        if let Some(line) = credentials {
            template.send(&format!("credentials {line}\n"))?;
        }
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .env("SHOAL_PARENT_PID", std::process::id().to_string())
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (spawned_tx, spawned_rx) = channel();
        let link = template.clone();
        std::thread::Builder::new()
            .name("shoal-worker-template".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = spawned_tx.send(Err(e));
                        return;
                    }
                };
                drop(cmd); // our copy of the template's end of the socket
                link.pid.store(child.id(), Ordering::SeqCst);
                let _ = spawned_tx.send(Ok(()));
                link.read_events(reader);
                // Its end of the socket closed: it is exiting, nothing to
                // kill any more (and its pid must not outlive the reap).
                link.pid.store(0, Ordering::SeqCst);
                let _ = child.wait();
            })?;
        match spawned_rx.recv() {
            Ok(Ok(())) => Ok(template),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the template's thread died")),
        }
    }

    /// Asks for a worker in `slot`; `None` if the template is gone or has
    /// refused before (the caller starts the worker itself).
    pub fn request(self: &Arc<Self>, slot: usize) -> Option<Requested> {
        if !self.usable.load(Ordering::SeqCst) {
            return None;
        }
        let (tx, rx) = channel();
        self.waiting.lock().insert(slot, tx);
        if self.send(&format!("start {slot}\n")).is_err() {
            self.waiting.lock().remove(&slot);
            self.give_up("its link is closed");
            return None;
        }
        Some(Requested {
            events: rx,
            template: self.clone(),
        })
    }

    /// Ends the link: the template cuts its workers' lifelines and exits
    /// once they have.
    pub fn close(&self) {
        self.usable.store(false, Ordering::SeqCst);
        let _ = self.writer.lock().shutdown(Shutdown::Write);
    }

    /// Kills the template (its forks die with it): one that did not go
    /// when closed, say stuck importing a module.
    pub fn kill(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: kill takes a pid and a signal number; the pid is our
            // child's, not reaped yet (it is cleared before the reap).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }

    fn give_up(&self, why: &str) {
        if self.usable.swap(false, Ordering::SeqCst) {
            tracing::info!("workers are started as new processes from now on: the template {why}");
        }
    }

    fn send(&self, line: &str) -> std::io::Result<()> {
        self.writer.lock().write_all(line.as_bytes())
    }

    fn read_events(&self, stream: UnixStream) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            match (&mut reader).take(MAX_LINE).read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Some((slot, event)) = parse_event(line.trim_end()) else {
                tracing::debug!("the template said something unexpected: {line:?}");
                continue;
            };
            let mut waiting = self.waiting.lock();
            if let Some(tx) = waiting.get(&slot) {
                let last = matches!(event, Event::Exited(_));
                let _ = tx.send(event);
                if last {
                    waiting.remove(&slot);
                }
            }
        }
        // Gone: every slot still waiting hears so (its sender is dropped).
        self.give_up("exited");
        self.waiting.lock().clear();
    }
}

fn parse_event(line: &str) -> Option<(usize, Event)> {
    let mut words = line.splitn(3, ' ');
    let kind = words.next()?;
    let slot: usize = words.next()?.parse().ok()?;
    let rest = words.next().unwrap_or("");
    let event = match kind {
        "started" => Event::Started(rest.parse().ok()?),
        "refused" => Event::Refused(rest.to_string()),
        "exited" => {
            let status: i32 = rest.parse().ok()?;
            Event::Exited(if status < 0 {
                Exit::Signal(-status)
            } else {
                Exit::Code(status)
            })
        }
        _ => return None,
    };
    Some((slot, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_and_nonsense_is_refused() {
        assert!(matches!(
            parse_event("started 3 4242"),
            Some((3, Event::Started(4242)))
        ));
        assert!(matches!(
            parse_event("exited 0 -9"),
            Some((0, Event::Exited(Exit::Signal(9))))
        ));
        assert!(matches!(
            parse_event("exited 1 75"),
            Some((1, Event::Exited(Exit::Code(75))))
        ));
        match parse_event("refused 2 a package started a thread") {
            Some((2, Event::Refused(why))) => assert_eq!(why, "a package started a thread"),
            _ => panic!("a refusal keeps its reason"),
        }
        for bad in [
            "",
            "started",
            "started x 1",
            "started 1 -",
            "exited 1",
            "hello 1 2",
        ] {
            assert!(parse_event(bad).is_none(), "{bad:?}");
        }
    }
}
