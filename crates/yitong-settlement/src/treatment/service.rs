//! The tonic implementation of SettlementService: each handler checks the caller against
//! the request, parses it at the edge, and hands it to the node.

use std::time::Duration;

use tonic::{Request, Response, Status};
use yitong_proto::settlement::v1 as pb;
use yitong_rpc::{Caller, invalid_argument, visibility};

use super::request::{self, PersonQuery, Registration, SettleInput, Upload, VisitScope};
use super::{SettlementNode, digest};

impl SettlementNode {
    /// Until when a replay may wait for its first call: `replay_wait_ms` from now, or less when
    /// the caller's own deadline (`grpc-timeout`) ends sooner, keeping a tenth of it to answer.
    pub(super) fn replay_deadline(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> tokio::time::Instant {
        let own = Duration::from_millis(self.options.replay_wait_ms);
        let callers = metadata
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(grpc_timeout)
            .map(|timeout| timeout - timeout / 10);
        tokio::time::Instant::now() + callers.map_or(own, |callers| callers.min(own))
    }
}

/// A `grpc-timeout` header's duration: at most eight digits and a unit (gRPC over HTTP/2).
fn grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.checked_mul(3_600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

#[tonic::async_trait]
impl pb::settlement_service_server::SettlementService for SettlementNode {
    async fn register_visit(
        &self,
        request: Request<pb::RegisterVisitRequest>,
    ) -> Result<Response<pb::RegisterVisitResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let digest = digest(&request);
        let registration = Registration::try_from(request).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::register_visit(self, registration, &digest).await?,
        ))
    }

    async fn cancel_visit(
        &self,
        request: Request<pb::CancelVisitRequest>,
    ) -> Result<Response<pb::CancelVisitResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let scope = VisitScope::try_from(&request).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::cancel_visit(self, scope, &digest(&request)).await?,
        ))
    }

    async fn upload_fee_lines(
        &self,
        request: Request<pb::UploadFeeLinesRequest>,
    ) -> Result<Response<pb::UploadFeeLinesResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let upload = Upload::try_from(&request).map_err(invalid_argument)?;
        Ok(Response::new(
            self.upload_lines(upload, &digest(&request)).await?,
        ))
    }

    async fn cancel_fee_lines(
        &self,
        request: Request<pb::CancelFeeLinesRequest>,
    ) -> Result<Response<pb::CancelFeeLinesResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let cancellation =
            request::LineCancellation::try_from(&request).map_err(invalid_argument)?;
        Ok(Response::new(
            self.cancel_lines(cancellation, &digest(&request)).await?,
        ))
    }

    async fn check_benefit(
        &self,
        request: Request<pb::CheckBenefitRequest>,
    ) -> Result<Response<pb::CheckBenefitResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let query = PersonQuery::try_from(request.get_ref()).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::check_benefit(self, query).await?,
        ))
    }

    async fn get_running_totals(
        &self,
        request: Request<pb::GetRunningTotalsRequest>,
    ) -> Result<Response<pb::GetRunningTotalsResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let query = PersonQuery::try_from(request.get_ref()).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::running_totals(self, query).await?,
        ))
    }

    async fn query_filings(
        &self,
        request: Request<pb::QueryFilingsRequest>,
    ) -> Result<Response<pb::QueryFilingsResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let query = PersonQuery::try_from(request.get_ref()).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::query_filings(self, query).await?,
        ))
    }

    async fn query_certifications(
        &self,
        request: Request<pb::QueryCertificationsRequest>,
    ) -> Result<Response<pb::QueryCertificationsResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let query = PersonQuery::try_from(request.get_ref()).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::query_certifications(self, query).await?,
        ))
    }

    async fn pre_settle(
        &self,
        request: Request<pb::PreSettleRequest>,
    ) -> Result<Response<pb::PreSettleResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let input = SettleInput::try_from(&request.into_inner()).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::pre_settle(self, input).await?,
        ))
    }

    async fn settle(
        &self,
        request: Request<pb::SettleRequest>,
    ) -> Result<Response<pb::SettleResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let deadline = self.replay_deadline(request.metadata());
        let request = request.into_inner();
        let input = SettleInput::try_from(&request).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::settle(self, input, &digest(&request), deadline).await?,
        ))
    }

    async fn cancel_settlement(
        &self,
        request: Request<pb::CancelSettlementRequest>,
    ) -> Result<Response<pb::CancelSettlementResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let deadline = self.replay_deadline(request.metadata());
        let request = request.into_inner();
        let input = request::CancelInput::try_from(&request).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::cancel_settlement(self, input, &digest(&request), deadline).await?,
        ))
    }

    async fn reverse_by_message_id(
        &self,
        request: Request<pb::ReverseByMessageIdRequest>,
    ) -> Result<Response<pb::ReverseByMessageIdResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let deadline = self.replay_deadline(request.metadata());
        let request = request.into_inner();
        let input = request::ReverseInput::try_from(&request).map_err(invalid_argument)?;
        Ok(Response::new(
            SettlementNode::reverse(self, input, &digest(&request), deadline).await?,
        ))
    }

    async fn get_settlement(
        &self,
        request: Request<pb::GetSettlementRequest>,
    ) -> Result<Response<pb::GetSettlementResponse>, Status> {
        let caller = Caller::of(&request);
        self.require_reader(&caller, &request.get_ref().institution_code)?;
        let input = request::GetInput::try_from(&request.into_inner()).map_err(invalid_argument)?;
        let settlement = SettlementNode::get_settlement(self, input).await?;
        // The readers the checks above admit are all party to the settlement or operators, so
        // it is seen (by an operator without the person); a settlement hidden from its reader
        // all the same is not found, never shown.
        let settlement = visibility::seen_by(&caller, settlement)
            .ok_or_else(|| Status::not_found("no such settlement"))?;
        Ok(Response::new(pb::GetSettlementResponse {
            settlement: Some(settlement),
        }))
    }

    async fn list_settlements(
        &self,
        request: Request<pb::ListSettlementsRequest>,
    ) -> Result<Response<pb::ListSettlementsResponse>, Status> {
        let caller = Caller::of(&request);
        self.require_reader(&caller, &request.get_ref().institution_code)?;
        let input =
            request::ListInput::try_from(&request.into_inner()).map_err(invalid_argument)?;
        let mut page = SettlementNode::list_settlements(self, input).await?;
        page.settlements = visibility::seen_all_by(&caller, page.settlements);
        Ok(Response::new(page))
    }
}
