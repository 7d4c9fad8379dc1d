//! The suite beside other clients of PostgreSQL: a binary of its own, because a process counts
//! the server's free connections once, when its first PostgreSQL sandbox starts
//! (`yitong_sandbox::headroom`), and this test must be the one that makes that count.
//!
//! Its sandboxes run as a role of their own whose `CONNECTION LIMIT` stands for a crowded
//! server: the limit is enforced by PostgreSQL as `max_connections` is, and the other clients
//! of the server (other test processes) keep their room.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use yitong_core::Network;
use yitong_proto::identity::v1::{Credential, GetInsuredPersonRequest, credential::Kind};
use yitong_sandbox::headroom::connections_per_sandbox;
use yitong_sandbox::{Database, JINAN, Sandbox, ZIBO, seeds_dir};
use yitong_store::sqlx::{self, AssertSqlSafe, Connection};

/// Connections "another client" of the role holds open through the test.
const HELD: u32 = 8;

async fn execute(admin: &mut sqlx::AnyConnection, statement: String) {
    sqlx::raw_sql(AssertSqlSafe(statement.clone()))
        .execute(admin)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
}

/// Drops `role` and every database it owns.
async fn drop_role(admin: &mut sqlx::AnyConnection, role: &str) {
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(d.datname AS TEXT) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba \
         WHERE CAST(r.rolname AS TEXT) = $1",
    )
    .bind(role)
    .fetch_all(&mut *admin)
    .await
    .expect("the role's databases");
    for database in owned {
        execute(
            admin,
            format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        )
        .await;
    }
    execute(admin, format!("DROP ROLE IF EXISTS {role}")).await;
}

/// One PostgreSQL sandbox's whole life: start, a cross-city lookup (Zibo asks Jinan), shut-down.
async fn one_postgres_test(running: Arc<AtomicUsize>, most: Arc<AtomicUsize>) {
    let net = Sandbox::start(Database::Postgres)
        .await
        .expect("PostgreSQL was reached a moment ago");
    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
    most.fetch_max(now, Ordering::SeqCst);
    let jinan = yitong_core::PoolCode::parse(JINAN).expect("a region code");
    let card = yitong_core::CardNumber::new(jinan, 1).to_string();
    let reply = net
        .identity(ZIBO)
        .get_insured_person(GetInsuredPersonRequest {
            credential: Some(Credential {
                kind: Some(Kind::CardNumber(card)),
            }),
            ..Default::default()
        })
        .await
        .expect("Zibo finds a Jinan card");
    assert_eq!(
        reply.into_inner().person.expect("a person").insured_city,
        JINAN
    );
    running.fetch_sub(1, Ordering::SeqCst);
    net.shut_down().await;
}

/// Proves that the sandboxes budget their PostgreSQL connections. With "another client" holding
/// connections of the sandboxes' role, and the role's limit leaving less than one sandbox
/// needs, a PostgreSQL test fails at once saying what it needs (not halfway, with "too many
/// connections"). With the limit raised to one and a half sandboxes' worth (as when another
/// client held 38 of the default 100 connections), two PostgreSQL tests started at once both
/// pass, one after the other, where together they would not fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sandboxes_fit_beside_another_client() {
    let admin_url = yitong_sandbox::postgres_admin_url();
    sqlx::any::install_default_drivers();
    let mut admin = match sqlx::AnyConnection::connect(&admin_url).await {
        Ok(admin) => admin,
        Err(error) if std::env::var("YITONG_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") => {
            panic!("PostgreSQL is required but cannot be reached: {error}")
        }
        Err(error) => {
            eprintln!("\n*** SKIPPED: PostgreSQL cannot be reached ({error}). ***\n");
            return;
        }
    };
    // Roles a failed run of this test left behind, with their databases.
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(rolname AS TEXT) FROM pg_roles WHERE rolname LIKE 'yitong_headroom_%'",
    )
    .fetch_all(&mut admin)
    .await
    .expect("the roles");
    for role in stale {
        drop_role(&mut admin, &role).await;
    }
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let role = format!("yitong_headroom_{}", &suffix[..12]);
    let password = uuid::Uuid::new_v4().simple().to_string();
    let network = Network::load(&seeds_dir().join("network.toml")).expect("the network file");
    let need = connections_per_sandbox(&network);
    // The role's own connections when a sandbox measures: the held ones and the measuring one.
    let limit_leaving = |free: u32| HELD + 1 + free;
    execute(
        &mut admin,
        format!(
            "CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}' CONNECTION LIMIT {}",
            limit_leaving(need - 5)
        ),
    )
    .await;
    let mut role_url = url::Url::parse(&admin_url).expect("DATABASE_URL is a URL");
    role_url.set_username(&role).expect("a URL with a host");
    role_url
        .set_password(Some(&password))
        .expect("a URL with a host");
    yitong_sandbox::use_postgres(role_url.to_string());
    let mut held = Vec::new();
    for _ in 0..HELD {
        held.push(
            sqlx::AnyConnection::connect(role_url.as_str())
                .await
                .expect("the other client connects"),
        );
    }

    // Not even one sandbox fits: the test fails at its start, and says what it needs.
    let refused = tokio::spawn(Sandbox::start(Database::Postgres)).await;
    let panic = refused.expect_err("a sandbox that does not fit is refused");
    let message = panic
        .into_panic()
        .downcast::<String>()
        .map(|message| *message)
        .unwrap_or_default();
    assert!(
        message.contains(&format!("one sandbox needs {need}")),
        "the refusal says what a sandbox needs: {message}"
    );

    // Room for one and a half sandboxes: two tests at once both pass, one after the other.
    execute(
        &mut admin,
        format!(
            "ALTER ROLE {role} CONNECTION LIMIT {}",
            limit_leaving(need + need / 2)
        ),
    )
    .await;
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let first = tokio::spawn(one_postgres_test(running.clone(), most.clone()));
    let second = tokio::spawn(one_postgres_test(running.clone(), most.clone()));
    let (first, second) = (first.await, second.await);

    for connection in held {
        let _ = connection.close().await;
    }
    drop_role(&mut admin, &role).await;
    first.expect("the first test passes");
    second.expect("the second test passes");
    assert_eq!(most.load(Ordering::SeqCst), 1, "one sandbox at a time");
}
