//! The network itself: every server up, health checks, reflection, honest UNIMPLEMENTED, restarts.

use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};
use yitong_core::{Owner, Service};
use yitong_sandbox::{JINAN, PILOT_CITIES, ZIBO, network_test};

use crate::support::seeded_card;

/// The gRPC services each kind of server must serve.
fn served(service: Service) -> &'static [&'static str] {
    match service {
        Service::Identity => &["yitong.identity.v1.IdentityService"],
        Service::Catalog => &["yitong.catalog.v1.CatalogService"],
        Service::Settlement => &[
            "yitong.settlement.v1.SettlementService",
            "yitong.settlement.v1.BenefitService",
        ],
        Service::Ledger => &["yitong.ledger.v1.LedgerService"],
    }
}

async fn reflection_v1_list(channel: yitong_sandbox::Channel) -> Vec<String> {
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = v1::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1 answers")
        .into_inner();
    match replies
        .message()
        .await
        .expect("a reply")
        .expect("one reply")
        .message_response
    {
        Some(MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect(),
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

async fn reflection_v1alpha_list(channel: yitong_sandbox::Channel) -> Vec<String> {
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1alpha answers")
        .into_inner();
    match replies
        .message()
        .await
        .expect("a reply")
        .expect("one reply")
        .message_response
    {
        Some(MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect(),
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

network_test! {
    /// Proves that the four cities' identity, catalog and settlement servers and the clearing
    /// house's ledger all run, answer SERVING for each of their services, and that reflection
    /// (v1 and v1alpha) lists each service by its full name.
    async fn every_server_is_serving_and_reflected(net) {
        assert_eq!(net.endpoints().len(), PILOT_CITIES.len() * 3 + 1);
        for endpoint in net.endpoints() {
            let channel = net.channel(endpoint.owner, endpoint.service);
            let mut health = HealthClient::new(channel.clone());
            for name in served(endpoint.service) {
                let reply = health.check(HealthCheckRequest { service: (*name).to_owned() }).await.expect("health answers");
                assert_eq!(reply.into_inner().status, ServingStatus::Serving as i32, "{name} at {}", endpoint.url);
                for list in [reflection_v1_list(channel.clone()).await, reflection_v1alpha_list(channel.clone()).await] {
                    assert!(list.iter().any(|listed| listed == name), "{name} not reflected at {}: {list:?}", endpoint.url);
                    assert!(list.iter().any(|listed| listed == "grpc.health.v1.Health"), "{list:?}");
                }
            }
        }
        let ledger = net.channel(Owner::ClearingHouse, Service::Ledger);
        let listed = reflection_v1_list(ledger).await;
        assert!(!listed.iter().any(|name| name.starts_with("yitong.identity")), "a server reflects only what it serves: {listed:?}");
    }
}

network_test! {
    /// Proves that a call the server does not know (a method of a newer client, a typo in a
    /// hand-written call) answers UNIMPLEMENTED, never success, on every server.
    async fn unknown_methods_answer_unimplemented(net) {
        for endpoint in net.endpoints() {
            let mut grpc = tonic::client::Grpc::new(net.channel(endpoint.owner, endpoint.service));
            grpc.ready().await.expect("channel ready");
            let path = tonic::codegen::http::uri::PathAndQuery::from_static("/yitong.ledger.v1.LedgerService/NoSuchMethod");
            let codec = tonic_prost::ProstCodec::<(), ()>::default();
            let status = grpc.unary(tonic::Request::new(()), path, codec).await.unwrap_err();
            assert_eq!(status.code(), Code::Unimplemented, "{}", endpoint.url);
        }
    }
}

/// Proves that a network stopped and started again on the same SQLite data serves what it held
/// and does not seed twice: the card after the last seeded one exists only if the seeded
/// persons were loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_data_and_seeds_once() {
    use yitong_proto::identity::v1::{Credential, GetInsuredPersonRequest, credential::Kind};
    let lookup = |card: String| GetInsuredPersonRequest {
        credential: Some(Credential {
            kind: Some(Kind::CardNumber(card)),
        }),
        ..Default::default()
    };
    let net = yitong_sandbox::Sandbox::start(yitong_sandbox::Database::Sqlite)
        .await
        .expect("starts");
    net.identity(ZIBO)
        .get_insured_person(lookup(seeded_card(JINAN, 1)))
        .await
        .expect("found before restart");
    let seeded_persons_per_city = yitong_seeds::PERSONS_PER_CITY as u32;
    let net = net.restart().await;
    net.identity(ZIBO)
        .get_insured_person(lookup(seeded_card(JINAN, 1)))
        .await
        .expect("found after restart");
    let status = net
        .identity(JINAN)
        .get_insured_person(lookup(seeded_card(JINAN, seeded_persons_per_city + 1)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    net.shut_down().await;
}
