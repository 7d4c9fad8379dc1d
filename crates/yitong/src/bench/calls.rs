//! The call log (`yitong bench --call-log <file>`): one JSON line per Settle, CancelSettlement
//! and ReverseByMessageId the bench sends, with what it takes to send it again and the answer it
//! got, so `yitong bench --replay <file>` can resend every message id whose answer was lost and
//! check that the network answers it once and for all. "Call log" rather than "journal": the
//! journal is the ledger's.
//!
//! The first line describes the run (its tag, first date and the ledger's balances before it),
//! so the replay can run the end-of-run check of a bench that ran against a network since
//! restarted.

use std::fs::File;
use std::io::{BufRead, BufReader, LineWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use yitong_proto::identity::v1::{Credential, credential::Kind};
use yitong_proto::settlement::v1::{
    CancelSettlementRequest, CancelSettlementResponse, ReverseByMessageIdRequest,
    ReverseByMessageIdResponse, ReversibleTransaction, SettleRequest, SettleResponse, Settlement,
};

use super::check::Snapshot;

/// One line of the call log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum Line {
    /// The first line: the run the calls belong to.
    Run(RunHeader),
    /// One call and its first answer.
    Call(Box<Call>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunHeader {
    pub run_tag: String,
    /// The settlement date the run began on ("YYYY-MM-DD", UTC+8).
    pub from_date: String,
    /// The ledger's settlement accounts before the run.
    pub before: Snapshot,
}

/// A call as sent, and its first answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Call {
    pub sent: Sent,
    /// The gRPC status code of the answer, as tonic spells it ("Ok", "Unavailable").
    pub code: String,
    /// What an OK answer said; absent for a refusal.
    pub answer: Option<Answer>,
}

/// Everything needed to send a call again with the same message id and the same content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "rpc")]
pub enum Sent {
    Settle {
        message_id: String,
        visit_id: String,
        person_no: String,
        card_number: String,
        insurance_type: i32,
        total_amount: String,
        use_personal_account: bool,
        institution_code: String,
    },
    CancelSettlement {
        message_id: String,
        settlement_id: String,
        visit_id: String,
        person_no: String,
        institution_code: String,
        reason: String,
    },
    ReverseByMessageId {
        message_id: String,
        /// The message id of the Settle reversed.
        original_message_id: String,
        institution_code: String,
        reason: String,
    },
}

/// The operator id of every call the bench sends.
const OPERATOR: &str = "bench";

impl Sent {
    pub fn message_id(&self) -> &str {
        match self {
            Sent::Settle { message_id, .. }
            | Sent::CancelSettlement { message_id, .. }
            | Sent::ReverseByMessageId { message_id, .. } => message_id,
        }
    }

    pub fn institution_code(&self) -> &str {
        match self {
            Sent::Settle {
                institution_code, ..
            }
            | Sent::CancelSettlement {
                institution_code, ..
            }
            | Sent::ReverseByMessageId {
                institution_code, ..
            } => institution_code,
        }
    }

    pub fn rpc(&self) -> &'static str {
        match self {
            Sent::Settle { .. } => "Settle",
            Sent::CancelSettlement { .. } => "CancelSettlement",
            Sent::ReverseByMessageId { .. } => "ReverseByMessageId",
        }
    }

    /// The visit the call belongs to: the message id without its step letter.
    pub fn visit_key(&self) -> &str {
        let id = self.message_id();
        id.rsplit_once('-').map_or(id, |(visit, _)| visit)
    }

    pub fn settle_request(&self) -> Option<SettleRequest> {
        let Sent::Settle {
            message_id,
            visit_id,
            person_no,
            card_number,
            insurance_type,
            total_amount,
            use_personal_account,
            institution_code,
        } = self
        else {
            return None;
        };
        Some(SettleRequest {
            message_id: message_id.clone(),
            visit_id: visit_id.clone(),
            person_no: person_no.clone(),
            credential: Some(Credential {
                kind: Some(Kind::CardNumber(card_number.clone())),
            }),
            insurance_type: *insurance_type,
            total_amount: total_amount.clone(),
            use_personal_account: *use_personal_account,
            institution_code: institution_code.clone(),
            operator_id: OPERATOR.into(),
        })
    }

    pub fn cancel_request(&self) -> Option<CancelSettlementRequest> {
        let Sent::CancelSettlement {
            message_id,
            settlement_id,
            visit_id,
            person_no,
            institution_code,
            reason,
        } = self
        else {
            return None;
        };
        Some(CancelSettlementRequest {
            message_id: message_id.clone(),
            settlement_id: settlement_id.clone(),
            visit_id: visit_id.clone(),
            person_no: person_no.clone(),
            institution_code: institution_code.clone(),
            reason: reason.clone(),
            operator_id: OPERATOR.into(),
        })
    }

    pub fn reverse_request(&self) -> Option<ReverseByMessageIdRequest> {
        let Sent::ReverseByMessageId {
            message_id,
            original_message_id,
            institution_code,
            reason,
        } = self
        else {
            return None;
        };
        Some(ReverseByMessageIdRequest {
            message_id: message_id.clone(),
            original_message_id: original_message_id.clone(),
            original_transaction: ReversibleTransaction::Settle as i32,
            institution_code: institution_code.clone(),
            reason: reason.clone(),
            operator_id: OPERATOR.into(),
        })
    }
}

/// What an OK answer said, as far as a replay must repeat it. Empty strings stand for absent
/// parts; [`Answer::is_empty`] says whether the answer carried what its RPC promises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub settlement_id: String,
    pub total_amount: String,
    pub fund_pay: String,
    pub account_pay: String,
    pub cash_pay: String,
    /// The cancellation's own id (CancelSettlement and a reversal that cancelled).
    pub cancellation_id: String,
    /// ReverseByMessageId's outcome, as its enum number; 0 for the other RPCs.
    pub outcome: i32,
}

impl Answer {
    fn of_settlement(settlement: Option<&Settlement>, with_cancellation: bool) -> Answer {
        let Some(settlement) = settlement else {
            return Answer::default();
        };
        let split = settlement.split.clone().unwrap_or_default();
        Answer {
            settlement_id: settlement.settlement_id.clone(),
            total_amount: split.total_amount,
            fund_pay: split.fund_pay,
            account_pay: split.account_pay,
            cash_pay: split.cash_pay,
            // A Settle's answer is the settlement as it was made: a later cancellation is no
            // part of it, so a replay after one is still the same answer.
            cancellation_id: settlement
                .cancellation
                .as_ref()
                .filter(|_| with_cancellation)
                .map(|cancellation| cancellation.cancellation_id.clone())
                .unwrap_or_default(),
            outcome: 0,
        }
    }

    pub fn of_settle(reply: &SettleResponse) -> Answer {
        Answer::of_settlement(reply.settlement.as_ref(), false)
    }

    pub fn of_cancel(reply: &CancelSettlementResponse) -> Answer {
        Answer::of_settlement(reply.settlement.as_ref(), true)
    }

    pub fn of_reverse(reply: &ReverseByMessageIdResponse) -> Answer {
        Answer {
            outcome: reply.outcome,
            ..Answer::of_settlement(reply.settlement.as_ref(), true)
        }
    }

    /// Whether an OK answer lacks what its RPC promises: a settlement for Settle and
    /// CancelSettlement (cancelled, for the latter), an outcome for a reversal and its
    /// cancelled settlement when it cancelled one.
    pub fn is_empty(&self, sent: &Sent) -> bool {
        use yitong_proto::settlement::v1::ReversalOutcome;
        match sent {
            Sent::Settle { .. } => self.settlement_id.is_empty() || self.total_amount.is_empty(),
            Sent::CancelSettlement { .. } => {
                self.settlement_id.is_empty() || self.cancellation_id.is_empty()
            }
            Sent::ReverseByMessageId { .. } => match ReversalOutcome::try_from(self.outcome) {
                Ok(ReversalOutcome::Cancelled) => {
                    self.settlement_id.is_empty() || self.cancellation_id.is_empty()
                }
                Ok(ReversalOutcome::MessageIdDead) => false,
                _ => true,
            },
        }
    }
}

/// The call log being written. Lines are written whole under a lock, so concurrent visits never
/// interleave; a failed write is remembered and fails the run at its end.
#[derive(Debug)]
pub struct CallLog {
    file: Mutex<LineWriter<File>>,
    failed: AtomicBool,
}

impl CallLog {
    /// Creates (or empties) `path` and writes the run's header.
    pub fn create(path: &Path, header: RunHeader) -> anyhow::Result<CallLog> {
        let file = File::create(path)
            .with_context(|| format!("cannot create the call log {}", path.display()))?;
        let log = CallLog {
            file: Mutex::new(LineWriter::new(file)),
            failed: AtomicBool::new(false),
        };
        log.write(&Line::Run(header));
        Ok(log)
    }

    pub fn call(&self, call: Call) {
        self.write(&Line::Call(Box::new(call)));
    }

    fn write(&self, line: &Line) {
        let mut text = serde_json::to_string(line).expect("a call log line serializes");
        text.push('\n');
        let mut file = self.file.lock().expect("call log lock");
        if file.write_all(text.as_bytes()).is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    /// Flushes what is buffered; an error when any line could not be written.
    pub fn finish(&self) -> anyhow::Result<()> {
        let mut file = self.file.lock().expect("call log lock");
        if file.flush().is_err() || self.failed.load(Ordering::Relaxed) {
            bail!("the call log is incomplete: a write failed");
        }
        Ok(())
    }
}

/// Reads a call log: its header and its calls, in the order they were answered.
pub fn read(path: &Path) -> anyhow::Result<(RunHeader, Vec<Call>)> {
    let file =
        File::open(path).with_context(|| format!("cannot read the call log {}", path.display()))?;
    let mut header = None;
    let mut calls = Vec::new();
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        let parsed: Line = serde_json::from_str(&line).with_context(|| {
            format!(
                "{} line {}: not a call log line",
                path.display(),
                number + 1
            )
        })?;
        match parsed {
            Line::Run(run) if header.is_none() => header = Some(run),
            Line::Run(_) => bail!(
                "{} line {}: a second run header",
                path.display(),
                number + 1
            ),
            Line::Call(call) => calls.push(*call),
        }
    }
    let header = header.with_context(|| format!("{} has no run header", path.display()))?;
    Ok((header, calls))
}
