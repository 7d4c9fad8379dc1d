//! An in-process OTLP receiver (the collector's own gRPC protocol, TraceService/Export) and the
//! tracer provider that exports the test process's spans to it.
//!
//! Both live on a runtime of their own, on a thread that outlives every test's runtime: the
//! exporter's connection and the receiver must survive the test that happened to start them.

use std::sync::{Arc, Mutex, OnceLock};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use yitong_telemetry::TraceConfig;

/// One span as it arrived, with the `service.name` of its resource.
#[derive(Debug, Clone)]
pub struct Received {
    pub service_name: String,
    pub span: Span,
}

#[derive(Debug, Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = self.received.lock().expect("span list");
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .as_ref()
                .and_then(|resource| text(&resource.attributes, "service.name"))
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    received.push(Received {
                        service_name: service_name.clone(),
                        span,
                    });
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The receiver and the provider exporting to it.
#[derive(Debug)]
pub struct Collector {
    received: Arc<Mutex<Vec<Received>>>,
    provider: SdkTracerProvider,
}

/// The process's collector, started (and the global subscriber installed) on first use.
pub fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let (started, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the collector's runtime starts");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("the receiver binds");
                let address = listener.local_addr().expect("bound");
                let receiver = Receiver::default();
                let received = receiver.received.clone();
                tokio::spawn(
                    Server::builder()
                        .add_service(TraceServiceServer::new(receiver))
                        .serve_with_incoming(TcpIncoming::from(listener)),
                );
                // Built here, so its connection lives on this runtime.
                let provider = yitong_telemetry::tracer_provider(&TraceConfig {
                    endpoint: format!("http://{address}"),
                    service_name: "yitong-sandbox".into(),
                    owner: None,
                })
                .expect("the exporter builds");
                started.send((received, provider)).expect("the test waits");
                std::future::pending::<()>().await;
            });
        });
        let (received, provider) = ready.recv().expect("the collector starts");
        yitong_sandbox::privacy::install_with_traces(&provider);
        Collector { received, provider }
    })
}

impl Collector {
    /// Exports every span ended so far and waits until the receiver has them.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .expect("flush ran")
            .expect("the spans were exported");
    }

    /// Every span received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("span list").clone()
    }
}

/// A string attribute's value.
pub fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
        .map(display)
}

/// An attribute's value as text, whatever its type.
pub fn display(value: &AnyValue) -> String {
    match &value.value {
        Some(Value::StringValue(text)) => text.clone(),
        Some(Value::IntValue(number)) => number.to_string(),
        Some(Value::BoolValue(flag)) => flag.to_string(),
        Some(Value::DoubleValue(number)) => number.to_string(),
        Some(Value::ArrayValue(array)) => array
            .values
            .iter()
            .map(display)
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
