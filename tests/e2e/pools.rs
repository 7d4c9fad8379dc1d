//! Two pools of one city: Dongying's own pool (370500) and the Shengli Oilfield's (370590,
//! illustrative), each with its own node, catalog, policy and fund. A visit between them is a
//! cross-pool settlement: the treatment pool's catalog classifies the lines, the insured pool's
//! policy prices them, and it is owed between the pools on an obligation, never paid from
//! either pool's own account. Hand-worked from the seeds, on both databases.
//!
//! The same two pools served by one node (the Oilfield's pool listing Dongying's endpoints):
//! every call names the pool it addresses, an HIS's call without the name goes to its
//! institution's pool, and a call addressed to no pool of the node is refused storing nothing.
//!
//! And the upgrade of a running network: stores made by the schema on main before pools, under
//! the network file as it was then (one `[[city]]` per city), with settlements in them, started
//! again under today's network file with a second pool enabled. Pools reuse the columns a city's
//! code was stored in (the same six digits, the same numbers), so no migration runs for them;
//! the test proves the old rows read right: every day reconciles to the fen as before, the
//! balances are unchanged, and the new pool settles with the old ones.

use std::collections::BTreeMap;

use tonic_types::StatusExt;
use yitong_core::{Network, Owner, PoolCode, Service};
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    GetBalancesRequest, ReconcileTotalsRequest, ReconciliationResult, ReconciliationScope,
};
use yitong_proto::settlement::v1::{ListSettlementsRequest, Settlement, SettlementStatus};
use yitong_rpc::POOL_METADATA;
use yitong_sandbox::{Database, Sandbox};

use crate::circle::totals_of;
use crate::settlement::{
    fen, register_request, settle_as_an_his_would, upload_request, visit_lines,
};

pub(crate) const DONGYING: &str = "370500";
pub(crate) const OILFIELD: &str = "370590";
const JINAN: &str = "370100";
const ZIBO: &str = "370300";

/// The seeds' network file with the Oilfield's pool enabled beside the four pilot cities.
pub(crate) fn with_the_oilfield() -> Network {
    let mut network = yitong_sandbox::seeds_network();
    let oilfield = PoolCode::parse(OILFIELD).expect("a pool code");
    network
        .pools
        .iter_mut()
        .find(|pool| pool.code == oilfield)
        .expect("the seeds hold the Oilfield's pool")
        .enabled = true;
    network
}

/// The network file as it was before pools: one `[[city]]` per city, the four pilot cities.
fn before_pools() -> Network {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("e2e/fixtures/network-before-pools.toml"),
    )
    .expect("the fixture");
    assert!(text.contains("[[city]]") && !text.contains("[[pool]]"));
    Network::from_toml(&text).expect("a network file written before pools still reads")
}

/// Registers the `n`-th seeded person of `insured` at `institution`, uploads the visit's lines
/// (`visit_lines`: a consultation, twenty head CTs, a patent medicine) and settles, as an HIS.
pub(crate) async fn settle_at(
    net: &Sandbox,
    institution: &str,
    treatment: &str,
    insured: &str,
    n: u32,
    tag: &str,
) -> Settlement {
    let mut his = net.his_settlement(institution);
    let mut register = register_request(&format!("R-{tag}"), treatment, insured, n);
    register.institution_code = institution.to_owned();
    let visit = his
        .register_visit(register)
        .await
        .unwrap_or_else(|status| panic!("{tag} registers: {status:?}"))
        .into_inner()
        .visit
        .expect("visit");
    let visit = his
        .upload_fee_lines(upload_request(&format!("U-{tag}"), &visit, visit_lines()))
        .await
        .unwrap_or_else(|status| panic!("{tag} uploads: {status:?}"))
        .into_inner()
        .visit
        .expect("visit");
    let settled = settle_as_an_his_would(&mut his, &format!("S-{tag}"), &visit, n)
        .await
        .unwrap_or_else(|status| panic!("{tag} settles: {status:?}"));
    assert_eq!(settled.status, SettlementStatus::Settled as i32, "{tag}");
    settled
}

/// The split's figures that the catalog and the policy decide, in fen: total, over-cap
/// self-pay, pre-self-pay, in-scope, deductible applied, fund pay.
fn figures(settlement: &Settlement) -> [i64; 6] {
    let split = settlement.split.as_ref().expect("split");
    [
        fen(&split.total_amount),
        fen(&split.over_cap_self_pay),
        fen(&split.pre_self_pay),
        fen(&split.in_scope_amount),
        fen(&split.deductible_applied),
        fen(&split.fund_pay),
    ]
}

/// What the insured pool owes for a settlement: fund pay and personal-account pay.
fn owed(settlement: &Settlement) -> i64 {
    let split = settlement.split.as_ref().expect("split");
    fen(&split.fund_pay) + fen(&split.account_pay)
}

/// The ledger's posted balances of `ids`, in fen.
async fn balances(net: &Sandbox, ids: &[String]) -> BTreeMap<String, i64> {
    net.ledger()
        .get_balances(GetBalancesRequest {
            account_ids: ids.to_vec(),
            cities: vec![],
        })
        .await
        .expect("balances")
        .into_inner()
        .accounts
        .into_iter()
        .map(|account| (account.id, fen(&account.balance)))
        .collect()
}

/// Settles the hand-worked visits between Dongying's two pools and one within Dongying, checks
/// their figures and the ledger's balances, and returns them.
async fn cross_pool_case(net: &Sandbox) -> Vec<Settlement> {
    // A Dongying employee in service (person 1) at the Oilfield's level-3 hospital. The
    // Oilfield's catalog: the consultation (20.00) is capped at 14.00, so 6.00 over the cap and
    // 14.00 in scope (grade A); the twenty head CTs (3000.00) are grade B at 20% under a cap of
    // 155.00, so 600.00 pre-self-pay and 2400.00 in scope; the patent medicine (2 x 16.00) is
    // grade B at 15% under a cap of 16.00, so 4.80 pre-self-pay and 27.20 in scope. In scope
    // 2441.20. Dongying's policy for an employee in service at level 3: deductible 600.00,
    // ratio 60%: fund pay (2441.20 - 600.00) x 0.60 = 1104.72.
    let dongying_at_oilfield = settle_at(
        net,
        &format!("H{OILFIELD}00001"),
        OILFIELD,
        DONGYING,
        1,
        "DY-AT-OF",
    )
    .await;
    assert_eq!(dongying_at_oilfield.treatment_city, OILFIELD);
    assert_eq!(dongying_at_oilfield.insured_city, DONGYING);
    assert_eq!(
        figures(&dongying_at_oilfield),
        [305_200, 600, 60_480, 244_120, 60_000, 110_472]
    );

    // An Oilfield retired employee (person 2) at Dongying's level-3 hospital. Dongying's
    // catalog: the consultation capped at 13.00 (7.00 over, 13.00 in scope); the CTs grade A
    // under a cap of 145.00 (20 x 5.00 = 100.00 over, 2900.00 in scope); the patent medicine
    // grade B at 10% under a cap of 15.50 (2 x 0.50 = 1.00 over, 3.10 pre-self-pay, 27.90 in
    // scope). In scope 2940.90, over the caps 108.00. The Oilfield's policy for a retired
    // employee at level 3: deductible 300.00, ratio 70%: fund pay 2640.90 x 0.70 = 1848.63.
    let oilfield_at_dongying = settle_at(
        net,
        &format!("H{DONGYING}00001"),
        DONGYING,
        OILFIELD,
        2,
        "OF-AT-DY",
    )
    .await;
    assert_eq!(oilfield_at_dongying.treatment_city, DONGYING);
    assert_eq!(oilfield_at_dongying.insured_city, OILFIELD);
    assert_eq!(
        figures(&oilfield_at_dongying),
        [305_200, 10_800, 310, 294_090, 30_000, 184_863]
    );

    // The same Dongying person at Dongying's own hospital is a same-pool visit, priced by
    // Dongying's catalog (in scope 2940.90, as above) and policy; the Oilfield visit used the
    // year's deductible, so the fund pays 2940.90 x 0.60 = 1764.54.
    let dongying_at_home = settle_at(
        net,
        &format!("H{DONGYING}00001"),
        DONGYING,
        DONGYING,
        1,
        "DY-AT-DY",
    )
    .await;
    assert_eq!(
        figures(&dongying_at_home),
        [305_200, 10_800, 310, 294_090, 0, 176_454]
    );

    // The ledger: the two visits between the pools of one city are owed on the obligations
    // between the pools, never paid from a pool's own account; the same-pool one is.
    let ids = [
        format!("{DONGYING}->{OILFIELD}.obligation"),
        format!("{OILFIELD}->{DONGYING}.obligation"),
        format!("{DONGYING}.pool"),
        format!("{OILFIELD}.pool"),
    ];
    let expected = BTreeMap::from([
        (ids[0].clone(), owed(&dongying_at_oilfield)),
        (ids[1].clone(), owed(&oilfield_at_dongying)),
        (ids[2].clone(), owed(&dongying_at_home)),
        (ids[3].clone(), 0),
    ]);
    assert_eq!(balances(net, &ids).await, expected);

    let all = [dongying_at_oilfield, oilfield_at_dongying, dongying_at_home];
    // Each pool reconciles its own rows; Dongying's bureau reconciles the city's too, over its
    // two pools as one: all three visits as treatment city and as insured city, the two
    // between its pools counted once.
    reconciles(net, &[DONGYING, OILFIELD], &all, "pools").await;
    let mut bureau = net.bureau(DONGYING).ledger();
    for (what, subject) in [
        ("treatment", Subject::TreatmentHostCity(DONGYING.to_owned())),
        ("insured", Subject::InsuredHostCity(DONGYING.to_owned())),
    ] {
        let reply = bureau
            .reconcile_totals(today_totals(
                format!("TOTALS-CITY-{what}-{DONGYING}"),
                subject.clone(),
                &all,
                DONGYING,
            ))
            .await
            .expect("reconciled")
            .into_inner();
        assert_eq!(
            reply.result(),
            ReconciliationResult::Matched,
            "Dongying as {what} city: {reply:?}"
        );
        assert_eq!(reply.ledger.expect("the ledger's totals").count, 3);
        // The Oilfield's bureau may reconcile its own pool, not the city that hosts it.
        let refused = net
            .bureau(OILFIELD)
            .ledger()
            .reconcile_totals(today_totals(
                format!("TOTALS-CITY-{what}-BY-{OILFIELD}"),
                subject,
                &all,
                OILFIELD,
            ))
            .await
            .expect_err("another pool's bureau");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    }

    // The settlement counters label each pool beside its host city: the Oilfield's visit at
    // Dongying is Dongying's city on both sides, told apart by pool.
    let exposition = yitong_telemetry::metrics().encode();
    let series = format!(
        r#"yitong_settlements_total{{treatment_city="{DONGYING}",treatment_pool="{DONGYING}",insured_city="{DONGYING}",insured_pool="{OILFIELD}",outcome="settled"}} "#
    );
    let settled: u64 = exposition
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("{series} in\n{exposition}"))
        .trim()
        .parse()
        .expect("a count");
    // At least this test's visit: the process's counters are shared with the tests beside it.
    assert!(settled >= 1, "{series}{settled}");
    all.into()
}

// Proves a visit between Dongying's two pools uses the treatment pool's catalog and the insured
// pool's policy and clears between the pools, on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_of_one_city_settle_across_sqlite() {
    let net = Sandbox::start_network(Database::Sqlite, with_the_oilfield())
        .await
        .expect("SQLite always starts");
    cross_pool_case(&net).await;
    net.shut_down().await;
}

// Proves the same on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_of_one_city_settle_across_postgres() {
    let Some(net) = Sandbox::start_network(Database::Postgres, with_the_oilfield()).await else {
        return;
    };
    cross_pool_case(&net).await;
    net.shut_down().await;
}

/// A totals reconciliation of today's `rows` under `subject`, by the bureau of `pool`.
fn today_totals<'a>(
    message_id: String,
    subject: Subject,
    rows: impl IntoIterator<Item = &'a Settlement>,
    pool: &str,
) -> ReconcileTotalsRequest {
    let today = yitong_core::today().to_string();
    ReconcileTotalsRequest {
        message_id,
        scope: Some(ReconciliationScope {
            subject: Some(subject),
        }),
        from_date: today.clone(),
        to_date: today,
        totals: Some(totals_of(rows)),
        operator_id: format!("{pool}-bureau"),
        ..Default::default()
    }
}

/// The seeds' network file with the Oilfield's pool enabled and served by Dongying's node: its
/// entry lists Dongying's three endpoints, as a bureau running both pools in one process
/// writes it, and the file is loaded (and checked) from that text.
pub(crate) fn one_node_for_dongying() -> Network {
    let network = Network::from_toml(&one_node_for_dongying_text())
        .expect("a node shared by two pools of a city is valid");
    let code = |text: &str| PoolCode::parse(text).expect("a pool code");
    let dongying = network.pool(code(DONGYING)).expect("Dongying's pool");
    let oilfield = network.pool(code(OILFIELD)).expect("the Oilfield's pool");
    assert!(oilfield.enabled && oilfield.settlement == dongying.settlement);
    network
}

/// The text of that network file.
fn one_node_for_dongying_text() -> String {
    let seeds = yitong_sandbox::seeds_network();
    let code = |text: &str| PoolCode::parse(text).expect("a pool code");
    let dongying = seeds.pool(code(DONGYING)).expect("Dongying's pool");
    let oilfield = seeds.pool(code(OILFIELD)).expect("the Oilfield's pool");
    let text = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("network.toml"))
        .expect("seeds/network.toml");
    let entry = format!("code = \"{OILFIELD}\"");
    let at = text.find(&entry).expect("the Oilfield's entry");
    let mut block = text[at..]
        .split("\n\n")
        .next()
        .expect("an entry")
        .to_owned();
    let whole = block.clone();
    block = block.replace("enabled = false", "enabled = true");
    for (theirs, ours) in [
        (&oilfield.identity, &dongying.identity),
        (&oilfield.catalog, &dongying.catalog),
        (&oilfield.settlement, &dongying.settlement),
    ] {
        block = block.replace(&format!("\"{theirs}\""), &format!("\"{ours}\""));
    }
    text.replacen(&whole, &block, 1)
}

/// Proves `yitong serve` runs a shared node as one process: with the Oilfield's pool on
/// Dongying's node in the network file, `yitong serve catalog --city 370500` serves both pools'
/// catalogs on the one endpoint, each from its own store, with a node key for each pool; an
/// Oilfield hospital's call without the pool metadata is answered from the Oilfield's catalog
/// (its consultation capped at 14.00), a call addressed to Dongying's pool from Dongying's
/// (13.00), each naming its pool. Real processes on embedded SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yitong_serve_runs_a_shared_node() {
    use yitong_proto::catalog::v1::LookupItemsRequest;
    use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let seeds = dir.path().join("seeds");
    std::fs::create_dir(&seeds).expect("the seeds directory");
    for entry in std::fs::read_dir(yitong_sandbox::seeds_dir()).expect("the seeds") {
        let path = entry.expect("a seed file").path();
        if path.is_file() {
            std::fs::copy(&path, seeds.join(path.file_name().unwrap())).expect("copied");
        }
    }
    // Dongying's node (and so the Oilfield's) on free ports of this machine.
    let mut text = one_node_for_dongying_text();
    let dongying = yitong_sandbox::seeds_network()
        .pool(PoolCode::parse(DONGYING).unwrap())
        .cloned()
        .expect("Dongying");
    for configured in [&dongying.identity, &dongying.catalog, &dongying.settlement] {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = free.local_addr().unwrap().port();
        text = text.replace(
            &format!("\"{configured}\""),
            &format!("\"http://127.0.0.1:{port}\""),
        );
    }
    let network_file = seeds.join("network.toml");
    std::fs::write(&network_file, &text).expect("the network file");
    let network = Network::from_toml(&text).expect("valid");
    let endpoint = network
        .pool(PoolCode::parse(OILFIELD).unwrap())
        .expect("the Oilfield")
        .catalog
        .clone();

    let data = dir.path().join("data");
    let yitong = |args: &[&str]| {
        let output = std::process::Command::new(yitong_tests::yitong())
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "yitong {args:?}: {output:?}");
        String::from_utf8(output.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    };
    let (seeds_arg, data_arg) = (seeds.to_str().unwrap(), data.to_str().unwrap());
    yitong(&[
        "seed",
        "--seeds",
        seeds_arg,
        "--database-url",
        data_arg,
        "--dev-keys",
    ]);
    let keys = dir.path().join("keys.toml");
    let keys_arg = keys.to_str().unwrap();
    let mut issued = BTreeMap::new();
    for caller in [
        format!("node:{DONGYING}"),
        format!("node:{OILFIELD}"),
        format!("institution:H{DONGYING}00001"),
        format!("institution:H{OILFIELD}00001"),
    ] {
        issued.insert(
            caller.clone(),
            yitong(&["key", "issue", &caller, "--keys", keys_arg]),
        );
    }
    let node_keys = format!(
        "{DONGYING}={},{OILFIELD}={}",
        issued[&format!("node:{DONGYING}")],
        issued[&format!("node:{OILFIELD}")]
    );
    let mut server = tokio::process::Command::new(yitong_tests::yitong())
        .args(["serve", "catalog", "--city", DONGYING, "--network"])
        .arg(&network_file)
        .args([
            "--database-url",
            data_arg,
            "--keys",
            keys_arg,
            "--node-key",
            &node_keys,
        ])
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("yitong serve starts");

    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .expect("an endpoint")
        .connect_lazy();
    let ask = |institution: &str, pool: Option<&str>| {
        let mut request = tonic::Request::new(LookupItemsRequest {
            codes: vec!["001102000010000".to_owned()],
            institution_code: institution.to_owned(),
            ..Default::default()
        });
        let key = &issued[&format!("institution:{institution}")];
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("a header value"),
        );
        if let Some(pool) = pool {
            request
                .metadata_mut()
                .insert(POOL_METADATA, pool.parse().expect("a header value"));
        }
        request
    };
    let oilfield_hospital = format!("H{OILFIELD}00001");
    let started = std::time::Instant::now();
    let reply = loop {
        match CatalogServiceClient::new(channel.clone())
            .lookup_items(ask(&oilfield_hospital, None))
            .await
        {
            Ok(reply) => break reply.into_inner(),
            Err(status) if started.elapsed() < std::time::Duration::from_secs(60) => {
                assert!(
                    server.try_wait().expect("the server's state").is_none(),
                    "yitong serve stopped: {status:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(status) => panic!("the shared node never answered: {status:?}"),
        }
    };
    assert_eq!(reply.city, OILFIELD, "{reply:?}");
    assert_eq!(
        reply.items[0]
            .item
            .as_ref()
            .expect("in the catalog")
            .price_cap,
        "14.00"
    );

    let dongying_hospital = format!("H{DONGYING}00001");
    let reply = CatalogServiceClient::new(channel.clone())
        .lookup_items(ask(&dongying_hospital, Some(DONGYING)))
        .await
        .expect("Dongying's catalog answers")
        .into_inner();
    assert_eq!(reply.city, DONGYING, "{reply:?}");
    assert_eq!(
        reply.items[0]
            .item
            .as_ref()
            .expect("in the catalog")
            .price_cap,
        "13.00"
    );
    server.kill().await.expect("stopped");
}

/// The status a refused call must get: INVALID_ARGUMENT naming the `yitong-pool` metadata.
fn assert_refused_for_the_pool(status: &tonic::Status, mentions: &[&str]) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("a field violation: {status:?}"));
    assert_eq!(bad_request.field_violations[0].field, POOL_METADATA);
    for text in mentions {
        assert!(status.message().contains(text), "{text} in {status:?}");
    }
}

/// `request` with its `yitong-pool` metadata set to `pool`.
fn addressed<T>(request: T, pool: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(request);
    request
        .metadata_mut()
        .insert(POOL_METADATA, pool.parse().expect("ASCII"));
    request
}

async fn one_node_case(net: &Sandbox) {
    // One node: each service of the two pools listens at one address.
    let pool = |text: &str| Owner::Pool(PoolCode::parse(text).expect("a pool code"));
    for service in [Service::Identity, Service::Catalog, Service::Settlement] {
        assert_eq!(
            net.endpoint(pool(DONGYING), service),
            net.endpoint(pool(OILFIELD), service)
        );
    }
    assert_ne!(
        net.endpoint(pool(DONGYING), Service::Settlement),
        net.endpoint(pool(JINAN), Service::Settlement)
    );

    // Across the pools both ways and within Dongying, hand-worked as with a node per pool; and
    // within the Oilfield (person 3, a resident), paid from the Oilfield's own pool account.
    // The clearing house sees two parties: what each pool owes the other stands on its own
    // obligation (checked in the case), and each pool reconciles to the fen as both sides.
    let mut settled = cross_pool_case(net).await;
    let oilfield_at_home = settle_at(
        net,
        &format!("H{OILFIELD}00001"),
        OILFIELD,
        OILFIELD,
        3,
        "OF-AT-OF",
    )
    .await;
    let own = format!("{OILFIELD}.pool");
    assert_eq!(
        balances(net, std::slice::from_ref(&own)).await,
        BTreeMap::from([(own.clone(), owed(&oilfield_at_home))])
    );
    settled.push(oilfield_at_home);
    reconciles(net, &[DONGYING, OILFIELD], &settled, "one-node").await;

    // Refused before any handler, storing nothing: a pool the node does not serve, a name
    // that is no pool's code, a call naming no pool from a caller of no one pool (a bureau,
    // an anonymous caller), and at a node of one pool a name of another. An HIS of one pool
    // addressing the other pool of its node is that pool's caller no more than at two nodes.
    let before = net.row_counts().await;
    let oilfield_hospital = format!("H{OILFIELD}00001");
    let mut his = net.his(&oilfield_hospital).settlement(OILFIELD);
    let mut register = register_request("R-ELSEWHERE", OILFIELD, OILFIELD, 4);
    register.institution_code = oilfield_hospital.clone();
    let status = his
        .register_visit(addressed(register.clone(), JINAN))
        .await
        .expect_err("Jinan is not served here");
    assert_refused_for_the_pool(&status, &[JINAN, &format!("{DONGYING}, {OILFIELD}")]);
    let status = his
        .register_visit(addressed(register.clone(), "37059"))
        .await
        .expect_err("not a pool code");
    assert_refused_for_the_pool(&status, &["six-digit"]);
    let status = his
        .register_visit(addressed(register.clone(), DONGYING))
        .await
        .expect_err("an Oilfield HIS at Dongying's pool");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let listing = ListSettlementsRequest {
        institution_code: format!("H{DONGYING}00001"),
        ..Default::default()
    };
    let status = net
        .bureau(DONGYING)
        .unaddressed()
        .settlement(DONGYING)
        .list_settlements(listing.clone())
        .await
        .expect_err("a bureau names its pool");
    assert_refused_for_the_pool(&status, &[&format!("bureau:{DONGYING}")]);
    let status = net
        .anonymous()
        .unaddressed()
        .settlement(DONGYING)
        .list_settlements(listing)
        .await
        .expect_err("nobody's pool");
    assert_refused_for_the_pool(&status, &["anonymous"]);
    let jinan_hospital = format!("H{JINAN}00001");
    let mut jinan_register = register_request("R-JN-ELSEWHERE", JINAN, JINAN, 4);
    jinan_register.institution_code = jinan_hospital.clone();
    let status = net
        .his(&jinan_hospital)
        .settlement(JINAN)
        .register_visit(addressed(jinan_register.clone(), ZIBO))
        .await
        .expect_err("Jinan's node serves Jinan's pool only");
    assert_refused_for_the_pool(&status, &[ZIBO, JINAN]);
    assert_eq!(
        net.row_counts().await,
        before,
        "refused calls store nothing"
    );

    // An HIS that names no pool goes to its institution's pool, at the shared node and at a
    // node of one pool.
    for (institution, treatment, register) in [
        (oilfield_hospital.as_str(), OILFIELD, register),
        (
            &format!("H{DONGYING}00001"),
            DONGYING,
            register_request("R-DY-UNNAMED", DONGYING, DONGYING, 4),
        ),
        (jinan_hospital.as_str(), JINAN, jinan_register),
    ] {
        let visit = net
            .his(institution)
            .unaddressed()
            .settlement(treatment)
            .register_visit(register)
            .await
            .unwrap_or_else(|status| panic!("{institution} registers unnamed: {status:?}"))
            .into_inner()
            .visit
            .expect("visit");
        assert_eq!(visit.treatment_city, treatment);
        assert!(
            visit.visit_id.starts_with(&format!("S{treatment}")),
            "{visit:?}"
        );
    }
}

// Proves two pools of one city served by one node settle across and within the pools,
// reconcile to the fen, and that the node dispatches each call to the pool it addresses (or
// its HIS's pool), refusing the rest storing nothing, on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_serves_two_pools_sqlite() {
    let net = Sandbox::start_network(Database::Sqlite, one_node_for_dongying())
        .await
        .expect("SQLite always starts");
    one_node_case(&net).await;
    net.shut_down().await;
}

// Proves the same on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_serves_two_pools_postgres() {
    let Some(net) = Sandbox::start_network(Database::Postgres, one_node_for_dongying()).await
    else {
        return;
    };
    one_node_case(&net).await;
    net.shut_down().await;
}

/// Each of `pools` reconciles today's `settled` as treatment and as insured pool, and the
/// ledger agrees to the fen; `round` keeps the message ids of each round apart.
pub(crate) async fn reconciles(net: &Sandbox, pools: &[&str], settled: &[Settlement], round: &str) {
    for pool in pools {
        let mut bureau = net.bureau(pool).ledger();
        for (what, subject, rows) in [
            (
                "treatment",
                Subject::TreatmentCity((*pool).to_owned()),
                settled
                    .iter()
                    .filter(|s| s.treatment_city == *pool)
                    .collect::<Vec<_>>(),
            ),
            (
                "insured",
                Subject::InsuredCity((*pool).to_owned()),
                settled.iter().filter(|s| s.insured_city == *pool).collect(),
            ),
        ] {
            let reply = bureau
                .reconcile_totals(today_totals(
                    format!("TOTALS-{round}-{what}-{pool}"),
                    subject,
                    rows.iter().copied(),
                    pool,
                ))
                .await
                .expect("reconciled")
                .into_inner();
            assert_eq!(
                reply.result(),
                ReconciliationResult::Matched,
                "{round}: {pool} as {what} pool: {reply:?}"
            );
        }
    }
}

async fn upgrade_case(net: Sandbox) {
    // Before: the four pilot cities under the old file, settling across and within cities.
    let before = [
        (ZIBO, JINAN, 1, "ZB-JN"),
        (JINAN, DONGYING, 2, "JN-DY"),
        (DONGYING, ZIBO, 3, "DY-ZB"),
        (DONGYING, DONGYING, 4, "DY-DY"),
    ];
    let mut settled = Vec::new();
    for (treatment, insured, n, tag) in before {
        let institution = format!("H{treatment}00001");
        settled.push(settle_at(&net, &institution, treatment, insured, n, tag).await);
    }
    let pilot = [JINAN, ZIBO, DONGYING];
    reconciles(&net, &pilot, &settled, "before").await;
    let ids: Vec<String> = [
        format!("{JINAN}->{ZIBO}.obligation"),
        format!("{DONGYING}->{JINAN}.obligation"),
        format!("{ZIBO}->{DONGYING}.obligation"),
        format!("{DONGYING}.pool"),
        format!("{DONGYING}.advances"),
    ]
    .into();
    let balances_before = balances(&net, &ids).await;
    assert!(balances_before.values().all(|fen| *fen > 0));

    // The upgrade: the same stores under today's file, the Oilfield's pool enabled.
    let net = net.restart_with(with_the_oilfield()).await;
    assert_eq!(
        balances(&net, &ids).await,
        balances_before,
        "the old rows read the same"
    );
    reconciles(&net, &pilot, &settled, "after").await;

    // The new pool settles with the old ones, and every pool still reconciles to the fen.
    settled.push(
        settle_at(
            &net,
            &format!("H{OILFIELD}00001"),
            OILFIELD,
            DONGYING,
            1,
            "DY-AT-OF",
        )
        .await,
    );
    settled.push(
        settle_at(
            &net,
            &format!("H{JINAN}00001"),
            JINAN,
            OILFIELD,
            1,
            "OF-AT-JN",
        )
        .await,
    );
    reconciles(&net, &[JINAN, ZIBO, DONGYING, OILFIELD], &settled, "joined").await;
    net.shut_down().await;
}

// Proves stores made before pools, with settlements in them, keep reconciling to the fen under
// the pools' network file and settle with a new pool, on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_from_before_pools_upgrades_sqlite() {
    let net = Sandbox::start_network(Database::Sqlite, before_pools())
        .await
        .expect("SQLite always starts");
    upgrade_case(net).await;
}

// Proves the same on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_from_before_pools_upgrades_postgres() {
    let Some(net) = Sandbox::start_network(Database::Postgres, before_pools()).await else {
        return;
    };
    upgrade_case(net).await;
}
