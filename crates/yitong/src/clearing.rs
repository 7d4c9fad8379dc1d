//! `yitong clearing extract|confirm|rollback|apply|cancel|close|statement`: the monthly clearing
//! cycle as a treatment city's bureau and the clearing house run it (national 3260-3262,
//! 3203/3204).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use yitong_proto::ledger::v1::{
    ApplyClearingRequest, CancelClearingApplicationRequest, CityPairObligation,
    ClearingApplication, ClearingDetail, ClearingPeriod, ClearingStatement, ClearingTotals,
    CloseClearingPeriodRequest, ConfirmClearingDetailsRequest, ConfirmClearingStatementRequest,
    ConfirmationStatus, DetailDecision, GetClearingStatementRequest, ListClearingDetailsRequest,
    NetPosition, PaymentInstruction, RollbackClearingConfirmationRequest, SettlementFundPayment,
};

use crate::output::{self, LedgerArgs, Outcome, Table};
use crate::reconcile::enum_name;

/// Rows per ListClearingDetails page and decisions per ConfirmClearingDetails call: the
/// ledger's maximum for both.
const PAGE_ROWS_MAX: usize = 1_000;

#[derive(Debug, Args)]
pub struct ClearingCommand {
    #[command(subcommand)]
    action: ClearingAction,
    #[command(flatten)]
    ledger: LedgerArgs,
}

#[derive(Debug, Subcommand)]
enum ClearingAction {
    /// Pull a treatment city's cross-city rows of a month, every page.
    Extract(ExtractArgs),
    /// Include or exclude rows of a month, from a CSV file or flags.
    Confirm(ConfirmArgs),
    /// Return confirmed rows to unconfirmed, before the city applies.
    Rollback(RollbackArgs),
    /// Apply for the month's clearing with the city's totals of its included rows.
    Apply(ApplyArgs),
    /// Withdraw a clearing application before the period closes.
    Cancel(CancelArgs),
    /// Close a month at the clearing house: obligations, net positions, payments, statements.
    Close(CloseArgs),
    /// A city's statement for a closed month; --confirm confirms it.
    Statement(StatementArgs),
}

/// The month and the treatment city most commands act on.
#[derive(Debug, Args)]
struct CityMonth {
    /// The month, YYYY-MM.
    #[arg(long, value_parser = output::parse_period)]
    period: ClearingPeriod,
    /// Region code of the treatment city.
    #[arg(long)]
    treatment_city: String,
}

/// Who acts and under which idempotency key.
#[derive(Debug, Args)]
struct Operator {
    /// Bureau or clearing-house operator, for the audit trail.
    #[arg(long)]
    operator: String,
    /// Idempotency key; a fresh one when not given. Give the same to retry a lost answer.
    #[arg(long)]
    message_id: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Confirmation {
    Unconfirmed,
    Included,
    Excluded,
}

#[derive(Debug, Args)]
struct ExtractArgs {
    #[command(flatten)]
    month: CityMonth,
    /// Only rows owed by this insured city.
    #[arg(long)]
    insured_city: Option<String>,
    /// Only rows in this confirmation state.
    #[arg(long, value_enum)]
    confirmation: Option<Confirmation>,
}

#[derive(Debug, Args)]
struct ConfirmArgs {
    #[command(flatten)]
    month: CityMonth,
    #[command(flatten)]
    operator: Operator,
    /// CSV of decisions with the header settlement_id, decision (include or exclude), reason.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Include this row (repeatable).
    #[arg(long)]
    include: Vec<String>,
    /// Exclude this row, as SETTLEMENT_ID=REASON (repeatable).
    #[arg(long)]
    exclude: Vec<String>,
    /// Include every row still unconfirmed.
    #[arg(long)]
    include_rest: bool,
}

#[derive(Debug, Args)]
struct RollbackArgs {
    #[command(flatten)]
    month: CityMonth,
    #[command(flatten)]
    operator: Operator,
    /// Why, for the audit trail.
    #[arg(long)]
    reason: String,
    /// A row to return to unconfirmed (repeatable); every confirmed row when none is given.
    #[arg(long)]
    settlement_id: Vec<String>,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    month: CityMonth,
    #[command(flatten)]
    operator: Operator,
    /// Number of included rows.
    #[arg(long)]
    count: u64,
    /// Total medical fee of the included rows, in yuan.
    #[arg(long, allow_hyphen_values = true)]
    total_amount: String,
    /// What the insured cities pay (fund plus account pay), in yuan.
    #[arg(long, allow_hyphen_values = true)]
    insured_city_pay: String,
    /// Fund pay, in yuan.
    #[arg(long, allow_hyphen_values = true)]
    fund_pay: String,
    /// Personal-account pay, in yuan.
    #[arg(long, allow_hyphen_values = true)]
    account_pay: String,
}

#[derive(Debug, Args)]
struct CancelArgs {
    /// The application to withdraw.
    #[arg(long)]
    application_id: String,
    /// Why, for the audit trail.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    operator: Operator,
}

#[derive(Debug, Args)]
struct CloseArgs {
    /// The month to close, YYYY-MM.
    #[arg(long, value_parser = output::parse_period)]
    period: ClearingPeriod,
    #[command(flatten)]
    operator: Operator,
}

#[derive(Debug, Args)]
struct StatementArgs {
    /// The closed month, YYYY-MM.
    #[arg(long, value_parser = output::parse_period)]
    period: ClearingPeriod,
    /// Region code of the city.
    #[arg(long)]
    city: String,
    /// Confirm the statement as the city's bureau (needs --operator).
    #[arg(long, requires = "operator")]
    confirm: bool,
    /// Bureau operator confirming.
    #[arg(long)]
    operator: Option<String>,
    /// Idempotency key of the confirmation; a fresh one when not given.
    #[arg(long)]
    message_id: Option<String>,
}

pub async fn run(command: ClearingCommand) -> anyhow::Result<Outcome> {
    let args = &command.ledger;
    let sections = match command.action {
        ClearingAction::Extract(extract_args) => extract(args, extract_args).await?,
        ClearingAction::Confirm(confirm_args) => confirm(args, confirm_args).await?,
        ClearingAction::Rollback(rollback_args) => rollback(args, rollback_args).await?,
        ClearingAction::Apply(apply_args) => apply(args, apply_args).await?,
        ClearingAction::Cancel(cancel_args) => cancel(args, cancel_args).await?,
        ClearingAction::Close(close_args) => close(args, close_args).await?,
        ClearingAction::Statement(statement_args) => statement(args, statement_args).await?,
    };
    output::print(args.format, &sections)?;
    Ok(Outcome::Clean)
}

/// Every row of the month for the city in the given state, page after page.
async fn list_all(
    args: &LedgerArgs,
    month: &CityMonth,
    insured_city: Option<&str>,
    confirmation: Option<ConfirmationStatus>,
) -> anyhow::Result<Vec<ClearingDetail>> {
    let mut ledger = args.connect().await?;
    let mut details = Vec::new();
    let mut page_token = String::new();
    let mut bar = None;
    loop {
        let page = ledger
            .list_clearing_details(output::request(
                ListClearingDetailsRequest {
                    period: Some(month.period),
                    treatment_city: month.treatment_city.clone(),
                    insured_city: insured_city.unwrap_or_default().to_owned(),
                    confirmation: confirmation.map_or(0, |status| status as i32),
                    page_size: PAGE_ROWS_MAX as u32,
                    page_token: page_token.clone(),
                },
                args.timeout(),
            ))
            .await
            .map_err(output::refused("the ledger refused the extract"))?
            .into_inner();
        let bar = bar.get_or_insert_with(|| output::progress(page.total_rows, "rows"));
        details.extend(page.details);
        bar.set_position(details.len() as u64);
        if page.next_page_token.is_empty() {
            bar.finish_and_clear();
            return Ok(details);
        }
        page_token = page.next_page_token;
    }
}

async fn extract(args: &LedgerArgs, extract_args: ExtractArgs) -> anyhow::Result<Vec<Table>> {
    let confirmation = extract_args.confirmation.map(|state| match state {
        Confirmation::Unconfirmed => ConfirmationStatus::Unconfirmed,
        Confirmation::Included => ConfirmationStatus::Included,
        Confirmation::Excluded => ConfirmationStatus::Excluded,
    });
    let details = list_all(
        args,
        &extract_args.month,
        extract_args.insured_city.as_deref(),
        confirmation,
    )
    .await?;
    let mut table = Table::new(
        "clearing details",
        &[
            "settlement_id",
            "visit_id",
            "person_no",
            "insured_city",
            "treatment_city",
            "institution_code",
            "settlement_date",
            "total_amount",
            "insured_city_pay",
            "fund_pay",
            "account_pay",
            "cancellation",
            "original_settlement_id",
            "adjustment",
            "carried_over",
            "confirmation",
            "exclusion_reason",
            "clr_type",
            "fund_payments",
        ],
    );
    for detail in details {
        let fund_payments = fund_payments_text(&detail.fund_payments);
        let confirmation = enum_name(detail.confirmation().as_str_name(), "CONFIRMATION_STATUS_");
        table.push(vec![
            detail.settlement_id,
            detail.visit_id,
            detail.person_no,
            detail.insured_city,
            detail.treatment_city,
            detail.institution_code,
            detail.settlement_date,
            detail.total_amount,
            detail.insured_city_pay,
            detail.fund_pay,
            detail.account_pay,
            detail.cancellation.to_string(),
            detail.original_settlement_id,
            detail.adjustment.to_string(),
            detail.carried_over.to_string(),
            confirmation,
            detail.exclusion_reason,
            detail.clearing_type.to_string(),
            fund_payments,
        ]);
    }
    Ok(vec![table])
}

/// One line of a decisions file.
#[derive(Debug, serde::Deserialize)]
struct DecisionRow {
    settlement_id: String,
    decision: String,
    #[serde(default)]
    reason: String,
}

fn decision(settlement_id: String, include: bool, reason: String) -> DetailDecision {
    let status = if include {
        ConfirmationStatus::Included
    } else {
        ConfirmationStatus::Excluded
    };
    DetailDecision {
        settlement_id,
        decision: status as i32,
        reason,
    }
}

fn read_decisions(file: &PathBuf) -> anyhow::Result<Vec<DetailDecision>> {
    let mut reader =
        csv::Reader::from_path(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut decisions = Vec::new();
    for (index, row) in reader.deserialize::<DecisionRow>().enumerate() {
        let line = index + 2;
        let row = row.with_context(|| format!("{} line {line}", file.display()))?;
        let include = match row.decision.trim().to_ascii_lowercase().as_str() {
            "include" | "included" | "1" => true,
            "exclude" | "excluded" | "0" => false,
            other => bail!(
                "{} line {line}: decision must be include or exclude, not {other:?}",
                file.display()
            ),
        };
        decisions.push(decision(row.settlement_id, include, row.reason));
    }
    Ok(decisions)
}

async fn confirm(args: &LedgerArgs, confirm_args: ConfirmArgs) -> anyhow::Result<Vec<Table>> {
    let mut decisions = match &confirm_args.file {
        Some(file) => read_decisions(file)?,
        None => Vec::new(),
    };
    for id in &confirm_args.include {
        decisions.push(decision(id.clone(), true, String::new()));
    }
    for flag in &confirm_args.exclude {
        let (id, reason) = flag
            .split_once('=')
            .with_context(|| format!("--exclude {flag}: must be SETTLEMENT_ID=REASON"))?;
        decisions.push(decision(id.to_owned(), false, reason.to_owned()));
    }
    if confirm_args.include_rest {
        let decided: std::collections::BTreeSet<String> = decisions
            .iter()
            .map(|decision| decision.settlement_id.clone())
            .collect();
        let unconfirmed = list_all(
            args,
            &confirm_args.month,
            None,
            Some(ConfirmationStatus::Unconfirmed),
        )
        .await?;
        decisions.extend(
            unconfirmed
                .into_iter()
                .filter(|detail| !decided.contains(&detail.settlement_id))
                .map(|detail| decision(detail.settlement_id, true, String::new())),
        );
    }
    if decisions.is_empty() {
        bail!("no decisions: give --file, --include, --exclude or --include-rest");
    }
    let mut ledger = args.connect().await?;
    let base = output::message_id(&confirm_args.operator.message_id, "CONFIRM");
    let (mut included, mut excluded, mut unconfirmed_left) = (0_u64, 0_u64, 0_u64);
    // One call per thousand decisions, each its own message id derived from the base, so a
    // retry with the same --message-id replays every batch already applied.
    for (index, chunk) in decisions.chunks(PAGE_ROWS_MAX).enumerate() {
        let message_id = if decisions.len() <= PAGE_ROWS_MAX {
            base.clone()
        } else {
            format!("{base}.{index}")
        };
        let reply = ledger
            .confirm_clearing_details(output::request(
                ConfirmClearingDetailsRequest {
                    message_id,
                    period: Some(confirm_args.month.period),
                    treatment_city: confirm_args.month.treatment_city.clone(),
                    decisions: chunk.to_vec(),
                    operator_id: confirm_args.operator.operator.clone(),
                },
                args.timeout(),
            ))
            .await
            .map_err(output::refused(&format!(
                "the ledger refused decisions batch {}",
                index + 1
            )))?
            .into_inner();
        included += u64::from(reply.included);
        excluded += u64::from(reply.excluded);
        unconfirmed_left = reply.unconfirmed_left;
    }
    Ok(vec![figures(
        "confirmation",
        [
            ("included", included.to_string()),
            ("excluded", excluded.to_string()),
            ("unconfirmed_left", unconfirmed_left.to_string()),
        ],
    )])
}

fn figures<const N: usize>(title: &'static str, pairs: [(&str, String); N]) -> Table {
    let mut table = Table::new(title, &["figure", "value"]);
    for (name, value) in pairs {
        table.push(vec![name.to_owned(), value]);
    }
    table
}

async fn rollback(args: &LedgerArgs, rollback_args: RollbackArgs) -> anyhow::Result<Vec<Table>> {
    let mut ledger = args.connect().await?;
    let reply = ledger
        .rollback_clearing_confirmation(output::request(
            RollbackClearingConfirmationRequest {
                message_id: output::message_id(&rollback_args.operator.message_id, "ROLLBACK"),
                period: Some(rollback_args.month.period),
                treatment_city: rollback_args.month.treatment_city.clone(),
                settlement_ids: rollback_args.settlement_id,
                reason: rollback_args.reason,
                operator_id: rollback_args.operator.operator,
            },
            args.timeout(),
        ))
        .await
        .map_err(output::refused("the ledger refused the rollback"))?
        .into_inner();
    Ok(vec![figures(
        "rollback",
        [
            ("rolled_back", reply.rolled_back.to_string()),
            ("unconfirmed_left", reply.unconfirmed_left.to_string()),
        ],
    )])
}

fn application_table(application: Option<ClearingApplication>) -> Table {
    let application = application.unwrap_or_default();
    let totals = application.totals.clone().unwrap_or_default();
    let period = application.period.unwrap_or_default();
    figures(
        "application",
        [
            ("application_id", application.application_id.clone()),
            ("period", period_text(&period)),
            ("treatment_city", application.treatment_city.clone()),
            (
                "status",
                enum_name(
                    application.status().as_str_name(),
                    "CLEARING_APPLICATION_STATUS_",
                ),
            ),
            ("count", totals.count.to_string()),
            ("total_amount", totals.total_amount),
            ("insured_city_pay", totals.insured_city_pay),
            ("fund_pay", totals.fund_pay),
            ("account_pay", totals.account_pay),
            (
                "applied_at",
                output::timestamp(application.applied_at.as_ref()),
            ),
            (
                "cancelled_at",
                output::timestamp(application.cancelled_at.as_ref()),
            ),
            ("operator_id", application.operator_id),
        ],
    )
}

fn period_text(period: &ClearingPeriod) -> String {
    format!("{:04}-{:02}", period.year, period.month)
}

async fn apply(args: &LedgerArgs, apply_args: ApplyArgs) -> anyhow::Result<Vec<Table>> {
    let mut ledger = args.connect().await?;
    let reply = ledger
        .apply_clearing(output::request(
            ApplyClearingRequest {
                message_id: output::message_id(&apply_args.operator.message_id, "APPLY"),
                period: Some(apply_args.month.period),
                treatment_city: apply_args.month.treatment_city.clone(),
                totals: Some(ClearingTotals {
                    count: apply_args.count,
                    total_amount: apply_args.total_amount,
                    insured_city_pay: apply_args.insured_city_pay,
                    fund_pay: apply_args.fund_pay,
                    account_pay: apply_args.account_pay,
                }),
                operator_id: apply_args.operator.operator,
            },
            args.timeout(),
        ))
        .await
        .map_err(output::refused("the ledger refused the application"))?
        .into_inner();
    Ok(vec![application_table(reply.application)])
}

async fn cancel(args: &LedgerArgs, cancel_args: CancelArgs) -> anyhow::Result<Vec<Table>> {
    let mut ledger = args.connect().await?;
    let reply = ledger
        .cancel_clearing_application(output::request(
            CancelClearingApplicationRequest {
                message_id: output::message_id(&cancel_args.operator.message_id, "CANCEL"),
                application_id: cancel_args.application_id,
                reason: cancel_args.reason,
                operator_id: cancel_args.operator.operator,
            },
            args.timeout(),
        ))
        .await
        .map_err(output::refused("the ledger refused the cancellation"))?
        .into_inner();
    Ok(vec![application_table(reply.application)])
}

const OBLIGATION_HEADERS: [&str; 7] = [
    "insured_city",
    "treatment_city",
    "count",
    "fund_pay",
    "account_pay",
    "adjustments",
    "amount",
];

fn obligations(title: &'static str, rows: Vec<CityPairObligation>) -> Table {
    let mut table = Table::new(title, &OBLIGATION_HEADERS);
    for row in rows {
        table.push(vec![
            row.insured_city,
            row.treatment_city,
            row.count.to_string(),
            row.fund_pay,
            row.account_pay,
            row.adjustments,
            row.amount,
        ]);
    }
    table
}

/// A row's fund lines in one cell: "310100/I10:30.00;310100:12.00" (no disease: the ordinary
/// cap), in the order the ledger gives them.
fn fund_payments_text(lines: &[SettlementFundPayment]) -> String {
    lines
        .iter()
        .map(|line| {
            if line.disease_code.is_empty() {
                format!("{}:{}", line.fund_pay_type, line.amount)
            } else {
                format!(
                    "{}/{}:{}",
                    line.fund_pay_type, line.disease_code, line.amount
                )
            }
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// The obligations' included rows by clearing type, one row per pair and type.
fn obligations_by_clearing_type(title: &'static str, rows: &[CityPairObligation]) -> Table {
    let mut table = Table::new(
        title,
        &[
            "insured_city",
            "treatment_city",
            "clr_type",
            "count",
            "total_amount",
            "fund_pay",
            "account_pay",
            "cash_pay",
        ],
    );
    for row in rows {
        for line in &row.clearing_types {
            table.push(vec![
                row.insured_city.clone(),
                row.treatment_city.clone(),
                line.clearing_type.to_string(),
                line.count.to_string(),
                line.total_amount.clone(),
                line.fund_pay.clone(),
                line.account_pay.clone(),
                line.cash_pay.clone(),
            ]);
        }
    }
    table
}

/// The obligations' fund pay by fund type and disease, one row per pair and line.
fn obligations_by_fund_type(title: &'static str, rows: &[CityPairObligation]) -> Table {
    let mut table = Table::new(
        title,
        &[
            "insured_city",
            "treatment_city",
            "fund_pay_type",
            "disease_code",
            "amount",
        ],
    );
    for row in rows {
        for line in &row.fund_types {
            table.push(vec![
                row.insured_city.clone(),
                row.treatment_city.clone(),
                line.fund_pay_type.clone(),
                line.disease_code.clone(),
                line.amount.clone(),
            ]);
        }
    }
    table
}

fn net_positions(rows: impl IntoIterator<Item = NetPosition>) -> Table {
    let mut table = Table::new("net positions", &["city", "receivable", "payable", "net"]);
    for row in rows {
        table.push(vec![row.city, row.receivable, row.payable, row.net]);
    }
    table
}

fn payments(rows: Vec<PaymentInstruction>) -> Table {
    let mut table = Table::new(
        "payment instructions",
        &["payer_city", "payee_city", "amount"],
    );
    for row in rows {
        table.push(vec![row.payer_city, row.payee_city, row.amount]);
    }
    table
}

/// The least deadline of a close, which reads the whole month: tens of seconds at ten million
/// journal entries (BENCHMARKS.md). `--timeout-secs` can lengthen it, not shorten it.
const CLOSE_TIMEOUT_MIN: std::time::Duration = std::time::Duration::from_secs(600);

async fn close(args: &LedgerArgs, close_args: CloseArgs) -> anyhow::Result<Vec<Table>> {
    let mut ledger = args.connect().await?;
    let reply = ledger
        .close_clearing_period(output::request(
            CloseClearingPeriodRequest {
                message_id: output::message_id(&close_args.operator.message_id, "CLOSE"),
                period: Some(close_args.period),
                operator_id: close_args.operator.operator,
            },
            args.timeout().max(CLOSE_TIMEOUT_MIN),
        ))
        .await
        .map_err(output::refused("the ledger refused to close the period"))?
        .into_inner();
    let closed = figures(
        "close",
        [
            (
                "period",
                period_text(&reply.period.unwrap_or(close_args.period)),
            ),
            ("closed_at", output::timestamp(reply.closed_at.as_ref())),
            ("journal_head_hash", reply.journal_head_hash.clone()),
            ("statements", reply.statements.len().to_string()),
        ],
    );
    Ok(vec![
        closed,
        obligations_by_clearing_type("obligations by clearing type", &reply.obligations),
        obligations_by_fund_type("obligations by fund type", &reply.obligations),
        obligations("obligations", reply.obligations),
        net_positions(reply.net_positions),
        payments(reply.payment_instructions),
    ])
}

fn statement_tables(statement: ClearingStatement) -> Vec<Table> {
    let period = statement.period.unwrap_or_default();
    let summary = figures(
        "statement",
        [
            ("city", statement.city.clone()),
            ("period", period_text(&period)),
            (
                "status",
                enum_name(statement.status().as_str_name(), "STATEMENT_STATUS_"),
            ),
            ("fund_balance_before", statement.fund_balance_before.clone()),
            ("fund_balance_after", statement.fund_balance_after.clone()),
            (
                "low_balance_threshold",
                statement.low_balance_threshold.clone(),
            ),
            ("top_up_due", statement.top_up_due.clone()),
            ("excluded_count", statement.excluded_count.to_string()),
            ("excluded_amount", statement.excluded_amount.clone()),
            ("issued_at", output::timestamp(statement.issued_at.as_ref())),
            (
                "confirmed_at",
                output::timestamp(statement.confirmed_at.as_ref()),
            ),
            ("confirmed_by", statement.confirmed_by.clone()),
        ],
    );
    let receivables_by_type =
        obligations_by_clearing_type("receivables by clearing type", &statement.receivables);
    let receivables_by_fund =
        obligations_by_fund_type("receivables by fund type", &statement.receivables);
    let payables_by_type =
        obligations_by_clearing_type("payables by clearing type", &statement.payables);
    let payables_by_fund = obligations_by_fund_type("payables by fund type", &statement.payables);
    vec![
        summary,
        obligations("receivables", statement.receivables),
        receivables_by_type,
        receivables_by_fund,
        obligations("payables", statement.payables),
        payables_by_type,
        payables_by_fund,
        net_positions(statement.net_position),
        payments(statement.payments),
    ]
}

async fn statement(args: &LedgerArgs, statement_args: StatementArgs) -> anyhow::Result<Vec<Table>> {
    let mut ledger = args.connect().await?;
    let statement = if statement_args.confirm {
        ledger
            .confirm_clearing_statement(output::request(
                ConfirmClearingStatementRequest {
                    message_id: output::message_id(&statement_args.message_id, "CONFIRM-STATEMENT"),
                    city: statement_args.city,
                    period: Some(statement_args.period),
                    operator_id: statement_args.operator.unwrap_or_default(),
                },
                args.timeout(),
            ))
            .await
            .map_err(output::refused("the ledger refused the confirmation"))?
            .into_inner()
            .statement
    } else {
        ledger
            .get_clearing_statement(output::request(
                GetClearingStatementRequest {
                    city: statement_args.city,
                    period: Some(statement_args.period),
                },
                args.timeout(),
            ))
            .await
            .map_err(output::refused("the ledger refused the statement"))?
            .into_inner()
            .statement
    };
    Ok(statement_tables(
        statement.context("the ledger answered without a statement")?,
    ))
}
