//! The scheduler's metadata (Dask's `set_metadata`/`get_metadata`): a tree
//! of named dicts whose leaves are pickled values. Clients send and receive
//! a subtree flattened into [`MetaEntry`] rows, so a path can reach inside
//! a dict that was set whole.

use std::collections::BTreeMap;

use shoal_proto::{MetaEntry, Payload};

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(Payload),
    Dict(BTreeMap<String, Node>),
}

/// The whole metadata tree (an empty dict at first).
#[derive(Debug)]
pub(crate) struct Metadata {
    root: Node,
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            root: Node::Dict(BTreeMap::new()),
        }
    }
}

impl Metadata {
    /// Sets the subtree at `path` (not empty) to the one `entries` describe;
    /// a leaf on the way is replaced by a dict, as in Dask. `Err` says why
    /// `entries` do not describe a tree.
    pub fn set(&mut self, path: &[String], entries: Vec<MetaEntry>) -> Result<(), String> {
        let Some((last, parents)) = path.split_last() else {
            return Err("a metadata key needs at least one part".into());
        };
        let value = build(entries)?;
        let mut node = &mut self.root;
        for part in parents {
            node = child_dict(node, part);
        }
        if let Node::Dict(children) = ensure_dict(node) {
            children.insert(last.clone(), value);
        }
        Ok(())
    }

    /// The subtree at `path`, flattened (the root row first); `None` if
    /// nothing is there.
    pub fn get(&self, path: &[String]) -> Option<Vec<MetaEntry>> {
        let mut node = &self.root;
        for part in path {
            match node {
                Node::Dict(children) => node = children.get(part)?,
                Node::Leaf(_) => return None,
            }
        }
        let mut out = Vec::new();
        flatten(node, &mut Vec::new(), &mut out);
        Some(out)
    }
}

fn ensure_dict(node: &mut Node) -> &mut Node {
    if matches!(node, Node::Leaf(_)) {
        *node = Node::Dict(BTreeMap::new());
    }
    node
}

fn child_dict<'a>(node: &'a mut Node, part: &str) -> &'a mut Node {
    match ensure_dict(node) {
        Node::Dict(children) => ensure_dict(
            children
                .entry(part.to_string())
                .or_insert_with(|| Node::Dict(BTreeMap::new())),
        ),
        Node::Leaf(_) => unreachable!("ensure_dict made a dict"),
    }
}

/// The tree `entries` describe: rows in pre-order, each a path relative to
/// the root (the root's is empty) and a leaf's value or `None` for a dict;
/// every row's parent comes before it and is a dict.
fn build(entries: Vec<MetaEntry>) -> Result<Node, String> {
    let mut rows = entries.into_iter();
    let Some(first) = rows.next() else {
        return Err("no metadata value was sent".into());
    };
    if !first.path.is_empty() {
        return Err("the first metadata row must be the value itself".into());
    }
    let mut root = match first.value {
        Some(v) => {
            return if rows.next().is_none() {
                Ok(Node::Leaf(v))
            } else {
                Err("a leaf has no children".into())
            }
        }
        None => Node::Dict(BTreeMap::new()),
    };
    for row in rows {
        let Some((last, parents)) = row.path.split_last() else {
            return Err("only the first metadata row may be the root".into());
        };
        let mut node = &mut root;
        for part in parents {
            node = match node {
                Node::Dict(children) => children
                    .get_mut(part)
                    .ok_or_else(|| format!("metadata row under {part:?} comes before it"))?,
                Node::Leaf(_) => return Err(format!("metadata {part:?} is a value, not a dict")),
            };
        }
        let Node::Dict(children) = node else {
            return Err("metadata rows under a value".into());
        };
        let value = match row.value {
            Some(v) => Node::Leaf(v),
            None => Node::Dict(BTreeMap::new()),
        };
        children.insert(last.clone(), value);
    }
    Ok(root)
}

fn flatten(node: &Node, path: &mut Vec<String>, out: &mut Vec<MetaEntry>) {
    match node {
        Node::Leaf(v) => out.push(MetaEntry {
            path: path.clone(),
            value: Some(v.clone()),
        }),
        Node::Dict(children) => {
            out.push(MetaEntry {
                path: path.clone(),
                value: None,
            });
            for (name, child) in children {
                path.push(name.clone());
                flatten(child, path, out);
                path.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(b: u8) -> Option<Payload> {
        Some(Payload {
            frames: vec![bytes::Bytes::from(vec![b])],
        })
    }

    fn row(path: &[&str], value: Option<Payload>) -> MetaEntry {
        MetaEntry {
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
        }
    }

    fn p(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_dict_set_whole_is_reached_into_and_read_back() {
        let mut m = Metadata::default();
        let dict = vec![row(&[], None), row(&["b"], leaf(1)), row(&["c"], None)];
        m.set(&p(&["a"]), dict.clone()).unwrap();
        assert_eq!(m.get(&p(&["a"])), Some(dict));
        assert_eq!(m.get(&p(&["a", "b"])), Some(vec![row(&[], leaf(1))]));
        assert_eq!(m.get(&p(&["a", "c"])), Some(vec![row(&[], None)]));
        assert_eq!(m.get(&p(&["a", "b", "x"])), None);
        assert_eq!(m.get(&p(&["nothing"])), None);
    }

    #[test]
    fn setting_through_a_path_makes_dicts_and_replaces_values_on_the_way() {
        let mut m = Metadata::default();
        m.set(&p(&["a"]), vec![row(&[], leaf(1))]).unwrap();
        m.set(&p(&["a", "b", "c"]), vec![row(&[], leaf(2))])
            .unwrap();
        assert_eq!(
            m.get(&p(&["a"])),
            Some(vec![
                row(&[], None),
                row(&["b"], None),
                row(&["b", "c"], leaf(2))
            ])
        );
    }

    #[test]
    fn malformed_rows_are_refused() {
        let mut m = Metadata::default();
        assert!(m.set(&[], vec![row(&[], leaf(1))]).is_err());
        assert!(m.set(&p(&["a"]), vec![]).is_err());
        assert!(m.set(&p(&["a"]), vec![row(&["x"], leaf(1))]).is_err());
        assert!(m
            .set(&p(&["a"]), vec![row(&[], leaf(1)), row(&["x"], leaf(1))])
            .is_err());
        let orphan = vec![row(&[], None), row(&["x", "y"], leaf(1))];
        assert!(m.set(&p(&["a"]), orphan).is_err());
        assert_eq!(m.get(&p(&["a"])), None, "nothing was set");
    }
}
