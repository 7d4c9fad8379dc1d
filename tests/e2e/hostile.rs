//! Hostile input and load against the running network (issue 7, acceptance 3 and 4): random
//! bytes and malformed gRPC and HTTP/2 framing sent to every server, which must stay up and
//! answer correctly afterwards; and an overload of ten times the sustainable rate, which the
//! treatment city's node must shed with RESOURCE_EXHAUSTED while its health checks answer and
//! every settlement it accepted completes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use yitong_core::{Owner, PoolCode, Service};
use yitong_proto::identity::v1::GetInsuredPersonRequest;
use yitong_proto::ledger::v1::{GetBalancesRequest, GetJournalDigestRequest};
use yitong_proto::settlement::v1::{
    GetSettlementRequest, SettlementStatus, Visit, get_settlement_request::Key,
    settlement_service_client::SettlementServiceClient,
};
use yitong_sandbox::Channel;
use yitong_sandbox::{Database, JINAN, PILOT_CITIES, Sandbox, network_test};

use crate::settlement::{
    assert_ledger_agrees, card, register_request, settle_request, upload_request, visit_lines,
};

/// Deadline of every call these tests make: a server that stops answering fails the test
/// instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The slowest a health check may answer during the storm: a load balancer's probe waits about
/// this long (on a machine shared with the rest of the suite, not on an idle one).
const HEALTH_ANSWER_MAX: Duration = Duration::from_secs(2);
/// How long the overload lasts.
const STORM: Duration = Duration::from_secs(3);

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// "http://127.0.0.1:4711" -> "127.0.0.1:4711".
fn address(url: &str) -> &str {
    url.trim_start_matches("http://")
}

/// One gRPC frame: the compression flag, the four-byte big-endian length, the message.
fn frame(flag: u8, length: u32, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![flag];
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// Sends `body` as the request body of a gRPC call to `path` over a new HTTP/2 connection, and
/// returns the answer's grpc-status, or `None` when the server reset the stream or closed the
/// connection instead. Panics when the server does not answer within [`CALL_TIMEOUT`].
async fn raw_call(url: &str, path: &str, authorization: &str, body: Vec<u8>) -> Option<i32> {
    let call = async {
        let tcp = TcpStream::connect(address(url)).await.ok()?;
        let (client, connection) = h2::client::handshake(tcp).await.ok()?;
        tokio::spawn(connection);
        let mut client = client.ready().await.ok()?;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("{url}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {authorization}"))
            .body(())
            .expect("a request head");
        let (response, mut send) = client.send_request(request, false).ok()?;
        send.send_data(Bytes::from(body), true).ok()?;
        let response = response.await.ok()?;
        let status = |headers: &http::HeaderMap| {
            headers
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())
        };
        if let Some(code) = status(response.headers()) {
            return Some(code);
        }
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.ok()?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        body.trailers().await.ok()?.as_ref().and_then(status)
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| panic!("{url}{path} did not answer within {CALL_TIMEOUT:?}"))
}

/// Writes `bytes` on a new TCP connection, closes the writing half, and reads until the server
/// closes its side. Panics when it does not within [`CALL_TIMEOUT`].
async fn raw_connection(url: &str, bytes: &[u8]) {
    let exchange = async {
        let Ok(mut tcp) = TcpStream::connect(address(url)).await else {
            panic!("{url} refuses connections");
        };
        // The server may close before reading everything: a failed write is an answer too.
        if tcp.write_all(bytes).await.is_ok() {
            let _ = tcp.shutdown().await;
        }
        let mut sink = vec![0; 16 * 1024];
        while let Ok(read) = tcp.read(&mut sink).await {
            if read == 0 {
                break;
            }
        }
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{url} kept a broken connection open"));
}

/// The gRPC paths a server answers: every method of every service it runs.
/// A caller the permission matrix lets call `path` on a server of `owner`, so the frames reach
/// the decoder rather than stopping at the permission check.
fn permitted(net: &Sandbox, owner: Owner, path: &str) -> String {
    use yitong_auth::Grant;
    let city = match owner {
        Owner::Pool(city) => city.to_string(),
        Owner::ClearingHouse => JINAN.to_owned(),
    };
    let grant = yitong_auth::permissions::grants(path)
        .and_then(|grants| grants.first().copied())
        .unwrap_or(Grant::OwnBureau);
    let caller = match grant {
        Grant::CityInstitution | Grant::AnyInstitution => format!("institution:H{city}00001"),
        Grant::OwnBureau => format!("bureau:{owner}"),
        Grant::AnyBureau => "bureau:clearing".to_owned(),
        Grant::OwnNode => format!("node:{owner}"),
        Grant::CityNode => format!("node:{city}"),
        Grant::Operator => "operator:dev".to_owned(),
    };
    net.api_key(&caller)
}

fn paths(service: Service) -> Vec<String> {
    let methods: &[(&str, &[&str])] = match service {
        Service::Identity => &[(
            "yitong.identity.v1.IdentityService",
            &[
                "GetInsuredPerson",
                "IssueCard",
                "ReportCardLost",
                "ReissueCard",
                "SetInsuranceStatus",
                "IssueEVoucher",
                "MoveAccount",
            ],
        )],
        Service::Catalog => &[(
            "yitong.catalog.v1.CatalogService",
            &[
                "LookupItems",
                "DownloadCatalog",
                "PublishCatalogVersion",
                "GetPolicy",
                "UpsertPolicy",
                "GetInstitution",
                "ListInstitutions",
            ],
        )],
        Service::Settlement => &[
            (
                "yitong.settlement.v1.SettlementService",
                &[
                    "RegisterVisit",
                    "CancelVisit",
                    "UploadFeeLines",
                    "CancelFeeLines",
                    "PreSettle",
                    "Settle",
                    "CancelSettlement",
                    "ReverseByMessageId",
                    "GetSettlement",
                    "ListSettlements",
                    "CheckBenefit",
                    "GetRunningTotals",
                ],
            ),
            (
                "yitong.settlement.v1.BenefitService",
                &["Quote", "Reserve", "Post", "Void", "GetTotals"],
            ),
        ],
        Service::Ledger => &[(
            "yitong.ledger.v1.LedgerService",
            &[
                "CreateTransfers",
                "PostPendingTransfers",
                "VoidPendingTransfers",
                "LookupTransfers",
                "GetBalances",
                "GetJournalDigest",
                "VerifyJournal",
                "ReconcileTotals",
                "ReconcileDetails",
                "ListClearingDetails",
                "ConfirmClearingDetails",
                "RollbackClearingConfirmation",
                "ApplyClearing",
                "CancelClearingApplication",
                "CloseClearingPeriod",
                "GetClearingStatement",
                "ConfirmClearingStatement",
                "GetDailyActivity",
            ],
        )],
    };
    methods
        .iter()
        .flat_map(|(service, methods)| {
            methods
                .iter()
                .map(move |method| format!("/{service}/{method}"))
        })
        .collect()
}

/// Asserts every server of the network answers its health check SERVING and a real request
/// correctly: each city's identity finds a seeded card, the ledger gives its digest.
async fn assert_network_answers(net: &Sandbox) {
    for endpoint in net.endpoints() {
        let mut health = HealthClient::new(net.channel(endpoint.owner, endpoint.service));
        let answer = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_or_else(|status| panic!("{} {}: {status:?}", endpoint.owner, endpoint.service))
            .into_inner();
        assert_eq!(answer.status(), ServingStatus::Serving, "{}", endpoint.url);
    }
    for city in PILOT_CITIES {
        let person = net
            .identity(city)
            .get_insured_person(GetInsuredPersonRequest {
                credential: card(city, 1),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|status| panic!("identity of {city}: {status:?}"))
            .into_inner()
            .person
            .expect("a person");
        assert_eq!(person.insured_city, city);
    }
    net.ledger()
        .get_journal_digest(GetJournalDigestRequest {})
        .await
        .expect("the ledger answers");
}

// Proves that malformed gRPC framing is refused call by call: a length prefix past the
// server's message limit is OUT_OF_RANGE (REQUEST_BYTES_MAX is in force), and a message that
// does not decode is the caller's fault, INVALID_ARGUMENT (issue 17; tonic alone answered
// INTERNAL): a compressed flag without compression, an undefined flag, a length past the end
// of the body, a short frame header, trailing bytes after the message, two messages to a unary
// call, an empty body and a field of a wrong wire type, at one RPC, and the last two at every
// RPC of every server; then random bytes as the body of every RPC of every server, never
// answered INTERNAL, UNKNOWN or DATA_LOSS, and broken HTTP/2 on raw connections (no preface,
// garbage frames, oversize frames, undecodable header blocks). Afterwards every server still
// answers its health check and real requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_malformed_frames_do_not_bring_a_server_down() {
    let net = Sandbox::start(Database::Sqlite)
        .await
        .expect("SQLite always starts");
    let identity = net.endpoint(
        Owner::Pool(PoolCode::parse(JINAN).expect("city")),
        Service::Identity,
    );
    let lookup = "/yitong.identity.v1.IdentityService/GetInsuredPerson";
    let bureau = net.api_key(&format!("bureau:{JINAN}"));
    let limit = yitong_node::limits::REQUEST_BYTES_MAX;

    let over_limit = raw_call(&identity, lookup, &bureau, frame(0, u32::MAX, &[])).await;
    assert_eq!(
        over_limit,
        Some(Code::OutOfRange as i32),
        "a length past the limit"
    );
    let too_large = vec![0x0a; limit + 1];
    let over_limit = raw_call(
        &identity,
        lookup,
        &bureau,
        frame(0, (limit + 1) as u32, &too_large),
    )
    .await;
    assert_eq!(
        over_limit,
        Some(Code::OutOfRange as i32),
        "a message past the limit"
    );
    let refused = [
        (
            "compressed without grpc-encoding",
            frame(1, 2, &[0x0a, 0x00]),
        ),
        ("an undefined flag", frame(7, 2, &[0x0a, 0x00])),
        ("a length past the body", frame(0, 100, &[0x0a, 0x00])),
        ("a short frame header", vec![0, 0, 0]),
        ("trailing bytes", [frame(0, 0, &[]), vec![0xff; 3]].concat()),
        (
            "two messages to a unary call",
            [frame(0, 0, &[]), frame(0, 0, &[])].concat(),
        ),
        ("an empty body", vec![]),
        ("a field of a wrong wire type", frame(0, 2, &[0x0b, 0x00])),
    ];
    for (what, body) in refused {
        let code = raw_call(&identity, lookup, &bureau, body).await;
        assert_eq!(
            code,
            Some(Code::InvalidArgument as i32),
            "{what}: answered {:?}",
            code.map(Code::from)
        );
    }
    // At every RPC: a body with no message (a client stream's first message is missing, which
    // its handler refuses), and a message of a wrong wire type, which no message decodes.
    for endpoint in net.endpoints() {
        for path in paths(endpoint.service) {
            let key = permitted(&net, endpoint.owner, &path);
            for (what, body) in [
                ("an empty body", vec![]),
                ("a field of a wrong wire type", frame(0, 2, &[0x0b, 0x00])),
            ] {
                let code = raw_call(&endpoint.url, &path, &key, body).await;
                assert_eq!(
                    code,
                    Some(Code::InvalidArgument as i32),
                    "{what} at {path}: answered {:?}",
                    code.map(Code::from)
                );
            }
        }
    }

    let mut noise = Noise(0x05ee_d0f7_ab1e);
    let mut answered = 0;
    for endpoint in net.endpoints() {
        for path in paths(endpoint.service) {
            for _ in 0..4 {
                let length = noise.below(300) as usize;
                let body = match noise.below(3) {
                    0 => noise.bytes(length),
                    1 => frame(0, length as u32, &noise.bytes(length)),
                    _ => frame(
                        noise.next() as u8,
                        noise.next() as u32,
                        &noise.bytes(length),
                    ),
                };
                let key = permitted(&net, endpoint.owner, &path);
                if let Some(code) = raw_call(&endpoint.url, &path, &key, body).await {
                    answered += 1;
                    let code = Code::from(code);
                    assert!(
                        !matches!(code, Code::Internal | Code::Unknown | Code::DataLoss),
                        "random bytes at {path} answered {code:?}"
                    );
                }
            }
        }
    }
    assert!(answered > 0, "no random call got a gRPC answer");

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let empty_settings = [0, 0, 0, 4, 0, 0, 0, 0, 0];
    for endpoint in net.endpoints() {
        raw_connection(&endpoint.url, &noise.bytes(512)).await;
        raw_connection(&endpoint.url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let garbage_frames = [PREFACE, &empty_settings, &noise.bytes(1_024)].concat();
        raw_connection(&endpoint.url, &garbage_frames).await;
        // A DATA frame of 16 MiB - 1 announced, far past the default maximum frame size.
        let oversize = [
            PREFACE,
            &empty_settings,
            &[0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1],
        ]
        .concat();
        raw_connection(&endpoint.url, &oversize).await;
        // HEADERS on stream 1 with END_HEADERS whose block is not valid HPACK.
        let mut headers = vec![0, 0, 8, 1, 4, 0, 0, 0, 1];
        headers.extend_from_slice(&noise.bytes(8));
        raw_connection(
            &endpoint.url,
            &[PREFACE, &empty_settings, &headers].concat(),
        )
        .await;
    }

    assert_network_answers(&net).await;
    net.shut_down().await;
}

/// What the storm saw, by RPC and status code.
#[derive(Default)]
struct Tally {
    codes: Mutex<HashMap<(&'static str, Code), u64>>,
    /// The first message of each RPC's each failure code, for the report.
    first: Mutex<HashMap<(&'static str, Code), String>>,
}

impl Tally {
    fn count(&self, rpc: &'static str, code: Code) {
        *self
            .codes
            .lock()
            .expect("tally")
            .entry((rpc, code))
            .or_default() += 1;
    }

    fn of(&self, code: Code) -> u64 {
        let codes = self.codes.lock().expect("tally");
        codes
            .iter()
            .filter(|((_, seen), _)| *seen == code)
            .map(|(_, count)| count)
            .sum()
    }
}

/// One HIS visit: register, upload the lines, settle; each step under its own message id, so a
/// step that failed can be retried as an HIS would. `n` picks the seeded patient of `insured`.
struct Plan {
    tag: String,
    insured: &'static str,
    n: u32,
}

/// How far a visit got.
#[derive(Default)]
struct Progress {
    visit: Option<Visit>,
    uploaded: Option<Visit>,
    settlement_id: Option<String>,
    /// Settles voided so far: each next one goes under a new message id.
    voided_settles: u32,
}

/// Runs the steps of `plan` not yet done, stopping at the first that fails; returns the status
/// of that failure.
async fn advance(
    mut his: SettlementServiceClient<Channel>,
    plan: &Plan,
    progress: &mut Progress,
    tally: &Tally,
) -> Result<(), tonic::Status> {
    let counted = |rpc: &'static str, status: tonic::Status| {
        tally.count(rpc, status.code());
        tally
            .first
            .lock()
            .expect("tally")
            .entry((rpc, status.code()))
            .or_insert_with(|| status.message().to_owned());
        status
    };
    if progress.visit.is_none() {
        let request = register_request(&format!("R-{}", plan.tag), JINAN, plan.insured, plan.n);
        let visit = his
            .register_visit(request)
            .await
            .map_err(|status| counted("RegisterVisit", status))?
            .into_inner()
            .visit;
        tally.count("RegisterVisit", Code::Ok);
        progress.visit = visit;
    }
    let visit = progress.visit.clone().expect("registered");
    if progress.uploaded.is_none() {
        let request = upload_request(&format!("U-{}", plan.tag), &visit, visit_lines());
        let uploaded = his
            .upload_fee_lines(request)
            .await
            .map_err(|status| counted("UploadFeeLines", status))?
            .into_inner()
            .visit;
        tally.count("UploadFeeLines", Code::Ok);
        progress.uploaded = uploaded;
    }
    if progress.settlement_id.is_none() {
        let message_id = match progress.voided_settles {
            0 => format!("S-{}", plan.tag),
            voided => format!("S-{}-{voided}", plan.tag),
        };
        let request = settle_request(&message_id, &visit, plan.n, false);
        let settled = his
            .settle(request)
            .await
            .map_err(|status| counted("Settle", status))?
            .into_inner();
        tally.count("Settle", Code::Ok);
        progress.settlement_id = Some(settled.settlement.expect("a settlement").settlement_id);
    }
    Ok(())
}

/// The seeded fixtures that can settle: 5 is suspended, 6 has lost the card, 7 is terminated.
const PATIENTS: [u32; 5] = [1, 2, 3, 4, 8];

fn plan(index: usize) -> Plan {
    Plan {
        tag: format!("STORM-{index}"),
        insured: PILOT_CITIES[index % PILOT_CITIES.len()],
        n: PATIENTS[index / PILOT_CITIES.len() % PATIENTS.len()],
    }
}

// Proves acceptance 4 of issue 7. First the sustainable rate of whole visits (register, upload,
// settle) at Jinan's node is measured in a closed loop; then visits arrive at ten times that
// rate, open loop. The node must shed some calls with RESOURCE_EXHAUSTED, answer every health
// check during the storm within HEALTH_ANSWER_MAX, and fail no call with anything but
// RESOURCE_EXHAUSTED. Every settlement it accepted must complete: SETTLED at the treatment
// city, and the ledger posted to the fen with nothing left pending. The HIS then retries each
// shed step under the same message id, which must settle every visit exactly once (the ledger
// still agrees to the fen with the settlements, none booked twice).
network_test! {
    async fn an_overload_is_shed_and_every_accepted_settlement_completes(net) {
        let tally = Arc::new(Tally::default());
        // Closed loop: eight HIS clients, sixty visits.
        let warm_visits = 60;
        let started = Instant::now();
        let mut next = 0usize;
        let mut progress: Vec<Progress> = Vec::new();
        while next < warm_visits {
            let batch: Vec<usize> = (next..(next + 8).min(warm_visits)).collect();
            next += batch.len();
            let done = closed_loop(net, &batch, &tally).await;
            progress.extend(done);
        }
        // Integer arithmetic throughout (the workspace lints warn on floats): the time one
        // visit takes at the sustainable rate, and a tenth of it between storm arrivals.
        let per_visit = started.elapsed() / warm_visits as u32;
        assert_eq!(tally.of(Code::Ok), 3 * warm_visits as u64, "the closed loop is not shed");

        // Open loop at ten times that rate, for three seconds.
        let interval = per_visit / 10;
        let storm_visits = (STORM.as_micros() / interval.as_micros().max(1)) as usize;
        let storm_tally = Arc::new(Tally::default());
        let health_worst = Arc::new(Mutex::new(Duration::ZERO));
        let stop = Arc::new(AtomicBool::new(false));
        let health = {
            let mut client = HealthClient::new(net.channel(Owner::Pool(PoolCode::parse(JINAN).expect("city")), Service::Settlement));
            let worst = health_worst.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut checks = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let answer = client
                        .check(HealthCheckRequest { service: "yitong.settlement.v1.SettlementService".into() })
                        .await
                        .expect("health answers during the storm")
                        .into_inner();
                    assert_eq!(answer.status(), ServingStatus::Serving);
                    let took = asked.elapsed();
                    {
                        let mut worst = worst.lock().expect("worst");
                        *worst = (*worst).max(took);
                    }
                    checks += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                checks
            })
        };
        let storm_started = Instant::now();
        let mut tasks = Vec::new();
        for index in warm_visits..warm_visits + storm_visits {
            let due = storm_started + interval * (index - warm_visits) as u32;
            tokio::time::sleep_until(due.into()).await;
            let his = net.his_settlement(&crate::settlement::hospital(JINAN));
            let tally = storm_tally.clone();
            tasks.push(tokio::spawn(async move {
                let plan = plan(index);
                let mut progress = Progress::default();
                let result = advance(his, &plan, &mut progress, &tally)
                    .await
                    .map_err(|status| status.code());
                (index, progress, result)
            }));
        }
        let mut storm: Vec<(usize, Progress, Result<(), Code>)> = Vec::new();
        for task in tasks {
            storm.push(task.await.expect("a visit task"));
        }
        let storm_took = storm_started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let checks = health.await.expect("the health task");
        let worst = *health_worst.lock().expect("worst");

        let shed = storm_tally.of(Code::ResourceExhausted);
        let codes = storm_tally.codes.lock().expect("tally").clone();
        let first = storm_tally.first.lock().expect("tally").clone();
        eprintln!(
            "storm: one visit every {per_visit:?} sustained; {storm_visits} offered one every \
             {interval:?}, done in {storm_took:?}; {checks} health checks, slowest {worst:?}; \
             outcomes {codes:?}; first messages {first:?}"
        );
        assert!(shed > 0, "nothing was shed at ten times the sustainable rate: {codes:?}");
        assert!(checks > 0 && worst < HEALTH_ANSWER_MAX, "health checks: {checks}, slowest {worst:?}");
        // Shed, or (on a starved machine) UNAVAILABLE when a call to a peer passed its deadline:
        // both are answers an HIS retries, and every such visit must still settle below.
        for ((rpc, code), count) in &codes {
            assert!(
                matches!(code, Code::Ok | Code::ResourceExhausted | Code::Unavailable),
                "{count} {rpc} failed with {code:?} during the storm"
            );
        }

        // Every settlement accepted during the storm completes.
        let accepted: Vec<String> = storm
            .iter()
            .filter_map(|(_, progress, _)| progress.settlement_id.clone())
            .collect();
        assert!(!accepted.is_empty(), "the storm settled nothing");
        // The HIS retries every shed step under the same message id until the visit settles,
        // eight visits at a time.
        let (done, mut shed_visits): (Vec<_>, Vec<_>) =
            storm.into_iter().partition(|(_, _, result)| result.is_ok());
        let mut storm: Vec<(usize, Progress, Result<(), Code>)> = done;
        while !shed_visits.is_empty() {
            let batch: Vec<_> = shed_visits.drain(..shed_visits.len().min(8)).collect();
            let mut tasks = Vec::new();
            for (index, mut progress, _) in batch {
                let his = net.his_settlement(&crate::settlement::hospital(JINAN));
                let tally = storm_tally.clone();
                tasks.push(tokio::spawn(async move {
                    let retried = retry(his, &plan(index), &mut progress, &tally).await;
                    assert!(retried, "visit {index} did not settle on retry");
                    (index, progress, Ok(()))
                }));
            }
            for task in tasks {
                storm.push(task.await.expect("a retry task"));
            }
        }
        let settled: Vec<String> = progress
            .iter()
            .chain(storm.iter().map(|(_, progress, _)| progress))
            .map(|progress| progress.settlement_id.clone().expect("every visit settled"))
            .collect();
        assert_eq!(settled.len(), warm_visits + storm_visits);
        let live = completed(net, &settled).await;
        assert!(accepted.iter().all(|id| live.iter().any(|s| &s.settlement_id == id)));
        assert_ledger_agrees(net, &live).await;
    }
}

/// Runs the visits `indexes` concurrently to the end; each must settle.
async fn closed_loop(net: &Sandbox, indexes: &[usize], tally: &Arc<Tally>) -> Vec<Progress> {
    let mut tasks = Vec::new();
    for index in indexes {
        let his = net.his_settlement(&crate::settlement::hospital(JINAN));
        let tally = tally.clone();
        let index = *index;
        tasks.push(tokio::spawn(async move {
            let mut progress = Progress::default();
            advance(his, &plan(index), &mut progress, &tally)
                .await
                .unwrap_or_else(|status| panic!("visit {index}: {status:?}"));
            progress
        }));
    }
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.expect("a visit task"));
    }
    done
}

/// Retries the visit's failed step (same message ids) until it settles; a step refused with
/// RESOURCE_EXHAUSTED is retried after a short pause, as an HIS would back off.
async fn retry(
    his: SettlementServiceClient<Channel>,
    plan: &Plan,
    progress: &mut Progress,
    tally: &Tally,
) -> bool {
    for _ in 0..50 {
        match advance(his.clone(), plan, progress, tally).await {
            Ok(()) => return true,
            // Shed, or a peer past its deadline: the same step again, under the same message id.
            Err(status) if matches!(status.code(), Code::ResourceExhausted | Code::Unavailable) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(status) if reason(&status) == Some("SETTLEMENT_IN_PROGRESS") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            // The node voided the settle it could not finish: settle again under a new id.
            Err(status) if reason(&status) == Some("SETTLEMENT_VOIDED") => {
                progress.voided_settles += 1;
            }
            Err(status) => panic!("visit {} failed on retry: {status:?}", plan.tag),
        }
    }
    false
}

/// The reason of a business refusal (FAILED_PRECONDITION with google.rpc.ErrorInfo).
fn reason(status: &tonic::Status) -> Option<&'static str> {
    use tonic_types::StatusExt;
    let reason = status.get_details_error_info()?.reason;
    ["SETTLEMENT_IN_PROGRESS", "SETTLEMENT_VOIDED"]
        .into_iter()
        .find(|known| *known == reason)
}

/// The settlements `ids`, once all are SETTLED and completed: the ledger holds nothing pending
/// for them (completion after the point of no return may still be running when the HIS has its
/// answer, and the recovery sweep finishes what a shed completion left).
async fn completed(net: &Sandbox, ids: &[String]) -> Vec<yitong_proto::settlement::v1::Settlement> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let balances = net
            .ledger()
            .get_balances(GetBalancesRequest {
                account_ids: vec![format!("{JINAN}.advances")],
                cities: vec![],
            })
            .await
            .expect("balances")
            .into_inner();
        let pending = balances
            .accounts
            .iter()
            .any(|account| crate::settlement::fen(&account.debits_pending) != 0);
        if !pending {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "settlements still pending after two minutes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut settlements = Vec::new();
    for id in ids {
        let settlement = net
            .his_settlement(&crate::settlement::hospital(JINAN))
            .get_settlement(GetSettlementRequest {
                key: Some(Key::SettlementId(id.clone())),
                institution_code: crate::settlement::hospital(JINAN),
            })
            .await
            .unwrap_or_else(|status| panic!("settlement {id}: {status:?}"))
            .into_inner()
            .settlement
            .expect("a settlement");
        assert_eq!(settlement.status, SettlementStatus::Settled as i32, "{id}");
        settlements.push(settlement);
    }
    settlements
}
