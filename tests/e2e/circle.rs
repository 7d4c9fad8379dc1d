//! Every pool by data alone: the seeds' network file with every pool enabled (the seven cities'
//! own pools, the Shengli Oilfield's pool beside Dongying's and the provincial one beside
//! Jinan's), as a bureau enables one (the same file, each `enabled = false` turned true),
//! started with the committed seed files and nothing else. No line here names a city or a pool:
//! every pool comes from the network file, so the test proves that routing, catalogs, policies,
//! the ledger's chart, reconciliation, clearing and netting grow with the network, and that two
//! pools of one city settle and clear between each other as any two pools do, here on one node
//! of their city (each second pool is served by its host city's node).
//!
//! The month closed is the last one: a period closes only once it has ended, and the visits
//! settled here are settled today. Its rows are booked as the treatment nodes book a Settle
//! (CreateTransfers of posted SETTLEMENT transfers with their records), one per ordered pair.

use std::collections::BTreeMap;

use yitong_core::Network;
use yitong_ledger::Period;
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::ledger::v1::{
    ApplyClearingRequest, ClearingTotals, CloseClearingPeriodRequest,
    ConfirmClearingDetailsRequest, ConfirmationStatus, CreateTransferResult,
    CreateTransfersRequest, DetailDecision, GetBalancesRequest, ListClearingDetailsRequest,
    ReconciliationTotals, SettlementRecord,
};
use yitong_proto::settlement::v1::{Settlement, SettlementStatus};
use yitong_sandbox::{Channel, Database, Sandbox};

use crate::settlement::{
    fen, hospital, register_request, settle_as_an_his_would, upload_request, visit_lines,
};
use crate::support::{settlement_transfer, yuan};

type Ledger = LedgerServiceClient<Channel>;

/// The seeds' network file with every pool of it enabled, edited as text the way a bureau
/// edits its copy; and every second pool of a city served by its host city's node (its entry
/// listing the endpoints of the city's own pool), so the circle runs nodes of one pool beside
/// nodes shared by two, and every call between them is dispatched by the pool it names.
fn whole_circle() -> Network {
    let text = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("network.toml"))
        .expect("seeds/network.toml");
    let mut enabled = text.replace("enabled = false", "enabled = true");
    let own_nodes = Network::from_toml(&enabled).expect("the edited network file is valid");
    for pool in &own_nodes.pools {
        let host = own_nodes
            .pool(pool.city.into())
            .expect("a host city has its own pool");
        if host.code == pool.code {
            continue;
        }
        for (theirs, ours) in [
            (&pool.identity, &host.identity),
            (&pool.catalog, &host.catalog),
            (&pool.settlement, &host.settlement),
        ] {
            enabled = enabled.replace(&format!("\"{theirs}\""), &format!("\"{ours}\""));
        }
    }
    let network = Network::from_toml(&enabled).expect("the shared nodes' file is valid");
    assert!(
        network
            .pools
            .iter()
            .any(|pool| network.node_pools(pool).len() > 1),
        "some node serves two pools"
    );
    network
}

/// Registers the `n`-th seeded person of `insured` at `treatment`'s level-3 hospital, uploads
/// the visit's lines and settles it, as the hospital's HIS does.
async fn settle_visit(net: &Sandbox, treatment: String, insured: String, n: u32) -> Settlement {
    let tag = format!("{treatment}-{insured}");
    let mut his = net.his_settlement(&hospital(&treatment));
    let visit = his
        .register_visit(register_request(
            &format!("R-{tag}"),
            &treatment,
            &insured,
            n,
        ))
        .await
        .unwrap_or_else(|status| panic!("{tag} registers: {status:?}"))
        .into_inner()
        .visit
        .expect("visit");
    let uploaded = his
        .upload_fee_lines(upload_request(&format!("U-{tag}"), &visit, visit_lines()))
        .await
        .unwrap_or_else(|status| panic!("{tag} uploads: {status:?}"))
        .into_inner();
    let visit = uploaded.visit.expect("visit");
    settle_as_an_his_would(&mut his, &format!("S-{tag}"), &visit, n)
        .await
        .unwrap_or_else(|status| panic!("{tag} settles: {status:?}"))
}

/// The reconciliation totals of `settlements`.
pub(crate) fn totals_of<'a>(
    settlements: impl IntoIterator<Item = &'a Settlement>,
) -> ReconciliationTotals {
    let (mut count, mut fund, mut account, mut cash) = (0, 0, 0, 0);
    for settlement in settlements {
        let split = settlement.split.as_ref().expect("split");
        count += 1;
        fund += fen(&split.fund_pay);
        account += fen(&split.account_pay);
        cash += fen(&split.cash_pay);
    }
    ReconciliationTotals {
        count,
        total_amount: yuan(fund + account + cash),
        fund_pay: yuan(fund),
        account_pay: yuan(account),
        cash_pay: yuan(cash),
        ..Default::default()
    }
}

/// The ledger's posted balances of `ids`, each read as fen.
async fn posted(ledger: &mut Ledger, ids: Vec<String>) -> BTreeMap<String, i64> {
    let reply = ledger
        .get_balances(GetBalancesRequest {
            account_ids: ids.clone(),
            cities: vec![],
        })
        .await
        .expect("balances")
        .into_inner();
    assert_eq!(reply.accounts.len(), ids.len(), "every account is open");
    reply
        .accounts
        .into_iter()
        .map(|account| {
            assert_eq!(
                fen(&account.debits_pending),
                0,
                "{} has nothing pending",
                account.id
            );
            assert_eq!(
                fen(&account.credits_pending),
                0,
                "{} has nothing pending",
                account.id
            );
            (account.id, fen(&account.balance))
        })
        .collect()
}

async fn case(net: &Sandbox) {
    // `cities` are the pools: the ledger, reconciliation and clearing key everything by pool
    // (the wire's `*_city` fields carry the pool's code).
    let cities: Vec<String> = net
        .network()
        .enabled_pools()
        .map(|pool| pool.code.to_string())
        .collect();
    assert_eq!(
        cities.len(),
        net.network().pools.len(),
        "every pool of the file runs"
    );
    assert!(
        cities.len() >= 9,
        "the seven cities' pools and two second pools"
    );
    let hosts = net.network().cities();
    assert_eq!(hosts.len(), 7, "hosted by the seven cities");
    assert!(
        hosts
            .iter()
            .any(|city| net.network().pools_of(*city).count() > 1),
        "a city hosts more than one pool"
    );

    // A visit in every ordered pair, the same-pool ones included, all at once. Persons 1 to 4
    // of each insured pool are active (an employee, a retired employee, a resident, an elderly
    // resident); each treatment pool takes the next.
    let visits = cities.iter().enumerate().flat_map(|(index, treatment)| {
        cities.iter().map(move |insured| {
            let n = u32::try_from(index % 4).expect("small") + 1;
            settle_visit(net, treatment.clone(), insured.clone(), n)
        })
    });
    let settled: Vec<Settlement> = join_all(visits).await;
    assert_eq!(settled.len(), cities.len() * cities.len());
    for settlement in &settled {
        assert_eq!(settlement.status, SettlementStatus::Settled as i32);
        let split = settlement.split.as_ref().expect("split");
        assert_eq!(
            fen(&split.fund_pay) + fen(&split.account_pay) + fen(&split.cash_pay),
            fen(&split.total_amount),
            "the split adds up: {settlement:?}"
        );
    }

    // The chart grows with the network: every advances, pool and obligation account is open
    // and holds what the settlements put there. Two pools of one city are two parties like any
    // others: a visit between them is owed on an obligation, never paid from either pool.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for treatment in &cities {
        expected.insert(format!("{treatment}.advances"), 0);
        expected.insert(format!("{treatment}.pool"), 0);
        for insured in cities.iter().filter(|insured| *insured != treatment) {
            expected.insert(format!("{insured}->{treatment}.obligation"), 0);
        }
    }
    for settlement in &settled {
        let split = settlement.split.as_ref().expect("split");
        let pay = fen(&split.fund_pay) + fen(&split.account_pay);
        let (treatment, insured) = (&settlement.treatment_city, &settlement.insured_city);
        *expected
            .get_mut(&format!("{treatment}.advances"))
            .expect("an open account") += pay;
        let payer = if treatment == insured {
            format!("{treatment}.pool")
        } else {
            format!("{insured}->{treatment}.obligation")
        };
        *expected.get_mut(&payer).expect("an open account") += pay;
    }
    let mut ledger = net.ledger();
    let ids: Vec<String> = expected.keys().cloned().collect();
    let n = cities.len();
    assert_eq!(
        ids.len(),
        n * 2 + n * (n - 1),
        "advances and pool per pool, an obligation per ordered pair"
    );
    assert_eq!(posted(&mut ledger, ids).await, expected);

    // Today reconciles: each pool's bureau submits its totals as treatment pool and as insured
    // pool (one settlement with every pool, each way), and the ledger agrees.
    for city in &cities {
        let treated = settled.iter().filter(|s| &s.treatment_city == city).count();
        let insured = settled.iter().filter(|s| &s.insured_city == city).count();
        assert_eq!((treated, insured), (cities.len(), cities.len()));
    }
    let pools: Vec<&str> = cities.iter().map(String::as_str).collect();
    crate::pools::reconciles(net, &pools, &settled, "circle").await;
    let today = yitong_core::today();

    // Last month: a cross-pool settlement of every ordered pair, each of another amount, booked
    // by its treatment pool's node.
    let last_day = Period::of_date(today)
        .first_day()
        .pred_opt()
        .expect("a day before");
    let period = Some(Period::of_date(last_day).to_wire());
    let mut month: BTreeMap<String, Vec<SettlementRecord>> = BTreeMap::new();
    let mut serial = 0_u32;
    for treatment in &cities {
        for insured in cities.iter().filter(|insured| *insured != treatment) {
            serial += 1;
            let fund = 10_000 + i64::from(serial) * 1_337;
            let account = i64::from(serial % 3) * 100;
            let cash = 500;
            let record = SettlementRecord {
                settlement_id: format!("T{treatment}{serial:010}"),
                message_id: format!("{}-{serial}", hospital(treatment)),
                treatment_city: treatment.clone(),
                insured_city: insured.clone(),
                institution_code: hospital(treatment),
                visit_id: format!("S{treatment}{serial:010}"),
                person_no: format!("{insured}{:010}", 1),
                insurance_type: 310,
                clearing_type: 11,
                settlement_date: last_day.to_string(),
                total_amount: yuan(fund + account + cash),
                fund_pay: yuan(fund),
                account_pay: yuan(account),
                cash_pay: yuan(cash),
                cancellation: false,
                original_settlement_id: String::new(),
                fund_payments: Vec::new(),
            };
            month.entry(treatment.clone()).or_default().push(record);
        }
    }
    for (treatment, records) in &month {
        let reply = net
            .node(treatment)
            .ledger()
            .create_transfers(CreateTransfersRequest {
                message_id: format!("MONTH-{treatment}"),
                transfers: records
                    .iter()
                    .map(|record| {
                        let n = record.visit_id[7..].parse().expect("a serial");
                        settlement_transfer(n, record.clone())
                    })
                    .collect(),
            })
            .await
            .expect("booked")
            .into_inner();
        for outcome in reply.results {
            assert_eq!(outcome.result(), CreateTransferResult::Ok, "{outcome:?}");
        }
    }

    // Each treatment pool confirms its rows and applies; the clearing house closes the month.
    for (treatment, records) in &month {
        let details = ledger
            .list_clearing_details(ListClearingDetailsRequest {
                period,
                treatment_city: treatment.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner();
        assert_eq!(
            details.details.len(),
            cities.len() - 1,
            "{treatment}: a row per insured pool"
        );
        ledger
            .confirm_clearing_details(yitong_sandbox::as_its_bureau(
                ConfirmClearingDetailsRequest {
                    message_id: format!("CONFIRM-{treatment}"),
                    period,
                    treatment_city: treatment.clone(),
                    decisions: details
                        .details
                        .iter()
                        .map(|detail| DetailDecision {
                            settlement_id: detail.settlement_id.clone(),
                            decision: ConfirmationStatus::Included as i32,
                            reason: String::new(),
                        })
                        .collect(),
                    operator_id: format!("{treatment}-bureau"),
                },
            ))
            .await
            .expect("confirmed");
        let (total, fund, account) = records.iter().fold((0, 0, 0), |(t, f, a), r| {
            (
                t + fen(&r.total_amount),
                f + fen(&r.fund_pay),
                a + fen(&r.account_pay),
            )
        });
        ledger
            .apply_clearing(yitong_sandbox::as_its_bureau(ApplyClearingRequest {
                message_id: format!("APPLY-{treatment}"),
                period,
                treatment_city: treatment.clone(),
                totals: Some(ClearingTotals {
                    count: u64::try_from(records.len()).expect("small"),
                    total_amount: yuan(total),
                    insured_city_pay: yuan(fund + account),
                    fund_pay: yuan(fund),
                    account_pay: yuan(account),
                }),
                operator_id: format!("{treatment}-bureau"),
            }))
            .await
            .expect("applied");
    }
    let closed = ledger
        .close_clearing_period(CloseClearingPeriodRequest {
            message_id: "CLOSE-LAST-MONTH".into(),
            period,
            operator_id: "clearing-house-1".into(),
        })
        .await
        .expect("closed")
        .into_inner();

    // Every pair is an obligation, every pool a position; the positions are what the pairs
    // say, sum to zero, and at most n - 1 payments settle them.
    assert_eq!(closed.obligations.len(), cities.len() * (cities.len() - 1));
    assert_eq!(closed.net_positions.len(), cities.len());
    let mut nets: BTreeMap<String, i64> = cities.iter().map(|c| (c.clone(), 0)).collect();
    for records in month.values() {
        for record in records {
            let pay = fen(&record.fund_pay) + fen(&record.account_pay);
            *nets.get_mut(&record.treatment_city).expect("a city") += pay;
            *nets.get_mut(&record.insured_city).expect("a city") -= pay;
        }
    }
    for position in &closed.net_positions {
        assert_eq!(fen(&position.net), nets[&position.city], "{position:?}");
    }
    assert_eq!(nets.values().sum::<i64>(), 0, "net positions sum to zero");
    let payments = &closed.payment_instructions;
    assert!(
        !payments.is_empty() && payments.len() < cities.len(),
        "{payments:?}"
    );
    let mut left = nets.clone();
    for payment in payments {
        *left.get_mut(&payment.payer_city).expect("a city") += fen(&payment.amount);
        *left.get_mut(&payment.payee_city).expect("a city") -= fen(&payment.amount);
    }
    assert!(
        left.values().all(|net| *net == 0),
        "the payments settle every position: {left:?}"
    );
    assert_eq!(closed.statements.len(), cities.len());
    for statement in &closed.statements {
        assert_eq!(
            statement.fund_balance_before, statement.fund_balance_after,
            "the close leaves {}'s fund where it stood",
            statement.city
        );
    }
    // The close discharged last month's obligations: what is left is today's.
    let today_owed: BTreeMap<String, i64> = expected
        .into_iter()
        .filter(|(id, _)| id.ends_with(".obligation"))
        .collect();
    let ids: Vec<String> = today_owed.keys().cloned().collect();
    assert_eq!(posted(&mut ledger, ids).await, today_owed);
}

/// Polls every future to its end, concurrently, in order.
async fn join_all<T>(futures: impl IntoIterator<Item = impl Future<Output = T>>) -> Vec<T> {
    let mut set = Vec::new();
    for future in futures {
        set.push(Box::pin(future));
    }
    let mut results: Vec<Option<T>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, result) in set.iter_mut().zip(results.iter_mut()) {
            if result.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *result = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|result| result.expect("ready"))
        .collect()
}

// Proves every pool of the circle (nine) runs by data alone, on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pool_by_data_alone_sqlite() {
    let net = Sandbox::start_network(Database::Sqlite, whole_circle())
        .await
        .expect("SQLite always starts");
    case(&net).await;
    net.shut_down().await;
}

// Proves every pool of the circle (nine) runs by data alone, on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pool_by_data_alone_postgres() {
    let Some(net) = Sandbox::start_network(Database::Postgres, whole_circle()).await else {
        return;
    };
    case(&net).await;
    net.shut_down().await;
}
