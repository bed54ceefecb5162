//! Every conversion between Python and the engine's types, in one place:
//! pickle frames (`frames`, uncopied both ways), a graph's nodes read into
//! task specs (`graph`), results kept as objects
//! (`held`), a call's arguments pickled in one pass (`pickle`), the
//! values of tasks and
//! their failures (`types`), coordination requests and answers (`coord`),
//! and the cluster as a client sees it (`cluster`). The classes the rest
//! of the extension hands to Python are defined here; the rest only calls
//! their constructors.

pub mod cluster;
pub mod coord;
pub mod frames;
pub mod graph;
pub mod held;
pub mod pickle;
pub mod types;
