//! Asking the issuing city: clients to the other cities' identity nodes.

use std::collections::HashMap;

use yitong_core::{Network, PoolCode};
use yitong_proto::identity::v1::identity_service_client::IdentityServiceClient;
use yitong_rpc::{PeerAccess, PeerChannel, peer_channel};

/// Metadata key set on a request one node forwards to another. The receiver answers from its
/// own records only and never forwards again, so a lookup crosses at most one hop.
pub(crate) const FORWARDED: &str = "yitong-forwarded";

/// Identity clients for every other enabled city.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    clients: HashMap<PoolCode, IdentityServiceClient<PeerChannel>>,
}

impl Peers {
    pub(crate) fn new(
        network: &Network,
        own: PoolCode,
        access: &PeerAccess,
    ) -> Result<Self, tonic::transport::Error> {
        let mut clients = HashMap::new();
        for city in network.enabled_pools().filter(|city| city.code != own) {
            clients.insert(
                city.code,
                IdentityServiceClient::new(peer_channel(&city.identity, Some(city.code), access)?),
            );
        }
        Ok(Peers { clients })
    }

    pub(crate) fn client(&self, city: PoolCode) -> Option<IdentityServiceClient<PeerChannel>> {
        self.clients.get(&city).cloned()
    }

    pub(crate) fn cities(&self) -> impl Iterator<Item = PoolCode> + '_ {
        self.clients.keys().copied()
    }
}
