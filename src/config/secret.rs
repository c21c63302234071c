//! Secrets: API keys and tokens that must never be printed (SPEC 7), and where they come
//! from in the config (`env: NAME`, `file: PATH`, or inline).

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;

/// A secret value. It has no `Display` and no `Serialize`, and its `Debug` shows only a
/// fingerprint, so it cannot reach a log, a metric or an error by accident; `expose()` is
/// called only where the value goes on the wire or is compared.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(value: impl Into<Box<str>>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// First 8 hex digits of the SHA-256 of the value: names a key without revealing it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.fingerprint())
    }
}

/// Where a secret comes from, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret),
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret now. The error names the variable or file, never a value.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretSource::Inline(secret) => Ok(secret.clone()),
            SecretSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                Ok(_) => Err(format!("environment variable {name} is empty")),
                Err(_) => Err(format!("environment variable {name} is not set")),
            },
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                Ok(_) => Err(format!("secret file {} is empty", path.display())),
                Err(e) => Err(format!("cannot read secret file {}: {e}", path.display())),
            },
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SourceVisitor;
        impl<'de> Visitor<'de> for SourceVisitor {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{ env: NAME }, { file: PATH } or an inline string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretSource, E> {
                Ok(SecretSource::Inline(Secret::new(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretSource, A::Error> {
                let mut found = None;
                while let Some(field) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let source = match field.as_str() {
                        "env" => SecretSource::Env(value),
                        "file" => SecretSource::File(PathBuf::from(value)),
                        other => return Err(de::Error::unknown_field(other, &["env", "file"])),
                    };
                    if found.replace(source).is_some() {
                        return Err(de::Error::custom("give exactly one of `env` or `file`"));
                    }
                }
                found.ok_or_else(|| de::Error::custom("give one of `env` or `file`"))
            }
        }
        deserializer.deserialize_any(SourceVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_only_a_fingerprint() {
        let s = Secret::new("AIzaSyVerySecretValue");
        let shown = format!("{s:?}");
        assert!(!shown.contains("VerySecret"));
        assert_eq!(shown, format!("Secret({})", s.fingerprint()));
        assert_eq!(s.fingerprint().len(), 8);
    }

    #[test]
    fn sources_parse() {
        let env: SecretSource = serde_yaml::from_str("{ env: FOO }").unwrap();
        assert_eq!(env, SecretSource::Env("FOO".into()));
        let file: SecretSource = serde_yaml::from_str("file: /x").unwrap();
        assert_eq!(file, SecretSource::File("/x".into()));
        assert!(serde_yaml::from_str::<SecretSource>("{ vault: x }").is_err());
        assert!(serde_yaml::from_str::<SecretSource>("{ env: A, file: B }").is_err());
    }
}
