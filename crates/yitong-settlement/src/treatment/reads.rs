//! What an institution, its city's bureau and operators read of settlements.

use yitong_core::Owner;
use yitong_proto::settlement::v1 as pb;
use yitong_rpc::Caller;

use super::repo::{self, Kind};
use super::request;
use super::{SettlementNode, TreatmentError, decode};

impl SettlementNode {
    pub(super) async fn get_settlement(
        &self,
        input: request::GetInput,
    ) -> Result<pb::Settlement, TreatmentError> {
        let mut conn = self.store.pool().acquire().await?;
        let institution = input.institution.as_str();
        let (row, id) = match &input.key {
            request::SettlementKey::Id(id) => (repo::settlement(&mut conn, id).await?, id.clone()),
            // A message id is looked up among the institution's own: another institution's use
            // of the same id is not found, exactly as an id nobody used, so the answer tells
            // nothing of other institutions' message ids.
            request::SettlementKey::MessageId(id) => (
                repo::settlement_by_message(&mut conn, institution, id.as_str()).await?,
                id.to_string(),
            ),
        };
        // Intents never recorded, and cancellations (which their originals carry), are no
        // settlement the HIS can see.
        let row = row
            .filter(|row| row.kind == Kind::Settlement && row.phase.is_recorded())
            .ok_or_else(|| TreatmentError::NotFound {
                what: "settlement",
                id: id.clone(),
            })?;
        if row.institution_code != institution {
            return Err(TreatmentError::NotYours {
                what: "settlement",
                id,
            });
        }
        read_out(&row)
    }

    pub(super) async fn list_settlements(
        &self,
        input: request::ListInput,
    ) -> Result<pb::ListSettlementsResponse, TreatmentError> {
        let mut conn = self.store.pool().acquire().await?;
        let limit = i64::from(input.page_size) + 1;
        let mut rows = repo::list(
            &mut conn,
            input.institution.as_str(),
            &input.from_date.to_string(),
            &input.to_date.to_string(),
            input.cancelled,
            input.after,
            limit,
        )
        .await?;
        let more = rows.len() > input.page_size as usize;
        rows.truncate(input.page_size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                request::page_token(last.settled_at_ms.unwrap_or_default(), &last.settlement_id)
            }
            _ => String::new(),
        };
        let settlements = rows.iter().map(read_out).collect::<Result<_, _>>()?;
        Ok(pb::ListSettlementsResponse {
            settlements,
            next_page_token,
        })
    }
}

/// A recorded settlement as the reads give it: the record, with the recovery sweep's last
/// failure while it is in doubt.
fn read_out(row: &repo::SettlementRow) -> Result<pb::Settlement, TreatmentError> {
    let mut settlement: pb::Settlement = decode(&row.record, "settlement record")?;
    if settlement.completed_at.is_none() {
        settlement.last_error = row.last_error.clone();
        settlement.completion_attempts = u32::try_from(row.attempts.max(0)).unwrap_or(u32::MAX);
    }
    Ok(settlement)
}

impl SettlementNode {
    /// Who may read an institution's settlements: the institution itself, this city's bureau,
    /// and operators (who see them without the person: `yitong_rpc::visibility`).
    pub(super) fn require_reader(
        &self,
        caller: &Caller,
        institution: &str,
    ) -> Result<(), yitong_rpc::Denied> {
        match caller {
            Caller::Bureau(_) => caller.require_bureau(Owner::Pool(self.city)),
            Caller::Operator(_) => Ok(()),
            _ => caller.require_institution_code(institution),
        }
    }
}
