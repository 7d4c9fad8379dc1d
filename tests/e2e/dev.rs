//! `yitong dev` as its user runs it: the built binary on a data directory of its own, on
//! ports the kernel picks (a network file whose ports are 0), rotating an HIS's key while the
//! network runs.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::Code;
use yitong_proto::catalog::v1::GetInstitutionRequest;
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_sandbox::{ZIBO, seeds_dir};
use yitong_tests::yitong;

/// How long the first start (migrations and seeds on SQLite) may take on a loaded machine.
const START_SECS_MAX: u64 = 600;
/// How long a change of the key file may take to reach the servers: they look every two
/// seconds (`yitong_auth::Keyring::watch`).
const RELOAD_SECS_MAX: u64 = 30;
const HIS: &str = "institution:H37030000001";

/// The seed files, with every endpoint of the network file on port 0.
fn seeds_on_ephemeral_ports(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(seeds_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_owned();
        if name == "network.toml" {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut ephemeral = String::new();
            for line in text.lines() {
                match line.split_once("\"http://127.0.0.1:") {
                    Some((head, _)) => ephemeral.push_str(&format!("{head}\"http://127.0.0.1:0\"")),
                    None => ephemeral.push_str(line),
                }
                ephemeral.push('\n');
            }
            std::fs::write(to.join(name), ephemeral).unwrap();
        } else if path.is_file() {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// GetInstitution at Zibo's catalog with `key`: Ok, or the status.
async fn call_with(url: &str, key: &str) -> Result<(), tonic::Status> {
    let mut client = CatalogServiceClient::connect(url.to_owned())
        .await
        .expect("Zibo's catalog is up");
    let mut request = tonic::Request::new(GetInstitutionRequest {
        code: "H37030000001".to_owned(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii key"),
    );
    client.get_institution(request).await.map(|_| ())
}

/// Waits until a call with `key` is answered as `wanted` says, for up to [`RELOAD_SECS_MAX`].
async fn until(
    url: &str,
    key: &str,
    what: &str,
    wanted: impl Fn(&Result<(), tonic::Status>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(RELOAD_SECS_MAX);
    loop {
        let outcome = call_with(url, key).await;
        if wanted(&outcome) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {RELOAD_SECS_MAX} s; the last answer: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn run_key_command(args: &[&str]) -> String {
    let output = std::process::Command::new(yitong())
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{args:?}: {output:?}");
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
}

/// Proves that `yitong dev` rereads its key file as `yitong serve` does: while the network runs,
/// a key issued with `yitong key issue --keys data/keys.toml` is accepted and the HIS's old key,
/// revoked with `yitong key revoke`, is refused UNAUTHENTICATED, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_accepts_an_issued_key_and_refuses_a_revoked_one_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let (data, seeds) = (dir.path().join("data"), dir.path().join("seeds"));
    seeds_on_ephemeral_ports(&seeds);
    let mut dev = tokio::process::Command::new(yitong())
        .arg("dev")
        .arg("--data")
        .arg(&data)
        .arg("--seeds")
        .arg(&seeds)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(["--console-listen", "127.0.0.1:0"])
        .env_remove("YITONG_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("yitong dev starts");
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut catalog = None;
    let mut console = None;
    let started = tokio::time::timeout(Duration::from_secs(START_SECS_MAX), async {
        while let Some(line) = lines.next_line().await.expect("stdout reads") {
            if line.contains(&format!("({ZIBO})")) && line.contains(" catalog ") {
                catalog = line.split_whitespace().last().map(str::to_owned);
            }
            if let Some(rest) = line.strip_prefix("Console: http://") {
                console = rest.split('/').next().map(str::to_owned);
            }
            if line.starts_with("Press Ctrl-C") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "yitong dev came up");
    let url = catalog.expect("the table names Zibo's catalog");

    let credentials = std::fs::read_to_string(data.join("credentials.toml")).unwrap();
    let old = credentials
        .lines()
        .find_map(|line| line.strip_prefix(&format!("\"{HIS}\" = \"")))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("the HIS's key in credentials.toml")
        .to_owned();
    call_with(&url, &old)
        .await
        .expect("the HIS's key is accepted");

    let keys = data.join("keys.toml");
    let keys = keys.to_str().unwrap();
    let new = run_key_command(&["key", "issue", "--keys", keys, HIS]);
    until(&url, &new, "the issued key is accepted", Result::is_ok).await;

    let old_id = old.split('.').nth(1).expect("yt1.<id>.<secret>");
    run_key_command(&["key", "revoke", "--keys", keys, old_id]);
    until(
        &url,
        &old,
        "the revoked key is refused",
        |outcome| matches!(outcome, Err(status) if status.code() == Code::Unauthenticated),
    )
    .await;
    call_with(&url, &new)
        .await
        .expect("the new key still works");

    // The console it prints: a bureau signs in with the password `yitong dev` wrote for it and
    // sees its overview, read from the running ledger.
    let console = console.expect("yitong dev prints the console's address");
    let staff = std::fs::read_to_string(data.join("console-staff.toml")).unwrap();
    let password = staff
        .lines()
        .find_map(|line| line.strip_prefix("\"bureau-370300\" = \""))
        .and_then(|rest| rest.split('"').next())
        .expect("the Zibo bureau's password in console-staff.toml")
        .to_owned();
    let login = http(&console, "GET /login HTTP/1.1\r\n\r\n").await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let csrf = between(&login, "name=\"csrf\" value=\"", "\"");
    let cookie = between(&login, "yitong_sign_in=", ";");
    let form = format!("csrf={csrf}&username=bureau-370300&password={password}");
    let signed = http(
        &console,
        &format!(
            "POST /login HTTP/1.1\r\nCookie: yitong_sign_in={cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .await;
    assert!(signed.starts_with("HTTP/1.1 303"), "{signed}");
    let session = between(&signed, "yitong_session=", ";");
    let overview = http(
        &console,
        &format!("GET / HTTP/1.1\r\nCookie: yitong_session={session}\r\n\r\n"),
    )
    .await;
    assert!(overview.starts_with("HTTP/1.1 200"), "{overview}");
    assert!(
        overview.contains("370300"),
        "Zibo's prepaid fund: {overview}"
    );

    dev.start_kill().expect("yitong dev stops");
    let _ = dev.wait().await;
}

/// Runs the `yitong` command `line` ("yitong journal verify --ledger ..."), split on blanks as
/// a shell would split it (the printed paths hold none); its exit status and what it said.
fn run_printed(line: &str) -> (std::process::ExitStatus, String) {
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("yitong"), "{line}");
    let output = std::process::Command::new(yitong())
        .args(words)
        .env_remove("YITONG_API_KEY")
        .output()
        .expect("the binary runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, said)
}

/// Proves that `yitong dev --tls` is usable from what it prints: its table gives `https://`
/// endpoints, it writes no API key (a TLS server takes none without a certificate), and every
/// command it prints runs as printed and succeeds (the journal verified as the operator, a
/// certificate issued into its PKI folder). A client command given the network's `http://`
/// endpoint with --ca, --cert and --key reaches the server over TLS and gets its answer (here
/// NOT_FOUND, not "h2 protocol error"); given --ca without a certificate, it says what it needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_dev_tls_prints_works_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let (data, seeds) = (dir.path().join("data"), dir.path().join("seeds"));
    seeds_on_ephemeral_ports(&seeds);
    let mut dev = tokio::process::Command::new(yitong())
        .arg("dev")
        .arg("--tls")
        .arg("--data")
        .arg(&data)
        .arg("--seeds")
        .arg(&seeds)
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env_remove("YITONG_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("yitong dev starts");
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let started = tokio::time::timeout(Duration::from_secs(START_SECS_MAX), async {
        while let Some(line) = lines.next_line().await.expect("stdout reads") {
            let done = line.starts_with("Press Ctrl-C");
            printed.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(started, Ok(true), "yitong dev --tls came up: {printed:#?}");

    let settlement = printed
        .iter()
        .find(|line| line.contains(&format!("({ZIBO})")) && line.contains(" settlement "))
        .and_then(|line| line.split_whitespace().last())
        .expect("the table names Zibo's settlement service")
        .to_owned();
    assert!(settlement.starts_with("https://"), "{settlement}");
    assert!(
        !data.join("credentials.toml").exists() && !data.join("keys.toml").exists(),
        "no API key is written for a TLS network"
    );

    let commands: Vec<&str> = printed
        .iter()
        .filter_map(|line| line.find("yitong ").map(|at| &line[at..]))
        .filter(|command| !command.starts_with("yitong dev"))
        .collect();
    assert!(commands.len() >= 2, "commands printed: {printed:#?}");
    for command in &commands {
        let (status, said) = run_printed(command);
        assert!(status.success(), "{command}: {status}\n{said}");
    }
    assert!(
        data.join("pki/operator-oncall.pem").exists(),
        "the printed pki issue wrote into the network's PKI folder"
    );
    // Run where `yitong dev --tls` was started, `yitong pki issue` finds its folder unasked.
    let issued = std::process::Command::new(yitong())
        .current_dir(dir.path())
        .args(["pki", "issue", "operator:second"])
        .output()
        .expect("the binary runs");
    assert!(
        issued.status.success() && data.join("pki/operator-second.pem").exists(),
        "pki issue defaults to dev's folder: {}",
        String::from_utf8_lossy(&issued.stderr)
    );

    // The network file's form of the endpoint, with the holder's certificate.
    let pki = data.join("pki");
    let path = |name: &str| pki.join(name).display().to_string();
    let show = format!(
        "yitong settlement show NO-SUCH-SETTLEMENT --institution {HIS_CODE} --settlement {} --ca {} --cert {} --key {}",
        settlement.replacen("https://", "http://", 1),
        path("ca.pem"),
        path("institution-H37030000001.pem"),
        path("institution-H37030000001.key"),
    );
    let (status, said) = run_printed(&show);
    assert!(!status.success(), "{said}");
    assert!(
        said.contains("GetSettlement:") && !said.contains("h2 protocol error"),
        "the server answered over TLS: {said}"
    );
    let without_certificate = format!(
        "yitong settlement show NO-SUCH-SETTLEMENT --institution {HIS_CODE} --settlement {settlement} --ca {}",
        path("ca.pem"),
    );
    let (status, said) = run_printed(&without_certificate);
    assert!(!status.success(), "{said}");
    assert!(said.contains("--cert"), "says what it needs: {said}");

    dev.start_kill().expect("yitong dev stops");
    let _ = dev.wait().await;
}

const HIS_CODE: &str = "H37030000001";
/// One HTTP/1.1 exchange with `address`, the connection closed after it: the whole answer.
async fn http(address: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the console listens");
    let (head, body) = request.split_once("\r\n").expect("a request line");
    let request = format!("{head}\r\nHost: {address}\r\nConnection: close\r\n{body}");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("answer read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The text of `haystack` between the first `start` and the next `end`.
fn between<'a>(haystack: &'a str, start: &str, end: &str) -> &'a str {
    let from = haystack
        .find(start)
        .unwrap_or_else(|| panic!("{start} in {haystack}"))
        + start.len();
    let rest = &haystack[from..];
    &rest[..rest.find(end).expect("the end")]
}
