//! Making sure a worker never outlives the process that started it.
//!
//! Two independent mechanisms: the parent holds the write end of our stdin,
//! so its death (even by SIGKILL) closes the pipe and a watcher thread exits
//! the process; and on Linux the kernel sends SIGKILL when the parent's
//! spawning thread dies (`PR_SET_PDEATHSIG`).

use std::io::Read;

/// Exits the process at once when stdin reaches end-of-file.
pub fn exit_on_stdin_eof() {
    let spawned = std::thread::Builder::new()
        .name("shoal-lifeline".into())
        .spawn(|| {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            tracing::info!("parent is gone (lifeline closed); exiting");
            // SAFETY: _exit ends the process without running destructors,
            // which is the point: user code may hold the interpreter.
            unsafe { libc::_exit(0) };
        });
    if let Err(e) = spawned {
        tracing::warn!("could not watch the lifeline: {e}");
    }
}

/// Asks the kernel to kill us when our parent dies, and exits at once if the
/// parent is already gone (it is no longer `expected_parent`).
pub fn die_with_parent(expected_parent: Option<u32>) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number.
        unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
        }
    }
    if let Some(ppid) = expected_parent {
        // SAFETY: getppid has no preconditions.
        let actual = unsafe { libc::getppid() } as u32;
        if actual != ppid {
            // SAFETY: see exit_on_stdin_eof.
            unsafe { libc::_exit(0) };
        }
    }
}
