//! Maps a field path (`pools.free.keys[1].key`) to the line of the YAML file where it is
//! written, so that every config error names its line (SPEC 1). serde_yaml only reports the
//! position of the first structural error; this indexes block-style keys and sequence items
//! and falls back to the nearest written ancestor for flow-style values (`{ env: X }`).

use std::collections::HashMap;

pub struct LineIndex {
    lines: HashMap<String, usize>,
}

struct Frame {
    indent: usize,
    path: String,
    is_item: bool,
}

impl LineIndex {
    pub fn new(text: &str) -> Self {
        let mut lines = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut next_index: HashMap<String, usize> = HashMap::new();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                continue;
            }
            let mut indent = raw.len() - trimmed.len();
            let mut rest = trimmed;
            while let Some(after) = rest.strip_prefix("- ").or(if rest == "-" { Some("") } else { None }) {
                while stack.last().is_some_and(|f| f.indent > indent || (f.is_item && f.indent == indent)) {
                    stack.pop();
                }
                let parent = stack.last().map(|f| f.path.clone()).unwrap_or_default();
                let slot = next_index.entry(parent.clone()).or_insert(0);
                let path = format!("{parent}[{slot}]");
                *slot += 1;
                lines.entry(path.clone()).or_insert(line_no);
                stack.push(Frame { indent, path, is_item: true });
                let skipped = rest.len() - after.len();
                let after_trim = after.trim_start();
                indent += skipped + (after.len() - after_trim.len());
                rest = after_trim;
            }
            if rest.starts_with('{') || rest.starts_with('[') || rest.starts_with('"') {
                continue;
            }
            if let Some(key) = block_key(rest) {
                while stack.last().is_some_and(|f| f.indent >= indent) {
                    stack.pop();
                }
                let parent = stack.last().map(|f| f.path.as_str()).unwrap_or("");
                let path = if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") };
                lines.entry(path.clone()).or_insert(line_no);
                stack.push(Frame { indent, path, is_item: false });
            }
        }
        LineIndex { lines }
    }

    /// The line of `path`, or of its nearest ancestor that is written on a line of its own.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// `key: value` or `key:` at the start of `rest`; quoted keys are unquoted.
fn block_key(rest: &str) -> Option<&str> {
    let colon = rest.find(": ").or_else(|| rest.strip_suffix(':').map(|s| s.len()))?;
    let key = rest[..colon].trim();
    let key = key.trim_matches(|c| c == '"' || c == '\'');
    (!key.is_empty() && !key.contains(' ')).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
listen: 127.0.0.1:8080
# comment
pools:
  free:
    keys:
      - { id: a, key: { env: A } }
      - id: b
        key: { env: B }
    strategy: round_robin
  paid:
    keys:
    - env: C
admin:
  listen: x
";

    #[test]
    fn finds_keys_items_and_ancestors() {
        let idx = LineIndex::new(TEXT);
        assert_eq!(idx.line_of("listen"), Some(1));
        assert_eq!(idx.line_of("pools.free.keys[0]"), Some(6));
        assert_eq!(idx.line_of("pools.free.keys[0].key.env"), Some(6));
        assert_eq!(idx.line_of("pools.free.keys[1].id"), Some(7));
        assert_eq!(idx.line_of("pools.free.keys[1].key"), Some(8));
        assert_eq!(idx.line_of("pools.free.strategy"), Some(9));
        assert_eq!(idx.line_of("pools.paid.keys[0].env"), Some(12));
        assert_eq!(idx.line_of("admin.listen"), Some(14));
        assert_eq!(idx.line_of("nothing"), None);
    }
}
