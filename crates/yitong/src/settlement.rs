//! `yitong settlement show <id>`: one settlement as its treatment city holds it, with its trace
//! id and a link to the trace viewer, for an operator following a disputed claim.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use yitong_core::{Network, PoolCode, Service};
use yitong_proto::settlement::v1 as pb;
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;

use crate::output::Outcome;

#[derive(Debug, Args)]
pub struct SettlementCommand {
    #[command(subcommand)]
    action: SettlementAction,
}

#[derive(Debug, Subcommand)]
enum SettlementAction {
    /// Print one settlement (GetSettlement) with its trace id and a link to its trace.
    Show(ShowArgs),
}

#[derive(Debug, Args)]
struct ShowArgs {
    /// The settlement id (setl_id).
    settlement_id: String,
    /// The institution that settled it (an institution sees only its own settlements); its
    /// region code names the treatment city to ask.
    #[arg(long)]
    institution: String,
    /// Settlement endpoint (http://host:port); by default the treatment city's from the network file.
    #[arg(long)]
    settlement: Option<String>,
    /// Network file giving the treatment city's endpoint when --settlement is not given.
    #[arg(long, default_value = "seeds/network.toml")]
    network: PathBuf,
    /// The trace viewer's link, with `{trace_id}` where the trace id goes.
    #[arg(
        long,
        env = "YITONG_TRACE_URL_TEMPLATE",
        default_value = "http://127.0.0.1:16686/trace/{trace_id}"
    )]
    trace_url_template: String,
    #[command(flatten)]
    client: crate::client::ClientArgs,
}

pub async fn run(command: SettlementCommand) -> anyhow::Result<Outcome> {
    match command.action {
        SettlementAction::Show(args) => show(args).await,
    }
}

/// The link to a trace: the template with the trace id put in.
pub fn trace_link(template: &str, trace_id: &str) -> String {
    template.replace("{trace_id}", trace_id)
}

async fn show(args: ShowArgs) -> anyhow::Result<Outcome> {
    let url = match &args.settlement {
        Some(url) => url.clone(),
        None => {
            // "H37030000001": the six digits after the kind letter are the city's region code.
            let city = args
                .institution
                .get(1..7)
                .and_then(|code| PoolCode::parse(code).ok())
                .with_context(|| {
                    format!(
                        "institution code {} names no city: give --settlement",
                        args.institution
                    )
                })?;
            let network = Network::load(&args.network)
                .with_context(|| format!("cannot read {}", args.network.display()))?;
            let Some(city) = network.pool(city) else {
                bail!("city {city} is not in {}", args.network.display());
            };
            network.endpoint(city, Service::Settlement)
        }
    };
    // The institution's pool is the pool the call addresses at its node, which may serve
    // several pools of the city.
    let pool = args
        .institution
        .get(1..7)
        .and_then(|code| PoolCode::parse(code).ok());
    let channel = args
        .client
        .connect(&url, Duration::from_secs(10))
        .await
        .context("cannot reach the settlement service")?
        .addressed_to(pool);
    let mut request = tonic::Request::new(pb::GetSettlementRequest {
        key: Some(pb::get_settlement_request::Key::SettlementId(
            args.settlement_id.clone(),
        )),
        institution_code: args.institution.clone(),
    });
    request.set_timeout(Duration::from_secs(30));
    let settlement = SettlementServiceClient::new(channel)
        .get_settlement(request)
        .await
        .map_err(|status| anyhow::anyhow!("GetSettlement: {}", status.message()))?
        .into_inner()
        .settlement
        .context("GetSettlement answered without a settlement")?;
    let split = settlement.split.clone().unwrap_or_default();
    let status = pb::SettlementStatus::try_from(settlement.status)
        .map(|status| status.as_str_name().to_owned())
        .unwrap_or_else(|_| settlement.status.to_string());
    let rows = [
        ("settlement", settlement.settlement_id.clone()),
        ("visit", settlement.visit_id.clone()),
        ("person", settlement.person_no.clone()),
        ("institution", settlement.institution_code.clone()),
        ("treatment city", settlement.treatment_city.clone()),
        ("insured city", settlement.insured_city.clone()),
        ("settlement date", settlement.settlement_date.clone()),
        ("status", status),
        ("total", split.total_amount.clone()),
        ("fund pay", split.fund_pay.clone()),
        ("message id", settlement.message_id.clone()),
    ];
    for (name, value) in rows {
        println!("{name:<16} {value}");
    }
    if settlement.trace_id.is_empty() {
        println!("{:<16} none (tracing was off when it was settled)", "trace");
    } else {
        println!("{:<16} {}", "trace", settlement.trace_id);
        println!(
            "{:<16} {}",
            "trace link",
            trace_link(&args.trace_url_template, &settlement.trace_id)
        );
    }
    Ok(Outcome::Clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the trace link puts the trace id where the template says, Jaeger's or another's.
    #[test]
    fn the_trace_link_follows_the_template() {
        assert_eq!(
            trace_link(
                "http://jaeger:16686/trace/{trace_id}",
                "4bf92f3577b34da6a3ce929d0e0e4736"
            ),
            "http://jaeger:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            trace_link("https://grafana/explore?traceId={trace_id}&x=1", "ab"),
            "https://grafana/explore?traceId=ab&x=1"
        );
    }
}
