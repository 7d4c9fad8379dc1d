//! What the bureau commands share: reaching the ledger, the three output formats, progress bars
//! and the outcome that becomes the exit code.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::Channel;
use anyhow::Context;
use clap::{Args, ValueEnum};
use yitong_core::Network;
use yitong_proto::ledger::v1::ClearingPeriod;
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;

/// How a command ended when it did not fail: the exit code tells a script whether to look closer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report: exit code 0.
    Clean,
    /// Breaks were found, or the journal was altered: exit code 1 (errors exit with 2).
    Findings,
}

/// How results are printed on standard output.
#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// Readable tables.
    #[default]
    Table,
    /// CSV with a header row, for spreadsheets and scripts.
    Csv,
    /// JSON, for programs.
    Json,
}

/// The flags every bureau command takes.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// Ledger endpoint (http://host:port); by default the clearing house's from the network file.
    #[arg(long, global = true)]
    ledger: Option<String>,
    /// Network file giving the clearing house's ledger endpoint when --ledger is not given.
    #[arg(long, global = true, default_value = "seeds/network.toml")]
    network: PathBuf,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Deadline of each call in seconds; a detail reconciliation stream is not limited by it,
    /// and a close is given at least ten minutes.
    #[arg(long, global = true, default_value_t = 60)]
    timeout_secs: u64,
    #[command(flatten)]
    pub client: crate::client::ClientArgs,
}

impl LedgerArgs {
    /// A client of the ledger. The network file is read only when no endpoint is given, so an
    /// operator can reach any ledger without a copy of the file.
    pub async fn connect(&self) -> anyhow::Result<LedgerServiceClient<Channel>> {
        let url = match &self.ledger {
            Some(url) => url.clone(),
            None => {
                Network::load(&self.network)
                    .with_context(|| format!("cannot read {}", self.network.display()))?
                    .clearing_house
                    .ledger
            }
        };
        let channel = self
            .client
            .connect(&url, Duration::from_secs(10))
            .await
            .context("cannot reach the ledger")?;
        Ok(LedgerServiceClient::new(channel))
    }

    /// The deadline for one unary call.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

/// A unary request carrying the command's deadline.
pub fn request<T>(message: T, timeout: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
}

/// Turns a refusal into an error that reads "<what>: <the ledger's message> (<code>)", rather
/// than tonic's long description of the code.
pub fn refused(what: &str) -> impl FnOnce(tonic::Status) -> anyhow::Error {
    let what = what.to_owned();
    move |status| anyhow::anyhow!("{what}: {} ({:?})", status.message(), status.code())
}

/// A fresh message id for a state-changing call when the operator gives none; the operator
/// gives one to retry a call whose answer was lost, so the ledger returns the first answer.
pub fn message_id(given: &Option<String>, prefix: &str) -> String {
    given
        .clone()
        .unwrap_or_else(|| format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
}

/// Parses "YYYY-MM" into a clearing period.
pub fn parse_period(text: &str) -> Result<ClearingPeriod, String> {
    let (year, month) = text
        .split_once('-')
        .ok_or_else(|| "must be YYYY-MM".to_owned())?;
    let year = year.parse().map_err(|_| "must be YYYY-MM".to_owned())?;
    let month = month.parse().map_err(|_| "must be YYYY-MM".to_owned())?;
    Ok(ClearingPeriod { year, month })
}

/// Rows under named columns: the one shape every format can print.
#[derive(Debug)]
pub struct Table {
    /// Shown above the table, and the key of the section in JSON.
    pub title: &'static str,
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &'static str, headers: &[&'static str]) -> Self {
        Table {
            title,
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        assert_eq!(
            row.len(),
            self.headers.len(),
            "a row has one cell per column"
        );
        self.rows.push(row);
    }

    /// The rows as JSON objects keyed by column; a table of figures and values (one record)
    /// as one object, which is what a program reading it wants.
    fn json(&self) -> serde_json::Value {
        if self.headers == ["figure", "value"] {
            return self
                .rows
                .iter()
                .map(|row| (row[0].clone(), serde_json::Value::from(row[1].as_str())))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        self.rows
            .iter()
            .map(|row| {
                self.headers
                    .iter()
                    .zip(row)
                    .map(|(header, cell)| {
                        ((*header).to_owned(), serde_json::Value::from(cell.as_str()))
                    })
                    .collect::<serde_json::Map<_, _>>()
                    .into()
            })
            .collect::<Vec<serde_json::Value>>()
            .into()
    }
}

/// Prints sections in `format`: tables one after the other with their titles; CSV sections
/// separated by a blank line; JSON as one array for a single section, else one object keyed by
/// section title.
pub fn print(format: Format, sections: &[Table]) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        Format::Table => {
            for (index, section) in sections.iter().enumerate() {
                if index > 0 {
                    writeln!(out)?;
                }
                writeln!(out, "{}", section.title)?;
                if section.rows.is_empty() {
                    writeln!(out, "(none)")?;
                    continue;
                }
                let mut table = comfy_table::Table::new();
                table
                    .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
                    .set_header(section.headers.clone());
                for row in &section.rows {
                    table.add_row(row.clone());
                }
                writeln!(out, "{table}")?;
            }
        }
        Format::Csv => {
            for (index, section) in sections.iter().enumerate() {
                if index > 0 {
                    writeln!(out)?;
                }
                let mut writer = csv::Writer::from_writer(&mut out);
                writer.write_record(&section.headers)?;
                for row in &section.rows {
                    writer.write_record(row)?;
                }
                writer.flush()?;
            }
        }
        Format::Json => {
            let value = match sections {
                [single] => single.json(),
                _ => sections
                    .iter()
                    .map(|section| (section.title.to_owned(), section.json()))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            };
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A progress bar on standard error; indicatif draws nothing when standard error is not a
/// terminal, so scripts and tests see clean output.
pub fn progress(length: u64, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(length);
    let template =
        format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}} left)");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Formats a protobuf timestamp as RFC 3339 in UTC, or empty when absent.
pub fn timestamp(value: Option<&prost_types::Timestamp>) -> String {
    value
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
