//! The console in a real browser: Debian's chromium driven through chromedriver (WebDriver, with
//! fantoccini), walking each role's work end to end on the sandbox network. Every page is
//! saved as a screenshot (the path is printed) and checked with axe-core, which must report no
//! serious or critical violation.
//!
//! A Rust WebDriver client keeps the walk inside `cargo test`, on the same sandbox and helpers as
//! the other end-to-end tests. Without chromedriver the test says so and passes, unless
//! `YITONG_REQUIRE_BROWSER=1` or `YITONG_REQUIRE_POSTGRES=1` (what `.ci/run` sets) asks for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use yitong_sandbox::{Database, JINAN, Sandbox, ZIBO};

use crate::console::{PASSWORD, book, book_march, console_with, today, zibo_row};
use crate::settlement::{hospital, open_visit, settle_as_an_his_would};

/// axe-core, vendored at a pinned version with its licence (tests/browser/vendor/README.md).
const AXE: &str = include_str!("../browser/vendor/axe-core-4.10.3/axe.min.js");
/// How long a page may take to show what the walk waits for.
const PAGE_WAIT: Duration = Duration::from_secs(30);
/// How long chromedriver may take to answer its first request.
const DRIVER_START_TRIES: u32 = 100;

/// Where the screenshots go: under the target directory, one folder per run.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

fn required() -> bool {
    ["YITONG_REQUIRE_BROWSER", "YITONG_REQUIRE_POSTGRES"]
        .iter()
        .any(|name| std::env::var(name).as_deref() == Ok("1"))
}

/// The browser session and what it has checked so far.
struct Walk {
    client: Client,
    base: String,
    dir: PathBuf,
    pages: u32,
}

impl Walk {
    async fn goto(&mut self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
    }

    /// Waits for `css` on the page that follows an action.
    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PAGE_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css} did not appear: {error}"))
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css}: {error}"))
            .click()
            .await
            .unwrap_or_else(|error| panic!("click {css}: {error}"));
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css}: {error}"))
            .send_keys(text)
            .await
            .unwrap_or_else(|error| panic!("type into {css}: {error}"));
    }

    async fn text(&self) -> String {
        self.client.source().await.expect("page source")
    }

    /// Saves a screenshot of the page and holds it to axe-core: no serious or critical
    /// violation.
    async fn check(&mut self, name: &str) {
        self.pages += 1;
        let png = self.client.screenshot().await.expect("screenshot");
        let file = self.dir.join(format!("{:02}-{name}.png", self.pages));
        std::fs::write(&file, png).expect("screenshot written");
        self.client
            .execute(&format!("{AXE}\n;return typeof axe;"), vec![])
            .await
            .expect("axe injected");
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] })
                   .then(r => done(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '))))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .expect("axe ran");
        let violations: Vec<String> = serde_json::from_value(found).expect("a list");
        assert!(
            violations.is_empty(),
            "{name}: axe-core found {violations:#?}"
        );
    }

    async fn sign_in(&mut self, username: &str) {
        self.goto("/login").await;
        self.type_into("#username", username).await;
        self.type_into("#password", PASSWORD).await;
        self.click("form.card button[type=submit]").await;
        self.wait_for("header nav").await;
    }

    async fn sign_out(&mut self) {
        self.click("header form.inline button").await;
        self.wait_for("#username").await;
    }
}

/// Starts chromedriver on a free port; `None` when it is not installed.
async fn chromedriver() -> Option<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    Some((child, format!("http://127.0.0.1:{port}")))
}

async fn browser(driver: &str) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000", "--lang=zh-CN"],
        }),
    );
    let mut last_error = String::new();
    for _ in 0..DRIVER_START_TRIES {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(driver)
            .await
        {
            Ok(client) => return client,
            Err(error) => last_error = error.to_string(),
        }
        // chromedriver is an outside program: its port answers once it has started.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver at {driver} did not answer: {last_error}");
}

/// Proves each role's work end to end in a real browser: a bureau signs in, reconciles a day
/// and finds the injected break, looks a settlement up, includes its month's rows and applies;
/// the clearing house closes the month; another bureau confirms its statement; a hospital's
/// finance office reconciles its day from an uploaded HIS file; a bureau files and cancels a
/// cross-city filing; an operator checks the nodes' health and looks for settlements in doubt,
/// in English. The overview is seen by a bureau (its calendar with the day's breaks), the
/// clearing house and an operator. Every page is screenshotted and passes axe-core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_walks_the_console_in_a_browser() {
    let Some((mut driver, driver_url)) = chromedriver().await else {
        assert!(
            !required(),
            "chromedriver is required (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: chromedriver is not installed; the browser walk did not run");
        return;
    };
    let net = Sandbox::start(Database::Sqlite)
        .await
        .expect("SQLite always starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().expect("address"));
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(yitong_telemetry::serve_metrics(metrics, async move {
        let _ = metrics_stopped.await;
    }));
    let (console, _) = console_with(&net, dir.path(), vec![metrics_url]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(yitong_console::serve(
        console.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));

    // The day: two settlements at Zibo's hospital, and a ledger row no Zibo record holds.
    let mut his = net.his_settlement(&hospital(ZIBO));
    let mut settled = Vec::new();
    for n in [1, 2] {
        let visit = open_visit(&net, &format!("browser-{n}"), ZIBO, JINAN, n).await;
        settled.push(
            settle_as_an_his_would(&mut his, &format!("S-browser-{n}"), &visit, n)
                .await
                .expect("settled"),
        );
    }
    let date = today();
    let injected = zibo_row(77, JINAN, 4_321, &date);
    let injected_id = injected.settlement.as_ref().unwrap().settlement_id.clone();
    book(&net, "browser-injected", vec![injected]).await;
    book_march(&net).await;

    let screenshots = screenshot_dir();
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).expect("screenshot folder");
    let client = browser(&driver_url).await;
    let mut walk = Walk {
        client,
        base,
        dir: screenshots.clone(),
        pages: 0,
    };

    // Zibo's bureau: sign in, reconcile the day, find the injected break.
    walk.goto("/login").await;
    walk.check("sign-in").await;
    walk.sign_in("zibo").await;
    walk.check("bureau-overview").await;
    walk.goto("/reconcile").await;
    walk.check("bureau-reconcile-form").await;
    walk.click("form.card button[type=submit]").await;
    walk.wait_for("#result").await;
    let page = walk.text().await;
    assert!(
        page.contains("result fail") && page.contains("本方缺失"),
        "the break is found"
    );
    assert!(page.contains(&injected_id));
    walk.check("bureau-reconcile-breaks").await;
    // The overview: the day now shows its breaks in the calendar, the pairs their settlements.
    walk.goto(&format!("/#calendar-{ZIBO}")).await;
    walk.wait_for(&format!("#calendar-{ZIBO}")).await;
    let page = walk.text().await;
    assert!(
        page.contains(&format!("data-date=\"{date}\"")) && page.contains("day-breaks"),
        "the day's breaks on the calendar"
    );
    assert!(
        page.contains(&format!("data-pair=\"{ZIBO}-{JINAN}\"")),
        "the pair's settlements"
    );
    walk.check("bureau-overview-calendar").await;
    // Search a settlement and open it.
    walk.goto(&format!("/settlements?q={}", settled[0].settlement_id))
        .await;
    walk.check("bureau-search").await;
    walk.click("#settlements tbody a").await;
    walk.wait_for("#settlement").await;
    walk.check("bureau-settlement").await;
    // March: include every row in bulk, apply.
    walk.goto("/clearing?year=2026&month=3").await;
    walk.check("bureau-clearing-extract").await;
    walk.client
        .find(Locator::Css("#scope"))
        .await
        .expect("scope")
        .select_by_value("all")
        .await
        .expect("all rows");
    walk.click("button[value=include]").await;
    walk.wait_for("#extract").await;
    assert!(walk.text().await.contains("已纳入"));
    walk.check("bureau-clearing-included").await;
    walk.click("form[action='/clearing/apply'] button").await;
    walk.wait_for("#result").await;
    walk.check("bureau-clearing-applied").await;
    walk.sign_out().await;

    // The clearing house closes the month, from an overview of every pair.
    walk.sign_in("house").await;
    walk.wait_for("#matrix-month").await;
    walk.check("clearing-house-overview").await;
    walk.goto("/#volume-chart").await;
    walk.wait_for("#volume-chart").await;
    walk.check("clearing-house-charts").await;
    walk.goto(&format!("/clearing?year=2026&month=3&city={ZIBO}"))
        .await;
    walk.check("clearing-house-extract").await;
    walk.click("form[action='/clearing/close'] button").await;
    walk.wait_for("#net-positions").await;
    walk.check("clearing-house-closed").await;
    walk.sign_out().await;

    // Jinan's bureau files a cross-city filing for one of its insured persons, and cancels it.
    walk.sign_in("jinan").await;
    let person = format!("{JINAN}{:010}", 3);
    walk.goto(&format!("/filings?person={person}")).await;
    walk.wait_for("#filings").await;
    walk.client
        .find(Locator::Css("#kind"))
        .await
        .expect("kind")
        .select_by_value(
            &(yitong_proto::settlement::v1::FilingKind::LongTermResident as i32).to_string(),
        )
        .await
        .expect("a long-term kind");
    walk.click("form[action='/filings/file'] button").await;
    walk.wait_for("p.result.pass").await;
    assert!(
        walk.text().await.contains(&format!("F{JINAN}")),
        "the filing is listed"
    );
    walk.check("bureau-filing-filed").await;
    walk.click("#filings form button").await;
    walk.wait_for("p.result.pass").await;
    assert!(
        walk.text().await.contains("已撤销"),
        "the filing is cancelled"
    );
    walk.check("bureau-filing-cancelled").await;

    // Jinan's bureau confirms its statement.
    walk.goto("/statement?year=2026&month=3").await;
    walk.check("bureau-statement-issued").await;
    walk.click("form[action='/statement/confirm'] button").await;
    // The cell is on the page, empty, before the confirmation: wait for its name.
    walk.client
        .wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::XPath(
            "//td[@id='confirmed-by' and normalize-space()='jinan']",
        ))
        .await
        .unwrap_or_else(|error| panic!("the statement was not confirmed: {error}"));
    let page = walk.text().await;
    assert!(
        page.contains("<td id=\"confirmed-by\">jinan</td>"),
        "confirmed by the staff member"
    );
    walk.check("bureau-statement-confirmed").await;
    walk.sign_out().await;

    // The finance office of Zibo's hospital uploads its HIS file: one amount differs.
    let mut file = String::from(
        "settlement_id,visit_id,person_no,settlement_date,total_amount,fund_pay,account_pay,cash_pay,cancellation,message_id\n",
    );
    for (index, settlement) in settled.iter().enumerate() {
        let split = settlement.split.clone().unwrap();
        let fund = if index == 0 {
            "0.01".to_owned()
        } else {
            split.fund_pay.clone()
        };
        file.push_str(&format!(
            "{},{},{},{},{},{},{},{},false,{}\n",
            settlement.settlement_id,
            settlement.visit_id,
            settlement.person_no,
            settlement.settlement_date,
            split.total_amount,
            fund,
            split.account_pay,
            split.cash_pay,
            settlement.message_id
        ));
    }
    let upload = dir.path().join("his-day.csv");
    std::fs::write(&upload, file).expect("file written");
    walk.sign_in("finance").await;
    walk.goto("/reconcile").await;
    walk.check("finance-reconcile-form").await;
    walk.type_into("#file", upload.to_str().expect("utf-8 path"))
        .await;
    walk.click("form[action='/reconcile/upload'] button").await;
    walk.wait_for("#result").await;
    let page = walk.text().await;
    assert!(page.contains("金额不符"), "the altered amount is a break");
    walk.check("finance-reconcile-breaks").await;
    walk.sign_out().await;

    // An operator finds a settlement in doubt, in English.
    let (doubtful, stopped_server) = crate::console::leave_a_settlement_in_doubt(&net).await;
    walk.sign_in("ops").await;
    walk.goto("/lang/en").await;
    walk.goto("/operator").await;
    walk.wait_for("#in-doubt").await;
    let page = walk.text().await;
    assert!(page.contains("Settlements in doubt"));
    assert!(
        page.contains("Node health") && page.contains("SERVING"),
        "the nodes' health"
    );
    walk.check("operator-health").await;
    walk.goto("/operator#in-doubt").await;
    walk.wait_for("#calls").await;
    assert!(
        page.contains(&doubtful),
        "the settlement in doubt is listed"
    );
    walk.check("operator-in-doubt").await;
    net.restart_server(stopped_server, yitong_core::Service::Settlement)
        .await;
    walk.goto(&format!("/settlements/{}", settled[1].settlement_id))
        .await;
    walk.wait_for("#settlement").await;
    walk.check("operator-settlement").await;
    walk.goto("/").await;
    walk.wait_for("#volume-chart").await;
    walk.check("operator-overview").await;

    let pages = walk.pages;
    walk.client.close().await.expect("browser closed");
    let _ = driver.kill().await;
    println!(
        "console screenshots ({pages} pages): {}",
        screenshots.display()
    );
    eprintln!(
        "console screenshots ({pages} pages): {}",
        screenshots.display()
    );
    let _ = stop.send(());
    let _ = stop_metrics.send(());
    served
        .await
        .expect("served")
        .expect("console stopped cleanly");
    console.staff.close().await;
    net.shut_down().await;
}
