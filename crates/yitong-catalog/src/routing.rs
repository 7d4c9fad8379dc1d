//! Asking another city: clients to the other cities' catalog nodes.
//!
//! A node answers for its own city's policies and institutions and asks the owning city for
//! the others, so an HIS or a settlement service only ever talks to the node of its own city.
//! Catalog lookups never route: the treatment city's catalog classifies every fee line.

use std::collections::HashMap;

use tonic::{Code, Request, Status};
use yitong_core::{CityCode, Network};
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_rpc::{PeerAccess, PeerChannel, peer_channel};

use crate::CatalogError;

/// Metadata key set on a request one node forwards to another. The receiver answers from its
/// own records only and never forwards again, so a request crosses at most one hop.
pub(crate) const FORWARDED: &str = "yitong-forwarded";

/// A network file endpoint that is not a usable URL.
#[derive(Debug, thiserror::Error)]
#[error("catalog endpoint {endpoint} of city {city} is not a usable URL")]
pub struct PeerEndpointError {
    pub city: CityCode,
    pub endpoint: String,
    pub source: tonic::transport::Error,
}

/// Catalog clients for every other enabled city.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    clients: HashMap<CityCode, CatalogServiceClient<PeerChannel>>,
}

impl Peers {
    pub(crate) fn new(
        network: &Network,
        own: CityCode,
        access: &PeerAccess,
    ) -> Result<Self, PeerEndpointError> {
        let mut clients = HashMap::new();
        for city in network.enabled_cities().filter(|city| city.code != own) {
            let channel =
                peer_channel(&city.catalog, access).map_err(|source| PeerEndpointError {
                    city: city.code,
                    endpoint: city.catalog.clone(),
                    source,
                })?;
            clients.insert(city.code, CatalogServiceClient::new(channel));
        }
        Ok(Peers { clients })
    }

    /// A client to `city`'s node; `None` when the city is not enabled.
    pub(crate) fn client(&self, city: CityCode) -> Option<CatalogServiceClient<PeerChannel>> {
        self.clients.get(&city).cloned()
    }
}

/// A request marked as forwarded, so the receiver does not forward it again.
pub(crate) fn forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED, "1".parse().expect("ascii metadata"));
    request
}

/// Sorts another city's failure: a refusal reaches the caller unchanged, silence is UNAVAILABLE.
pub(crate) fn remote_error(city: CityCode, status: Status) -> CatalogError {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            tracing::warn!(city = %city, code = ?status.code(), "catalog node of another city did not answer");
            CatalogError::Unavailable { city, status }
        }
        _ => CatalogError::Remote { city, status },
    }
}
