//! `yitong bench --replay <call log>`: the HIS that lost answers asks again. Every call of the
//! log whose answer was lost (the connection dropped, the deadline passed, the server was
//! killed) is sent again with the same message id and content, twice; so is every n-th call
//! answered OK, once. The network must answer each consistently:
//!
//! - a call answered OK at first gets the same answer again (settlement id, amounts,
//!   cancellation id, reversal outcome);
//! - a call whose answer was lost gets a definite one, OK with the content its RPC promises or
//!   FAILED_PRECONDITION (voided, dead), and the same one the second time;
//! - never OK without content.
//!
//! ABORTED (the first call still in progress), UNAVAILABLE and DEADLINE_EXCEEDED are retried
//! with the same message id, a bounded number of times. Then the end-of-run ledger check runs
//! on the run's settlements, with what the replies (first or replayed) said became of each.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tonic::Code;
use tonic::transport::Channel;
use yitong_core::{InstitutionCode, PoolCode};
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;

use super::calls::{Answer, Call, Sent};
use super::check::Known;

/// Attempts of one replay while the network answers ABORTED, UNAVAILABLE or DEADLINE_EXCEEDED.
const REPLAY_ATTEMPTS_MAX: u32 = 40;
/// Pause between two attempts of one replay.
const REPLAY_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Whether a first answer with this code leaves the HIS not knowing what happened. Only a
/// refusal the service decided is definite; everything else (transport errors included, which
/// tonic reports as UNKNOWN or INTERNAL) is an answer lost.
fn is_lost(code: &str) -> bool {
    !matches!(
        code,
        "Ok" | "FailedPrecondition"
            | "InvalidArgument"
            | "NotFound"
            | "AlreadyExists"
            | "PermissionDenied"
            | "Unauthenticated"
            | "OutOfRange"
            | "Unimplemented"
    )
}

/// What a replay got: an OK answer, or a refusal by its code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replayed {
    Answered(Answer),
    Refused(Code),
}

/// What the replay found.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Calls in the log.
    pub calls: u64,
    /// Settles answered OK at first.
    pub settles_acknowledged: u64,
    /// Calls whose first answer was lost, by RPC.
    pub lost: BTreeMap<String, u64>,
    /// Lost answers replayed.
    pub lost_replayed: u64,
    /// Of those, answered OK by the replay.
    pub lost_answered: u64,
    /// Of those, refused FAILED_PRECONDITION by the replay (voided, dead).
    pub lost_refused: u64,
    /// Calls answered OK at first and replayed to compare.
    pub ok_replayed: u64,
    /// Sends repeated because the network answered ABORTED, UNAVAILABLE or DEADLINE_EXCEEDED.
    pub retries: u64,
    /// Every inconsistent answer, in words; empty when the network answered consistently.
    pub inconsistencies: Vec<String>,
}

/// Sends calls again as their HIS.
pub struct Replayer {
    pub clients: HashMap<PoolCode, SettlementServiceClient<Channel>>,
    pub credentials: yitong_auth::Credentials,
    pub timeout: Duration,
}

impl Replayer {
    /// One send of `sent`, as its institution.
    async fn send(&self, sent: &Sent) -> anyhow::Result<Result<Answer, tonic::Status>> {
        let institution = InstitutionCode::parse(sent.institution_code())
            .map_err(|_| anyhow::anyhow!("bad institution code {}", sent.institution_code()))?;
        let city = sent
            .institution_code()
            .get(1..7)
            .and_then(|code| PoolCode::parse(code).ok())
            .with_context(|| format!("no city in {}", sent.institution_code()))?;
        let mut client = self
            .clients
            .get(&city)
            .with_context(|| format!("no client for city {city}"))?
            .clone();
        let authorization = crate::client::authorization_of(
            &self.credentials,
            &yitong_rpc::Caller::Institution(institution),
        )?;
        let authorization = tonic::metadata::AsciiMetadataValue::try_from(authorization.as_bytes())
            .expect("a header value is ASCII metadata");
        let answer = match sent {
            Sent::Settle { .. } => client
                .settle(authorized(
                    sent.settle_request().expect("a Settle"),
                    self.timeout,
                    &authorization,
                ))
                .await
                .map(|reply| Answer::of_settle(reply.get_ref())),
            Sent::CancelSettlement { .. } => client
                .cancel_settlement(authorized(
                    sent.cancel_request().expect("a cancellation"),
                    self.timeout,
                    &authorization,
                ))
                .await
                .map(|reply| Answer::of_cancel(reply.get_ref())),
            Sent::ReverseByMessageId { .. } => client
                .reverse_by_message_id(authorized(
                    sent.reverse_request().expect("a reversal"),
                    self.timeout,
                    &authorization,
                ))
                .await
                .map(|reply| Answer::of_reverse(reply.get_ref())),
        };
        Ok(answer)
    }

    /// Sends `sent` until the answer is neither in progress nor unavailable, or the attempts
    /// run out (the last answer then stands). Counts the repeated sends in `retries`.
    async fn replay(&self, sent: &Sent, retries: &mut u64) -> anyhow::Result<Replayed> {
        let mut attempt = 1;
        loop {
            match self.send(sent).await? {
                Ok(answer) => return Ok(Replayed::Answered(answer)),
                Err(status)
                    if matches!(
                        status.code(),
                        Code::Aborted | Code::Unavailable | Code::DeadlineExceeded
                    ) && attempt < REPLAY_ATTEMPTS_MAX =>
                {
                    attempt += 1;
                    *retries += 1;
                    tokio::time::sleep(REPLAY_RETRY_PAUSE).await;
                }
                Err(status) => return Ok(Replayed::Refused(status.code())),
            }
        }
    }
}

/// A request with its deadline, as the HIS whose key `authorization` carries.
fn authorized<T>(
    message: T,
    timeout: Duration,
    authorization: &tonic::metadata::AsciiMetadataValue,
) -> tonic::Request<T> {
    let mut request = crate::output::request(message, timeout);
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    request
}

/// Replays the lost calls of `calls` and every `ok_every`-th OK one (0: none), and says what
/// the run's settlements should be found in, for the ledger check.
pub async fn replay(
    replayer: &Replayer,
    calls: &[Call],
    ok_every: u64,
) -> anyhow::Result<(ReplayReport, HashMap<String, Known>)> {
    let mut report = ReplayReport {
        calls: u64::try_from(calls.len()).unwrap_or(u64::MAX),
        ..ReplayReport::default()
    };
    // The answer each call ended with: its first, or its replay's when the first was lost.
    let mut settled: Vec<Option<Replayed>> = Vec::with_capacity(calls.len());
    let mut ok_seen = 0u64;
    for call in calls {
        let sent = &call.sent;
        let what = format!("{} {}", sent.rpc(), sent.message_id());
        if let Some(first) = call.answer.as_ref().filter(|_| call.code == "Ok") {
            if matches!(sent, Sent::Settle { .. }) {
                report.settles_acknowledged += 1;
            }
            ok_seen += 1;
            if first.is_empty(sent) {
                report.inconsistencies.push(format!(
                    "{what}: first answered OK without content {first:?}"
                ));
            }
            if ok_every > 0 && ok_seen.is_multiple_of(ok_every) {
                report.ok_replayed += 1;
                let again = replayer.replay(sent, &mut report.retries).await?;
                if again != Replayed::Answered(first.clone()) {
                    report.inconsistencies.push(format!(
                        "{what}: first answered {first:?}, replayed {again:?}"
                    ));
                }
            }
            settled.push(Some(Replayed::Answered(first.clone())));
            continue;
        }
        if !is_lost(&call.code) {
            settled.push(None);
            continue;
        }
        *report.lost.entry(sent.rpc().to_owned()).or_default() += 1;
        report.lost_replayed += 1;
        let once = replayer.replay(sent, &mut report.retries).await?;
        let twice = replayer.replay(sent, &mut report.retries).await?;
        match &once {
            Replayed::Answered(answer) if answer.is_empty(sent) => report.inconsistencies.push(
                format!("{what}: replay answered OK without content {answer:?}"),
            ),
            Replayed::Answered(_) => report.lost_answered += 1,
            Replayed::Refused(Code::FailedPrecondition) => report.lost_refused += 1,
            Replayed::Refused(code) => report.inconsistencies.push(format!(
                "{what}: first answer lost ({}), replay got no definite answer ({code:?})",
                call.code
            )),
        }
        if once != twice {
            report
                .inconsistencies
                .push(format!("{what}: replayed {once:?}, then {twice:?}"));
        }
        settled.push(Some(once));
    }
    Ok((report, known(calls, &settled)))
}

/// What became of each settlement of the run, from the answers its visit's calls ended with.
fn known(calls: &[Call], settled: &[Option<Replayed>]) -> HashMap<String, Known> {
    use yitong_proto::settlement::v1::ReversalOutcome;
    /// One visit: its settlement id once a Settle answered, and what its cancellations did.
    #[derive(Default)]
    struct Visit {
        settlement_id: Option<String>,
        cancelled: bool,
        unresolved: bool,
    }
    let mut visits: HashMap<&str, Visit> = HashMap::new();
    for (call, ended) in calls.iter().zip(settled) {
        let visit = visits.entry(call.sent.visit_key()).or_default();
        match (&call.sent, ended) {
            (Sent::Settle { .. }, Some(Replayed::Answered(answer))) => {
                visit.settlement_id = Some(answer.settlement_id.clone());
            }
            (Sent::Settle { .. }, _) => {}
            (_, Some(Replayed::Answered(answer))) => {
                if !answer.cancellation_id.is_empty() {
                    visit.cancelled = true;
                } else if answer.outcome != ReversalOutcome::MessageIdDead as i32 {
                    visit.unresolved = true;
                }
            }
            (_, Some(Replayed::Refused(Code::FailedPrecondition)) | None) => {}
            (_, Some(Replayed::Refused(_))) => visit.unresolved = true,
        }
    }
    visits
        .into_values()
        .filter_map(|visit| {
            let known = if visit.cancelled {
                Known::Cancelled
            } else if visit.unresolved {
                Known::Either
            } else {
                Known::Settled
            };
            Some((visit.settlement_id?, known))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(visit: &str) -> Sent {
        Sent::Settle {
            message_id: format!("{visit}-S"),
            visit_id: "S3703002612050000001".into(),
            person_no: "3701000000000009".into(),
            card_number: "370100000000091".into(),
            insurance_type: 310,
            total_amount: "100.00".into(),
            use_personal_account: true,
            institution_code: "H37030000001".into(),
        }
    }

    fn reverse(visit: &str) -> Sent {
        Sent::ReverseByMessageId {
            message_id: format!("{visit}-V"),
            original_message_id: format!("{visit}-S"),
            institution_code: "H37030000001".into(),
            reason: "bench reversal".into(),
        }
    }

    fn answered(settlement_id: &str, cancellation_id: &str) -> Option<Replayed> {
        Some(Replayed::Answered(Answer {
            settlement_id: settlement_id.into(),
            total_amount: "100.00".into(),
            cancellation_id: cancellation_id.into(),
            ..Answer::default()
        }))
    }

    fn call(sent: Sent, code: &str) -> Call {
        Call {
            sent,
            code: code.into(),
            answer: None,
        }
    }

    // Proves the check is told what the answers said, first or replayed: a settlement whose
    // reversal's answer is still unknown may be either, one reversed is cancelled, one whose
    // Settle was refused is not expected at all.
    #[test]
    fn known_follows_the_answers_each_visit_ended_with() {
        let calls = [
            call(settle("T-1"), "Ok"),
            call(settle("T-2"), "Unknown"),
            call(reverse("T-2"), "Ok"),
            call(settle("T-3"), "Ok"),
            call(reverse("T-3"), "Unavailable"),
            call(settle("T-4"), "Unknown"),
        ];
        let ended = [
            answered("J1", ""),
            answered("J2", ""),
            answered("J2", "J2C"),
            answered("J3", ""),
            Some(Replayed::Refused(Code::Unavailable)),
            Some(Replayed::Refused(Code::FailedPrecondition)),
        ];
        let known = known(&calls, &ended);
        assert_eq!(known.len(), 3);
        assert_eq!(known["J1"], Known::Settled);
        assert_eq!(known["J2"], Known::Cancelled);
        assert_eq!(known["J3"], Known::Either);
    }

    // Proves only a refusal the service decided counts as an answer; transport errors, in
    // progress and overload are answers lost.
    #[test]
    fn only_decided_refusals_are_answers() {
        for code in [
            "Ok",
            "FailedPrecondition",
            "InvalidArgument",
            "AlreadyExists",
        ] {
            assert!(!is_lost(code), "{code}");
        }
        for code in [
            "Unknown",
            "Unavailable",
            "Aborted",
            "DeadlineExceeded",
            "Internal",
        ] {
            assert!(is_lost(code), "{code}");
        }
    }
}
