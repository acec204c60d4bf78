//! Execution order: keeps the nodes the graph output depends on and sorts them
//! topologically (files need not list nodes in order), reporting undefined inputs
//! and cycles.

use super::error::OnnxError;
use super::proto::NodeProto;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Display name of node `index`: its name, or its index and first output.
pub(crate) fn node_name(node: &NodeProto, index: usize) -> String {
    match node.name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match node.output.first() {
            Some(o) => format!("#{index} -> {o}"),
            None => format!("#{index}"),
        },
    }
}

/// Indices of the nodes needed to compute `outputs`, in an order where every
/// input is produced before it is read (file order among independent nodes).
/// `defined` holds the names available before any node runs (graph inputs and
/// initializers).
pub(crate) fn order(
    nodes: &[NodeProto],
    defined: &HashSet<&str>,
    outputs: &[&str],
) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if defined.contains(o.as_str()) || producer.insert(o.as_str(), i).is_some() {
                return Err(OnnxError::Model(format!(
                    "value '{o}' is defined more than once (node '{}')",
                    node_name(n, i)
                )));
            }
        }
    }
    // Nodes the outputs depend on (iterative DFS, so deep graphs cannot overflow
    // the stack).
    let mut needed = vec![false; nodes.len()];
    let mut stack: Vec<usize> = Vec::new();
    for o in outputs {
        match producer.get(o) {
            Some(&p) => stack.push(p),
            None if defined.contains(o) => {}
            None => {
                return Err(OnnxError::Model(format!(
                    "graph output '{o}' is not produced by any node"
                )))
            }
        }
    }
    while let Some(i) = stack.pop() {
        if needed[i] {
            continue;
        }
        needed[i] = true;
        for inp in nodes[i].input.iter().filter(|s| !s.is_empty()) {
            match producer.get(inp.as_str()) {
                Some(&p) => {
                    if !needed[p] {
                        stack.push(p)
                    }
                }
                None if defined.contains(inp.as_str()) => {}
                None => {
                    return Err(OnnxError::Undefined {
                        node: node_name(&nodes[i], i),
                        op: nodes[i].op_type.clone().unwrap_or_default(),
                        input: inp.clone(),
                    })
                }
            }
        }
    }
    // Kahn's algorithm over the needed nodes; the ready set is ordered by file
    // position so well-ordered files keep their order.
    let mut pending = vec![0usize; nodes.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for i in (0..nodes.len()).filter(|&i| needed[i]) {
        for inp in nodes[i].input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(inp.as_str()) {
                pending[i] += 1;
                readers[p].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..nodes.len())
        .filter(|&i| needed[i] && pending[i] == 0)
        .collect();
    let mut out = Vec::new();
    while let Some(i) = ready.pop_first() {
        out.push(i);
        for &r in &readers[i] {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.insert(r);
            }
        }
    }
    let total = needed.iter().filter(|&&n| n).count();
    if out.len() != total {
        // Every node left waits on another node left: walking to such a producer
        // from any of them must come back to a node already seen, on a cycle.
        let left = |i: usize| needed[i] && pending[i] > 0;
        let mut seen: HashMap<usize, usize> = HashMap::new();
        let mut path = Vec::new();
        let mut cur = (0..nodes.len()).find(|&i| left(i));
        while let Some(i) = cur {
            if let Some(&at) = seen.get(&i) {
                // In data-flow order, starting at the node first in the file.
                let mut cycle: Vec<usize> = path[at..].to_vec();
                cycle.reverse();
                let first = (0..cycle.len()).min_by_key(|&k| cycle[k]).unwrap_or(0);
                cycle.rotate_left(first);
                return Err(OnnxError::Cycle {
                    nodes: cycle.iter().map(|&j| node_name(&nodes[j], j)).collect(),
                });
            }
            seen.insert(i, path.len());
            path.push(i);
            cur = nodes[i]
                .input
                .iter()
                .filter_map(|s| producer.get(s.as_str()).copied())
                .find(|&p| left(p));
        }
        return Err(OnnxError::Cycle {
            nodes: path.iter().map(|&j| node_name(&nodes[j], j)).collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
        NodeProto {
            name: Some(name.into()),
            op_type: Some("Relu".into()),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn sorts_and_prunes() {
        let nodes = vec![
            node("c", &["b"], &["y"]),
            node("dead", &["x"], &["z"]),
            node("a", &["x"], &["a"]),
            node("b", &["a", "a"], &["b"]),
        ];
        let defined: HashSet<&str> = ["x"].into_iter().collect();
        assert_eq!(order(&nodes, &defined, &["y"]).unwrap(), vec![2, 3, 0]);
    }

    #[test]
    fn cycle_and_undefined() {
        let nodes = vec![
            node("a", &["x", "b"], &["a"]),
            node("b", &["a"], &["b"]),
            node("c", &["b"], &["y"]),
        ];
        let defined: HashSet<&str> = ["x"].into_iter().collect();
        match order(&nodes, &defined, &["y"]) {
            Err(OnnxError::Cycle { nodes }) => assert_eq!(nodes, vec!["a", "b"]),
            other => panic!("{other:?}"),
        }
        let nodes = vec![node("a", &["x", "w"], &["y"])];
        match order(&nodes, &defined, &["y"]) {
            Err(OnnxError::Undefined { node, input, .. }) => {
                assert_eq!((node.as_str(), input.as_str()), ("a", "w"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn duplicate_definitions() {
        let nodes = vec![node("a", &["x"], &["y"]), node("b", &["x"], &["y"])];
        let defined: HashSet<&str> = ["x"].into_iter().collect();
        assert!(matches!(
            order(&nodes, &defined, &["y"]),
            Err(OnnxError::Model(_))
        ));
    }
}
