//! `yitong settlement show`, the built binary, on a settlement made while tracing was on.

use tracing::Instrument;
use yitong_core::{Owner, PoolCode, Service};
use yitong_sandbox::{DONGYING, Database, Sandbox, ZIBO};
use yitong_tests::yitong;

use crate::collector::collector;
use crate::visit::settle_visit;

// Proves that `yitong settlement show` prints a settlement made under a trace with that
// trace's id and the viewer link the template builds, and that an unknown settlement is an
// error (exit code 2), not an empty success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_show_prints_the_trace_id_and_its_link() {
    collector();
    let net = Sandbox::start(Database::Sqlite)
        .await
        .expect("SQLite always starts");
    let settlement = settle_visit(&net, "SHOW-1", DONGYING, ZIBO, 1)
        .instrument(tracing::info_span!("his.show"))
        .await;
    assert_eq!(settlement.trace_id.len(), 32, "settled under a trace");
    let endpoint = net.endpoint(
        Owner::Pool(PoolCode::parse(DONGYING).expect("region code")),
        Service::Settlement,
    );
    let operator_key = net.api_key("operator:dev");
    let show = |id: String| {
        let endpoint = endpoint.clone();
        let institution = settlement.institution_code.clone();
        let operator_key = operator_key.clone();
        async move {
            tokio::process::Command::new(yitong())
                .args(["settlement", "show", &id, "--institution", &institution])
                .args(["--settlement", &endpoint])
                .args([
                    "--trace-url-template",
                    "http://viewer:16686/trace/{trace_id}",
                ])
                .env("RUST_LOG", "warn")
                // As the operator following a disputed claim.
                .env("YITONG_API_KEY", &operator_key)
                .output()
                .await
                .expect("the binary runs")
        }
    };

    let output = show(settlement.settlement_id.clone()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&settlement.settlement_id), "{stdout}");
    assert!(
        stdout.contains(&format!("trace            {}", settlement.trace_id)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "http://viewer:16686/trace/{}",
            settlement.trace_id
        )),
        "{stdout}"
    );

    let missing = show("NO-SUCH-SETTLEMENT".into()).await;
    assert_eq!(missing.status.code(), Some(2));
    net.shut_down().await;
}
