//! One immutable view of the configuration and everything built from it (client tokens,
//! key pools, the upstream client). A request loads the current snapshot once and holds it
//! to the end; a reload (later issue) builds a new one whole and swaps it in.

use crate::auth::ClientAuth;
use crate::config::Config;
use crate::pool::Pools;
use crate::proxy::forward::Upstream;

pub struct Snapshot {
    pub config: Config,
    pub auth: ClientAuth,
    pub pools: Pools,
    pub upstream: Upstream,
}

impl Snapshot {
    pub fn build(config: Config) -> Result<Snapshot, String> {
        Ok(Snapshot {
            auth: ClientAuth::new(&config.clients),
            pools: Pools::new(&config.pools)?,
            upstream: Upstream::new(&config.upstream)?,
            config,
        })
    }
}
