//! `yitong journal verify`: recompute the ledger's hash chain and name the first altered entry.

use clap::{Args, Subcommand};
use yitong_proto::ledger::v1::{GetJournalDigestRequest, VerifyJournalRequest};

use crate::output::{self, LedgerArgs, Outcome, Table};

#[derive(Debug, Args)]
pub struct JournalCommand {
    #[command(subcommand)]
    action: JournalAction,
    #[command(flatten)]
    ledger: LedgerArgs,
}

#[derive(Debug, Subcommand)]
enum JournalAction {
    /// Recompute the hash chain from the first entry; exits 1 when an entry was altered.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Verify entries 1 to this sequence number; the whole journal when not given.
    #[arg(long)]
    up_to: Option<u64>,
}

pub async fn run(command: JournalCommand) -> anyhow::Result<Outcome> {
    let JournalAction::Verify(args) = command.action;
    let ledger_args = &command.ledger;
    let mut ledger = ledger_args.connect().await?;
    // The digest is read first: the verification then covers at least the head it names.
    let digest = ledger
        .get_journal_digest(output::request(
            GetJournalDigestRequest {},
            ledger_args.timeout(),
        ))
        .await
        .map_err(output::refused("the ledger refused the digest"))?
        .into_inner();
    let verified = ledger
        .verify_journal(output::request(
            VerifyJournalRequest {
                up_to_sequence: args.up_to.unwrap_or(0),
            },
            ledger_args.timeout(),
        ))
        .await
        .map_err(output::refused("the ledger refused the verification"))?
        .into_inner();
    let mut table = Table::new("journal", &["figure", "value"]);
    for (name, value) in [
        ("intact", verified.intact.to_string()),
        ("entries_checked", verified.entries_checked.to_string()),
        ("head_hash", verified.head_hash.clone()),
        ("digest_head_hash", digest.head_hash),
        ("digest_entry_count", digest.entry_count.to_string()),
        (
            "digest_head_recorded_at",
            output::timestamp(digest.head_recorded_at.as_ref()),
        ),
        (
            "first_altered_sequence",
            verified.first_altered_sequence.to_string(),
        ),
        ("detail", verified.detail.clone()),
    ] {
        table.push(vec![name.to_owned(), value]);
    }
    output::print(ledger_args.format, &[table])?;
    if verified.intact {
        return Ok(Outcome::Clean);
    }
    eprintln!(
        "journal altered: entry {} ({})",
        verified.first_altered_sequence, verified.detail
    );
    Ok(Outcome::Findings)
}
