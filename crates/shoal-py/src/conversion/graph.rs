//! A part of a lazy graph read into task specs in one pass.
//!
//! `shoal.core.graph.submit_graph` sends a graph's nodes a part at a time;
//! this is the step it takes once per task (the key, the function, the
//! pickled arguments, the dependencies' keys, whether the client wants the
//! result), read straight from each node's slots into the wire's
//! `TaskSpec`, with no Python object made per task.

use std::collections::HashSet;

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PySet, PyTuple, PyType};
use shoal_proto::{FunctionDef, Payload, TaskSpec, LITERAL_FUNC};

use crate::frames::Frames;

/// The nodes reachable from `roots`, each key once, dependencies first
/// (depth-first post-order, iterative: a deep graph never recurses). Only
/// `node_type`s that hold no result yet (`_future` is None) are part of the
/// graph; anything else (a future, a persisted node) is left out, with what
/// is behind it.
#[pyfunction]
pub fn node_order<'py>(
    roots: &Bound<'py, PyList>,
    node_type: &Bound<'py, PyType>,
) -> PyResult<Bound<'py, PyList>> {
    let py = roots.py();
    let order = PyList::empty(py);
    let seen = PySet::empty(py)?;
    let mut stack: Vec<(Bound<'py, PyAny>, bool)> =
        roots.iter().rev().map(|r| (r, false)).collect();
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.append(&node)?;
            continue;
        }
        // Nodes and futures both keep their key in `_key`.
        let key = node.getattr(intern!(py, "_key"))?;
        if seen.contains(&key)? {
            continue;
        }
        seen.add(&key)?;
        if !node.is_instance(node_type)? || !node.getattr(intern!(py, "_future"))?.is_none() {
            continue;
        }
        let deps = node.getattr(intern!(py, "_deps"))?;
        let deps = deps.cast::<PyTuple>()?;
        stack.push((node, true));
        for d in deps.iter().rev() {
            if d.is_instance(node_type)? {
                stack.push((d, false));
            }
        }
    }
    Ok(order)
}

/// Task specs for some nodes of a graph, with the functions they call; made
/// from the nodes, then handed whole to `ClientCore.submit_graph_part`.
#[pyclass(module = "shoal._engine")]
pub struct GraphPart {
    /// Each function the tasks call, once: its hash and the node's pickled
    /// `(hash, name, bytes)`, copied only if it is sent (see
    /// [`GraphPart::take`]).
    functions: Vec<(u64, Py<PyTuple>)>,
    tasks: Vec<TaskSpec>,
    /// Keys of the tasks the client wants (holds futures for), in order.
    #[pyo3(get)]
    pub wanted_keys: Vec<String>,
    /// Bytes of the tasks' pickled arguments.
    #[pyo3(get)]
    pub nbytes: u64,
    sent: bool,
}

#[pymethods]
impl GraphPart {
    /// Reads `nodes` (`shoal.core.graph.Node`s, dependencies first). A node
    /// whose key is in `wanted` is wanted by the client. Every task takes
    /// the options at index `options`, except a node with options of its
    /// own (`_options`), whose index `options_of(node)` gives.
    #[new]
    fn new(
        nodes: &Bound<'_, PyList>,
        wanted: &Bound<'_, PySet>,
        options: u32,
        options_of: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let py = nodes.py();
        let mut part = GraphPart {
            functions: Vec::new(),
            tasks: Vec::with_capacity(nodes.len()),
            wanted_keys: Vec::new(),
            nbytes: 0,
            sent: false,
        };
        let mut seen: HashSet<u64> = HashSet::new();
        for node in nodes.iter() {
            let key_obj = node.getattr(intern!(py, "_key"))?;
            let key: String = key_obj.extract()?;
            let func_obj = node.getattr(intern!(py, "_func"))?;
            let (func, frames, deps) = if func_obj.is_none() {
                let frames = node.call_method0(intern!(py, "_spec_frames"))?;
                (LITERAL_FUNC, frames.extract::<Frames>()?, Vec::new())
            } else {
                let func = func_obj.cast::<PyTuple>()?;
                let hash: u64 = func.get_item(0)?.extract()?;
                if seen.insert(hash) {
                    part.functions.push((hash, func.clone().unbind()));
                }
                let frames = node.getattr(intern!(py, "_frames"))?.extract::<Frames>()?;
                let dep_nodes = node.getattr(intern!(py, "_deps"))?;
                let dep_nodes = dep_nodes.cast::<PyTuple>()?;
                let deps = dep_nodes
                    .iter()
                    .map(|d| d.getattr(intern!(py, "_key"))?.extract::<String>())
                    .collect::<PyResult<Vec<_>>>()?;
                (hash, frames, deps)
            };
            let frames = frames.for_spec(&key)?;
            let own = node.getattr(intern!(py, "_options"))?;
            let options = if own.is_none() {
                options
            } else {
                options_of.call1((&node,))?.extract()?
            };
            let is_wanted = wanted.contains(&key_obj)?;
            if is_wanted {
                part.wanted_keys.push(key.clone());
            }
            let args = Payload { frames: frames.0 };
            part.nbytes += args.nbytes();
            part.tasks.push(TaskSpec {
                key,
                func,
                args,
                deps,
                wanted: is_wanted,
                options,
            });
        }
        Ok(part)
    }

    fn __len__(&self) -> usize {
        self.tasks.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "GraphPart({} tasks, {} functions)",
            self.tasks.len(),
            self.functions.len()
        )
    }
}

impl GraphPart {
    /// The tasks, taken out (a part is sent once), with the definitions of
    /// the functions they call for which `unsent(hash)` holds.
    pub fn take(
        &mut self,
        py: Python<'_>,
        unsent: impl Fn(u64) -> bool,
    ) -> PyResult<(Vec<FunctionDef>, Vec<TaskSpec>)> {
        if self.sent {
            return Err(PyRuntimeError::new_err("this graph part was already sent"));
        }
        self.sent = true;
        let functions = self
            .functions
            .drain(..)
            .filter(|(hash, _)| unsent(*hash))
            .map(|(hash, func)| {
                let func = func.bind(py);
                let data = func.get_item(2)?;
                Ok(FunctionDef {
                    hash,
                    name: func.get_item(1)?.extract()?,
                    bytes: bytes::Bytes::copy_from_slice(data.cast::<PyBytes>()?.as_bytes()),
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok((functions, std::mem::take(&mut self.tasks)))
    }
}
