//! Health checks during the load, as a load balancer would make them: every city's settlement
//! server is asked `grpc.health.v1.Health/Check` every [`PROBE_INTERVAL`] on a connection of its
//! own, and the report gives the slowest answer and how many checks were not answered SERVING
//! within [`ANSWER_MAX`]. A server that sheds load must still answer these at once: a balancer
//! that saw it as dead would move its load onto the others.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Time between two checks of one server.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// An answer later than this, or none, counts as a failed check (issue 16: within 2 s).
pub const ANSWER_MAX: Duration = Duration::from_secs(2);

/// What the checks of a run saw, all servers together.
#[derive(Debug, Default, Clone, Serialize)]
pub struct HealthFigures {
    pub checks: u64,
    /// Checks not answered SERVING within [`ANSWER_MAX`].
    pub failed: u64,
    pub slowest_ms: f64,
}

/// A duration in milliseconds, for the report.
#[allow(clippy::float_arithmetic)]
fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// Probes the servers behind `channels` until `stop` is set; then returns what it saw.
pub async fn probe(channels: Vec<Channel>, stop: Arc<AtomicBool>) -> HealthFigures {
    let mut probes = tokio::task::JoinSet::new();
    for channel in channels {
        let stop = stop.clone();
        probes.spawn(async move {
            let mut client = HealthClient::new(channel);
            let mut figures = HealthFigures::default();
            while !stop.load(Ordering::Relaxed) {
                let asked = Instant::now();
                let answer = tokio::time::timeout(
                    ANSWER_MAX,
                    client.check(HealthCheckRequest {
                        service: String::new(),
                    }),
                )
                .await;
                let took = asked.elapsed();
                let serving = matches!(
                    &answer,
                    Ok(Ok(reply)) if reply.get_ref().status() == ServingStatus::Serving
                );
                figures.checks += 1;
                figures.failed += u64::from(!serving);
                figures.slowest_ms = figures.slowest_ms.max(millis(took));
                tokio::time::sleep(PROBE_INTERVAL.saturating_sub(took)).await;
            }
            figures
        });
    }
    let mut all = HealthFigures::default();
    while let Some(figures) = probes.join_next().await {
        let figures = figures.expect("a health probe ends without panic");
        all.checks += figures.checks;
        all.failed += figures.failed;
        all.slowest_ms = all.slowest_ms.max(figures.slowest_ms);
    }
    all
}
