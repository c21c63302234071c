//! One immutable view of the configuration and everything built from it (client tokens,
//! key pools, the upstream client). A request loads the current snapshot once and holds it
//! to the end; a reload (later issue) builds a new one whole and swaps it in.

use crate::auth::ClientAuth;
use crate::config::Config;
use crate::error::GateError;
use crate::pool::state::GateState;
use crate::pool::{KeyPool, Pools};
use crate::proxy::forward::Upstream;

pub struct Snapshot {
    pub config: Config,
    pub auth: ClientAuth,
    pub pools: Pools,
    pub upstream: Upstream,
}

impl Snapshot {
    /// Builds everything from `config`; keys and projects pick up their kept state.
    pub fn build(config: Config, state: &GateState) -> Result<Snapshot, String> {
        Ok(Snapshot {
            auth: ClientAuth::new(&config.clients),
            pools: Pools::new(&config.pools, state)?,
            upstream: Upstream::new(&config.upstream)?,
            config,
        })
    }

    /// The pool that serves requests until routing rules exist.
    pub fn default_pool(&self) -> Result<&KeyPool, GateError> {
        let name = &self.config.default_pool;
        self.pools.get(name).ok_or_else(|| GateError::BadRequest(format!("no pool named `{name}`")))
    }
}
