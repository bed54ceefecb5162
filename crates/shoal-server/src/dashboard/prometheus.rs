//! `/metrics` in Prometheus' text exposition format (version 0.0.4).

use std::fmt::Write;

use super::Status;

/// A per-prefix counter: its name, its help, and how to read it.
type PerPrefix = (
    &'static str,
    &'static str,
    fn(&shoal_core::PrefixStats) -> f64,
);

/// A per-worker gauge: its name, its help, and how to read it.
type PerWorker = (
    &'static str,
    &'static str,
    fn(&shoal_core::WorkerView) -> f64,
);

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The metrics text for one publication.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let snap = &s.snapshot;
    family(
        &mut out,
        "shoal_tasks",
        "gauge",
        "Tasks the scheduler holds, by state.",
    );
    let t = &snap.tasks;
    for (state, n) in [
        ("released", t.released),
        ("waiting", t.waiting),
        ("queued", t.queued),
        ("processing", t.processing),
        ("memory", t.memory),
        ("erred", t.erred),
    ] {
        let _ = writeln!(out, "shoal_tasks{{state=\"{state}\"}} {n}");
    }
    family(
        &mut out,
        "shoal_prefix_tasks",
        "gauge",
        "Tasks by key prefix (function name) and state.",
    );
    for p in &snap.prefixes {
        let name = label(&p.name);
        let c = &p.states;
        for (state, n) in [
            ("waiting", c.waiting),
            ("queued", c.queued),
            ("processing", c.processing),
            ("memory", c.memory),
            ("erred", c.erred),
        ] {
            let _ = writeln!(
                out,
                "shoal_prefix_tasks{{prefix=\"{name}\",state=\"{state}\"}} {n}"
            );
        }
    }
    let per_prefix: [PerPrefix; 3] = [
        (
            "shoal_tasks_completed_total",
            "Computations that finished, by key prefix.",
            |p| p.completed as f64,
        ),
        (
            "shoal_tasks_failed_total",
            "Computations that raised, by key prefix.",
            |p| p.failed as f64,
        ),
        (
            "shoal_task_compute_seconds_total",
            "Seconds spent computing finished tasks, by key prefix.",
            |p| p.compute_seconds,
        ),
    ];
    for (name, help, value) in per_prefix {
        family(&mut out, name, "counter", help);
        for p in &snap.prefixes {
            let _ = writeln!(out, "{name}{{prefix=\"{}\"}} {}", label(&p.name), value(p));
        }
    }
    family(&mut out, "shoal_workers", "gauge", "Connected workers.");
    let _ = writeln!(out, "shoal_workers {}", snap.workers.len());
    family(&mut out, "shoal_clients", "gauge", "Connected clients.");
    let _ = writeln!(out, "shoal_clients {}", snap.clients);
    family(
        &mut out,
        "shoal_worker_threads",
        "gauge",
        "Executor threads per worker.",
    );
    for w in &snap.workers {
        let _ = writeln!(
            out,
            "shoal_worker_threads{{worker=\"{}\"}} {}",
            label(&w.address),
            w.nthreads
        );
    }
    let per_worker: [PerWorker; 7] = [
        (
            "shoal_worker_memory_rss_bytes",
            "Resident memory of each worker process.",
            |w| w.metrics.rss as f64,
        ),
        (
            "shoal_worker_memory_managed_bytes",
            "Bytes of results each worker holds in memory.",
            |w| w.metrics.managed as f64,
        ),
        (
            "shoal_worker_memory_spilled_bytes",
            "Bytes of results each worker spilled to disk.",
            |w| w.metrics.spilled as f64,
        ),
        (
            "shoal_worker_memory_limit_bytes",
            "Memory each worker may use.",
            |w| w.memory_limit as f64,
        ),
        (
            "shoal_worker_cpu_percent",
            "CPU use of each worker process, in percent of one core.",
            |w| w.metrics.cpu,
        ),
        (
            "shoal_worker_tasks_running",
            "Tasks running on each worker.",
            |w| f64::from(w.metrics.running),
        ),
        (
            "shoal_worker_tasks_queued",
            "Tasks waiting for a thread on each worker.",
            |w| f64::from(w.metrics.queued),
        ),
    ];
    for (name, help, value) in per_worker {
        family(&mut out, name, "gauge", help);
        for w in &snap.workers {
            let _ = writeln!(
                out,
                "{name}{{worker=\"{}\"}} {}",
                label(&w.address),
                value(w)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_belongs_to_a_declared_family() {
        let mut core = shoal_core::Core::default();
        let mut out = Vec::new();
        core.handle(shoal_core::Event::ClientConnected(1), &mut out);
        let status = Status {
            time: 0.0,
            started: 0.0,
            rate: 0.0,
            stream_end: 0,
            snapshot: core.snapshot(),
        };
        let text = render(&status);
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(declared.contains(name), "{line}");
            }
        }
        assert!(text.contains("shoal_clients 1\n"));
        assert!(text.contains("shoal_tasks{state=\"processing\"} 0\n"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
