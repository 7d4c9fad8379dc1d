//! How the console reaches a service as a staff member's caller: a channel to the service's
//! node carrying that caller's credential.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::Context;
use yitong_auth::Credentials;
use yitong_core::{Network, Owner, Service};
use yitong_rpc::{Authorized, Caller, bearer};

/// A gRPC channel of any kind (the network's, or the sandbox's in tests).
pub type GrpcChannel = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    tonic::transport::Error,
>;

/// Channels to the services, as a caller.
pub trait Connect: Send + Sync + 'static {
    /// A channel to `service` run by `owner` whose calls present `caller`'s credential.
    fn channel(
        &self,
        caller: &Caller,
        owner: Owner,
        service: Service,
    ) -> anyhow::Result<GrpcChannel>;
}

/// Boxes any channel the console can call through.
pub fn boxed<C>(channel: C) -> GrpcChannel
where
    C: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = tonic::transport::Error,
        > + Clone
        + Send
        + Sync
        + 'static,
    C::Future: Send + 'static,
{
    tower::util::BoxCloneSyncService::new(channel)
}

/// The network of a network file, reached with the keys of a credentials file (what
/// `yitong dev` writes): one lazily connected channel per server, shared by every caller.
pub struct NetworkConnect {
    network: Network,
    credentials: Credentials,
    channels: Mutex<HashMap<String, tonic::transport::Channel>>,
}

impl NetworkConnect {
    pub fn new(network: Network, credentials: Credentials) -> NetworkConnect {
        NetworkConnect {
            network,
            credentials,
            channels: Mutex::new(HashMap::new()),
        }
    }

    fn url(&self, owner: Owner, service: Service) -> anyhow::Result<String> {
        match owner {
            Owner::ClearingHouse => Ok(self.network.clearing_house.ledger.clone()),
            Owner::Pool(code) => {
                let city = self
                    .network
                    .pool(code)
                    .with_context(|| format!("the network has no city {code}"))?;
                Ok(self.network.endpoint(city, service))
            }
        }
    }
}

impl Connect for NetworkConnect {
    fn channel(
        &self,
        caller: &Caller,
        owner: Owner,
        service: Service,
    ) -> anyhow::Result<GrpcChannel> {
        let url = self.url(owner, service)?;
        let channel = {
            let mut channels = self.channels.lock().expect("channels lock");
            match channels.get(&url) {
                Some(channel) => channel.clone(),
                None => {
                    let channel = tonic::transport::Endpoint::from_shared(url.clone())
                        .with_context(|| format!("bad endpoint {url}"))?
                        .connect_timeout(std::time::Duration::from_secs(5))
                        .connect_lazy();
                    channels.insert(url, channel.clone());
                    channel
                }
            }
        };
        let key = self
            .credentials
            .key(caller)
            .with_context(|| format!("the credentials hold no key for {caller}"))?;
        let authorization = bearer(key).context("the key is not a header value")?;
        // A node may serve several pools of its city: every call names the one it addresses.
        let pool = match owner {
            Owner::Pool(code) => Some(code),
            Owner::ClearingHouse => None,
        };
        Ok(boxed(
            Authorized::new(channel, authorization).addressed_to(pool),
        ))
    }
}
