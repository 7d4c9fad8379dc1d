//! AuditService: the audit trail of one server's store (`yitong_store::audit`), read by the
//! bureau it belongs to.

use tonic::{Request, Response, Status};
use yitong_core::{Invalid, Owner};
use yitong_proto::audit::v1 as pb;
use yitong_rpc::{Caller, invalid_argument};
use yitong_store::Store;
use yitong_store::audit::{self, PAGE_ROWS_MAX};

/// Rows of a page when the request names no size.
const PAGE_ROWS_DEFAULT: u32 = 100;

#[derive(Debug, Clone)]
pub struct AuditNode {
    owner: Owner,
    store: Store,
}

impl AuditNode {
    pub fn new(owner: Owner, store: Store) -> AuditNode {
        AuditNode { owner, store }
    }

    /// Which rows `caller` may read: all of them for the owner's own bureau, at the clearing
    /// house a city bureau's own city's callers' rows; `Err` for anyone else.
    fn readable_city(&self, caller: &Caller) -> Result<Option<String>, Status> {
        match (caller, self.owner) {
            (Caller::Bureau(own), owner) if *own == owner => Ok(None),
            (Caller::Bureau(Owner::Pool(city)), Owner::ClearingHouse) => Ok(Some(city.to_string())),
            _ => Err(Status::permission_denied(format!(
                "{caller} may not read the audit trail of {}",
                self.owner
            ))),
        }
    }
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditNode {
    async fn list_audit_entries(
        &self,
        request: Request<pb::ListAuditEntriesRequest>,
    ) -> Result<Response<pb::ListAuditEntriesResponse>, Status> {
        let city = self.readable_city(&Caller::of(&request))?;
        let request = request.into_inner();
        let page_size = match request.page_size {
            0 => PAGE_ROWS_DEFAULT,
            size if size <= PAGE_ROWS_MAX => size,
            _ => {
                return Err(invalid_argument(Invalid::new(
                    "page_size",
                    format!("must be at most {PAGE_ROWS_MAX}"),
                )));
            }
        };
        if request.page_token.len() > 64 {
            return Err(invalid_argument(Invalid::new(
                "page_token",
                "is not a token this service gave",
            )));
        }
        let failed = |error: yitong_store::sqlx::Error| {
            tracing::error!(error = %yitong_core::cause_chain(&error), "cannot read the audit trail");
            Status::internal("cannot read the audit trail")
        };
        let mut conn = self.store.pool().acquire().await.map_err(failed)?;
        let mut rows = audit::list(
            &mut conn,
            city.as_deref(),
            &request.page_token,
            page_size + 1,
        )
        .await
        .map_err(failed)?;
        let more = rows.len() > page_size as usize;
        rows.truncate(page_size as usize);
        let next_page_token = if more {
            rows.last()
                .map(|row| row.audit_id.clone())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAuditEntriesResponse {
            entries: rows
                .into_iter()
                .map(|row| pb::AuditEntry {
                    audit_id: row.audit_id,
                    recorded_at_ms: row.recorded_at_ms,
                    actor: row.actor,
                    actor_city: row.actor_city,
                    rpc: row.rpc,
                    message_id: row.message_id,
                })
                .collect(),
            next_page_token,
        }))
    }
}
