//! Per-model limits of a pool (`pools.*.limits`, SPEC 3/4): an exact model name or a glob,
//! the most specific match winning, `default` otherwise; an omitted limit is unlimited.

use crate::glob;

/// Requests per minute, input tokens per minute, requests per Pacific day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub rpd: Option<u64>,
}

impl Limit {
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.rpd.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitTable {
    pub default: Limit,
    /// (pattern, limit), as written.
    pub rules: Vec<(String, Limit)>,
}

impl LimitTable {
    /// The limit for `model`: an exact name first, then the glob with the most literal
    /// characters, then `default`.
    pub fn for_model(&self, model: &str) -> Limit {
        if let Some((_, limit)) = self.rules.iter().find(|(p, _)| p == model) {
            return *limit;
        }
        self.rules
            .iter()
            .filter(|(p, _)| glob::matches(p, model))
            .max_by_key(|(p, _)| p.chars().filter(|c| *c != '*' && *c != '?').count())
            .map_or(self.default, |(_, limit)| *limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_specific_wins() {
        let l = |rpm| Limit { rpm: Some(rpm), ..Limit::default() };
        let table = LimitTable {
            default: l(10),
            rules: vec![("gemini-*".into(), l(20)), ("gemini-2.5-*".into(), l(30)), ("gemini-2.5-pro".into(), l(5))],
        };
        assert_eq!(table.for_model("gemini-2.5-pro"), l(5));
        assert_eq!(table.for_model("gemini-2.5-flash"), l(30));
        assert_eq!(table.for_model("gemini-2.0-flash"), l(20));
        assert_eq!(table.for_model("text-embedding-004"), l(10));
        assert!(LimitTable::default().for_model("x").is_unlimited());
    }
}
