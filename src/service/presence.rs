//! Who is here: this node, the peers it is linked to, and how many listeners
//! the cluster has. Sent to browsers as the `presence` SSE event and served
//! as `GET /cluster`. The reactor rebuilds it when something changes and
//! broadcasts it at most once a second, so thousands of listeners connecting
//! cost one broadcast, not one each.

use crate::room::tag_of;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Presence {
    pub node: String,
    /// Linked peers and their listener counts.
    pub peers: Vec<(String, usize)>,
    /// Listeners on this node.
    pub listeners: usize,
}

impl Presence {
    pub fn total_listeners(&self) -> usize {
        self.listeners + self.peers.iter().map(|p| p.1).sum::<usize>()
    }

    /// `{"node":…,"nodes":[…],"listeners":N,"tags":{tag:name}}`: `nodes` is
    /// this node then its linked peers; `tags` maps the origin tags found in
    /// event ids to node names, so a page can say where a message came from.
    pub fn json(&self) -> String {
        let mut names: Vec<&str> = vec![&self.node];
        names.extend(self.peers.iter().map(|p| p.0.as_str()));
        let nodes: Vec<String> = names.iter().map(|n| json_string(n)).collect();
        let tags: Vec<String> = names
            .iter()
            .map(|n| format!("\"{:08x}\":{}", tag_of(n), json_string(n)))
            .collect();
        format!(
            "{{\"node\":{},\"nodes\":[{}],\"listeners\":{},\"local_listeners\":{},\"tags\":{{{}}}}}",
            json_string(&self.node),
            nodes.join(","),
            self.total_listeners(),
            self.listeners,
            tags.join(",")
        )
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
    fn json_counts_and_escapes() {
        let p = Presence {
            node: "a\"<".into(),
            peers: vec![("b".into(), 2)],
            listeners: 3,
        };
        let j = p.json();
        assert!(
            j.starts_with(
                "{\"node\":\"a\\\"\\u003c\",\"nodes\":[\"a\\\"\\u003c\",\"b\"],\"listeners\":5,"
            ),
            "{j}"
        );
    }
}
