//! Model-name globs (`gemini-2.5-*`) as the config uses them for client allow-lists and,
//! later, limits and routing rules: `*` matches any run of characters, `?` one character.

/// True when `name` matches `pattern` in full.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches("gemini-2.5-*", "gemini-2.5-flash"));
        assert!(matches("gemini-2.5-*", "gemini-2.5-"));
        assert!(!matches("gemini-2.5-*", "gemini-2.0-flash"));
        assert!(matches("*flash*", "gemini-2.5-flash-lite"));
        assert!(matches("gemini-?.5-pro", "gemini-2.5-pro"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
    }
}
