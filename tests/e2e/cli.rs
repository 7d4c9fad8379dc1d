//! The bureau command line (`yitong reconcile`, `yitong clearing`, `yitong journal`) run as the
//! built binary against the sandbox network: what it prints in each format and its exit codes.
//! The ledger traffic is booked directly with CreateTransfers, as in reconciliation.rs.

use std::path::{Path, PathBuf};

use yitong_core::{Owner, Service};
use yitong_proto::ledger::v1::{
    CreateTransferResult, CreateTransfersRequest, SettlementRecord, Transfer,
};
use yitong_sandbox::{BINZHOU, JINAN, Sandbox, ZIBO, network_test};
use yitong_store::sqlx;
use yitong_tests::yitong;

use crate::support::{settlement_transfer, yuan};

/// What one run of the binary gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `yitong <args> --ledger <the sandbox's ledger>` as Zibo's bureau, whose month these
/// tests reconcile and clear.
async fn run(net: &Sandbox, args: &[&str]) -> Run {
    run_as(net, &format!("bureau:{ZIBO}"), args).await
}

/// Runs `yitong <args> --ledger <the sandbox's ledger>` with `caller`'s API key.
async fn run_as(net: &Sandbox, caller: &str, args: &[&str]) -> Run {
    let ledger = net.endpoint(Owner::ClearingHouse, Service::Ledger);
    let output = tokio::process::Command::new(yitong())
        .args(args)
        .args(["--ledger", &ledger])
        .env("YITONG_API_KEY", net.api_key(caller))
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    Run {
        code: output.status.code().expect("an exit code"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 errors"),
    }
}

/// A posted settlement of `fund` + `account` fen (cash 3.00 yuan) for a person of `insured`
/// at a `treatment` hospital on `date`, transfer id and settlement id numbered `n`.
fn settlement(
    n: u32,
    insured: &str,
    treatment: &str,
    fund: i64,
    account: i64,
    date: &str,
) -> Transfer {
    let cash = 300;
    settlement_transfer(
        n,
        SettlementRecord {
            settlement_id: format!("T{treatment}{n:010}"),
            message_id: format!("H{treatment}00001-{n}"),
            treatment_city: treatment.to_owned(),
            insured_city: insured.to_owned(),
            institution_code: format!("H{treatment}00001"),
            visit_id: format!("S{treatment}{n:010}"),
            person_no: format!("{insured}{n:010}"),
            insurance_type: 310,
            clearing_type: 11,
            settlement_date: date.to_owned(),
            total_amount: yuan(fund + account + cash),
            fund_pay: yuan(fund),
            account_pay: yuan(account),
            cash_pay: yuan(cash),
            cancellation: false,
            original_settlement_id: String::new(),
            fund_payments: Vec::new(),
        },
    )
}

async fn book(net: &Sandbox, message_id: &str, transfers: &[Transfer]) {
    let reply = net
        .ledger()
        .create_transfers(CreateTransfersRequest {
            message_id: message_id.to_owned(),
            transfers: transfers.to_vec(),
        })
        .await
        .expect("CreateTransfers answers")
        .into_inner();
    for outcome in reply.results {
        assert_eq!(outcome.result(), CreateTransferResult::Ok, "{outcome:?}");
    }
}

/// Zibo's March: ten settlements of Jinan's and Binzhou's insured persons, with figures that
/// differ row by row.
fn zibo_march() -> Vec<Transfer> {
    (1..=10)
        .map(|n| {
            let insured = if n % 2 == 0 { JINAN } else { BINZHOU };
            let account = if n % 3 == 0 { 1_500 } else { 0 };
            let date = if n <= 6 { "2026-03-02" } else { "2026-03-09" };
            settlement(n, insured, ZIBO, 10_000 + i64::from(n) * 123, account, date)
        })
        .collect()
}

const ROW_COLUMNS: &str = "settlement_id,visit_id,person_no,settlement_date,total_amount,fund_pay,account_pay,cash_pay,cancellation,message_id";

/// Writes the submitter's rows for `transfers` as the CSV `reconcile details` reads, sorted.
fn rows_file(dir: &Path, name: &str, transfers: &[&Transfer]) -> PathBuf {
    let mut records: Vec<&SettlementRecord> = transfers
        .iter()
        .map(|t| t.settlement.as_ref().expect("a record"))
        .collect();
    records.sort_by(|a, b| a.settlement_id.cmp(&b.settlement_id));
    let mut text = format!("{ROW_COLUMNS}\n");
    for r in records {
        text.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.settlement_id,
            r.visit_id,
            r.person_no,
            r.settlement_date,
            r.total_amount,
            r.fund_pay,
            r.account_pay,
            r.cash_pay,
            r.cancellation,
            r.message_id
        ));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("can write the rows file");
    path
}

fn fen_of(transfers: &[Transfer], figure: impl Fn(&SettlementRecord) -> &str) -> i64 {
    transfers
        .iter()
        .map(|t| {
            let text = figure(t.settlement.as_ref().expect("a record"));
            let (whole, fraction) = text.split_once('.').expect("two decimals");
            whole.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap()
        })
        .sum()
}

network_test! {
    /// Proves the reconciliation commands and `journal verify` against a booked week of Zibo's
    /// settlements: matching totals print every figure and exit 0, wrong totals name the figure
    /// and exit 1; a clean detail file exits 0 with its summary in CSV; a file with a row
    /// deleted and an amount altered exits 1 and names exactly those breaks in JSON; an intact
    /// journal verifies with exit 0, and one with an amount altered in the database exits 1
    /// naming the entry.
    async fn reconcile_and_verify_from_the_command_line(net) {
        let booked = zibo_march();
        book(net, "CLI-BOOK", &booked).await;
        let first_week: Vec<Transfer> = booked
            .iter()
            .filter(|t| t.settlement.as_ref().unwrap().settlement_date == "2026-03-02")
            .cloned()
            .collect();
        let count = first_week.len().to_string();
        let total = yuan(fen_of(&first_week, |r| &r.total_amount));
        let fund = yuan(fen_of(&first_week, |r| &r.fund_pay));
        let account = yuan(fen_of(&first_week, |r| &r.account_pay));
        let cash = yuan(fen_of(&first_week, |r| &r.cash_pay));
        let scope = ["--treatment-city", ZIBO, "--from", "2026-03-01", "--to", "2026-03-07"];

        let mut args = vec!["reconcile", "totals"];
        args.extend(scope);
        args.extend(["--count", &count, "--total-amount", &total, "--fund-pay", &fund]);
        args.extend(["--account-pay", &account, "--cash-pay", &cash]);
        let clean = run(net, &args).await;
        assert_eq!(clean.code, 0, "{clean:?}");
        for figure in [&count, &total, &fund, &account, &cash] {
            assert!(clean.stdout.contains(figure.as_str()), "{figure} missing: {}", clean.stdout);
        }
        assert!(!clean.stdout.contains("mismatched"), "{}", clean.stdout);

        let wrong_fund = yuan(fen_of(&first_week, |r| &r.fund_pay) + 1);
        let mut args = vec!["reconcile", "totals", "--format", "json"];
        args.extend(scope);
        args.extend(["--count", &count, "--total-amount", &total, "--fund-pay", &wrong_fund]);
        args.extend(["--account-pay", &account, "--cash-pay", &cash]);
        let broken = run(net, &args).await;
        assert_eq!(broken.code, 1, "{broken:?}");
        let sections: serde_json::Value = serde_json::from_str(&broken.stdout).expect("JSON");
        // The ledger's lines by clearing type and fund type follow the figures, none of them
        // compared (the command line gave none): they sum to the ledger's fund pay.
        let fund_lines: i64 = sections["by fund type"]
            .as_array()
            .expect("the fund lines")
            .iter()
            .inspect(|line| assert_eq!(line["result"], "not submitted"))
            .map(|line| yitong_core::Amount::parse_signed(line["ledger"].as_str().unwrap()).unwrap().fen())
            .sum();
        assert_eq!(yuan(fund_lines), fund);
        assert!(!sections["by clearing type"].as_array().expect("the clearing type lines").is_empty());
        let figures = &sections["totals"];
        let results: Vec<(&str, &str)> = figures
            .as_array()
            .expect("one object per figure")
            .iter()
            .map(|f| (f["figure"].as_str().unwrap(), f["result"].as_str().unwrap()))
            .collect();
        assert_eq!(
            results,
            [("count", "matched"), ("total_amount", "matched"), ("fund_pay", "mismatched"),
             ("account_pay", "matched"), ("cash_pay", "matched")]
        );
        assert_eq!(figures[2]["submitted"], wrong_fund.as_str());
        assert_eq!(figures[2]["ledger"], fund.as_str());

        let dir = tempfile::tempdir().expect("temporary directory");
        let all: Vec<&Transfer> = first_week.iter().collect();
        let clean_file = rows_file(dir.path(), "clean.csv", &all);
        let mut args = vec!["reconcile", "details", "--format", "csv", "--file"];
        args.push(clean_file.to_str().unwrap());
        args.extend(scope);
        let clean = run(net, &args).await;
        assert_eq!(clean.code, 0, "{clean:?}");
        // Two CSV sections: the breaks (none), then the summary.
        let (breaks, summary) = clean.stdout.split_once("\n\n").expect("two sections");
        assert_eq!(breaks.lines().count(), 1, "only the header: {breaks}");
        let summary: std::collections::BTreeMap<String, String> = csv::Reader::from_reader(summary.as_bytes())
            .records()
            .map(|record| {
                let record = record.expect("a CSV row");
                (record[0].to_owned(), record[1].to_owned())
            })
            .collect();
        assert_eq!(summary["result"], "matched");
        assert_eq!(summary["matched"], count);
        assert_eq!(summary["rows_in_ledger"], count);
        // The city's scope: Zibo hosts one pool, its own, so the same file matches it.
        let mut args = vec!["reconcile", "details", "--format", "csv", "--file"];
        args.push(clean_file.to_str().unwrap());
        args.extend(["--treatment-host-city", ZIBO, "--from", "2026-03-01", "--to", "2026-03-07"]);
        let city = run(net, &args).await;
        assert_eq!(city.code, 0, "{city:?}");
        assert!(city.stdout.contains(&format!("rows_in_ledger,{count}")), "{}", city.stdout);

        // The fourth row deleted locally; the second altered (fund pay one yuan less).
        let mut altered = first_week.clone();
        let record = altered[1].settlement.as_mut().unwrap();
        record.fund_pay = yuan(fen_of(&first_week[1..2], |r| &r.fund_pay) - 100);
        let submitted: Vec<&Transfer> = altered.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, t)| t).collect();
        let broken_file = rows_file(dir.path(), "broken.csv", &submitted);
        let mut args = vec!["reconcile", "details", "--format", "json", "--file"];
        args.push(broken_file.to_str().unwrap());
        args.extend(scope);
        let broken = run(net, &args).await;
        assert_eq!(broken.code, 1, "{broken:?}");
        let lines: Vec<serde_json::Value> = broken
            .stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect();
        let (summary, rows) = lines.split_last().expect("a summary line");
        let found: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|row| (
                row["settlement_id"].as_str().unwrap(),
                row["result"].as_str().unwrap(),
                row["figures"].as_str().unwrap(),
            ))
            .collect();
        let id = |index: usize| first_week[index].settlement.as_ref().unwrap().settlement_id.clone();
        let (altered_id, deleted_id) = (id(1), id(3));
        assert_eq!(
            found,
            [(altered_id.as_str(), "amount_mismatch", "fund_pay"),
             (deleted_id.as_str(), "missing_in_submission", "")]
        );
        let summary = &summary["summary"];
        assert_eq!(summary["result"], "mismatched");
        assert_eq!(summary["amount_mismatch"], "1");
        assert_eq!(summary["missing_in_submission"], "1");
        assert_eq!(summary["matched"], (first_week.len() - 2).to_string());

        let verified = run(net, &["journal", "verify", "--format", "json"]).await;
        assert_eq!(verified.code, 0, "{verified:?}");
        let journal: serde_json::Value = serde_json::from_str(&verified.stdout).expect("JSON");
        assert_eq!(journal["intact"], "true");
        assert_eq!(journal["first_altered_sequence"], "0");
        assert_eq!(journal["head_hash"], journal["digest_head_hash"]);
        assert_eq!(journal["entries_checked"], journal["digest_entry_count"]);
        assert_eq!(journal["entries_checked"], booked.len().to_string());

        // One amount altered behind the ledger's back, its triggers disarmed first as an
        // intruder's would be: the readable table names the entry.
        let store = net.ledger_store().await;
        let disarmed = crate::support::disarm_append_only(&store, "journal").await;
        sqlx::query("UPDATE journal SET amount_fen = amount_fen + 1 WHERE sequence = 4")
            .execute(store.pool())
            .await
            .expect("alter");
        disarmed.rearm(&store).await;
        store.close().await;
        let altered = run(net, &["journal", "verify"]).await;
        assert_eq!(altered.code, 1, "{altered:?}");
        let first_altered = altered
            .stdout
            .lines()
            .find(|line| line.contains("first_altered_sequence"))
            .expect("the first altered entry is printed");
        assert!(first_altered.contains(" 4 "), "{}", altered.stdout);
        assert!(altered.stdout.contains("content does not match its hash"), "{}", altered.stdout);
        assert!(altered.stderr.contains("journal altered: entry 4"), "{}", altered.stderr);
    }
}

network_test! {
    /// Proves the month's clearing from the command line: Zibo extracts its March rows in CSV,
    /// confirms them from a decisions file (one excluded), applies with its totals (wrong ones
    /// first: exit 2, the refusal printed), the clearing house closes March with net positions
    /// summing to zero, and Jinan confirms its statement.
    async fn a_month_clears_from_the_command_line(net) {
        let booked = zibo_march();
        book(net, "CLI-MARCH", &booked).await;
        let month = ["--period", "2026-03", "--treatment-city", ZIBO];

        let mut args = vec!["clearing", "extract", "--format", "csv"];
        args.extend(month);
        let extract = run(net, &args).await;
        assert_eq!(extract.code, 0, "{extract:?}");
        let mut reader = csv::Reader::from_reader(extract.stdout.as_bytes());
        let headers = reader.headers().expect("a header").clone();
        let column = |name: &str| headers.iter().position(|h| h == name).expect(name);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
        let mut expected: Vec<String> = booked.iter().map(|t| t.settlement.as_ref().unwrap().settlement_id.clone()).collect();
        expected.sort();
        let listed: Vec<&str> = rows.iter().map(|r| &r[column("settlement_id")]).collect();
        assert_eq!(listed, expected);
        assert!(rows.iter().all(|r| &r[column("confirmation")] == "unconfirmed"));
        // Each row's clearing type and fund lines ("310100:12.34", the pooling fund of a row
        // booked without a breakdown).
        for (row, transfer) in rows.iter().zip({
            let mut sorted: Vec<&Transfer> = booked.iter().collect();
            sorted.sort_by(|a, b| a.settlement.as_ref().unwrap().settlement_id.cmp(&b.settlement.as_ref().unwrap().settlement_id));
            sorted
        }) {
            let record = transfer.settlement.as_ref().unwrap();
            assert_eq!(&row[column("clr_type")], record.clearing_type.to_string());
            let fund_lines = &row[column("fund_payments")];
            if yitong_core::Amount::parse_signed(&record.fund_pay).unwrap().fen() != 0 {
                assert_eq!(fund_lines, format!("{}100:{}", record.insurance_type, record.fund_pay));
            }
        }

        let excluded = &expected[0];
        let dir = tempfile::tempdir().expect("temporary directory");
        let decisions = dir.path().join("decisions.csv");
        let mut text = String::from("settlement_id,decision,reason\n");
        for id in &expected {
            if id == excluded {
                text.push_str(&format!("{id},exclude,the visit record is under review\n"));
            } else {
                text.push_str(&format!("{id},include,\n"));
            }
        }
        std::fs::write(&decisions, text).expect("can write the decisions");
        let mut args = vec!["clearing", "confirm", "--format", "json", "--operator", "zibo-bureau", "--file"];
        args.push(decisions.to_str().unwrap());
        args.extend(month);
        let confirmed = run(net, &args).await;
        assert_eq!(confirmed.code, 0, "{confirmed:?}");
        let confirmed: serde_json::Value = serde_json::from_str(&confirmed.stdout).expect("JSON");
        assert_eq!(confirmed["included"], (expected.len() - 1).to_string());
        assert_eq!(confirmed["excluded"], "1");
        assert_eq!(confirmed["unconfirmed_left"], "0");

        let included: Vec<Transfer> = booked
            .iter()
            .filter(|t| &t.settlement.as_ref().unwrap().settlement_id != excluded)
            .cloned()
            .collect();
        let count = included.len().to_string();
        let total = yuan(fen_of(&included, |r| &r.total_amount));
        let fund = yuan(fen_of(&included, |r| &r.fund_pay));
        let account = yuan(fen_of(&included, |r| &r.account_pay));
        let pay = yuan(fen_of(&included, |r| &r.fund_pay) + fen_of(&included, |r| &r.account_pay));
        let apply = |count: String| {
            let mut args: Vec<String> = ["clearing", "apply", "--format", "json", "--operator", "zibo-bureau"]
                .map(String::from)
                .to_vec();
            args.extend(month.map(String::from));
            args.extend(["--count".into(), count, "--total-amount".into(), total.clone()]);
            args.extend(["--insured-city-pay".into(), pay.clone(), "--fund-pay".into(), fund.clone()]);
            args.extend(["--account-pay".into(), account.clone()]);
            args
        };
        let wrong = apply(booked.len().to_string());
        let refused = run(net, &wrong.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(refused.code, 2, "{refused:?}");
        assert!(refused.stderr.contains("the ledger refused the application"), "{}", refused.stderr);
        let right = apply(count.clone());
        let applied = run(net, &right.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(applied.code, 0, "{applied:?}");
        let application: serde_json::Value = serde_json::from_str(&applied.stdout).expect("JSON");
        assert_eq!(application["status"], "applied");
        assert_eq!(application["insured_city_pay"], pay.as_str());

        let closed = run_as(net, "bureau:clearing", &["clearing", "close", "--period", "2026-03", "--operator", "clearing-house-1", "--format", "json"]).await;
        assert_eq!(closed.code, 0, "{closed:?}");
        let close: serde_json::Value = serde_json::from_str(&closed.stdout).expect("JSON");
        let obligations: i64 = close["obligations"]
            .as_array()
            .expect("obligations")
            .iter()
            .map(|o| yitong_core::Amount::parse_signed(o["amount"].as_str().unwrap()).unwrap().fen())
            .sum();
        assert_eq!(yuan(obligations), pay);
        let fund_lines: i64 = close["obligations by fund type"]
            .as_array()
            .expect("obligations by fund type")
            .iter()
            .map(|o| yitong_core::Amount::parse_signed(o["amount"].as_str().unwrap()).unwrap().fen())
            .sum();
        assert_eq!(yuan(fund_lines), fund, "the fund lines sum to the included rows' fund pay");
        let net_sum: i64 = close["net positions"]
            .as_array()
            .expect("net positions")
            .iter()
            .map(|p| yitong_core::Amount::parse_signed(p["net"].as_str().unwrap()).unwrap().fen())
            .sum();
        assert_eq!(net_sum, 0);

        let statement = run_as(net, &format!("bureau:{JINAN}"), &["clearing", "statement", "--period", "2026-03", "--city", JINAN, "--confirm", "--operator", "jinan-bureau"]).await;
        assert_eq!(statement.code, 0, "{statement:?}");
        assert!(
            statement.stdout.lines().any(|line| line.contains("status") && line.contains("confirmed")),
            "{}",
            statement.stdout
        );
        assert!(statement.stdout.contains("jinan-bureau"), "{}", statement.stdout);
    }
}

network_test! {
    /// Proves `yitong bench` end to end on a small run: twelve visits by three clients across the
    /// pilot cities (some pre-settled, some cancelled) all settle, and its end-of-run check finds
    /// the ledger in agreement with the settlements, nothing pending and the journal intact. The
    /// figures it prints are not asserted: they are measurements, not behaviour.
    async fn the_load_generator_settles_visits_and_its_check_passes(net) {
        let seeds = yitong_sandbox::seeds_dir();
        // The bench finds the network in a network file: the sandbox's, written from the seeded
        // one with every endpoint replaced by where the sandbox listens.
        let mut network_file = std::fs::read_to_string(seeds.join("network.toml"))
            .expect("network.toml");
        let seeded = yitong_core::Network::load(&seeds.join("network.toml")).expect("network");
        for city in seeded.enabled_pools() {
            for (service, url) in [
                (Service::Identity, &city.identity),
                (Service::Catalog, &city.catalog),
                (Service::Settlement, &city.settlement),
            ] {
                let here = net.endpoint(Owner::Pool(city.code), service);
                network_file = network_file.replace(&format!("\"{url}\""), &format!("\"{here}\""));
            }
        }
        let ledger = net.endpoint(Owner::ClearingHouse, Service::Ledger);
        network_file = network_file.replace(
            &format!("\"{}\"", seeded.clearing_house.ledger),
            &format!("\"{ledger}\""),
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("network.toml"), network_file).expect("written");
        // The HIS keys of every hospital and the bureaus' keys, as `yitong dev` writes them.
        std::fs::write(dir.path().join("credentials.toml"), net.credentials_toml()).expect("written");
        for file in ["persons.csv", "institutions.csv", "catalog_items.csv"] {
            std::fs::copy(seeds.join(file), dir.path().join(file)).expect("copied");
        }

        let output = tokio::process::Command::new(yitong())
            .args(["bench", "--visits", "12", "--clients", "3", "--cancel-percent", "25"])
            .args(["--pre-settle-percent", "50", "--json", "--seeds"])
            .arg(dir.path())
            .arg("--credentials")
            .arg(dir.path().join("credentials.toml"))
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("the binary runs");
        let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
        let figures = &report["figures"];
        assert_eq!(figures["visits_settled"], 12, "{report}");
        assert_eq!(figures["visits_failed"], 0, "{report}");
        let check = &report["check"];
        assert_eq!(check["passed"], true, "{report}");
        assert_eq!(check["settlements_listed"], 12, "{report}");
        assert_eq!(
            check["settled"].as_u64().expect("a count") + check["cancelled"].as_u64().expect("a count"),
            12,
            "{report}"
        );
        // One posted booking a settlement, and one more a cancellation (issue 21).
        assert_eq!(
            check["journal_entries_verified"].as_u64().expect("a count"),
            12 + check["cancelled"].as_u64().expect("a count"),
            "{report}"
        );
    }
}
