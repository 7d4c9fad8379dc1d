//! The web console of the bureaus, the clearing house, hospitals' finance offices and operators:
//! daily reconciliation without typing totals, the monthly clearing (extract, include or
//! exclude, roll back, apply, close, statements), settlement search, settlements in doubt, and
//! exports to Excel and CSV.
//!
//! Server-rendered HTML (axum, which shares hyper and tower with tonic; maud templates, checked
//! at compile time and escaped by default), no script at all, one embedded stylesheet. The
//! console is a gRPC client: each staff member acts as one caller of the services (a city's
//! bureau, the clearing house's staff, an institution, an operator) with that caller's
//! credential, so the services' permission matrix and visibility rules apply to them unchanged;
//! the staff member's user name goes into every request's `operator_id` (national opter), which
//! the services keep with the change, and into the console's own action log.

// A refusal is the page that says so (an axum `Response`), returned once per request: boxing
// it would buy nothing.
#![allow(clippy::result_large_err)]

mod clearing;
mod connect;
mod export;
mod filing;
mod operations;
mod overview;
mod pages;
mod reconcile;
mod search;
pub mod session;
pub mod staff;
pub mod text;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
pub use connect::{Connect, GrpcChannel, NetworkConnect, boxed};
use yitong_core::Network;

pub use export::{ClearingSheet, clearing_csv, clearing_xlsx};
pub use operations::Scrapes;
pub use staff::{Role, Staff, StaffStore};

/// Everything a request handler needs: the network, how to reach it as a caller, the staff
/// store, the sessions and the sign-in limiter.
pub struct Console {
    pub network: Network,
    pub connect: Arc<dyn Connect>,
    pub staff: StaffStore,
    pub sessions: session::Sessions,
    pub sign_in: session::SignInLimiter,
    /// The trace viewer's link for a trace id, `{trace_id}` replaced.
    pub trace_url_template: String,
    /// Grafana's address, linked from the operations page; empty for none.
    pub grafana_url: String,
    /// The nodes' Prometheus endpoints ("http://host:port/metrics"), scraped by the operations
    /// page for call rates; empty for none.
    pub metrics_urls: Vec<String>,
    /// The operations page's previous scrape, for rates.
    pub scrapes: operations::Scrapes,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

/// The default trace viewer link (Jaeger's UI), as `yitong settlement show` uses.
pub const DEFAULT_TRACE_URL_TEMPLATE: &str = "http://127.0.0.1:16686/trace/{trace_id}";

pub type Shared = Arc<Console>;

/// Every page and action of the console, behind the security headers.
pub fn router(console: Shared) -> Router {
    Router::new()
        .route("/static/console.css", get(pages::stylesheet))
        .route("/login", get(pages::sign_in_page).post(pages::sign_in))
        .route("/logout", post(pages::sign_out))
        .route("/lang/{code}", get(pages::language))
        .route("/", get(overview::page))
        .route("/reconcile", get(reconcile::page).post(reconcile::run))
        .route(
            "/reconcile/upload",
            post(reconcile::upload).layer(DefaultBodyLimit::max(reconcile::UPLOAD_BYTES_MAX)),
        )
        .route("/clearing", get(clearing::page))
        .route("/clearing/decide", post(clearing::decide))
        .route("/clearing/rollback", post(clearing::rollback))
        .route("/clearing/apply", post(clearing::apply))
        .route("/clearing/close", post(clearing::close))
        .route("/clearing/export", get(clearing::export))
        .route("/statement", get(clearing::statement))
        .route("/statement/confirm", post(clearing::confirm_statement))
        .route("/settlements", get(search::search))
        .route("/settlements/{id}", get(search::show))
        .route("/operator", get(operations::page))
        .route("/filings", get(filing::page))
        .route("/filings/file", post(filing::file))
        .route("/filings/cancel", post(filing::cancel))
        .fallback(pages::not_found)
        .layer(axum::middleware::map_response(pages::security_headers))
        .with_state(console)
}

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    console: Shared,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(console))
        .with_graceful_shutdown(shutdown)
        .await
}
