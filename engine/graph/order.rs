//! Topological ordering of layers, and cycle finding.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Orders nodes `0..deps.len()` so that every node comes after the nodes it depends on
/// (`deps[i]`); among nodes ready at the same time, the smallest index comes first, so an
/// already ordered list stays as it is.
///
/// On a cycle, returns `Err(cycle)`: nodes `c0, c1, …, ck` where each feeds the next (each
/// is a dependency of the next) and `ck` feeds `c0`. Dependencies out of range are ignored
/// (the caller has checked them).
pub(super) fn topological_order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut pending = vec![0usize; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds.iter().filter(|&&d| d < n) {
            pending[i] += 1;
            dependents[d].push(i);
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&i| pending[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &j in &dependents[i] {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    Err(find_cycle(deps, &pending))
}

/// A cycle among the nodes still pending after Kahn's algorithm: each of them depends on
/// another pending node, so walking dependencies from one of them must loop.
fn find_cycle(deps: &[Vec<usize>], pending: &[usize]) -> Vec<usize> {
    let n = deps.len();
    let Some(start) = (0..n).find(|&i| pending[i] > 0) else {
        return Vec::new();
    };
    let mut position = vec![usize::MAX; n];
    let mut walk = Vec::new();
    let mut v = start;
    while position[v] == usize::MAX {
        position[v] = walk.len();
        walk.push(v);
        // A pending node always has a pending dependency (the smallest, for determinism).
        match deps[v]
            .iter()
            .copied()
            .filter(|&d| d < n && pending[d] > 0)
            .min()
        {
            Some(d) => v = d,
            None => return Vec::new(),
        }
    }
    // The walk follows dependencies (against the flow); reverse it to read in flow order.
    let mut cycle = walk.split_off(position[v]);
    cycle.reverse();
    // Start at the node written first, for a stable message.
    if let Some(first) = cycle
        .iter()
        .enumerate()
        .min_by_key(|&(_, &n)| n)
        .map(|(k, _)| k)
    {
        cycle.rotate_left(first);
    }
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_written_order_when_it_is_topological() {
        let deps = vec![vec![], vec![0], vec![1], vec![2]];
        assert_eq!(topological_order(&deps), Ok(vec![0, 1, 2, 3]));
    }

    #[test]
    fn moves_layers_after_their_sources() {
        // 0 <- 2 <- 1 : layer 1 depends on layer 2 written after it.
        let deps = vec![vec![], vec![2], vec![0]];
        assert_eq!(topological_order(&deps), Ok(vec![0, 2, 1]));
    }

    #[test]
    fn finds_cycles_in_flow_order() {
        // 1 depends on 3, 2 on 1, 3 on 2: flow 1 -> 2 -> 3 -> 1.
        let deps = vec![vec![], vec![0, 3], vec![1], vec![2]];
        let cycle = topological_order(&deps).unwrap_err();
        assert_eq!(cycle, [1, 2, 3]);
        for (k, &node) in cycle.iter().enumerate() {
            let next = cycle[(k + 1) % cycle.len()];
            assert!(deps[next].contains(&node), "{node} must feed {next}");
        }
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let deps = vec![vec![], vec![1]];
        assert_eq!(topological_order(&deps), Err(vec![1]));
    }
}
