//! `yitong reconcile totals|details`: a bureau's or hospital's daily reconciliation against the
//! clearing house's ledger (national 3201 and 3202).

use std::fs::File;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use yitong_proto::ledger::v1::reconcile_details_request::Item as Sent;
use yitong_proto::ledger::v1::reconcile_details_response::Item as Received;
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    ClearingTypeTotals, DetailRow, DetailRowBatch, DetailRowResult, FundTypeTotal,
    ReconcileDetailsHeader, ReconcileDetailsRequest, ReconcileDetailsSummary,
    ReconcileTotalsRequest, ReconcileTotalsResponse, ReconciliationLineBreak, ReconciliationResult,
    ReconciliationScope, ReconciliationTotals,
};

use crate::output::{self, Format, LedgerArgs, Outcome, Table};

/// Rows per batch sent to the ledger: its maximum.
const BATCH_ROWS_MAX: usize = 1_000;
/// Batches read ahead of the stream; with the batch size it bounds the rows held in memory.
const BATCHES_QUEUED_MAX: usize = 4;
/// Breaks a readable table shows; CSV and JSON print every one as it arrives.
const TABLE_BREAKS_MAX: usize = 1_000;

#[derive(Debug, Args)]
pub struct ReconcileCommand {
    #[command(subcommand)]
    action: ReconcileAction,
    #[command(flatten)]
    ledger: LedgerArgs,
}

#[derive(Debug, Subcommand)]
enum ReconcileAction {
    /// Compare the submitter's totals for a date range with the ledger's, figure by figure.
    Totals(TotalsArgs),
    /// Stream the submitter's settlement rows from a CSV file and report every break. In JSON,
    /// one object per line (each row, then {"summary": ...}), so a long run is never held.
    Details(DetailsArgs),
}

/// Whose records are reconciled: exactly one of the five.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ScopeArgs {
    /// A designated institution reconciling its own settlements.
    #[arg(long)]
    institution: Option<String>,
    /// A treatment pool's bureau, for the settlements at its institutions (a city's own pool
    /// has the city's code).
    #[arg(long)]
    treatment_city: Option<String>,
    /// An insured pool's bureau, for the settlements of the persons it insures.
    #[arg(long)]
    insured_city: Option<String>,
    /// A city's bureau, for the settlements at the institutions of every pool the city hosts.
    #[arg(long)]
    treatment_host_city: Option<String>,
    /// A city's bureau, for the settlements of the persons every pool the city hosts insures.
    #[arg(long)]
    insured_host_city: Option<String>,
}

/// Whose records are reconciled, the date range and the filters.
#[derive(Debug, Args)]
struct RangeArgs {
    #[command(flatten)]
    scope: ScopeArgs,
    /// First settlement date, YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// Last settlement date, inclusive; the first date when not given.
    #[arg(long)]
    to: Option<String>,
    /// Only this insurance type (national insutype: 310 or 390).
    #[arg(long)]
    insurance_type: Option<i32>,
    /// Only this clearing type (national clr_type: 11, 14 or 41).
    #[arg(long)]
    clearing_type: Option<i32>,
    /// Operator, for the ledger's audit trail.
    #[arg(long, default_value = "")]
    operator: String,
    /// Idempotency key of the run; a fresh one when not given.
    #[arg(long)]
    message_id: Option<String>,
}

impl RangeArgs {
    fn scope(&self) -> Option<ReconciliationScope> {
        let scope = &self.scope;
        let named = [
            scope.institution.clone().map(Subject::InstitutionCode),
            scope.treatment_city.clone().map(Subject::TreatmentCity),
            scope.insured_city.clone().map(Subject::InsuredCity),
            scope
                .treatment_host_city
                .clone()
                .map(Subject::TreatmentHostCity),
            scope
                .insured_host_city
                .clone()
                .map(Subject::InsuredHostCity),
        ];
        // clap's required group guarantees exactly one of the five.
        let subject = named
            .into_iter()
            .flatten()
            .next()
            .expect("clap requires a scope");
        Some(ReconciliationScope {
            subject: Some(subject),
        })
    }

    fn to_date(&self) -> String {
        self.to.clone().unwrap_or_else(|| self.from.clone())
    }
}

#[derive(Debug, Args)]
struct TotalsArgs {
    #[command(flatten)]
    range: RangeArgs,
    /// Number of rows (settlements and cancellations each count one).
    #[arg(long)]
    count: u64,
    /// Total medical fee in yuan (net of cancellations).
    #[arg(long, allow_hyphen_values = true)]
    total_amount: String,
    /// Fund pay in yuan.
    #[arg(long, allow_hyphen_values = true)]
    fund_pay: String,
    /// Personal-account pay in yuan.
    #[arg(long, allow_hyphen_values = true)]
    account_pay: String,
    /// Cash pay in yuan.
    #[arg(long, allow_hyphen_values = true)]
    cash_pay: String,
    /// The totals of one clearing type, TYPE=COUNT,TOTAL,FUND,ACCOUNT,CASH (national clr_type
    /// 11, 14 or 41; amounts in yuan), repeated per type; together they must sum to the totals.
    /// Given, every clearing type's line is compared with the ledger's.
    #[arg(long = "clearing-line", value_parser = parse_clearing_line, allow_hyphen_values = true)]
    clearing_lines: Vec<ClearingTypeTotals>,
    /// The fund pay of one fund type, FUND_PAY_TYPE[/DISEASE]=AMOUNT (national fund_pay_type,
    /// the disease of a chronic-disease quota, amount in yuan), repeated per line; together they
    /// must sum to --fund-pay. Given, every fund line is compared with the ledger's.
    #[arg(long = "fund-line", value_parser = parse_fund_line, allow_hyphen_values = true)]
    fund_lines: Vec<FundTypeTotal>,
}

/// "14=1,40.00,30.00,0.00,10.00" -> the clearing type's totals.
fn parse_clearing_line(text: &str) -> Result<ClearingTypeTotals, String> {
    let wrong = || "must be TYPE=COUNT,TOTAL,FUND,ACCOUNT,CASH".to_owned();
    let (clearing_type, figures) = text.split_once('=').ok_or_else(wrong)?;
    let figures: Vec<&str> = figures.split(',').collect();
    let [count, total, fund, account, cash] = figures.as_slice() else {
        return Err(wrong());
    };
    Ok(ClearingTypeTotals {
        clearing_type: clearing_type.parse().map_err(|_| wrong())?,
        count: count.parse().map_err(|_| wrong())?,
        total_amount: (*total).to_owned(),
        fund_pay: (*fund).to_owned(),
        account_pay: (*account).to_owned(),
        cash_pay: (*cash).to_owned(),
    })
}

/// "310100/I10=30.00" (or "310100=40.00" for the ordinary cap) -> the fund line.
fn parse_fund_line(text: &str) -> Result<FundTypeTotal, String> {
    let (key, amount) = text
        .split_once('=')
        .ok_or_else(|| "must be FUND_PAY_TYPE[/DISEASE]=AMOUNT".to_owned())?;
    let (fund_pay_type, disease_code) = key.split_once('/').unwrap_or((key, ""));
    Ok(FundTypeTotal {
        fund_pay_type: fund_pay_type.to_owned(),
        disease_code: disease_code.to_owned(),
        amount: amount.to_owned(),
    })
}

#[derive(Debug, Args)]
struct DetailsArgs {
    #[command(flatten)]
    range: RangeArgs,
    /// CSV of the submitter's rows with the header settlement_id, visit_id, person_no,
    /// settlement_date, total_amount, fund_pay, account_pay, cash_pay, cancellation, message_id;
    /// sorted by settlement_id (byte order), as the ledger compares by walking both sides.
    #[arg(long)]
    file: PathBuf,
    /// Print matched rows too, not only the breaks.
    #[arg(long)]
    all_rows: bool,
    /// Resume an interrupted run (same --message-id) from the resume token of its last
    /// checkpoint; the file is read again and the rows up to the checkpoint are skipped.
    #[arg(long, requires = "message_id")]
    resume_token: Option<String>,
}

pub async fn run(command: ReconcileCommand) -> anyhow::Result<Outcome> {
    match command.action {
        ReconcileAction::Totals(args) => totals(&command.ledger, args).await,
        ReconcileAction::Details(args) => details(&command.ledger, args).await,
    }
}

async fn totals(ledger_args: &LedgerArgs, args: TotalsArgs) -> anyhow::Result<Outcome> {
    let mut ledger = ledger_args.connect().await?;
    let range = &args.range;
    let submitted = ReconciliationTotals {
        count: args.count,
        total_amount: args.total_amount.clone(),
        fund_pay: args.fund_pay.clone(),
        account_pay: args.account_pay.clone(),
        cash_pay: args.cash_pay.clone(),
        clearing_types: args.clearing_lines.clone(),
        fund_types: args.fund_lines.clone(),
    };
    let reply = ledger
        .reconcile_totals(output::request(
            ReconcileTotalsRequest {
                message_id: output::message_id(&range.message_id, "RECONCILE-TOTALS"),
                scope: range.scope(),
                insurance_type: range.insurance_type.unwrap_or_default(),
                clearing_type: range.clearing_type.unwrap_or_default(),
                from_date: range.from.clone(),
                to_date: range.to_date(),
                totals: Some(submitted),
                operator_id: range.operator.clone(),
            },
            ledger_args.timeout(),
        ))
        .await
        .map_err(output::refused("the ledger refused the totals"))?
        .into_inner();
    let mismatched: Vec<String> = reply
        .mismatched_figures()
        .map(|figure| figure_name(figure.as_str_name()))
        .collect();
    let submitted = reply.submitted.clone().unwrap_or_default();
    let ledger_totals = reply.ledger.clone().unwrap_or_default();
    let mut table = Table::new("totals", &["figure", "submitted", "ledger", "result"]);
    for (name, ours, theirs) in [
        (
            "count",
            submitted.count.to_string(),
            ledger_totals.count.to_string(),
        ),
        (
            "total_amount",
            submitted.total_amount,
            ledger_totals.total_amount,
        ),
        ("fund_pay", submitted.fund_pay, ledger_totals.fund_pay),
        (
            "account_pay",
            submitted.account_pay,
            ledger_totals.account_pay,
        ),
        ("cash_pay", submitted.cash_pay, ledger_totals.cash_pay),
    ] {
        let result = if mismatched.iter().any(|figure| figure == name) {
            "mismatched"
        } else {
            "matched"
        };
        table.push(vec![name.to_owned(), ours, theirs, result.to_owned()]);
    }
    let tables = [
        table,
        clearing_lines_table(&reply),
        fund_lines_table(&reply),
    ];
    let matched = reply.result() == ReconciliationResult::Matched;
    output::print(ledger_args.format, &tables)?;
    if !matched && matches!(ledger_args.format, Format::Table) {
        let lines = reply.mismatched_lines.iter().map(line_name);
        let named: Vec<String> = mismatched.iter().cloned().chain(lines).collect();
        eprintln!("totals do not match: {}", named.join(", "));
    }
    Ok(if matched {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

/// A breakdown line's name: "clr_type 14", or "fund 310100/I10" ("fund 310100" for the
/// ordinary cap).
fn line_name(line: &ReconciliationLineBreak) -> String {
    if line.fund_pay_type.is_empty() {
        format!("clr_type {}", line.clearing_type)
    } else if line.disease_code.is_empty() {
        format!("fund {}", line.fund_pay_type)
    } else {
        format!("fund {}/{}", line.fund_pay_type, line.disease_code)
    }
}

/// Whether a line was compared and how: "matched", "mismatched", or "not submitted" when the
/// submitter sent no breakdown of its kind.
fn line_result(compared: bool, mismatched: bool) -> String {
    match (compared, mismatched) {
        (false, _) => "not submitted",
        (true, false) => "matched",
        (true, true) => "mismatched",
    }
    .to_owned()
}

/// The ledger's totals by clearing type beside the submitter's, one row per type either holds.
fn clearing_lines_table(reply: &ReconcileTotalsResponse) -> Table {
    let submitted = reply.submitted.clone().unwrap_or_default().clearing_types;
    let ledger = reply.ledger.clone().unwrap_or_default().clearing_types;
    let mut types: Vec<i32> = submitted
        .iter()
        .chain(&ledger)
        .map(|line| line.clearing_type)
        .collect();
    types.sort_unstable();
    types.dedup();
    let mut table = Table::new(
        "by clearing type",
        &[
            "clr_type",
            "side",
            "count",
            "total_amount",
            "fund_pay",
            "account_pay",
            "cash_pay",
            "result",
        ],
    );
    for clearing_type in types {
        let mismatched = reply
            .mismatched_lines
            .iter()
            .any(|line| line.fund_pay_type.is_empty() && line.clearing_type == clearing_type);
        let result = line_result(!submitted.is_empty(), mismatched);
        for (side, lines) in [("submitted", &submitted), ("ledger", &ledger)] {
            if side == "submitted" && submitted.is_empty() {
                continue;
            }
            let line = lines
                .iter()
                .find(|line| line.clearing_type == clearing_type)
                .cloned()
                .unwrap_or_else(|| ClearingTypeTotals {
                    clearing_type,
                    total_amount: "0.00".into(),
                    fund_pay: "0.00".into(),
                    account_pay: "0.00".into(),
                    cash_pay: "0.00".into(),
                    ..Default::default()
                });
            table.push(vec![
                clearing_type.to_string(),
                side.to_owned(),
                line.count.to_string(),
                line.total_amount,
                line.fund_pay,
                line.account_pay,
                line.cash_pay,
                result.clone(),
            ]);
        }
    }
    table
}

/// The ledger's fund pay by fund type beside the submitter's, one row per line either holds.
fn fund_lines_table(reply: &ReconcileTotalsResponse) -> Table {
    let submitted = reply.submitted.clone().unwrap_or_default().fund_types;
    let ledger = reply.ledger.clone().unwrap_or_default().fund_types;
    let mut keys: Vec<(String, String)> = submitted
        .iter()
        .chain(&ledger)
        .map(|line| (line.fund_pay_type.clone(), line.disease_code.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    let amount_of = |lines: &[FundTypeTotal], key: &(String, String)| {
        lines
            .iter()
            .find(|line| line.fund_pay_type == key.0 && line.disease_code == key.1)
            .map_or_else(|| "0.00".to_owned(), |line| line.amount.clone())
    };
    let mut table = Table::new(
        "by fund type",
        &[
            "fund_pay_type",
            "disease_code",
            "submitted",
            "ledger",
            "result",
        ],
    );
    for key in keys {
        let mismatched = reply
            .mismatched_lines
            .iter()
            .any(|line| line.fund_pay_type == key.0 && line.disease_code == key.1);
        table.push(vec![
            key.0.clone(),
            key.1.clone(),
            if submitted.is_empty() {
                String::new()
            } else {
                amount_of(&submitted, &key)
            },
            amount_of(&ledger, &key),
            line_result(!submitted.is_empty(), mismatched),
        ]);
    }
    table
}

/// "RECONCILIATION_FIGURE_FUND_PAY" -> "fund_pay", the name the tables use.
fn figure_name(full: &str) -> String {
    enum_name(full, "RECONCILIATION_FIGURE_")
}

/// The lowercase name of a prost enum value without its type prefix.
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_lowercase()
}

/// One row of the submitter's CSV file, as the header names its columns.
#[derive(Debug, serde::Deserialize)]
struct CsvRow {
    settlement_id: String,
    visit_id: String,
    person_no: String,
    settlement_date: String,
    total_amount: String,
    fund_pay: String,
    account_pay: String,
    cash_pay: String,
    cancellation: CsvBool,
    #[serde(default)]
    message_id: String,
}

/// "true"/"false", "1"/"0" or "y"/"n": spreadsheets and the national files write it differently.
#[derive(Debug)]
struct CsvBool(bool);

impl<'de> serde::Deserialize<'de> for CsvBool {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "y" | "yes" => Ok(CsvBool(true)),
            "false" | "0" | "n" | "no" | "" => Ok(CsvBool(false)),
            other => Err(serde::de::Error::custom(format!(
                "cancellation must be true or false, not {other:?}"
            ))),
        }
    }
}

impl From<CsvRow> for DetailRow {
    fn from(row: CsvRow) -> Self {
        DetailRow {
            settlement_id: row.settlement_id,
            visit_id: row.visit_id,
            person_no: row.person_no,
            settlement_date: row.settlement_date,
            total_amount: row.total_amount,
            fund_pay: row.fund_pay,
            account_pay: row.account_pay,
            cash_pay: row.cash_pay,
            cancellation: row.cancellation.0,
            message_id: row.message_id,
        }
    }
}

/// Reads the file in batches on a blocking thread and sends them down `sender`; the channel's
/// bound keeps the reader at most a few batches ahead of the network. Returns the rows read.
fn read_batches(
    file: PathBuf,
    skip_through: Option<String>,
    sender: mpsc::Sender<ReconcileDetailsRequest>,
    bar: indicatif::ProgressBar,
) -> anyhow::Result<u64> {
    let handle = File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(handle));
    let mut batch = Vec::with_capacity(BATCH_ROWS_MAX);
    let mut previous: Option<String> = None;
    let mut rows_read = 0_u64;
    for (index, record) in reader.deserialize::<CsvRow>().enumerate() {
        // The header is line 1.
        let line = index + 2;
        let row: DetailRow = record
            .with_context(|| format!("{} line {line}", file.display()))?
            .into();
        // Checked again: the file may have changed since `check_file` read it.
        if let Some(previous) = &previous
            && row.settlement_id < *previous
        {
            bail!(
                "{} line {line}: settlement_id {} comes before {previous}; sort the file by settlement_id",
                file.display(),
                row.settlement_id
            );
        }
        previous = Some(row.settlement_id.clone());
        rows_read += 1;
        // On a resume the ledger already compared every row up to the checkpoint.
        if skip_through
            .as_ref()
            .is_some_and(|last| row.settlement_id <= *last)
        {
            continue;
        }
        batch.push(row);
        if batch.len() == BATCH_ROWS_MAX {
            let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS_MAX));
            if !send_batch(&sender, rows) {
                // The stream ended early; its error is what the operator needs to see.
                return Ok(rows_read);
            }
            bar.set_position(rows_read);
        }
    }
    if !batch.is_empty() {
        send_batch(&sender, batch);
    }
    bar.set_position(rows_read);
    Ok(rows_read)
}

/// Sends one batch; false when the stream has already ended.
fn send_batch(sender: &mpsc::Sender<ReconcileDetailsRequest>, rows: Vec<DetailRow>) -> bool {
    sender
        .blocking_send(ReconcileDetailsRequest {
            item: Some(Sent::Rows(DetailRowBatch { rows })),
        })
        .is_ok()
}

/// Reads the whole file once before the run opens: every row must parse and the settlement ids
/// must ascend, or the ledger would record a run cut short by a bad line. Keeps one row at a
/// time, and gives the row count for the progress bar.
fn check_file(file: &PathBuf) -> anyhow::Result<u64> {
    let handle = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(handle));
    let mut previous: Option<String> = None;
    let mut count = 0;
    for (index, record) in reader.deserialize::<CsvRow>().enumerate() {
        // The header is line 1.
        let line = index + 2;
        let row = record.with_context(|| format!("{} line {line}", file.display()))?;
        if let Some(previous) = &previous
            && row.settlement_id < *previous
        {
            bail!(
                "{} line {line}: settlement_id {} comes before {previous}; sort the file by settlement_id",
                file.display(),
                row.settlement_id
            );
        }
        previous = Some(row.settlement_id);
        count += 1;
    }
    Ok(count)
}

const ROW_HEADERS: [&str; 8] = [
    "settlement_id",
    "result",
    "figures",
    "submitted_date",
    "ledger_date",
    "submitted_insured_pay",
    "ledger_insured_pay",
    "visit_id",
];

fn row_cells(row: &DetailRowResult) -> Vec<String> {
    let insured_pay = |detail: Option<&DetailRow>| {
        detail
            .map(|d| format!("{}/{}", d.fund_pay, d.account_pay))
            .unwrap_or_default()
    };
    vec![
        row.settlement_id.clone(),
        enum_name(row.result().as_str_name(), "DETAIL_RESULT_"),
        row.mismatched_figures()
            .map(|figure| figure_name(figure.as_str_name()))
            .collect::<Vec<_>>()
            .join(" "),
        row.submitted
            .as_ref()
            .map(|d| d.settlement_date.clone())
            .unwrap_or_default(),
        row.ledger
            .as_ref()
            .map(|d| d.settlement_date.clone())
            .unwrap_or_default(),
        insured_pay(row.submitted.as_ref()),
        insured_pay(row.ledger.as_ref()),
        row.submitted
            .as_ref()
            .or(row.ledger.as_ref())
            .map(|d| d.visit_id.clone())
            .unwrap_or_default(),
    ]
}

fn summary_table(summary: &ReconcileDetailsSummary, message_id: &str) -> Table {
    let mut table = Table::new("summary", &["figure", "value"]);
    for (name, value) in [
        ("message_id", message_id.to_owned()),
        (
            "result",
            enum_name(summary.result().as_str_name(), "RECONCILIATION_RESULT_"),
        ),
        ("rows_submitted", summary.rows_submitted.to_string()),
        ("rows_in_ledger", summary.rows_in_ledger.to_string()),
        ("matched", summary.matched.to_string()),
        ("missing_in_ledger", summary.missing_in_ledger.to_string()),
        (
            "missing_in_submission",
            summary.missing_in_submission.to_string(),
        ),
        ("duplicate", summary.duplicate.to_string()),
        ("amount_mismatch", summary.amount_mismatch.to_string()),
        ("timing", summary.timing.to_string()),
    ] {
        table.push(vec![name.to_owned(), value]);
    }
    table
}

/// Prints rows as they arrive in CSV and JSON (one object per line), so a day of a million rows
/// is never held; a readable table keeps at most `TABLE_BREAKS_MAX` of them.
struct RowPrinter {
    format: Format,
    csv: Option<csv::Writer<std::io::Stdout>>,
    table: Table,
    not_shown: u64,
}

impl RowPrinter {
    fn new(format: Format) -> anyhow::Result<Self> {
        let csv = match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(std::io::stdout());
                writer.write_record(ROW_HEADERS)?;
                Some(writer)
            }
            _ => None,
        };
        Ok(RowPrinter {
            format,
            csv,
            table: Table::new("rows", &ROW_HEADERS),
            not_shown: 0,
        })
    }

    fn row(&mut self, row: &DetailRowResult) -> anyhow::Result<()> {
        let cells = row_cells(row);
        match self.format {
            Format::Table if self.table.rows.len() < TABLE_BREAKS_MAX => self.table.push(cells),
            Format::Table => self.not_shown += 1,
            Format::Csv => self
                .csv
                .as_mut()
                .expect("csv writer")
                .write_record(&cells)?,
            Format::Json => {
                let object: serde_json::Map<String, serde_json::Value> = ROW_HEADERS
                    .iter()
                    .zip(cells)
                    .map(|(header, cell)| ((*header).to_owned(), cell.into()))
                    .collect();
                println!("{}", serde_json::Value::from(object));
            }
        }
        Ok(())
    }

    fn finish(mut self, summary: &ReconcileDetailsSummary, message_id: &str) -> anyhow::Result<()> {
        let summary = summary_table(summary, message_id);
        match self.format {
            Format::Table => {
                output::print(Format::Table, &[self.table, summary])?;
                if self.not_shown > 0 {
                    println!(
                        "{} more rows not shown; use --format csv to get them all",
                        self.not_shown
                    );
                }
            }
            Format::Csv => {
                let mut writer = self.csv.take().expect("csv writer");
                writer.flush()?;
                drop(writer);
                println!();
                output::print(Format::Csv, &[summary])?;
            }
            Format::Json => {
                let object: serde_json::Map<String, serde_json::Value> = summary
                    .rows
                    .into_iter()
                    .map(|mut cells| {
                        let value = cells.pop().expect("a value");
                        let name = cells.pop().expect("a name");
                        (name, value.into())
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({ "summary": serde_json::Value::from(object) })
                );
            }
        }
        Ok(())
    }
}

async fn details(ledger_args: &LedgerArgs, args: DetailsArgs) -> anyhow::Result<Outcome> {
    let mut ledger = ledger_args.connect().await?;
    let range = &args.range;
    let message_id = output::message_id(&range.message_id, "RECONCILE-DETAILS");
    let total_rows = check_file(&args.file)?;
    let bar = output::progress(total_rows, "rows");

    let (sender, receiver) = mpsc::channel(BATCHES_QUEUED_MAX);
    let header = ReconcileDetailsHeader {
        message_id: message_id.clone(),
        scope: range.scope(),
        insurance_type: range.insurance_type.unwrap_or_default(),
        clearing_type: range.clearing_type.unwrap_or_default(),
        from_date: range.from.clone(),
        to_date: range.to_date(),
        breaks_only: !args.all_rows,
        resume_token: args.resume_token.clone().unwrap_or_default(),
        operator_id: range.operator.clone(),
    };
    sender
        .send(ReconcileDetailsRequest {
            item: Some(Sent::Header(header)),
        })
        .await
        .expect("the receiver is alive");

    let mut stream = ledger
        .reconcile_details(ReceiverStream::new(receiver))
        .await
        .map_err(output::refused("the ledger refused the run"))?
        .into_inner();

    // A resumed run starts with a checkpoint naming the last row compared: the reader starts
    // after it. A new run reads from the first row.
    let mut skip_through = None;
    let mut first = None;
    if args.resume_token.is_some() {
        match stream.next().await {
            Some(Ok(reply)) => {
                if let Some(Received::Checkpoint(checkpoint)) = &reply.item {
                    skip_through = Some(checkpoint.last_settlement_id.clone());
                }
                first = Some(reply);
            }
            Some(Err(status)) => {
                return Err(output::refused("the ledger refused the resume")(status));
            }
            None => bail!("the ledger ended the stream before its first checkpoint"),
        }
    }
    let reader = {
        let file = args.file.clone();
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || read_batches(file, skip_through, sender, bar))
    };

    let mut printer = RowPrinter::new(ledger_args.format)?;
    let mut summary = None;
    let mut last_checkpoint = None;
    let mut replies = tokio_stream::iter(first.map(Ok)).chain(stream);
    while let Some(reply) = replies.next().await {
        let reply = match reply {
            Ok(reply) => reply,
            Err(status) => {
                bar.abandon();
                // A failed read of the file is the cause; the stream only saw its end.
                if reader.is_finished()
                    && let Ok(Err(error)) = reader.await
                {
                    return Err(error);
                }
                let hint = match &last_checkpoint {
                    Some(token) => {
                        format!("; resume with --message-id {message_id} --resume-token {token}")
                    }
                    None => String::new(),
                };
                return Err(output::refused(&format!(
                    "the detail reconciliation stopped{hint}"
                ))(status));
            }
        };
        match reply.item {
            Some(Received::Row(row)) => printer.row(&row)?,
            Some(Received::Checkpoint(checkpoint)) => {
                last_checkpoint = Some(checkpoint.resume_token);
            }
            Some(Received::Summary(done)) => summary = Some(done),
            None => {}
        }
    }
    bar.finish_and_clear();
    reader.await.context("the file reader panicked")??;
    let summary = summary.context("the ledger ended the stream without a summary")?;
    let matched = summary.result() == ReconciliationResult::Matched;
    printer.finish(&summary, &message_id)?;
    Ok(if matched {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
