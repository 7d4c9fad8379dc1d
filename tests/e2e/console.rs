//! The staff's web console, driven over HTTP as a browser would (cookies, forms, CSRF tokens)
//! against the sandbox network: who may see and do what, a bureau's daily reconciliation with an
//! injected break, a finance office's uploaded HIS file, the monthly clearing from the extract
//! to the confirmed statement, and the Excel export read back.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use axum::body::Body;
use http::{HeaderMap, Method, Request, StatusCode, header};
use tower::ServiceExt;
use yitong_console::{Connect, Console, GrpcChannel, StaffStore};
use yitong_core::{Owner, Service};
use yitong_proto::audit::v1::ListAuditEntriesRequest;
use yitong_proto::identity::v1::InsuranceType;
use yitong_proto::ledger::v1::{
    ClearingPeriod, CreateTransfersRequest, GetBalancesRequest, GetClearingStatementRequest,
    GetDailyActivityRequest, SettlementRecord, StatementStatus, Transfer, TransferCode,
    TransferFlags,
};
use yitong_proto::settlement::v1::{FilingKind, FilingStatus, QueryFilingsRequest};
use yitong_rpc::Caller;
use yitong_sandbox::{BINZHOU, JINAN, Sandbox, ZIBO, network_test};
use yitong_store::Location;

use crate::settlement::{
    cancel_request, card, his_request, hospital, open_visit, register_request,
    settle_as_an_his_would, settle_request, upload_request, visit_lines,
};
use crate::support::{settlement_transfer, transfer_id, yuan};
use yitong_proto::settlement::v1::settlement_service_server::SettlementService;
use yitong_settlement::SettlementNode;
use yitong_settlement::treatment::Started;

/// The password every test account has.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The sandbox's channels, one per caller the console's staff act as and server, so the
/// sandbox's audit check sees every call the console makes.
struct SandboxConnect {
    channels: HashMap<(String, Owner, Service), yitong_sandbox::Channel>,
}

impl SandboxConnect {
    fn new(net: &Sandbox, callers: &[&str]) -> SandboxConnect {
        let mut channels = HashMap::new();
        for caller in callers {
            let view = net.as_caller(caller);
            for city in yitong_sandbox::PILOT_CITIES {
                let owner = Owner::Pool(city.parse().expect("city"));
                for service in [Service::Identity, Service::Catalog, Service::Settlement] {
                    channels.insert(
                        ((*caller).to_owned(), owner, service),
                        view.channel(owner, service),
                    );
                }
            }
            channels.insert(
                ((*caller).to_owned(), Owner::ClearingHouse, Service::Ledger),
                view.channel(Owner::ClearingHouse, Service::Ledger),
            );
        }
        SandboxConnect { channels }
    }
}

impl Connect for SandboxConnect {
    fn channel(
        &self,
        caller: &Caller,
        owner: Owner,
        service: Service,
    ) -> anyhow::Result<GrpcChannel> {
        let channel = self
            .channels
            .get(&(caller.to_string(), owner, service))
            .cloned()
            .with_context(|| format!("no channel for {caller} to {service} of {owner}"))?;
        Ok(yitong_console::boxed(channel))
    }
}

/// The staff of the tests: user name and the caller each acts as.
const STAFF: [(&str, &str); 6] = [
    ("zibo", "bureau:370300"),
    ("jinan", "bureau:370100"),
    ("binzhou", "bureau:371600"),
    ("house", "bureau:clearing"),
    ("finance", "institution:H37030000001"),
    ("ops", "operator:ops"),
];

/// A console over the sandbox with the test staff, its own store in `dir`.
pub(crate) async fn console(net: &Sandbox, dir: &std::path::Path) -> (Arc<Console>, axum::Router) {
    console_with(net, dir, Vec::new()).await
}

/// The same, scraping the metrics endpoints `metrics_urls` on the operations page.
pub(crate) async fn console_with(
    net: &Sandbox,
    dir: &std::path::Path,
    metrics_urls: Vec<String>,
) -> (Arc<Console>, axum::Router) {
    let staff = StaffStore::open(
        &Location::Sqlite {
            dir: dir.to_owned(),
        },
        "console",
    )
    .await
    .expect("the console's store opens");
    for (username, caller) in STAFF {
        staff
            .add(
                username,
                username,
                PASSWORD,
                &caller.parse().expect("caller"),
            )
            .await
            .expect("account added");
    }
    let callers: Vec<&str> = STAFF.iter().map(|(_, caller)| *caller).collect();
    let console = Arc::new(Console {
        network: net.network().clone(),
        connect: Arc::new(SandboxConnect::new(net, &callers)),
        staff,
        sessions: Default::default(),
        sign_in: Default::default(),
        trace_url_template: yitong_console::DEFAULT_TRACE_URL_TEMPLATE.to_owned(),
        grafana_url: String::new(),
        metrics_urls,
        scrapes: Default::default(),
    });
    let router = yitong_console::router(console.clone());
    (console, router)
}

/// What came back for one request.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Page {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    /// The CSRF token of the page's first form.
    fn csrf(&self) -> String {
        let text = self.text();
        let start = text
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("a form with a CSRF token in {text}"))
            + "name=\"csrf\" value=\"".len();
        text[start..].split('"').next().expect("token").to_owned()
    }
}

/// A browser: its cookie jar, following no redirect by itself.
struct Browser {
    router: axum::Router,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(router: &axum::Router) -> Browser {
        Browser {
            router: router.clone(),
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, mut request: Request<Body>) -> Page {
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            request.headers_mut().insert(
                header::COOKIE,
                jar.join("; ").parse().expect("cookie header"),
            );
        }
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        for value in response.headers().get_all(header::SET_COOKIE) {
            let value = value.to_str().expect("cookie text");
            let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
            let (name, content) = pair.split_once('=').expect("name=value");
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), content.to_owned());
            }
        }
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
            .await
            .expect("body")
            .to_vec();
        Page {
            status,
            headers,
            bytes,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        self.send(
            Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            Request::builder()
                .method(Method::POST)
                .uri(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
    }

    /// Signs in through the form, as a person would.
    async fn sign_in(&mut self, username: &str, password: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post(
            "/login",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    /// Signs in and returns the session's CSRF token, from the overview's sign-out form.
    async fn signed_in(router: &axum::Router, username: &str) -> (Browser, String) {
        let mut browser = Browser::new(router);
        let page = browser.sign_in(username, PASSWORD).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{username} signs in");
        assert_eq!(page.location(), "/");
        let overview = browser.get("/").await;
        assert_eq!(overview.status, StatusCode::OK, "{}", overview.text());
        let csrf = overview.csrf();
        (browser, csrf)
    }
}

/// Asserts the security headers every answer carries.
fn assert_secured(page: &Page, what: &str) {
    let csp = page
        .headers
        .get(header::CONTENT_SECURITY_POLICY)
        .unwrap_or_else(|| panic!("{what}: a Content-Security-Policy"))
        .to_str()
        .expect("text");
    assert!(csp.contains("script-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(
        page.headers
            .get(header::X_CONTENT_TYPE_OPTIONS)
            .map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "{what}"
    );
}

pub(crate) fn today() -> String {
    yitong_console::text::today().format("%Y-%m-%d").to_string()
}

/// Books `transfers` as a node does.
pub(crate) async fn book(net: &Sandbox, message_id: &str, transfers: Vec<Transfer>) {
    let reply = net
        .ledger()
        .create_transfers(CreateTransfersRequest {
            message_id: message_id.to_owned(),
            transfers,
        })
        .await
        .expect("CreateTransfers answers")
        .into_inner();
    for outcome in reply.results {
        assert_eq!(outcome.result, 1, "created: {outcome:?}");
    }
}

/// A posted cross-city settlement row at Zibo's level-3 hospital, as its node would book it.
pub(crate) fn zibo_row(n: u32, insured: &str, fund_fen: i64, date: &str) -> Transfer {
    let cash = 700;
    settlement_transfer(
        n,
        SettlementRecord {
            settlement_id: format!("T{ZIBO}{:010}", 9_000_000 + n),
            message_id: format!("{}-{n}", hospital(ZIBO)),
            treatment_city: ZIBO.to_owned(),
            insured_city: insured.to_owned(),
            institution_code: hospital(ZIBO),
            visit_id: format!("S{ZIBO}{n:010}"),
            person_no: format!("{insured}{n:010}"),
            insurance_type: 310,
            clearing_type: 11,
            settlement_date: date.to_owned(),
            total_amount: yuan(fund_fen + cash),
            fund_pay: yuan(fund_fen),
            account_pay: yuan(0),
            cash_pay: yuan(cash),
            cancellation: false,
            original_settlement_id: String::new(),
            fund_payments: Vec::new(),
        },
    )
}

network_test! {
    /// No page or action without a session; the sign-in cookie is HttpOnly and SameSite=Strict;
    /// a form without its CSRF token is refused and changes nothing; wrong passwords are
    /// limited (the sixth attempt is refused even with the right password); one city's staff
    /// cannot see or act for another city, URL tampering included; the CSP header is on every
    /// answer.
    async fn console_security(net) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (console, router) = console(net, dir.path()).await;
        let mut anonymous = Browser::new(&router);
        for path in ["/", "/reconcile", "/clearing", "/statement", "/settlements", "/operator", "/filings",
                     "/clearing/export?year=2026&month=3&format=xlsx", "/settlements/T3703000000000001"] {
            let page = anonymous.get(path).await;
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{path} without a session");
            assert_eq!(page.location(), "/login", "{path}");
            assert_secured(&page, path);
        }
        for path in ["/reconcile", "/clearing/decide", "/clearing/apply", "/clearing/close",
                     "/statement/confirm", "/logout", "/clearing/rollback", "/filings/file", "/filings/cancel"] {
            let page = anonymous.post(path, &[("csrf", "x"), ("year", "2026"), ("month", "3")]).await;
            assert_eq!(page.status, StatusCode::SEE_OTHER, "POST {path} without a session");
            assert_eq!(page.location(), "/login");
        }
        let login = anonymous.get("/login").await;
        assert_secured(&login, "/login");
        assert!(login.text().contains("lang=\"zh-CN\""), "Chinese by default");
        assert!(!login.text().contains("<script"), "no script on any page");

        // A sign-in form without its token (the cookie alone, as a cross-site form would send
        // none) is refused.
        let mut forger = Browser::new(&router);
        forger.get("/login").await;
        let page = forger.post("/login", &[("username", "zibo"), ("password", PASSWORD)]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(!forger.cookies.contains_key("yitong_session"));

        // Sign in: the session cookie is HttpOnly and SameSite=Strict.
        let mut zibo = Browser::new(&router);
        let signed = zibo.sign_in("zibo", PASSWORD).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER);
        let cookie = signed
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .find(|value| value.starts_with("yitong_session="))
            .expect("a session cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
        let overview = zibo.get("/").await;
        assert_eq!(overview.status, StatusCode::OK);
        assert_secured(&overview, "/");
        let csrf = overview.csrf();

        // A form without its CSRF token, or with another's, is refused and nothing is recorded.
        for fields in [
            vec![("year", "2026"), ("month", "3"), ("decision", "include"), ("scope", "all")],
            vec![("csrf", "not-the-token"), ("year", "2026"), ("month", "3"), ("decision", "include"), ("scope", "all")],
        ] {
            let page = zibo.post("/clearing/decide", &fields).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{fields:?}");
            assert_secured(&page, "a refused form");
        }
        let page = zibo.post("/logout", &[]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "sign-out needs its token too");
        assert!(console.staff.actions(100).await.expect("actions").is_empty(), "nothing done");

        // One city's staff cannot see or act for another, whatever the URL says.
        for path in [
            format!("/clearing?year=2026&month=3&city={JINAN}"),
            format!("/statement?year=2026&month=3&city={JINAN}"),
            format!("/clearing/export?year=2026&month=3&city={JINAN}&format=csv"),
        ] {
            let page = zibo.get(&path).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        }
        let page = zibo.get("/clearing/close").await;
        assert_eq!(page.status, StatusCode::METHOD_NOT_ALLOWED);
        let page = zibo.post("/clearing/close", &[("csrf", &csrf), ("year", "2026"), ("month", "3")]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "only the clearing house closes a month");
        let page = zibo.get("/operator").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "the operators' page is theirs");

        // A Jinan settlement looked up by Zibo's bureau is asked of Zibo's node, which has none.
        let visit = open_visit(net, "console-sec", JINAN, ZIBO, 1).await;
        let mut his = net.his_settlement(&hospital(JINAN));
        let settled = settle_as_an_his_would(&mut his, "S-console-sec", &visit, 1).await.expect("settled");
        let page = zibo.get(&format!("/settlements/{}", settled.settlement_id)).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.text());
        let (mut jinan, _) = Browser::signed_in(&router, "jinan").await;
        let page = jinan.get(&format!("/settlements/{}", settled.settlement_id)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.text().contains(&settled.settlement_id));
        // The finance office of a Zibo hospital reconciles its own day only; clearing is not its.
        let (mut finance, _) = Browser::signed_in(&router, "finance").await;
        assert_eq!(finance.get("/clearing").await.status, StatusCode::FORBIDDEN);

        // Wrong passwords: five are answered, the sixth attempt is refused, even when right.
        let mut guesser = Browser::new(&router);
        for attempt in 0..5 {
            let page = guesser.sign_in("binzhou", &format!("wrong password {attempt}")).await;
            assert_eq!(page.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        }
        let page = guesser.sign_in("binzhou", PASSWORD).await;
        assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
        assert_secured(&page, "a limited sign-in");
        assert!(!guesser.cookies.contains_key("yitong_session"));
        // Others are not locked out by it.
        Browser::signed_in(&router, "jinan").await;

        // Signed out, the session is gone.
        let page = zibo.post("/logout", &[("csrf", &csrf)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(zibo.get("/").await.status, StatusCode::SEE_OTHER);
        console.staff.close().await;
    }
}

network_test! {
    /// A bureau reconciles a day from its city's settlement records, without typing a total:
    /// clean, then with a settlement the ledger holds and Zibo's records do not (an injected
    /// break), found by class and linked. A finance office reconciles the same day from its
    /// HIS's uploaded file with one amount altered and sees that break.
    async fn console_daily_reconciliation(net) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (console, router) = console(net, dir.path()).await;
        let mut his = net.his_settlement(&hospital(ZIBO));
        let mut settled = Vec::new();
        for (n, insured) in [(1, JINAN), (2, BINZHOU)] {
            let visit = open_visit(net, &format!("console-day-{n}"), ZIBO, insured, n).await;
            settled.push(
                settle_as_an_his_would(&mut his, &format!("S-console-day-{n}"), &visit, n)
                    .await
                    .expect("settled"),
            );
        }
        let date = today();
        let (mut zibo, csrf) = Browser::signed_in(&router, "zibo").await;
        let page = zibo.get("/reconcile").await;
        assert_eq!(page.status, StatusCode::OK);
        let page = zibo.post("/reconcile", &[("csrf", &csrf), ("date", &date)]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let text = page.text();
        assert!(text.contains("result pass"), "a clean day: {text}");
        assert!(text.contains("对账平"));
        // The day's totals by clearing type and fund type (3201), Zibo's own breakdown from its
        // records against the ledger's: both employees' fund pay on the pooling fund, every
        // line matched.
        assert!(text.contains("id=\"by-clearing-type\"") && text.contains("id=\"by-fund-type\""), "{text}");
        assert!(text.contains("<td>310100</td>"), "the pooling fund's line: {text}");
        assert!(!text.contains("对账不平"), "no line differs: {text}");

        // The injected break: a posted settlement in the ledger that no Zibo record holds.
        let injected = zibo_row(1, JINAN, 12_345, &date);
        let injected_id = injected.settlement.as_ref().unwrap().settlement_id.clone();
        book(net, "console-injected", vec![injected]).await;
        let page = zibo.post("/reconcile", &[("csrf", &csrf), ("date", &date)]).await;
        let text = page.text();
        assert!(text.contains("result fail"), "{text}");
        assert!(text.contains("本方缺失"), "the class of the break: {text}");
        assert!(text.contains(&format!("href=\"/settlements/{injected_id}\"")), "drill-down link");
        // The drill-down of a real settlement shows it with its trace field.
        let page = zibo.get(&format!("/settlements/{}", settled[0].settlement_id)).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains(&settled[0].message_id));

        // The finance office uploads its HIS's file: its two settlements, one fund pay altered.
        let (mut finance, finance_csrf) = Browser::signed_in(&router, "finance").await;
        let mut file = String::from(
            "settlement_id,visit_id,person_no,settlement_date,total_amount,fund_pay,account_pay,cash_pay,cancellation,message_id\n",
        );
        for (index, settlement) in settled.iter().enumerate() {
            let split = settlement.split.clone().unwrap();
            let fund = if index == 1 { "0.01".to_owned() } else { split.fund_pay.clone() };
            file.push_str(&format!(
                "{},{},{},{},{},{},{},{},false,{}\n",
                settlement.settlement_id, settlement.visit_id, settlement.person_no,
                settlement.settlement_date, split.total_amount, fund, split.account_pay,
                split.cash_pay, settlement.message_id
            ));
        }
        let boundary = "----yitongboundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{finance_csrf}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"date\"\r\n\r\n{date}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"his.csv\"\r\nContent-Type: text/csv\r\n\r\n{file}\r\n\
             --{boundary}--\r\n"
        );
        let upload = |body: String| {
            Request::builder()
                .method(Method::POST)
                .uri("/reconcile/upload")
                .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
                .body(Body::from(body))
                .expect("request")
        };
        let page = finance.send(upload(body.clone())).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let text = page.text();
        assert!(text.contains("result fail"), "{text}");
        assert!(text.contains("金额不符"), "an amount mismatch: {text}");
        assert!(text.contains(&settled[1].settlement_id));
        // The ledger's injected row is Zibo's level-3 hospital's too: missing in its file.
        assert!(text.contains(&injected_id));
        // Without its token the upload is refused.
        let forged = body.replace(&finance_csrf, "forged");
        assert_eq!(finance.send(upload(forged)).await.status, StatusCode::FORBIDDEN);
        // The runs are in the console's log under the staff member who ran them.
        let actions = console.staff.actions(100).await.expect("actions");
        let runs: Vec<_> = actions.iter().filter(|(_, rpc, _, _)| rpc == "ReconcileDetails").collect();
        assert_eq!(runs.len(), 3, "{actions:?}");
        assert_eq!(runs[0].0, "zibo");
        assert_eq!(runs[2].0, "finance");
        assert_eq!((runs[0].3.as_str(), runs[1].3.as_str()), ("matched", "mismatched"));
        console.staff.close().await;
    }
}

/// March 2026, ended: posted cross-city rows of Zibo's hospital for Jinan and Binzhou persons,
/// and every city's prepaid deposit.
pub(crate) async fn book_march(net: &Sandbox) -> Vec<Transfer> {
    let mut deposits = Vec::new();
    for (index, city) in yitong_sandbox::PILOT_CITIES.iter().enumerate() {
        deposits.push(Transfer {
            id: transfer_id(900 + index as u32),
            debit_account_id: format!("{city}.bank"),
            credit_account_id: format!("{city}.fund"),
            amount: yuan(10_000_000),
            code: TransferCode::Deposit as i32,
            operator_id: "bureau-operator-1".into(),
            ..Default::default()
        });
    }
    book(net, "console-deposits", deposits).await;
    let rows: Vec<Transfer> = (1..=6)
        .map(|n| {
            let insured = if n % 2 == 0 { JINAN } else { BINZHOU };
            zibo_row(
                n,
                insured,
                10_000 + i64::from(n) * 111,
                &format!("2026-03-{:02}", 2 + n),
            )
        })
        .collect();
    book(net, "console-march", rows.clone()).await;
    rows
}

network_test! {
    /// The month: Zibo's bureau lists its March extract, excludes one row with a reason and
    /// includes the rest in bulk, exports the extract to Excel (read back: the columns and the
    /// sums) and CSV, rolls one row back and includes it again, applies; the clearing house
    /// closes the month; Jinan's bureau reads its statement and confirms it, and the ledger
    /// keeps the staff member's name with the confirmation.
    async fn console_monthly_clearing(net) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (console, router) = console(net, dir.path()).await;
        let rows = book_march(net).await;
        let ids: Vec<String> = rows.iter().map(|row| row.settlement.as_ref().unwrap().settlement_id.clone()).collect();
        let (mut zibo, csrf) = Browser::signed_in(&router, "zibo").await;
        let page = zibo.get("/clearing?year=2026&month=3").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let text = page.text();
        assert!(text.contains("<span id=\"total-rows\">6</span>"), "{text}");
        for id in &ids {
            assert!(text.contains(id.as_str()));
        }
        // Exclude one with a reason, then include every unconfirmed row in bulk.
        let page = zibo.post("/clearing/decide", &[
            ("csrf", &csrf), ("year", "2026"), ("month", "3"), ("id", &ids[0]),
            ("decision", "exclude"), ("reason", "病历待核"), ("scope", "selected"),
        ]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text());
        let page = zibo.post("/clearing/decide", &[
            ("csrf", &csrf), ("year", "2026"), ("month", "3"), ("decision", "include"), ("scope", "all"),
        ]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text());
        // Roll one back and include it again, one by one.
        let page = zibo.post("/clearing/rollback", &[
            ("csrf", &csrf), ("year", "2026"), ("month", "3"), ("id", &ids[1]), ("reason", "重新核对"), ("scope", "selected"),
        ]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text());
        let page = zibo.get("/clearing?year=2026&month=3&confirmation=unconfirmed").await;
        assert!(page.text().contains("<span id=\"total-rows\">1</span>"), "{}", page.text());
        let page = zibo.post("/clearing/decide", &[
            ("csrf", &csrf), ("year", "2026"), ("month", "3"), ("id", &ids[1]), ("decision", "include"), ("scope", "selected"),
        ]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);

        // The Excel export, read back: the header row, a row per detail, the sums in yuan.
        let page = zibo.get("/clearing/export?year=2026&month=3&format=xlsx").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.headers.get(header::CONTENT_DISPOSITION).unwrap().to_str().unwrap().contains(".xlsx"));
        let sheet = read_xlsx(&page.bytes);
        assert_eq!(sheet[0][0], "结算号");
        assert_eq!(sheet[0][7], "医疗费总额");
        assert_eq!(sheet[0][8], "参保地支付");
        assert_eq!(sheet.len(), 1 + 6 + 1, "header, six rows, sums");
        let total_fen: i64 = rows.iter().map(|row| crate::settlement::fen(&row.settlement.as_ref().unwrap().total_amount)).sum();
        let pay_fen: i64 = rows.iter().map(|row| crate::settlement::fen(&row.amount)).sum();
        assert_eq!(sheet[7][0], "全部");
        assert_eq!(sheet[7][7], yuan(total_fen));
        assert_eq!(sheet[7][8], yuan(pay_fen));
        let excluded = sheet.iter().find(|row| row[0] == ids[0]).expect("the excluded row");
        assert_eq!((excluded[11].as_str(), excluded[12].as_str()), ("未纳入", "病历待核"));
        // Each row's clearing type and fund lines, summing to its fund pay.
        assert_eq!((sheet[0][13].as_str(), sheet[0][14].as_str()), ("清算类别", "基金支付明细"));
        for row in &sheet[1..7] {
            assert_eq!(row[13], "11", "{row:?}");
            let lines: i64 = row[14]
                .split(';')
                .filter(|line| !line.is_empty())
                .map(|line| crate::settlement::fen(line.rsplit_once(':').expect("type:amount").1))
                .sum();
            assert_eq!(yuan(lines), row[9], "{row:?}");
        }
        let page = zibo.get("/clearing/export?year=2026&month=3&format=csv").await;
        let csv = page.text();
        assert!(csv.starts_with("结算号,"), "{csv}");
        assert!(csv.contains(&format!(",{},", yuan(total_fen))), "{csv}");

        // Apply: the included rows' totals, which the ledger agrees with.
        let page = zibo.post("/clearing/apply", &[("csrf", &csrf), ("year", "2026"), ("month", "3")]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.text().contains("result pass"));

        // Before the close there is no statement to confirm.
        let (mut jinan, jinan_csrf) = Browser::signed_in(&router, "jinan").await;
        let page = jinan.post("/statement/confirm", &[("csrf", &jinan_csrf), ("year", "2026"), ("month", "3")]).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", page.text());

        // The clearing house closes the month.
        let (mut house, house_csrf) = Browser::signed_in(&router, "house").await;
        let page = house.get(&format!("/clearing?year=2026&month=3&city={ZIBO}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let page = house.post("/clearing/close", &[("csrf", &house_csrf), ("year", "2026"), ("month", "3")]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.text().contains("net-positions"));

        // Jinan reads and confirms its statement.
        let page = jinan.get("/statement?year=2026&month=3").await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.text().contains("已出具"), "{}", page.text());
        assert!(page.text().contains("statement-clearing-types"), "{}", page.text());
        assert!(page.text().contains("<td>310100</td>") || page.text().contains("<td>390100</td>"), "the fund lines: {}", page.text());
        let page = jinan.post("/statement/confirm", &[("csrf", &jinan_csrf), ("year", "2026"), ("month", "3")]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text());
        let page = jinan.get("/statement?year=2026&month=3").await;
        assert!(page.text().contains("<td id=\"confirmed-by\">jinan</td>"), "{}", page.text());
        let statement = net
            .ledger()
            .get_clearing_statement(GetClearingStatementRequest {
                city: JINAN.to_owned(),
                period: Some(ClearingPeriod { year: 2026, month: 3 }),
            })
            .await
            .expect("statement")
            .into_inner()
            .statement
            .expect("statement");
        assert_eq!(statement.status(), StatementStatus::Confirmed);
        assert_eq!(statement.confirmed_by, "jinan", "the ledger names the staff member");
        let actions = console.staff.actions(100).await.expect("actions");
        let done: Vec<(&str, &str)> = actions.iter().map(|(user, rpc, _, _)| (user.as_str(), rpc.as_str())).collect();
        assert!(done.contains(&("house", "CloseClearingPeriod")), "{done:?}");
        assert!(done.contains(&("zibo", "ApplyClearing")));
        assert!(done.contains(&("jinan", "ConfirmClearingStatement")));
        console.staff.close().await;
    }
}

/// Every cell of the first sheet as text, amounts with two decimals.
fn read_xlsx(bytes: &[u8]) -> Vec<Vec<String>> {
    use calamine::{Data, Reader, Xlsx};
    let mut workbook: Xlsx<_> =
        Xlsx::new(std::io::Cursor::new(bytes.to_vec())).expect("the export opens as xlsx");
    let range = workbook
        .worksheet_range("clearing")
        .expect("a sheet named clearing");
    range
        .rows()
        .map(|row| {
            row.iter()
                .map(|cell| match cell {
                    Data::Float(number) => format!("{number:.2}"),
                    Data::Int(number) => number.to_string(),
                    Data::String(text) => text.clone(),
                    Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

/// A Settle at Binzhou for a Jinan patient, reserved and booked, then recorded while Jinan's
/// settlement server is down: in doubt until the returned server is restarted. Its id, and the
/// server to restart.
pub(crate) async fn leave_a_settlement_in_doubt(net: &Sandbox) -> (String, Owner) {
    let binzhou = yitong_core::PoolCode::parse(BINZHOU).expect("a city");
    let node = SettlementNode::new(
        binzhou,
        net.store(Owner::Pool(binzhou), Service::Settlement).await,
        Arc::new(net.network().clone()),
        &net.peer_access(Owner::Pool(binzhou)),
    )
    .expect("a node on Binzhou's store");
    // As Binzhou's hospital, as the server layer would have authenticated it (the audit trail
    // names the caller of every state change).
    let his = Caller::Institution(
        yitong_core::InstitutionCode::parse(&hospital(BINZHOU)).expect("an institution code"),
    );
    let jinan = Owner::Pool(yitong_core::PoolCode::parse(JINAN).expect("a city"));
    let doubtful = his
        .scope(async {
            let register = register_request("R-console-doubt", BINZHOU, JINAN, 4);
            let visit = node
                .register_visit(his_request(register))
                .await
                .expect("registered")
                .into_inner()
                .visit
                .expect("visit");
            let upload = upload_request("U-console-doubt", &visit, visit_lines());
            node.upload_fee_lines(his_request(upload))
                .await
                .expect("uploaded");
            let settle = settle_request("S-console-doubt", &visit, 4, true);
            let Started::Intent(intent) = node.step_intent(&settle).await.expect("intent") else {
                panic!("a fresh message id starts an intent");
            };
            let reservation = node.step_reserve(&intent).await.expect("reserved");
            let transfer = node.booking(&intent, &reservation).expect("transfer");
            net.abort_server(jinan, Service::Settlement);
            node.step_record(&intent, &reservation, &transfer)
                .await
                .expect("recorded");
            intent.settlement_id().to_owned()
        })
        .await;
    // The recovery sweep tries to complete it at once and fails: its last error is kept.
    node.recover().await.expect("swept");
    (doubtful, jinan)
}

/// The operations page's table of calls counted by the nodes.
fn calls_table(page: &str) -> &str {
    let table = page
        .split("id=\"calls\"")
        .nth(1)
        .unwrap_or_else(|| panic!("a table of calls: {page}"));
    table.split("</table>").next().expect("the table ends")
}

network_test! {
    /// The operators' page asks every city and lists what is in doubt; settlement search finds
    /// a settlement by id and by message id for a bureau, and lists an institution's day.
    async fn console_operator_and_search(net) {
        let dir = tempfile::tempdir().expect("temp dir");
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let metrics_url = format!("http://{}/metrics", metrics.local_addr().expect("address"));
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(yitong_telemetry::serve_metrics(metrics, stop.clone().cancelled_owned()));
        let (console, router) = console_with(net, dir.path(), vec![metrics_url]).await;
        let visit = open_visit(net, "console-search", ZIBO, JINAN, 3).await;
        let mut his = net.his_settlement(&hospital(ZIBO));
        let settled = settle_as_an_his_would(&mut his, "S-console-search", &visit, 3).await.expect("settled");
        let (mut ops, _) = Browser::signed_in(&router, "ops").await;
        let page = ops.get("/operator").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let text = page.text();
        for city in yitong_sandbox::PILOT_CITIES {
            assert!(text.contains(city), "{city} is listed: {text}");
        }
        assert!(!text.contains(&settled.settlement_id), "a completed settlement is not in doubt");

        // Every node answers its health check, with its latency; the calls the nodes counted
        // come from the metrics endpoint, with a rate from the second look on.
        assert_eq!(text.matches("SERVING").count(), 3 * yitong_sandbox::PILOT_CITIES.len() + 1, "{text}");
        assert!(calls_table(&text).contains("—"), "no rate at the first look: {text}");
        assert!(text.contains(&format!("href=\"{}\"", yitong_console::DEFAULT_TRACE_URL_TEMPLATE.replace("{trace_id}", ""))));

        // A settlement in doubt: the operator finds it, with the sweep's last error, and sees
        // the node that is down.
        let (doubtful, jinan) = leave_a_settlement_in_doubt(net).await;
        let page = ops.get("/operator").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let text = page.text();
        assert!(text.contains(&doubtful), "the settlement in doubt is listed: {text}");
        let row = text.split(&format!(">{doubtful}</a>")).nth(1).expect("its row");
        let row = row.split("</tr>").next().expect("its row ends");
        assert!(!row.contains("class=\"num attempts\">0<"), "a failed attempt is counted: {row}");
        assert!(row.contains("class=\"last-error\">"), "{row}");
        assert!(!row.contains("class=\"last-error\">无<"), "the last error is shown: {row}");
        assert_eq!(text.matches("SERVING").count(), 3 * yitong_sandbox::PILOT_CITIES.len(), "Jinan's settlement server is down: {text}");
        assert!(!calls_table(&text).contains("—"), "a rate for every node at the second look: {text}");
        net.restart_server(jinan, Service::Settlement).await;
        // An operator sees the settlement, not whose it was.
        let page = ops.get(&format!("/settlements/{}", settled.settlement_id)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(!page.text().contains(&settled.person_no), "no person for an operator");

        let (mut zibo, _) = Browser::signed_in(&router, "zibo").await;
        let page = zibo.get(&format!("/settlements?q={}", settled.settlement_id)).await;
        assert!(page.text().contains(&settled.person_no), "{}", page.text());
        let page = zibo
            .get(&format!("/settlements?q={}&institution={}", settled.message_id, hospital(ZIBO)))
            .await;
        assert!(page.text().contains(&settled.settlement_id), "{}", page.text());
        let page = zibo
            .get(&format!("/settlements?institution={}&from={}&to={}", hospital(ZIBO), today(), today()))
            .await;
        assert!(page.text().contains(&settled.settlement_id), "{}", page.text());
        // English on request; amounts in yuan with two decimals.
        let page = zibo.get("/lang/en").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        let page = zibo.get(&format!("/settlements/{}", settled.settlement_id)).await;
        assert!(page.text().contains("lang=\"en\""));
        assert!(page.text().contains("Fund pay"));
        let fund = settled.split.clone().unwrap().fund_pay;
        assert!(page.text().contains(&yitong_console::text::yuan(&fund)));
        stop.cancel();
        console.staff.close().await;
    }
}

/// Staff accounts keep on PostgreSQL as on SQLite: a password verifies, a wrong one and an
/// unknown user do not, a user name is taken once, nodes are refused as an account's caller.
#[tokio::test]
async fn staff_accounts_on_both_databases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut locations = vec![(
        Location::Sqlite {
            dir: dir.path().to_owned(),
        },
        "console".to_owned(),
    )];
    let postgres = yitong_sandbox::postgres_admin_url();
    let reachable = sqlx_reachable(&postgres).await;
    if reachable {
        locations.push((
            Location::Postgres {
                url: postgres.clone(),
            },
            format!("console_test_{}", uuid::Uuid::new_v4().simple()),
        ));
    } else if std::env::var("YITONG_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("PostgreSQL is required and not reachable at {postgres}");
    } else {
        eprintln!("PostgreSQL not reachable: staff accounts checked on SQLite only");
    }
    for (location, schema) in locations {
        let store = StaffStore::open(&location, &schema).await.expect("opens");
        let caller: Caller = "bureau:370300".parse().unwrap();
        store
            .add("wang.li", "王丽", PASSWORD, &caller)
            .await
            .expect("added");
        assert!(matches!(
            store.add("wang.li", "王丽", PASSWORD, &caller).await,
            Err(yitong_console::staff::StaffError::Exists(_))
        ));
        assert!(store.add("Bad Name", "x", PASSWORD, &caller).await.is_err());
        assert!(store.add("short", "x", "short", &caller).await.is_err());
        assert!(
            store
                .add("node", "x", PASSWORD, &"node:370300".parse().unwrap())
                .await
                .is_err()
        );
        let staff = store
            .verify("wang.li", PASSWORD)
            .await
            .expect("verified")
            .expect("right password");
        assert_eq!(staff.acts_as, caller);
        assert_eq!(staff.display_name, "王丽");
        assert!(
            store
                .verify("wang.li", "wrong")
                .await
                .expect("checked")
                .is_none()
        );
        assert!(
            store
                .verify("nobody", PASSWORD)
                .await
                .expect("checked")
                .is_none()
        );
        store.close().await;
        if let Location::Postgres { url } = &location {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(url).await.expect("connects");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut connection)
                .await
                .expect("dropped");
        }
    }
}

async fn sqlx_reachable(url: &str) -> bool {
    use sqlx::Connection;
    matches!(
        tokio::time::timeout(
            std::time::Duration::from_secs(3),
            sqlx::PgConnection::connect(url)
        )
        .await,
        Ok(Ok(_))
    )
}

/// A form's fields as `Browser::post` takes them.
fn fields(form: &[(String, String)]) -> Vec<(&str, &str)> {
    form.iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// The cell of `pair` ("370300-370100": treatment, insured) in the matrix `id` of an overview.
fn matrix_cell<'a>(page: &'a str, id: &str, pair: &str) -> Option<&'a str> {
    let table = page
        .split(&format!("id=\"{id}\""))
        .nth(1)?
        .split("</table>")
        .next()?;
    let cell = table.split(&format!("data-pair=\"{pair}\">")).nth(1)?;
    cell.split("</td>").next()
}

/// The class of the calendar's day `date` of `city` in an overview.
fn calendar_day<'a>(page: &'a str, city: &str, date: &str) -> &'a str {
    let calendar = page
        .split(&format!("id=\"calendar-{city}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("a calendar of {city}: {page}"));
    let before = calendar
        .split(&format!("data-date=\"{date}\""))
        .next()
        .expect("text before the day");
    before
        .rsplit("class=\"")
        .next()
        .and_then(|class| class.split('"').next())
        .expect("the day's class")
}

network_test! {
    /// A bureau's overview, from the services: today's settlements by pair of cities and the
    /// month's (a real settlement, a cancelled one, a row still pending in the ledger), the
    /// prepaid fund at each day's end against its threshold (today's is GetBalances' position
    /// now), the volume chart, and the reconciliation calendar going from not reconciled to
    /// clean to with breaks as the bureau reconciles. A city's bureau sees only its own city's
    /// pairs, the clearing house every pair, and GetDailyActivity refuses another city's
    /// figures, whatever the URL names.
    async fn console_overview(net) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (console, router) = console(net, dir.path()).await;
        let date = today();
        let mut his = net.his_settlement(&hospital(ZIBO));
        let visit = open_visit(net, "console-overview-1", ZIBO, JINAN, 1).await;
        let kept = settle_as_an_his_would(&mut his, "S-console-overview-1", &visit, 1).await.expect("settled");
        let visit = open_visit(net, "console-overview-2", ZIBO, BINZHOU, 2).await;
        let undone = settle_as_an_his_would(&mut his, "S-console-overview-2", &visit, 2).await.expect("settled");
        his.cancel_settlement(cancel_request("C-console-overview-2", &undone)).await.expect("cancelled");
        // A row of Jinan's hospital for a Zibo person that Jinan's node booked pending and never
        // resolved (Zibo's own reconciliation, as treatment city, does not see it).
        let mut record = zibo_row(7, ZIBO, 5_000, &date).settlement.expect("a record");
        record.treatment_city = JINAN.to_owned();
        record.institution_code = hospital(JINAN);
        record.settlement_id = format!("T{JINAN}{:010}", 9_000_007);
        let mut pending = settlement_transfer(7, record);
        pending.flags = Some(TransferFlags { linked: false, pending: true });
        pending.pending_timeout_seconds = 3_600;
        book(net, "console-overview-pending", vec![pending]).await;

        let (mut zibo, csrf) = Browser::signed_in(&router, "zibo").await;
        let page = zibo.get("/").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert_secured(&page, "the overview");
        let text = page.text();
        let fund = yitong_console::text::yuan(&kept.split.clone().unwrap().fund_pay);
        let cell = matrix_cell(&text, "matrix-today", &format!("{ZIBO}-{JINAN}")).unwrap_or_else(|| panic!("{text}"));
        assert!(cell.starts_with("1<br>"), "one settlement today: {cell}");
        assert!(cell.ends_with(&fund), "its fund pay, in yuan: {cell}");
        let cell = matrix_cell(&text, "matrix-month", &format!("{ZIBO}-{BINZHOU}")).unwrap_or_else(|| panic!("{text}"));
        assert!(cell.starts_with("2<br>0.00<br>0.00"), "a settlement and its cancellation net out: {cell}");
        assert!(text.contains("<strong id=\"pending-in-ledger\">1</strong>"), "the pending row: {text}");
        let totals = text.split("id=\"totals\"").nth(1).expect("totals").split("</table>").next().unwrap();
        let today_row = totals.split("</tr>").nth(1).expect("today's row");
        assert!(today_row.contains("<td class=\"num\">2</td><td class=\"num\">1</td>"), "two settlements, one cancellation: {today_row}");
        for chart in ["volume-chart", &format!("fund-chart-{ZIBO}")] {
            assert!(text.contains(&format!("<svg id=\"{chart}\" role=\"img\"")), "{chart}: {text}");
        }
        assert!(text.contains("500000.00"), "the threshold, in yuan: {text}");
        assert!(!text.contains("<script"), "no script");
        assert_eq!(calendar_day(&text, ZIBO, &date), "day-none", "not reconciled yet");

        // The figures are the ledger's: today's fund is the position GetBalances gives now, and
        // the pairs are those of the settlements made.
        let bureau = net.as_caller("bureau:370300");
        let first = format!("{}01", &date[..8]);
        let activity = bureau.ledger().get_daily_activity(GetDailyActivityRequest {
            from_date: first.clone(), to_date: date.clone(), cities: vec![ZIBO.into()],
        }).await.expect("activity").into_inner();
        let now = bureau.ledger().get_balances(GetBalancesRequest { account_ids: vec![], cities: vec![ZIBO.into()] })
            .await.expect("balances").into_inner().prepaid_funds.remove(0);
        let last = activity.funds.last().expect("today's fund");
        assert_eq!((last.date.as_str(), last.available.as_str()), (date.as_str(), now.available.as_str()));
        assert!(last.available.starts_with('-'), "the pending row is owed, with no deposit: {last:?}");
        let day = activity.pairs.iter().find(|pair| pair.date == date && pair.insured_city == JINAN && pair.treatment_city == ZIBO).expect("the pair");
        assert_eq!((day.settlements, day.cancellations, day.pending), (1, 0, 0));
        assert_eq!(day.fund_pay, kept.split.clone().unwrap().fund_pay);

        // Reconciled clean, the day turns clean; a break injected and reconciled again, the
        // day shows it.
        let page = zibo.post("/reconcile", &[("csrf", &csrf), ("date", &date)]).await;
        assert!(page.text().contains("result pass"), "{}", page.text());
        assert_eq!(calendar_day(&zibo.get("/").await.text(), ZIBO, &date), "day-clean");
        book(net, "console-overview-break", vec![zibo_row(8, JINAN, 1_234, &date)]).await;
        let page = zibo.post("/reconcile", &[("csrf", &csrf), ("date", &date)]).await;
        assert!(page.text().contains("result fail"), "{}", page.text());
        let text = zibo.get("/").await.text();
        assert_eq!(calendar_day(&text, ZIBO, &date), "day-breaks");
        assert!(text.contains(&format!("href=\"/reconcile?date={date}\"")), "the day links to its reconciliation");

        // Jinan's bureau sees its own pairs only: Zibo's row for a Binzhou person is not there,
        // whatever the URL asks; the clearing house sees every pair and every city's fund.
        let (mut jinan, _) = Browser::signed_in(&router, "jinan").await;
        for path in ["/".to_owned(), format!("/?city={ZIBO}"), format!("/?month={}", &date[..7])] {
            let text = jinan.get(&path).await.text();
            assert!(matrix_cell(&text, "matrix-today", &format!("{ZIBO}-{JINAN}")).is_some(), "{path}: {text}");
            assert!(matrix_cell(&text, "matrix-month", &format!("{ZIBO}-{BINZHOU}")).is_none(), "{path}: {text}");
            assert!(!text.contains(&format!("id=\"fund-chart-{ZIBO}\"")), "{path}");
            assert!(!text.contains(&format!("id=\"calendar-{ZIBO}\"")), "{path}");
        }
        assert_eq!(jinan.get("/?month=2026-13").await.status, StatusCode::BAD_REQUEST);
        let refused = net.as_caller("bureau:370100").ledger().get_daily_activity(GetDailyActivityRequest {
            from_date: first.clone(), to_date: date.clone(), cities: vec![ZIBO.into()],
        }).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        let invalid = bureau.ledger().get_daily_activity(GetDailyActivityRequest {
            from_date: "2026-01-01".into(), to_date: "2026-03-01".into(), cities: vec![ZIBO.into()],
        }).await.unwrap_err();
        crate::support::assert_invalid(&invalid, "to_date");
        let (mut house, _) = Browser::signed_in(&router, "house").await;
        let text = house.get("/").await.text();
        assert!(matrix_cell(&text, "matrix-month", &format!("{ZIBO}-{BINZHOU}")).is_some(), "{text}");
        // Every city hosts one pool here: no cities' matrix repeats the pools'.
        assert!(!text.contains("matrix-month-cities"), "{text}");
        for city in yitong_sandbox::PILOT_CITIES {
            assert!(text.contains(&format!("id=\"fund-chart-{city}\"")), "{city}: {text}");
        }
        // English on request: the same page in English.
        house.get("/lang/en").await;
        let text = house.get("/").await.text();
        assert!(text.contains("Reconciliation calendar") && text.contains("lang=\"en\""), "{text}");
        console.staff.close().await;
    }
}

/// The clearing house's overview of a network where Dongying hosts two pools: the pools'
/// matrix tells Dongying's pool and the Oilfield's apart, the cities' matrix sums them, the two
/// visits between the pools and the one within Dongying's own on Dongying's diagonal; a pool's
/// bureau sees its own pool and no cities' matrix.
async fn overview_sums_a_citys_pools(net: &Sandbox) {
    use crate::pools::{DONGYING, OILFIELD, settle_at};
    let dir = tempfile::tempdir().expect("temp dir");
    let (console, router) = console(net, dir.path()).await;
    let settled = [
        settle_at(
            net,
            &format!("H{OILFIELD}00001"),
            OILFIELD,
            DONGYING,
            1,
            "CON-DY-AT-OF",
        )
        .await,
        settle_at(
            net,
            &format!("H{DONGYING}00001"),
            DONGYING,
            OILFIELD,
            2,
            "CON-OF-AT-DY",
        )
        .await,
        settle_at(
            net,
            &format!("H{DONGYING}00001"),
            DONGYING,
            DONGYING,
            1,
            "CON-DY-AT-DY",
        )
        .await,
    ];
    let total: i64 = settled
        .iter()
        .map(|s| crate::settlement::fen(&s.split.as_ref().expect("split").total_amount))
        .sum();
    let fund: i64 = settled
        .iter()
        .map(|s| crate::settlement::fen(&s.split.as_ref().expect("split").fund_pay))
        .sum();

    let (mut house, _) = Browser::signed_in(&router, "house").await;
    let text = house.get("/").await.text();
    for pair in [
        format!("{OILFIELD}-{DONGYING}"),
        format!("{DONGYING}-{OILFIELD}"),
        format!("{DONGYING}-{DONGYING}"),
    ] {
        let cell =
            matrix_cell(&text, "matrix-month", &pair).unwrap_or_else(|| panic!("{pair}: {text}"));
        assert!(
            cell.starts_with("1<br>"),
            "{pair}: one visit a pair of pools: {cell}"
        );
    }
    let city = matrix_cell(
        &text,
        "matrix-month-cities",
        &format!("{DONGYING}-{DONGYING}"),
    )
    .unwrap_or_else(|| panic!("{text}"));
    let yuan = yitong_console::text::fen_to_yuan;
    assert_eq!(
        city,
        format!("3<br>{}<br>{}", yuan(total), yuan(fund)),
        "Dongying's pools summed"
    );
    assert!(
        matrix_cell(
            &text,
            "matrix-month-cities",
            &format!("{OILFIELD}-{DONGYING}")
        )
        .is_none(),
        "a pool is no city's column: {text}"
    );

    let (mut jinan, _) = Browser::signed_in(&router, "jinan").await;
    let text = jinan.get("/").await.text();
    assert!(
        !text.contains("matrix-month-cities"),
        "a pool's bureau sees its pool: {text}"
    );
    console.staff.close().await;
}

// Proves the overview's cities' matrix on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_sums_a_citys_pools_sqlite() {
    let net = Sandbox::start_network(
        yitong_sandbox::Database::Sqlite,
        crate::pools::with_the_oilfield(),
    )
    .await
    .expect("SQLite always starts");
    overview_sums_a_citys_pools(&net).await;
    net.shut_down().await;
}

// Proves the same on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_sums_a_citys_pools_postgres() {
    let Some(net) = Sandbox::start_network(
        yitong_sandbox::Database::Postgres,
        crate::pools::with_the_oilfield(),
    )
    .await
    else {
        return;
    };
    overview_sums_a_citys_pools(&net).await;
    net.shut_down().await;
}

network_test! {
    /// A bureau files a cross-city filing for one of its insured persons from the console,
    /// lists the person's filings and cancels it; the treatment city's HIS sees the filing
    /// through SettlementService/QueryFilings, and each change is in the console's log under
    /// the staff member and in the filing service's audit trail under the same message id.
    /// Another city's bureau can neither list the person's filings nor cancel the filing, a
    /// form without its token files nothing, and only bureaus have the page.
    async fn console_filings(net) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (console, router) = console(net, dir.path()).await;
        let person = format!("{JINAN}{:010}", 1);
        let until = yitong_console::text::today().iter_days().nth(7).expect("a week on").format("%Y-%m-%d").to_string();
        let (mut jinan, csrf) = Browser::signed_in(&router, "jinan").await;
        let page = jinan.get("/filings").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let kind = (FilingKind::OtherTemporary as i32).to_string();
        let form = |csrf: &str| vec![
            ("csrf".to_owned(), csrf.to_owned()), ("person".to_owned(), person.clone()),
            ("kind".to_owned(), kind.clone()), ("treatment_city".to_owned(), ZIBO.to_owned()),
            ("valid_from".to_owned(), today()), ("valid_until".to_owned(), until.clone()),
        ];
        let forged = form("forged");
        let page = jinan.post("/filings/file", &fields(&forged)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        let good = form(&csrf);
        let page = jinan.post("/filings/file", &fields(&good)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let query = QueryFilingsRequest {
            message_id: "QF-console".into(),
            person_no: person.clone(),
            credential: card(JINAN, 1),
            insurance_type: InsuranceType::Employee as i32,
            institution_code: hospital(ZIBO),
            service_date: String::new(),
            operator_id: "op1".into(),
        };
        let read = net.his_settlement(&hospital(ZIBO)).query_filings(query.clone()).await.expect("queried").into_inner();
        assert_eq!(read.filings.len(), 1, "one filing, filed once: {read:?}");
        let filing = read.filings[0].clone();
        assert_eq!((filing.treatment_city.as_str(), filing.valid_until.as_str()), (ZIBO, until.as_str()));
        assert_eq!(filing.status, FilingStatus::Filed as i32);
        assert!(page.text().contains(&filing.filing_id), "{}", page.text());
        let listed = jinan.get(&format!("/filings?person={person}")).await.text();
        assert!(listed.contains(&filing.filing_id) && listed.contains("其他临时外出就医人员"), "{listed}");

        // Zibo's bureau reaches only Zibo's filing service, whatever it names.
        let (mut zibo, zibo_csrf) = Browser::signed_in(&router, "zibo").await;
        let page = zibo.get(&format!("/filings?person={person}")).await;
        assert_ne!(page.status, StatusCode::OK, "{}", page.text());
        assert!(!page.text().contains(&filing.filing_id));
        let page = zibo.post("/filings/cancel", &[("csrf", &zibo_csrf), ("person", &person), ("filing_id", &filing.filing_id)]).await;
        assert_ne!(page.status, StatusCode::OK, "{}", page.text());
        let (mut ops, _) = Browser::signed_in(&router, "ops").await;
        assert_eq!(ops.get("/filings").await.status, StatusCode::FORBIDDEN);
        let (mut house, _) = Browser::signed_in(&router, "house").await;
        assert_eq!(house.get("/filings").await.status, StatusCode::FORBIDDEN);
        let read = net.his_settlement(&hospital(ZIBO)).query_filings(query.clone()).await.expect("queried").into_inner();
        assert_eq!(read.filings[0].status, FilingStatus::Filed as i32, "still filed");

        // Jinan's bureau cancels it.
        let page = jinan.post("/filings/cancel", &[("csrf", &csrf), ("person", &person), ("filing_id", &filing.filing_id)]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        assert!(page.text().contains("已撤销"), "{}", page.text());
        let read = net.his_settlement(&hospital(ZIBO)).query_filings(query).await.expect("queried").into_inner();
        assert_eq!(read.filings[0].status, FilingStatus::Cancelled as i32);

        // Each change names the staff member: in the console's log, and under the same message
        // id in the audit trail of Jinan's filing service.
        let actions = console.staff.actions(100).await.expect("actions");
        let done: Vec<_> = actions.iter().filter(|(user, _, _, outcome)| user == "jinan" && outcome == "done").collect();
        assert_eq!(done.iter().map(|(_, rpc, _, _)| rpc.as_str()).collect::<Vec<_>>(), ["FileFiling", "CancelFiling"], "{actions:?}");
        let trail = net.as_caller("bureau:370100")
            .audit(Owner::Pool(JINAN.parse().expect("city")), Service::Settlement)
            .list_audit_entries(ListAuditEntriesRequest { page_size: 1000, page_token: String::new() })
            .await.expect("the trail").into_inner().entries;
        for (_, rpc, message_id, _) in &done {
            assert!(trail.iter().any(|entry| &entry.message_id == message_id && &entry.rpc == rpc && entry.actor == "bureau:370100"), "{rpc} {message_id}: {trail:?}");
        }
        assert!(actions.iter().any(|(user, rpc, _, outcome)| user == "zibo" && rpc == "CancelFiling" && outcome == "refused"), "{actions:?}");
        console.staff.close().await;
    }
}
