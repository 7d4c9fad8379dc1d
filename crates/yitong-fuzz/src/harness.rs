//! Every service's node of one city and the clearing house's ledger, on fresh SQLite stores,
//! called directly (no transport) so that a fuzz target runs the handler itself, validation
//! and all, thousands of times a second.
//!
//! The stores hold a few seeded persons and the city's seeded catalog, policies and
//! institutions, so valid-looking requests reach past validation. Every other node of the
//! network points at a closed port: a call to one fails at once, as a peer that is down would.

use std::path::Path;
use std::sync::Arc;

use yitong_catalog::{CatalogNode, seed_institutions, seed_items, seed_policies};
use yitong_core::{CardNumber, Network, Owner, PersonNo, PoolCode, Service};
use yitong_identity::{IdentityNode, PiiKeys, VoucherSigner, seed_persons};
use yitong_ledger::LedgerNode;
use yitong_rpc::{CallLimits, PeerAccess};
use yitong_settlement::{BenefitNode, SettlementNode};
use yitong_store::{Location, PoolLimits, Store};

/// The city whose nodes are fuzzed.
pub const CITY: &str = "370100";
/// Persons seeded into its identity store (a few are enough to reach the lookups).
const PERSONS_SEEDED: usize = 20;
/// Where every peer "listens": port 1 on loopback, refused at once.
const DEAD_PEER: &str = "http://127.0.0.1:1";

/// The nodes under test.
pub struct Harness {
    pub identity: IdentityNode,
    pub catalog: CatalogNode,
    pub settlement: SettlementNode,
    pub benefit: BenefitNode,
    pub ledger: LedgerNode,
    /// Valid-looking strings for the generators: the seeded persons' card numbers, citizen IDs,
    /// person numbers and e-vouchers, the city's institution and item codes, dates, amounts.
    pub dictionary: Vec<String>,
}

/// The repository's seed files.
fn seeds_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds")
}

impl Harness {
    /// Opens, migrates and seeds the stores under `dir` and builds the nodes.
    pub async fn start(dir: &Path) -> Harness {
        let city = PoolCode::parse(CITY).expect("a valid city code");
        let mut network =
            Network::load(&seeds_dir().join("network.toml")).expect("the seeded network loads");
        let cities: Vec<PoolCode> = network.enabled_pools().map(|city| city.code).collect();
        for code in &cities {
            for service in [Service::Identity, Service::Catalog, Service::Settlement] {
                network.set_endpoint(*code, service, DEAD_PEER.to_owned());
            }
        }
        network.set_endpoint(city, Service::Ledger, DEAD_PEER.to_owned());
        let network = Arc::new(network);
        let seeds = yitong_seeds::load_seeds(&seeds_dir()).expect("the seed files load");
        let location = Location::Sqlite {
            dir: dir.to_owned(),
        };
        let store = async |service: Service, owner: Owner| {
            let store = Store::open(&location, service, owner, PoolLimits::default())
                .await
                .expect("the store opens");
            store.migrate().await.expect("migrations run");
            store
        };
        let access = PeerAccess::with_limits(CallLimits::default());
        let calls = &access;

        let identity_store = store(Service::Identity, Owner::Pool(city)).await;
        let keys = PiiKeys::for_development(city);
        let persons: Vec<_> = seeds
            .persons_of(city)
            .into_iter()
            .take(PERSONS_SEEDED)
            .collect();
        seed_persons(&identity_store, &keys, city, &persons)
            .await
            .expect("persons seed");
        let signer = VoucherSigner::for_development(city);
        let mut dictionary = fixed_values();
        for (index, person) in persons.iter().enumerate() {
            let serial = index as u64 + 1;
            let person_no = PersonNo::new(city, serial);
            dictionary.push(person.citizen_id.expose().to_owned());
            dictionary.push(CardNumber::new(city, serial as u32).to_string());
            dictionary.push(person_no.to_string());
            let (token, _) = signer.issue(&person_no, yitong_store::now_ms() / 1_000, 600);
            dictionary.push(token);
        }
        let identity = IdentityNode::new(
            city,
            identity_store,
            keys,
            VoucherSigner::for_development(city),
            network.clone(),
            calls,
        )
        .expect("identity starts");

        let catalog_store = store(Service::Catalog, Owner::Pool(city)).await;
        let institutions = seeds.institutions_of(city);
        let items = seeds.items_of(city);
        seed_institutions(&catalog_store, city, &institutions)
            .await
            .expect("institutions seed");
        seed_items(&catalog_store, city, &items)
            .await
            .expect("items seed");
        seed_policies(&catalog_store, city, &seeds.policies_of(city))
            .await
            .expect("policies seed");
        dictionary.extend(institutions.iter().take(20).map(|i| i.code.to_string()));
        dictionary.extend(items.iter().take(40).map(|item| item.code().to_string()));
        let catalog = CatalogNode::new(city, catalog_store, network.clone(), calls)
            .unwrap_or_else(|_| panic!("catalog starts"));

        let settlement_store = store(Service::Settlement, Owner::Pool(city)).await;
        let settlement =
            SettlementNode::new(city, settlement_store.clone(), network.clone(), calls)
                .expect("settlement starts");
        let benefit = BenefitNode::new(city, settlement_store, network.clone(), calls)
            .expect("benefit starts");

        let ledger_store = store(Service::Ledger, Owner::ClearingHouse).await;
        let ledger = LedgerNode::start(ledger_store, network.clone())
            .await
            .expect("the ledger starts");

        Harness {
            identity,
            catalog,
            settlement,
            benefit,
            ledger,
            dictionary,
        }
    }
}

/// Values that look valid to some field of some request, or sit just past a boundary.
fn fixed_values() -> Vec<String> {
    let today = yitong_core::today().to_string();
    [
        "MSG-0001",
        "MSG-0002",
        "M",
        "370100",
        "370300",
        "370500",
        "371600",
        "999999",
        "000000",
        "2026-01-01",
        "2026-02-29",
        "2026-12-31",
        "2025-13-01",
        "1900-01-01",
        "9999-12-31",
        "2026-12",
        "2026-01",
        "0.00",
        "0.01",
        "12.34",
        "-1.00",
        "1.005",
        "99999999999999.99",
        "92233720368547758.07",
        "1e3",
        "0.85",
        "1.5",
        "370100.bank",
        "370100.fund",
        "370100.advances",
        "370100.pool",
        "370300->370100.obligation",
        "00000000-0000-4000-8000-000000000001",
        "00000000-0000-4000-8000-000000000002",
        "ST370100-000001",
        "V370100-000001",
        "J01.9",
        "K29.7",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([today])
    .collect()
}
