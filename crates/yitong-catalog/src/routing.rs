//! Asking another city: clients to the other cities' catalog nodes.
//!
//! A node answers for its own city's policies and institutions and asks the owning city for
//! the others, so an HIS or a settlement service only ever talks to the node of its own city.
//! Catalog lookups never route: the treatment city's catalog classifies every fee line.

use std::collections::HashMap;

use tonic::{Request, Status};
use yitong_core::{Network, PoolCode};
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_rpc::{PeerAccess, PeerChannel, PeerFault, peer_channel};

use crate::CatalogError;

/// Metadata key set on a request one node forwards to another. The receiver answers from its
/// own records only and never forwards again, so a request crosses at most one hop.
pub(crate) const FORWARDED: &str = "yitong-forwarded";

/// A network file endpoint that is not a usable URL.
#[derive(Debug, thiserror::Error)]
#[error("catalog endpoint {endpoint} of city {city} is not a usable URL")]
pub struct PeerEndpointError {
    pub city: PoolCode,
    pub endpoint: String,
    pub source: tonic::transport::Error,
}

/// Catalog clients for every other enabled city.
#[derive(Debug, Clone)]
pub(crate) struct Peers {
    clients: HashMap<PoolCode, CatalogServiceClient<PeerChannel>>,
}

impl Peers {
    pub(crate) fn new(
        network: &Network,
        own: PoolCode,
        access: &PeerAccess,
    ) -> Result<Self, PeerEndpointError> {
        let mut clients = HashMap::new();
        for city in network.enabled_pools().filter(|city| city.code != own) {
            let channel =
                peer_channel(&city.catalog, Some(city.code), access).map_err(|source| {
                    PeerEndpointError {
                        city: city.code,
                        endpoint: city.catalog.clone(),
                        source,
                    }
                })?;
            clients.insert(city.code, CatalogServiceClient::new(channel));
        }
        Ok(Peers { clients })
    }

    /// A client to `city`'s node; `None` when the city is not enabled.
    pub(crate) fn client(&self, city: PoolCode) -> Option<CatalogServiceClient<PeerChannel>> {
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

/// Sorts another city's answer to a forwarded request: a refusal reaches the caller unchanged
/// (an INVALID_ARGUMENT too, when it names only fields of the caller's request, which is sent
/// on unchanged), silence or a stream broken under the call is UNAVAILABLE, and anything else
/// is the other city's failure, INTERNAL here.
pub(crate) fn remote_error(city: PoolCode, status: Status) -> CatalogError {
    /// The fields of the requests a node forwards: GetPolicy, GetInstitution, ListInstitutions.
    const FORWARDED_FIELDS: [&str; 13] = [
        "insured_city",
        "insurance_type",
        "person_type",
        "hospital_level",
        "date",
        "code",
        "city",
        "kind",
        "level",
        "networked_only",
        "networked_on",
        "page_size",
        "page_token",
    ];
    match PeerFault::of(&status, &FORWARDED_FIELDS) {
        PeerFault::Unavailable => {
            tracing::warn!(city = %city, code = ?status.code(), message = status.message(), "catalog node of another city did not answer");
            CatalogError::Unavailable { city, status }
        }
        PeerFault::Refused => CatalogError::Remote { city, status },
        PeerFault::Internal => CatalogError::Peer {
            city,
            detail: format!("{:?}: {}", status.code(), status.message()),
        },
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    /// Proves another city's answers reach the caller as they should: a refusal, or a bad
    /// field of the caller's own forwarded request, passes unchanged; the other city's own
    /// failure or a permission this node should have had is INTERNAL without its words (both
    /// were passed on as if they were this node's answer).
    #[test]
    fn another_city_s_answers_mean_what_they_say() {
        let zibo = PoolCode::parse("370300").expect("city");
        let answered = |status| Status::from(remote_error(zibo, status));
        assert_eq!(
            answered(Status::not_found("no designated institution H37030000009")).code(),
            Code::NotFound
        );
        assert_eq!(
            answered(Status::unavailable("shedding load")).code(),
            Code::Unavailable
        );
        for status in [
            Status::internal("relation policies does not exist"),
            Status::permission_denied("node key of 370100 may not ask"),
        ] {
            let failed = answered(status);
            assert_eq!(
                (failed.code(), failed.message()),
                (Code::Internal, "internal error")
            );
        }
    }
}
