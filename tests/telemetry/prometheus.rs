//! The compose deployment's Prometheus configuration, run by a real Prometheus against a
//! running network, and every query of the Grafana dashboard asked of it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use yitong_sandbox::{BINZHOU, DONGYING, Database, JINAN, Sandbox, ZIBO};

use crate::collector::collector;
use crate::metrics::promtool_required;

const CITIES: [&str; 4] = [JINAN, ZIBO, DONGYING, BINZHOU];

/// How long Prometheus may take to start and scrape every target twice (the compose file's
/// interval is 15 s; `rate()` needs two samples).
const SCRAPES_WITHIN: Duration = Duration::from_secs(120);

/// The workspace's root, where `deploy/` is.
fn workspace() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// The compose file's scrape configuration with every target's address replaced by `address`:
/// nothing else of it changes.
fn rewritten_config(address: std::net::SocketAddr) -> String {
    let text = std::fs::read_to_string(workspace().join("deploy/compose/prometheus.yml"))
        .expect("deploy/compose/prometheus.yml is there");
    let mut targets = 0;
    let rewritten: Vec<String> = text
        .lines()
        .map(|line| match line.split_once("- targets: [") {
            Some((indent, _)) => {
                targets += 1;
                format!(r#"{indent}- targets: ["{address}"]"#)
            }
            None => line.to_owned(),
        })
        .collect();
    assert_eq!(targets, 13, "twelve city services and the ledger");
    rewritten.join("\n") + "\n"
}

/// GET `path` of the server at `address` over HTTP/1.0: the body, which must be a 200's.
async fn get(address: &str, path: &str) -> String {
    let (head, body) = get_answer(address, path).await;
    assert!(
        head.lines()
            .next()
            .is_some_and(|line| line.contains(" 200 ")),
        "GET {path}: {head}\n{body}"
    );
    body
}

/// GET `path` of the server at `address` over HTTP/1.0: the head and the body.
async fn get_answer(address: &str, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("Prometheus accepts");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_owned(), body.to_owned())
}

/// An instant query's result vector.
async fn query(address: &str, promql: &str) -> Vec<Value> {
    let encoded: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
    let body = get(address, &format!("/api/v1/query?query={encoded}")).await;
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["status"], "success", "{promql}: {body}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The values of `label` over a result's series.
fn values_of(result: &[Value], label: &str) -> Vec<String> {
    result
        .iter()
        .filter_map(|series| series["metric"][label].as_str().map(str::to_owned))
        .collect()
}

/// Prometheus, running until dropped.
struct Prometheus {
    child: tokio::process::Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts Prometheus on `config`, on a port of its own choosing (read from its log); `None`
/// when Prometheus is not installed.
async fn prometheus(config: &str) -> Option<Prometheus> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("config written");
    let spawned = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => panic!("cannot run prometheus: {error}"),
    };
    let mut log = BufReader::new(child.stderr.take().expect("piped")).lines();
    let address = tokio::time::timeout(SCRAPES_WITHIN, async {
        while let Some(line) = log.next_line().await.expect("Prometheus' log") {
            if line.contains(r#"msg="Listening on""#)
                && let Some(address) = line.split("address=").nth(1)
            {
                return address.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .expect("Prometheus listens in time")
    .expect("Prometheus says where it listens");
    // The rest of the log is read and dropped, so Prometheus never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    Some(Prometheus {
        child,
        address,
        _dir: dir,
    })
}

// Proves the compose deployment's dashboard draws what it says against a network just started:
// a real Prometheus, run on deploy/compose/prometheus.yml with only the targets' addresses
// changed to the network's metrics endpoint, scrapes every target, keeps no metric's label
// renamed (no `exported_city`), and every query of deploy/grafana/dashboards/yitong.json
// returns a series for each city it draws one per (a settlement's partner cities, the prepaid
// fund of each city and of nothing else, the reconciliation subjects), and at least one
// elsewhere: every series is there from start-up, before any traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_a_line_per_city_from_the_compose_scrape() {
    collector();
    let net = Sandbox::start(Database::Sqlite)
        .await
        .expect("SQLite always starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let endpoint = listener.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(yitong_telemetry::serve_metrics(listener, async move {
        let _ = stopped.await;
    }));

    let Some(prometheus) = prometheus(&rewritten_config(endpoint)).await else {
        assert!(
            !promtool_required(),
            "prometheus is required here (CI) but not installed: apt-get install prometheus"
        );
        eprintln!(
            "\n*** SKIPPED the dashboard check: prometheus is not installed (apt-get install prometheus). ***\n"
        );
        let _ = stop.send(());
        net.shut_down().await;
        return;
    };
    let address = prometheus.address.clone();

    // Ready (it answers 503 while its storage opens), then every target scraped at least
    // twice, so rates have two samples.
    let started = Instant::now();
    loop {
        let (head, body) = get_answer(&address, "/-/ready").await;
        if head
            .lines()
            .next()
            .is_some_and(|line| line.contains(" 200 "))
        {
            break;
        }
        assert!(
            started.elapsed() < SCRAPES_WITHIN,
            "Prometheus is not ready: {head}\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let scraped = query(&address, "count_over_time(up[5m]) >= 2 and up == 1").await;
        if scraped.len() == 13 {
            break;
        }
        assert!(
            started.elapsed() < SCRAPES_WITHIN,
            "Prometheus scraped {} of 13 targets twice: {:?}",
            scraped.len(),
            query(&address, "up").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The metrics' own labels are kept as they are: none renamed exported_*.
    let renamed = query(
        &address,
        r#"count by (exported_city, exported_service, exported_job, exported_instance) ({__name__=~"yitong_.+"})"#,
    )
    .await;
    for series in &renamed {
        let labels = series["metric"].as_object().cloned().unwrap_or_default();
        assert!(
            labels.is_empty(),
            "a metric's label was renamed: {labels:?}"
        );
    }

    let board: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("deploy/grafana/dashboards/yitong.json"))
            .expect("the dashboard is there"),
    )
    .expect("the dashboard is JSON");
    let mut asked = 0;
    for panel in board["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a query");
            let legend = target["legendFormat"].as_str().unwrap_or_default();
            let result = query(&address, expr).await;
            asked += 1;
            assert!(!result.is_empty(), "{title}: {expr} returns no series");
            // A legend naming a city or pool label draws a line per pool (the seeds' network
            // runs each pilot city's own pool, whose code is the city's).
            for label in [
                "insured_city",
                "treatment_city",
                "insured_pool",
                "treatment_pool",
                "city",
                "pool",
                "subject",
            ] {
                if !legend.contains(&format!("{{{{{label}}}}}")) {
                    continue;
                }
                let mut drawn = values_of(&result, label);
                for city in CITIES {
                    assert!(
                        drawn.iter().any(|value| value == city),
                        "{title}: no line for {city} by {label} in {drawn:?}"
                    );
                }
                if label == "city" || label == "pool" {
                    drawn.sort();
                    drawn.dedup();
                    let mut cities: Vec<String> = CITIES.iter().map(|c| c.to_string()).collect();
                    cities.sort();
                    assert_eq!(drawn, cities, "{title}: a line per city and no other");
                }
            }
        }
    }
    assert!(asked >= 20, "the dashboard's queries were asked: {asked}");

    drop(prometheus);
    let _ = stop.send(());
    server.await.expect("the endpoint stops");
    net.shut_down().await;
}
