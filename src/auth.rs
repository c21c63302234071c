//! Who is calling: turns the client's credential (its "API key", SPEC 2's three forms) into
//! a `Client`, or a refusal, and answers whether that client may call a model.

use crate::config::{ClientMode, ClientsConfig};
use crate::error::GateError;
use crate::glob;
use std::collections::HashMap;
use std::sync::Arc;

/// A known caller. In open mode every caller is the one anonymous client.
#[derive(Debug)]
pub struct Client {
    pub name: Arc<str>,
    /// Model globs this client may call; `None` allows all.
    models: Option<Vec<String>>,
}

impl Client {
    pub fn allows(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|globs| globs.iter().any(|g| glob::matches(g, model)))
    }

    /// Whether the model must be known before the request may go on.
    pub fn is_restricted(&self) -> bool {
        self.models.is_some()
    }

    /// The refusal for a model outside the allow-list (`None` when allowed).
    pub fn check_model(&self, model: &str) -> Result<(), GateError> {
        if self.allows(model) {
            Ok(())
        } else {
            Err(GateError::ModelNotAllowed { client: self.name.to_string(), model: model.to_string() })
        }
    }
}

pub struct ClientAuth {
    mode: ClientMode,
    open: Arc<Client>,
    by_token: HashMap<Box<str>, Arc<Client>>,
}

impl ClientAuth {
    pub fn new(config: &ClientsConfig) -> Self {
        let by_token = config
            .tokens
            .iter()
            .map(|t| {
                let client = Client { name: t.name.as_str().into(), models: t.models.clone() };
                (t.token.expose().into(), Arc::new(client))
            })
            .collect();
        ClientAuth { mode: config.mode, open: Arc::new(Client { name: "open".into(), models: None }), by_token }
    }

    /// The client behind `credential`; in open mode any credential (or none) is accepted
    /// and dropped.
    pub fn authenticate(&self, credential: Option<&str>) -> Result<Arc<Client>, GateError> {
        match self.mode {
            ClientMode::Open => Ok(self.open.clone()),
            ClientMode::Tokens => {
                credential.and_then(|c| self.by_token.get(c)).cloned().ok_or(GateError::Unauthenticated)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientToken, Secret};

    fn tokens() -> ClientAuth {
        ClientAuth::new(&ClientsConfig {
            mode: ClientMode::Tokens,
            tokens: vec![
                ClientToken {
                    name: "bot".into(),
                    token: Secret::new("tok-bot"),
                    models: Some(vec!["gemini-2.5-*".into()]),
                },
                ClientToken { name: "etl".into(), token: Secret::new("tok-etl"), models: None },
            ],
        })
    }

    #[test]
    fn tokens_mode_names_clients_and_refuses_strangers() {
        let auth = tokens();
        assert_eq!(&*auth.authenticate(Some("tok-bot")).unwrap().name, "bot");
        assert!(matches!(auth.authenticate(Some("nope")), Err(GateError::Unauthenticated)));
        assert!(matches!(auth.authenticate(None), Err(GateError::Unauthenticated)));
    }

    #[test]
    fn allow_lists() {
        let auth = tokens();
        let bot = auth.authenticate(Some("tok-bot")).unwrap();
        assert!(bot.allows("gemini-2.5-flash"));
        assert!(!bot.allows("gemini-2.0-flash"));
        assert!(bot.check_model("gemini-1.5-pro").is_err());
        assert!(auth.authenticate(Some("tok-etl")).unwrap().allows("anything"));
    }

    #[test]
    fn open_mode_accepts_anyone() {
        let auth = ClientAuth::new(&ClientsConfig { mode: ClientMode::Open, tokens: vec![] });
        assert_eq!(&*auth.authenticate(None).unwrap().name, "open");
        assert_eq!(&*auth.authenticate(Some("whatever")).unwrap().name, "open");
    }
}
