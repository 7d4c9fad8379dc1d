//! Latency of the two lookups every counter makes, through gRPC on the sandbox network:
//! LookupItems with 20 codes at the treatment city, and GetInsuredPerson at Zibo for a Jinan
//! card (one hop to the issuing city). Run with `cargo bench -p yitong-sandbox --bench lookups`;
//! it prints p50, p90, p99 and max per lookup and database. A benchmark, not a test: these
//! machines are shared, so the figures are read, never asserted.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use yitong_core::{CardNumber, PoolCode};
use yitong_proto::catalog::v1::LookupItemsRequest;
use yitong_proto::identity::v1::{Credential, GetInsuredPersonRequest, credential::Kind};
use yitong_sandbox::{Database, JINAN, Sandbox, ZIBO, seeds_dir};

/// Calls measured per lookup, after as many to warm up.
const CALLS: u64 = 2_000;
const CODES_PER_LOOKUP: usize = 20;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for database in [Database::Sqlite, Database::Postgres] {
            let Some(net) = Sandbox::start(database).await else {
                continue;
            };
            run(&net, database).await;
            net.shut_down().await;
        }
    });
}

async fn run(net: &Sandbox, database: Database) {
    // Twenty codes Zibo's catalog holds, spread over the file.
    let items =
        std::fs::read_to_string(seeds_dir().join("catalog_items.csv")).expect("catalog_items.csv");
    let zibo_codes: Vec<String> = items
        .lines()
        .skip(1)
        .filter(|line| line.starts_with(ZIBO))
        .filter_map(|line| line.split(',').nth(1).map(str::to_owned))
        .step_by(97)
        .take(CODES_PER_LOOKUP)
        .collect();
    assert_eq!(
        zibo_codes.len(),
        CODES_PER_LOOKUP,
        "seeds hold enough Zibo items"
    );

    let mut catalog = net.catalog(ZIBO);
    let lookup = measure(|| {
        let request = LookupItemsRequest {
            codes: zibo_codes.clone(),
            ..Default::default()
        };
        let mut catalog = catalog.clone();
        async move { catalog.lookup_items(request).await.map(|_| ()) }
    })
    .await;
    report(database, "LookupItems, 20 codes (Zibo)", &lookup);
    drop(catalog.lookup_items(LookupItemsRequest::default()).await);

    let jinan = PoolCode::parse(JINAN).expect("city");
    let mut serial = 0u32;
    let identity = net.identity(ZIBO);
    let person = measure(|| {
        // Persons 1-4 and 8 of every city are entitled fixtures; vary the card among them.
        serial = [1, 2, 3, 4, 8][(serial as usize + 1) % 5];
        let card = CardNumber::new(jinan, serial).to_string();
        let mut identity = identity.clone();
        async move {
            let request = GetInsuredPersonRequest {
                credential: Some(Credential {
                    kind: Some(Kind::CardNumber(card)),
                }),
                ..Default::default()
            };
            identity.get_insured_person(request).await.map(|_| ())
        }
    })
    .await;
    report(database, "GetInsuredPerson at Zibo, Jinan card", &person);
}

async fn measure<F, Fut>(mut call: F) -> Histogram<u64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
    for round in 0..CALLS * 2 {
        let started = Instant::now();
        call().await.expect("lookup succeeds");
        if round >= CALLS {
            histogram
                .record(micros(started.elapsed()))
                .expect("in range");
        }
    }
    histogram
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn report(database: Database, what: &str, histogram: &Histogram<u64>) {
    let ms = |micros: u64| format!("{}.{:02} ms", micros / 1000, micros % 1000 / 10);
    println!(
        "{database:?} | {what} | n={} | p50 {} | p90 {} | p99 {} | max {}",
        histogram.len(),
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.90)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max())
    );
}
