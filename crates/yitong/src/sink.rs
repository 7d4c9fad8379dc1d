//! `yitong otlp-sink`: an OTLP/gRPC trace receiver that counts what it is sent and keeps
//! nothing. A stand-in collector for measuring the cost of tracing (`BENCHMARKS.md`) and for
//! checking locally that a node exports, without running an OpenTelemetry collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::transport::Server;
use tonic::{Request, Response, Status};

#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Address to receive OTLP/gRPC on.
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: String,
    /// Print the counts this often, in seconds.
    #[arg(long, default_value_t = 10)]
    report_secs: u64,
}

/// What was received so far.
#[derive(Debug, Default)]
struct Counts {
    exports: AtomicU64,
    spans: AtomicU64,
}

#[derive(Debug, Clone)]
struct Sink {
    counts: Arc<Counts>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.counts.exports.fetch_add(1, Ordering::Relaxed);
        self.counts
            .spans
            .fetch_add(u64::try_from(spans).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

fn report(counts: &Counts) {
    println!(
        "received {} spans in {} exports",
        counts.spans.load(Ordering::Relaxed),
        counts.exports.load(Ordering::Relaxed)
    );
}

pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("OTLP sink on {}", listener.local_addr()?);
    let counts = Arc::new(Counts::default());
    let reporter = {
        let counts = counts.clone();
        let period = Duration::from_secs(args.report_secs.max(1));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                report(&counts);
            }
        })
    };
    Server::builder()
        .add_service(TraceServiceServer::new(Sink {
            counts: counts.clone(),
        }))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            crate::config::shutdown_signal(),
        )
        .await?;
    reporter.abort();
    report(&counts);
    Ok(())
}
