//! How a process's servers check their callers, and how its nodes present themselves to their
//! peers: the keyring every server checks API keys against, the network's PKI when it runs
//! TLS, and each node's own key when it does not.

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};
use tonic::transport::ServerTlsConfig;
use yitong_auth::{Credentials, Pki, PkiError, SharedKeyring};
use yitong_core::{Network, Owner};
use yitong_rpc::{CallLimits, Caller, PeerAccess, bearer};
use yitong_seeds::Seeds;

/// The operator every development network has, for `yitong settlement show` and dashboards.
pub const DEV_OPERATOR: &str = "operator:dev";

#[derive(Debug, Clone)]
pub struct Security {
    /// The API keys every server of the process accepts.
    pub keyring: SharedKeyring,
    /// TLS from this PKI folder: each server presents its node certificate and checks client
    /// certificates against the network's CA, each node calls its peers with its certificate.
    /// `None` serves plaintext, which only loopback addresses may do.
    pub pki: Option<Pki>,
    /// Each node's own key, presented to its peers when there is no TLS. Secret: Debug
    /// prints it redacted.
    pub node_keys: HashMap<Owner, SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("node {0} has no key to present to its peers")]
    NoNodeKey(Owner),
    #[error("the key of node {0} is not a valid header value")]
    BadNodeKey(Owner),
}

/// Every caller a development network hands a key to: each node and each bureau (the enabled
/// cities' and the clearing house's), one operator, and every institution of the seeds in an
/// enabled city (the seeds hold every city's, enabled or not).
pub fn development_callers(network: &Network, seeds: Option<&Seeds>) -> Vec<Caller> {
    let owners: Vec<Owner> = network
        .enabled_pools()
        .map(|city| Owner::Pool(city.code))
        .chain([Owner::ClearingHouse])
        .collect();
    let mut callers: Vec<Caller> = owners
        .iter()
        .flat_map(|owner| [Caller::Node(*owner), Caller::Bureau(*owner)])
        .collect();
    callers.push(DEV_OPERATOR.parse().expect("a valid caller name"));
    if let Some(seeds) = seeds {
        callers.extend(
            seeds
                .institutions
                .iter()
                .filter(|institution| {
                    network
                        .pool(institution.code.city())
                        .is_some_and(|city| city.enabled)
                })
                .map(|institution| Caller::Institution(institution.code.clone())),
        );
    }
    callers
}

impl Security {
    /// Plaintext on loopback, every caller holding a key of `credentials`: `yitong dev` and
    /// the test sandbox.
    pub fn loopback(credentials: &Credentials) -> Security {
        let node_keys = credentials
            .callers()
            .filter_map(|caller| match caller {
                Caller::Node(owner) => credentials
                    .key(&caller)
                    .map(|key| (owner, SecretString::from(key))),
                _ => None,
            })
            .collect();
        Security {
            keyring: SharedKeyring::new(credentials.keyring()),
            pki: None,
            node_keys,
        }
    }

    /// The TLS settings of `owner`'s servers, if the network runs TLS.
    pub fn server_tls(&self, owner: Owner) -> Result<Option<ServerTlsConfig>, PkiError> {
        self.pki
            .as_ref()
            .map(|pki| pki.server_tls(owner))
            .transpose()
    }

    /// How `owner`'s nodes call their peers.
    pub fn peer_access(
        &self,
        owner: Owner,
        limits: CallLimits,
    ) -> Result<PeerAccess, SecurityError> {
        if let Some(pki) = &self.pki {
            return Ok(PeerAccess {
                limits,
                authorization: None,
                tls: Some(pki.client_tls(Some(&Caller::Node(owner)))?),
            });
        }
        let key = self
            .node_keys
            .get(&owner)
            .ok_or(SecurityError::NoNodeKey(owner))?;
        Ok(PeerAccess {
            limits,
            authorization: bearer(key.expose_secret())
                .map_err(|_| SecurityError::BadNodeKey(owner))?,
            tls: None,
        })
    }
}
