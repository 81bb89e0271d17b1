//! Who is here: this node, the peers it is linked to, how many listeners
//! the cluster has, and in which rooms. Sent to browsers as the `presence`
//! SSE event and served as `GET /cluster` and `GET /rooms`. The reactor
//! rebuilds it once a second and broadcasts it when it changed, so
//! thousands of listeners connecting cost one broadcast, not one each.

use crate::room::tag_of;

/// Rooms named in the presence event (the busiest across the cluster).
pub const EVENT_ROOMS: usize = 16;

/// A linked node as its link last described it.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub name: String,
    pub listeners: usize,
    /// Its busiest rooms and their listeners.
    pub rooms: Vec<(String, usize)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub node: String,
    /// Linked peers, sorted by name.
    pub peers: Vec<Peer>,
    /// Listeners on this node.
    pub listeners: usize,
    /// This node's rooms that have listeners, and how many.
    pub rooms: Vec<(String, usize)>,
}

impl Presence {
    pub fn total_listeners(&self) -> usize {
        self.listeners + self.peers.iter().map(|p| p.listeners).sum::<usize>()
    }

    /// Listeners per room across the cluster, busiest first (then by
    /// name), at most `n` rooms.
    pub fn cluster_rooms(&self, n: usize) -> Vec<(String, usize)> {
        let mut all: Vec<(String, usize)> = self.rooms.clone();
        for peer in &self.peers {
            for (room, count) in &peer.rooms {
                match all.iter_mut().find(|r| r.0 == *room) {
                    Some(r) => r.1 += count,
                    None => all.push((room.clone(), *count)),
                }
            }
        }
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// `{"node":…,"nodes":[…],"listeners":N,"tags":{tag:name}}`: `nodes` is
    /// this node then its linked peers; `tags` maps the origin tags found in
    /// event ids to node names, so a page can say where a message came from.
    pub fn json(&self) -> String {
        let mut names: Vec<&str> = vec![&self.node];
        names.extend(self.peers.iter().map(|p| p.name.as_str()));
        // The workers of one node show as that node, once.
        let mut nodes: Vec<String> = Vec::with_capacity(names.len());
        for n in &names {
            let shown = json_string(node_of(n));
            if !nodes.contains(&shown) {
                nodes.push(shown);
            }
        }
        let tags: Vec<String> = names
            .iter()
            .map(|n| format!("\"{:08x}\":{}", tag_of(n), json_string(node_of(n))))
            .collect();
        let rooms: Vec<String> = self
            .cluster_rooms(EVENT_ROOMS)
            .iter()
            .map(|(name, n)| format!("{}:{n}", json_string(name)))
            .collect();
        format!(
            "{{\"node\":{},\"nodes\":[{}],\"listeners\":{},\"local_listeners\":{},\"tags\":{{{}}},\"rooms\":{{{}}}}}",
            json_string(node_of(&self.node)),
            nodes.join(","),
            self.total_listeners(),
            self.listeners,
            tags.join(","),
            rooms.join(",")
        )
    }
}

/// The node a name belongs to: a worker of `--workers` is called
/// `NODE+K@127.0.0.1` (a name the cluster file can hold, and its own origin
/// tag) and shows as `NODE`; any other name is its own.
pub fn node_of(name: &str) -> &str {
    let Some(rest) = name.strip_suffix("@127.0.0.1") else {
        return name;
    };
    match rest.rsplit_once('+') {
        Some((node, k))
            if !node.is_empty() && !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) =>
        {
            node
        }
        _ => name,
    }
}

pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_show_as_their_node() {
        assert_eq!(node_of("wk+2@127.0.0.1"), "wk");
        assert_eq!(node_of("watercooler@vm+12@127.0.0.1"), "watercooler@vm");
        for own in [
            "node1@127.0.0.1",
            "a+b@127.0.0.1",
            "+1@127.0.0.1",
            "x+1@10.0.0.1",
            "x+",
        ] {
            assert_eq!(node_of(own), own);
        }
        let p = Presence {
            node: "wk+1@127.0.0.1".into(),
            peers: vec![
                Peer {
                    name: "wk+2@127.0.0.1".into(),
                    listeners: 2,
                    rooms: vec![],
                },
                Peer {
                    name: "other@127.0.0.1".into(),
                    listeners: 1,
                    rooms: vec![],
                },
            ],
            listeners: 3,
            rooms: vec![],
        };
        let j = p.json();
        assert!(
            j.starts_with(
                "{\"node\":\"wk\",\"nodes\":[\"wk\",\"other@127.0.0.1\"],\"listeners\":6,"
            ),
            "{j}"
        );
    }

    #[test]
    fn json_counts_and_escapes() {
        let p = Presence {
            node: "a\"<".into(),
            peers: vec![Peer {
                name: "b".into(),
                listeners: 2,
                rooms: vec![("x".into(), 1), ("lobby".into(), 1)],
            }],
            listeners: 3,
            rooms: vec![("lobby".into(), 3)],
        };
        let j = p.json();
        assert!(
            j.starts_with(
                "{\"node\":\"a\\\"\\u003c\",\"nodes\":[\"a\\\"\\u003c\",\"b\"],\"listeners\":5,"
            ),
            "{j}"
        );
        assert!(j.ends_with(",\"rooms\":{\"lobby\":4,\"x\":1}}"), "{j}");
    }
}
