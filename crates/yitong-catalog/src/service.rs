//! The CatalogService handlers of one city's node.

use std::sync::Arc;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use yitong_core::{Invalid, Network, PoolCode};
use yitong_proto::catalog::v1 as pb;
use yitong_rpc::{PeerAccess, invalid_argument};
use yitong_store::Store;
use yitong_store::replies::{self, Claim};

use crate::cache::ReferenceCache;
use crate::catalog::{self, ChangeSet, Cursor};
use crate::item::{Outcome, classify};
use crate::requests::{Download, Listing, Lookup, PolicyQuery, PolicyUpsert};
use crate::routing::{FORWARDED, PeerEndpointError, Peers, forwarded, remote_error};
use crate::{CatalogError, ItemCode, institutions, policies, timestamp};

/// Pages a download keeps ready ahead of a slow client; the rest wait in the store.
const PAGES_BUFFERED_MAX: usize = 2;

/// The catalog service of one city.
#[derive(Debug, Clone)]
pub struct CatalogNode {
    city: PoolCode,
    store: Store,
    network: Arc<Network>,
    peers: Peers,
    /// The catalog and policies as last read, shared by the node's clones (`cache`).
    cache: Arc<ReferenceCache>,
}

impl CatalogNode {
    /// A node for `city` on `store`, with clients (bounded by `limits`) to the other enabled
    /// cities' catalog nodes for the questions only they can answer.
    pub fn new(
        city: PoolCode,
        store: Store,
        network: Arc<Network>,
        access: &PeerAccess,
    ) -> Result<Self, PeerEndpointError> {
        let peers = Peers::new(&network, city, access)?;
        Ok(CatalogNode {
            city,
            store,
            network,
            peers,
            cache: Arc::default(),
        })
    }

    pub fn city(&self) -> PoolCode {
        self.city
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The city a request is about, checked: `None` means this node's; another must be a city of
    /// the network (else the field is malformed) and enabled (else it is a refusal). A forwarded
    /// request is only ever about this node's city.
    fn route(
        &self,
        city: Option<PoolCode>,
        field: &str,
        forwarded: bool,
    ) -> Result<Option<PoolCode>, CatalogError> {
        let Some(city) = city.filter(|city| *city != self.city) else {
            return Ok(None);
        };
        if forwarded {
            return Err(CatalogError::NotThisCity {
                own: self.city,
                asked: city,
            });
        }
        match self.network.pool(city) {
            None => Err(Invalid::new(field, format!("no city {city} in the network")).into()),
            Some(known) if !known.enabled => Err(CatalogError::CityNotEnabled(city)),
            Some(_) => Ok(Some(city)),
        }
    }

    fn peer(
        &self,
        city: PoolCode,
    ) -> Result<
        pb::catalog_service_client::CatalogServiceClient<yitong_rpc::PeerChannel>,
        CatalogError,
    > {
        self.peers
            .client(city)
            .ok_or(CatalogError::CityNotEnabled(city))
    }

    async fn look_up(&self, lookup: Lookup) -> Result<pb::LookupItemsResponse, CatalogError> {
        let mut conn = self.store.pool().acquire().await?;
        let head = catalog::current_version(&mut conn).await?;
        let held = self.cache.catalog(&mut conn, head).await?;
        let (version, read) = match &held {
            Some(copy) => (copy.version, None),
            None => {
                let mut distinct: Vec<&ItemCode> = lookup.codes.iter().collect();
                distinct.sort();
                distinct.dedup();
                let read = catalog::histories(&mut conn, &distinct, head).await?;
                (head, Some(read))
            }
        };
        drop(conn);
        let histories = held
            .as_ref()
            .map(|copy| &copy.histories)
            .or(read.as_ref())
            .expect("the copy or the store's histories");
        let items = lookup
            .codes
            .iter()
            .map(|code| {
                let history = histories.get(code).map(Vec::as_slice).unwrap_or_default();
                let (outcome, item) = match classify(history, lookup.date) {
                    Outcome::InCatalog { item, version } => {
                        (pb::LookupOutcome::InCatalog, Some(item.to_wire(version)))
                    }
                    Outcome::NotInCatalog => (pb::LookupOutcome::NotInCatalog, None),
                    Outcome::NotValidAtDate => (pb::LookupOutcome::NotValidAtDate, None),
                };
                pb::ItemClassification {
                    code: code.to_string(),
                    outcome: outcome as i32,
                    item,
                }
            })
            .collect();
        tracing::debug!(
            institution = lookup.institution.as_ref().map(|code| code.as_str()),
            codes = lookup.codes.len(),
            service_date = %lookup.date,
            catalog_version = version,
            "classified items"
        );
        Ok(pb::LookupItemsResponse {
            items,
            city: self.city.to_string(),
            catalog_version: version,
        })
    }

    async fn publish(
        &self,
        set: ChangeSet,
        digest: &str,
    ) -> Result<pb::PublishCatalogVersionResponse, CatalogError> {
        let mut tx = self.store.begin_write().await?;
        let claim = replies::claim(
            &mut tx,
            set.message_id.as_str(),
            "PublishCatalogVersion",
            digest,
        )
        .await?;
        if let Claim::Replay(reply) = claim {
            return decode_reply(&reply, &set.message_id.to_string());
        }
        let published = catalog::publish(&mut tx, &set, yitong_core::today()).await?;
        let count = |n: usize| u32::try_from(n).expect("change sets hold at most 5000 changes");
        let reply = pb::PublishCatalogVersionResponse {
            version: published.version,
            published_at: Some(timestamp(published.published_at_ms)),
            added_count: count(published.added),
            changed_count: count(published.changed),
            withdrawn_count: count(published.withdrawn),
        };
        replies::record(&mut tx, set.message_id.as_str(), &reply.encode_to_vec()).await?;
        tx.commit().await?;
        tracing::info!(
            city = %self.city,
            version = published.version,
            added = published.added,
            changed = published.changed,
            withdrawn = published.withdrawn,
            operator = %set.operator_id,
            "published catalog version"
        );
        Ok(reply)
    }

    async fn policy(
        &self,
        request: pb::GetPolicyRequest,
        forwarded_here: bool,
    ) -> Result<pb::GetPolicyResponse, CatalogError> {
        let query = PolicyQuery::try_from(&request)?;
        if let Some(city) = self.route(query.city, "insured_city", forwarded_here)? {
            let reply = self
                .peer(city)?
                .get_policy(forwarded(request))
                .await
                .map_err(|status| remote_error(city, status))?
                .into_inner();
            let answered_for = reply
                .policy
                .as_ref()
                .map(|policy| policy.insured_city.as_str());
            if answered_for != Some(city.to_string().as_str()) {
                return Err(CatalogError::Corrupt(format!(
                    "city {city} answered with another city's policy"
                )));
            }
            return Ok(reply);
        }
        let mut conn = self.store.pool().acquire().await?;
        let policy = self
            .cache
            .policy_in_force(&mut conn, self.city, query.key, query.date)
            .await?
            .ok_or(CatalogError::NoPolicy {
                city: self.city,
                date: query.date,
            })?;
        Ok(pb::GetPolicyResponse {
            policy: Some(policy.to_wire()),
        })
    }

    async fn upsert_policy(
        &self,
        upsert: PolicyUpsert,
        digest: &str,
    ) -> Result<pb::UpsertPolicyResponse, CatalogError> {
        if upsert.city != self.city {
            return Err(Invalid::new(
                "policy.insured_city",
                format!(
                    "must be this node's city {}: a city records only its own policies",
                    self.city
                ),
            )
            .into());
        }
        let new = upsert.policy;
        let mut tx = self.store.begin_write().await?;
        let claim =
            replies::claim(&mut tx, new.message_id.as_str(), "UpsertPolicy", digest).await?;
        if let Claim::Replay(reply) = claim {
            return decode_reply(&reply, new.message_id.as_str());
        }
        let (recorded, superseded) =
            policies::record(&mut tx, self.city, &new, yitong_core::today()).await?;
        let reply = pb::UpsertPolicyResponse {
            policy: Some(recorded.to_wire()),
            superseded: superseded.as_ref().map(|old| old.to_wire()),
        };
        replies::record(&mut tx, new.message_id.as_str(), &reply.encode_to_vec()).await?;
        tx.commit().await?;
        tracing::info!(
            city = %self.city,
            policy_id = %recorded.policy_id,
            operator = %new.operator_id,
            "recorded policy version"
        );
        Ok(reply)
    }

    async fn institution(
        &self,
        request: pb::GetInstitutionRequest,
        forwarded_here: bool,
    ) -> Result<pb::GetInstitutionResponse, CatalogError> {
        let code = yitong_core::InstitutionCode::parse(&request.code)
            .map_err(|invalid| invalid.at("code"))?;
        if let Some(city) = self.route(Some(code.city()), "code", forwarded_here)? {
            return self
                .peer(city)?
                .get_institution(forwarded(request))
                .await
                .map(Response::into_inner)
                .map_err(|status| remote_error(city, status));
        }
        let mut conn = self.store.pool().acquire().await?;
        let institution = institutions::institution(&mut conn, &code)
            .await?
            .ok_or_else(|| CatalogError::NoInstitution(code.to_string()))?;
        Ok(pb::GetInstitutionResponse {
            institution: Some(institution),
        })
    }

    async fn institutions(
        &self,
        request: pb::ListInstitutionsRequest,
        forwarded_here: bool,
    ) -> Result<pb::ListInstitutionsResponse, CatalogError> {
        let listing = Listing::try_from(&request)?;
        if let Some(city) = self.route(listing.city, "city", forwarded_here)? {
            return self
                .peer(city)?
                .list_institutions(forwarded(request))
                .await
                .map(Response::into_inner)
                .map_err(|status| remote_error(city, status));
        }
        let mut conn = self.store.pool().acquire().await?;
        let (institutions, next_page_token) = institutions::list(
            &mut conn,
            self.city,
            &listing.filters,
            listing.token.as_ref(),
            listing.page_size,
        )
        .await?;
        Ok(pb::ListInstitutionsResponse {
            institutions,
            next_page_token,
        })
    }
}

/// The first reply to a message id, as recorded.
fn decode_reply<M: Message + Default>(reply: &[u8], message_id: &str) -> Result<M, CatalogError> {
    M::decode(reply).map_err(|_| {
        CatalogError::Corrupt(format!(
            "the recorded reply to message id {message_id} is unreadable"
        ))
    })
}

/// Streams the changes after `since_version` up to `target`, one bounded page at a time, until
/// the last page is sent or the client goes away.
async fn send_pages(
    store: Store,
    since_version: u64,
    target: u64,
    page_size: usize,
    pages: mpsc::Sender<Result<pb::DownloadCatalogResponse, Status>>,
) {
    let mut cursor = Cursor::Start { since_version };
    for page_number in 1u32.. {
        // One change more than a page tells whether this page is the last.
        let mut changes = match catalog::changes_page(&store, &cursor, target, page_size + 1).await
        {
            Ok(changes) => changes,
            Err(error) => {
                let _ = pages.send(Err(error.into())).await;
                return;
            }
        };
        let last_page = changes.len() <= page_size;
        changes.truncate(page_size);
        if let Some(last) = changes.last() {
            cursor = Cursor::After {
                version: last.version,
                code: last.item.code.clone(),
            };
        }
        let page = pb::DownloadCatalogResponse {
            changes: changes.iter().map(|change| change.to_wire()).collect(),
            target_version: target,
            page_number,
            last_page,
        };
        if pages.send(Ok(page)).await.is_err() || last_page {
            return;
        }
    }
}

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogNode {
    async fn lookup_items(
        &self,
        request: Request<pb::LookupItemsRequest>,
    ) -> Result<Response<pb::LookupItemsResponse>, Status> {
        let lookup = Lookup::try_from(request.into_inner()).map_err(invalid_argument)?;
        Ok(Response::new(self.look_up(lookup).await?))
    }

    async fn download_catalog(
        &self,
        request: Request<pb::DownloadCatalogRequest>,
    ) -> Result<Response<BoxStream<pb::DownloadCatalogResponse>>, Status> {
        let download = Download::try_from(request.into_inner()).map_err(invalid_argument)?;
        let current = {
            let mut conn = self
                .store
                .pool()
                .acquire()
                .await
                .map_err(CatalogError::from)?;
            catalog::current_version(&mut conn).await?
        };
        if download.since_version > current {
            return Err(CatalogError::OutOfRange(Invalid::new(
                "since_version",
                format!("must not be above the current catalog version {current}"),
            ))
            .into());
        }
        let (sender, receiver) = mpsc::channel(PAGES_BUFFERED_MAX);
        tokio::spawn(send_pages(
            self.store.clone(),
            download.since_version,
            current,
            download.page_size,
            sender,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn publish_catalog_version(
        &self,
        request: Request<pb::PublishCatalogVersionRequest>,
    ) -> Result<Response<pb::PublishCatalogVersionResponse>, Status> {
        let request = request.into_inner();
        let digest = replies::digest(&request.encode_to_vec());
        let set = ChangeSet::try_from(request).map_err(invalid_argument)?;
        Ok(Response::new(self.publish(set, &digest).await?))
    }

    async fn get_policy(
        &self,
        request: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let forwarded_here = request.metadata().contains_key(FORWARDED);
        Ok(Response::new(
            self.policy(request.into_inner(), forwarded_here).await?,
        ))
    }

    async fn upsert_policy(
        &self,
        request: Request<pb::UpsertPolicyRequest>,
    ) -> Result<Response<pb::UpsertPolicyResponse>, Status> {
        let request = request.into_inner();
        let digest = replies::digest(&request.encode_to_vec());
        let upsert = PolicyUpsert::try_from(request).map_err(invalid_argument)?;
        Ok(Response::new(self.upsert_policy(upsert, &digest).await?))
    }

    async fn get_institution(
        &self,
        request: Request<pb::GetInstitutionRequest>,
    ) -> Result<Response<pb::GetInstitutionResponse>, Status> {
        let forwarded_here = request.metadata().contains_key(FORWARDED);
        Ok(Response::new(
            self.institution(request.into_inner(), forwarded_here)
                .await?,
        ))
    }

    async fn list_diseases(
        &self,
        _request: Request<pb::ListDiseasesRequest>,
    ) -> Result<Response<pb::ListDiseasesResponse>, Status> {
        let diseases = crate::diseases::list(&self.store)
            .await?
            .into_iter()
            .map(|(code, name)| pb::Disease { code, name })
            .collect();
        Ok(Response::new(pb::ListDiseasesResponse { diseases }))
    }

    async fn list_institutions(
        &self,
        request: Request<pb::ListInstitutionsRequest>,
    ) -> Result<Response<pb::ListInstitutionsResponse>, Status> {
        let forwarded_here = request.metadata().contains_key(FORWARDED);
        Ok(Response::new(
            self.institutions(request.into_inner(), forwarded_here)
                .await?,
        ))
    }
}
