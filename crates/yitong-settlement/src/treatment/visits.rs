//! Visits and their fee lines: registration, uploads and cancellations under the visit's
//! lock, and what a PreSettle or Settle reads of them.

use yitong_core::{Amount, Date, Invalid, PoolCode};
use yitong_proto::settlement::v1 as pb;
use yitong_store::now_ms;

use super::repo::{self, LineRow, VisitRow};
use super::request::{self, LineSelection, Registration, SettleInput, Upload, VisitScope};
use super::{Begun, SettlementNode, TreatmentError, decode, decode_reply, encode, timestamp};
use crate::split::{self};

impl SettlementNode {
    pub(super) async fn visit_wire(
        &self,
        conn: &mut yitong_store::sqlx::AnyConnection,
        row: &VisitRow,
    ) -> Result<pb::Visit, TreatmentError> {
        let mut visit: pb::Visit = decode(&row.registered, "registered visit")?;
        let (count, total) = repo::line_totals(conn, &row.visit_id).await?;
        visit.status = match row.status {
            repo::VisitStatus::Open => pb::VisitStatus::Open,
            repo::VisitStatus::Settled => pb::VisitStatus::Settled,
            repo::VisitStatus::Cancelled => pb::VisitStatus::Cancelled,
        } as i32;
        visit.fee_line_count = u32::try_from(count).unwrap_or_default();
        visit.fee_total = Amount::from_fen(total).to_string();
        visit.settlement_id = row.settlement_id.clone().unwrap_or_default();
        Ok(visit)
    }

    /// Reads a visit and checks it is the asking institution's and the named person's.
    pub(super) fn check_visit(
        row: Option<VisitRow>,
        scope: &VisitScope,
    ) -> Result<VisitRow, TreatmentError> {
        let row = row.ok_or_else(|| TreatmentError::NotFound {
            what: "visit",
            id: scope.visit_id.clone(),
        })?;
        if row.institution_code != scope.institution.as_str() {
            return Err(TreatmentError::NotYours {
                what: "visit",
                id: row.visit_id,
            });
        }
        if row.person_no != scope.person_no.as_str() {
            return Err(Invalid::new("person_no", "is not the visit's person").into());
        }
        Ok(row)
    }

    /// When the visit began, as registered.
    fn began_at_ms(row: &VisitRow) -> Result<i64, TreatmentError> {
        let visit: pb::Visit = decode(&row.registered, "registered visit")?;
        visit
            .began_at
            .as_ref()
            .and_then(|began_at| yitong_rpc::ms_of_timestamp(began_at).ok())
            .ok_or_else(|| TreatmentError::Corrupt(format!("start of visit {}", row.visit_id)))
    }

    /// Refuses a change to a visit that is not open.
    pub(super) fn check_open(row: &VisitRow) -> Result<(), TreatmentError> {
        match row.status {
            repo::VisitStatus::Open => Ok(()),
            repo::VisitStatus::Settled => Err(TreatmentError::refused(
                "VISIT_SETTLED",
                format!(
                    "visit {} is settled: cancel the settlement first",
                    row.visit_id
                ),
            )),
            repo::VisitStatus::Cancelled => Err(TreatmentError::refused(
                "VISIT_CANCELLED",
                format!("visit {} is cancelled", row.visit_id),
            )),
        }
    }

    /// Refuses a change while a Settle or cancellation of the visit is in flight.
    pub(super) async fn check_not_in_flight(
        conn: &mut yitong_store::sqlx::AnyConnection,
        visit_id: &str,
    ) -> Result<(), TreatmentError> {
        match repo::in_flight(conn, visit_id).await? {
            None => Ok(()),
            Some(id) => Err(TreatmentError::refused(
                "SETTLEMENT_IN_PROGRESS",
                format!("settlement {id} of visit {visit_id} is in progress"),
            )),
        }
    }

    pub(super) async fn register_visit(
        &self,
        registration: Registration,
        digest: &str,
    ) -> Result<pb::RegisterVisitResponse, TreatmentError> {
        if registration.institution.city() != self.city {
            return Err(Invalid::new(
                "institution_code",
                format!("must be an institution of city {}", self.city),
            )
            .into());
        }
        if let Some(reply) = self
            .peek(
                &registration.institution,
                &registration.message_id,
                "RegisterVisit",
                digest,
            )
            .await?
        {
            return decode_reply(&reply);
        }
        request::check_look_back(
            registration.began_at_ms,
            self.options.visit_look_back_days,
            yitong_core::today(),
        )?;
        let date = request::date_of_ms(registration.began_at_ms);
        let operator_id = &registration.request.operator_id;
        let person = self
            .check_person(
                &registration.credential,
                &registration.person_no,
                registration.insurance_type,
                date,
                &registration.institution,
                operator_id,
            )
            .await?;
        let institution = self.institution(&registration.institution).await?;
        let insured_city = registration.person_no.insured_city();
        let networked = super::check::networked(&institution, date);
        if insured_city != self.city && !networked {
            return Err(TreatmentError::refused(
                "INSTITUTION_NOT_NETWORKED",
                format!(
                    "institution {} is not networked for cross-city settlement on {date}",
                    institution.code
                ),
            ));
        }
        self.benefit(insured_city)?;

        let mut tx = match self
            .begin(
                &registration.institution,
                &registration.message_id,
                "RegisterVisit",
                digest,
            )
            .await?
        {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let today = yitong_core::today();
        let prefix = format!("S{}{}", self.city, today.format("%y%m%d"));
        let serial = repo::next_serial(&mut tx, &prefix).await?;
        let visit_id = format!("{prefix}{serial:07}");
        let now = now_ms();
        let wire = &registration.request;
        let visit = pb::Visit {
            visit_id: visit_id.clone(),
            person_no: person.person_no.clone(),
            person_name: person.name.clone(),
            insurance_type: person.insurance_type,
            person_type: person.person_type,
            insured_city: insured_city.to_string(),
            treatment_city: self.city.to_string(),
            institution_code: registration.institution.to_string(),
            hospital_level: institution.level,
            medical_type: registration.medical_type as i32,
            began_at: wire.began_at,
            department_code: wire.department_code.clone(),
            department_name: wire.department_name.clone(),
            doctor_code: wire.doctor_code.clone(),
            doctor_name: wire.doctor_name.clone(),
            his_visit_no: wire.his_visit_no.clone(),
            diagnoses: wire.diagnoses.clone(),
            status: pb::VisitStatus::Open as i32,
            fee_line_count: 0,
            fee_total: Amount::ZERO.to_string(),
            settlement_id: String::new(),
            message_id: registration.message_id.to_string(),
            registered_at: Some(timestamp(now)),
            disease_code: registration.disease_code.clone().unwrap_or_default(),
        };
        let row = VisitRow {
            visit_id,
            institution_code: registration.institution.to_string(),
            person_no: person.person_no,
            insured_city: insured_city.to_string(),
            insurance_type: i64::from(person.insurance_type),
            hospital_level: i64::from(institution.level),
            service_date: date.to_string(),
            status: repo::VisitStatus::Open,
            settlement_id: None,
            registered: encode(&visit),
            registered_at_ms: now,
        };
        repo::insert_visit(&mut tx, &row).await?;
        self.finish(
            tx,
            &registration.institution,
            &registration.message_id,
            pb::RegisterVisitResponse { visit: Some(visit) },
        )
        .await
    }

    pub(super) async fn cancel_visit(
        &self,
        scope: VisitScope,
        digest: &str,
    ) -> Result<pb::CancelVisitResponse, TreatmentError> {
        let mut tx = match self
            .begin(&scope.institution, &scope.message_id, "CancelVisit", digest)
            .await?
        {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let mut row = Self::check_visit(repo::lock_visit(&mut tx, &scope.visit_id).await?, &scope)?;
        Self::check_open(&row)?;
        Self::check_not_in_flight(&mut tx, &row.visit_id).await?;
        repo::set_visit_status(&mut tx, &row.visit_id, repo::VisitStatus::Cancelled, None).await?;
        row.status = repo::VisitStatus::Cancelled;
        let visit = self.visit_wire(&mut tx, &row).await?;
        self.finish(
            tx,
            &scope.institution,
            &scope.message_id,
            pb::CancelVisitResponse { visit: Some(visit) },
        )
        .await
    }

    pub(super) async fn upload_lines(
        &self,
        upload: Upload,
        digest: &str,
    ) -> Result<pb::UploadFeeLinesResponse, TreatmentError> {
        let scope = &upload.scope;
        if let Some(reply) = self
            .peek(
                &scope.institution,
                &scope.message_id,
                "UploadFeeLines",
                digest,
            )
            .await?
        {
            return decode_reply(&reply);
        }
        let row = {
            let mut conn = self.store.pool().acquire().await?;
            Self::check_visit(repo::visit(&mut conn, &scope.visit_id).await?, scope)?
        };
        Self::check_open(&row)?;
        let visit_date = yitong_core::parse_date(&row.service_date)
            .map_err(|_| TreatmentError::Corrupt(format!("date of visit {}", row.visit_id)))?;
        request::check_within_visit(&upload.lines, Self::began_at_ms(&row)?)?;
        let classified = self
            .classify(&upload.lines, visit_date, &scope.institution)
            .await?;

        let mut tx = match self
            .begin(
                &scope.institution,
                &scope.message_id,
                "UploadFeeLines",
                digest,
            )
            .await?
        {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let row = Self::check_visit(repo::lock_visit(&mut tx, &scope.visit_id).await?, scope)?;
        Self::check_open(&row)?;
        Self::check_not_in_flight(&mut tx, &row.visit_id).await?;
        let used = repo::used_serials(&mut tx, &row.visit_id).await?;
        for line in &upload.lines {
            if used.iter().any(|(serial, _)| *serial == line.serial) {
                return Err(TreatmentError::AlreadyExists {
                    what: "fee line serial",
                    id: format!("{} in visit {}", line.serial, row.visit_id),
                });
            }
        }
        let live = used.iter().filter(|(_, live)| *live).count();
        if live + upload.lines.len() > request::LINES_PER_VISIT_MAX {
            return Err(TreatmentError::refused(
                "TOO_MANY_LINES",
                format!(
                    "visit {} would hold {} live lines; at most {}",
                    row.visit_id,
                    live + upload.lines.len(),
                    request::LINES_PER_VISIT_MAX
                ),
            ));
        }
        let first_position = i64::try_from(used.len()).unwrap_or(i64::MAX);
        let mut reply_lines = Vec::with_capacity(classified.len());
        let mut stored = Vec::with_capacity(classified.len());
        for (line, (parts, wire)) in upload.lines.iter().zip(classified) {
            stored.push(LineRow {
                serial: line.serial.clone(),
                amount_fen: parts.amount().fen(),
                full_self_pay_fen: parts.full_self_pay().fen(),
                over_cap_fen: parts.over_cap_self_pay().fen(),
                pre_self_pay_fen: parts.pre_self_pay().fen(),
                in_scope_fen: parts.in_scope_amount().fen(),
                classified: encode(&wire),
            });
            reply_lines.push(wire);
        }
        repo::insert_lines(&mut tx, &row.visit_id, first_position, &stored).await?;
        let visit = self.visit_wire(&mut tx, &row).await?;
        self.finish(
            tx,
            &scope.institution,
            &scope.message_id,
            pb::UploadFeeLinesResponse {
                lines: reply_lines,
                visit: Some(visit),
            },
        )
        .await
    }

    pub(super) async fn cancel_lines(
        &self,
        cancellation: request::LineCancellation,
        digest: &str,
    ) -> Result<pb::CancelFeeLinesResponse, TreatmentError> {
        let scope = &cancellation.scope;
        let mut tx = match self
            .begin(
                &scope.institution,
                &scope.message_id,
                "CancelFeeLines",
                digest,
            )
            .await?
        {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let row = Self::check_visit(repo::lock_visit(&mut tx, &scope.visit_id).await?, scope)?;
        Self::check_open(&row)?;
        Self::check_not_in_flight(&mut tx, &row.visit_id).await?;
        let used = repo::used_serials(&mut tx, &row.visit_id).await?;
        let serials = match cancellation.selection {
            LineSelection::All => used
                .iter()
                .filter(|(_, live)| *live)
                .map(|(serial, _)| serial.clone())
                .collect(),
            LineSelection::Serials(serials) => {
                for (index, serial) in serials.iter().enumerate() {
                    if !used.iter().any(|(used, live)| used == serial && *live) {
                        return Err(TreatmentError::NotFound {
                            what: "live fee line",
                            id: format!("{serial} (serials[{index}]) in visit {}", row.visit_id),
                        });
                    }
                }
                let mut distinct = serials;
                distinct.dedup();
                distinct
            }
        };
        for serial in &serials {
            repo::cancel_line(&mut tx, &row.visit_id, serial).await?;
        }
        let visit = self.visit_wire(&mut tx, &row).await?;
        self.finish(
            tx,
            &scope.institution,
            &scope.message_id,
            pb::CancelFeeLinesResponse {
                cancelled_serials: serials,
                visit: Some(visit),
            },
        )
        .await
    }

    /// The treatment city's half of the split from the visit's live lines, checked against the
    /// HIS's total so both sides agree on which lines count.
    pub(super) fn claim_of(
        visit_id: &str,
        lines: &[LineRow],
        total: Amount,
    ) -> Result<split::Claim, TreatmentError> {
        if lines.is_empty() {
            return Err(TreatmentError::refused(
                "NO_FEE_LINES",
                format!("visit {visit_id} has no live fee lines"),
            ));
        }
        let sum = |part: fn(&LineRow) -> i64| Amount::from_fen(lines.iter().map(part).sum());
        let claim = split::Claim::new(
            sum(|line| line.amount_fen),
            sum(|line| line.full_self_pay_fen),
            sum(|line| line.over_cap_fen),
            sum(|line| line.pre_self_pay_fen),
            sum(|line| line.in_scope_fen),
        )
        .map_err(|_| TreatmentError::Corrupt(format!("lines of visit {visit_id} do not add up")))?;
        if claim.total_amount() != total {
            return Err(Invalid::new(
                "total_amount",
                format!("must equal the live lines' total, {}", claim.total_amount()),
            )
            .into());
        }
        Ok(claim)
    }

    pub(super) fn benefit_claim(
        &self,
        visit: &VisitRow,
        claim: &split::Claim,
        service_date: Date,
        use_personal_account: bool,
        disease_code: &str,
    ) -> pb::BenefitClaim {
        pb::BenefitClaim {
            person_no: visit.person_no.clone(),
            service_date: service_date.to_string(),
            insurance_type: i32::try_from(visit.insurance_type).unwrap_or_default(),
            hospital_level: i32::try_from(visit.hospital_level).unwrap_or_default(),
            treatment_city: self.city.to_string(),
            institution_code: visit.institution_code.clone(),
            visit_id: visit.visit_id.clone(),
            amounts: Some(pb::ClaimAmounts {
                total_amount: claim.total_amount().to_string(),
                full_self_pay: claim.full_self_pay().to_string(),
                over_cap_self_pay: claim.over_cap_self_pay().to_string(),
                pre_self_pay: claim.pre_self_pay().to_string(),
                in_scope_amount: claim.in_scope_amount().to_string(),
            }),
            use_personal_account,
            disease_code: disease_code.to_owned(),
        }
    }

    /// Reads the visit and its lines for a PreSettle or Settle, checks the request against
    /// them and the credential with identity, and builds the claim for the insured city.
    pub(super) async fn prepare(
        &self,
        input: &SettleInput,
    ) -> Result<(VisitRow, pb::BenefitClaim), TreatmentError> {
        let scope = &input.scope;
        let (row, lines) = {
            let mut conn = self.store.pool().acquire().await?;
            let row = Self::check_visit(repo::visit(&mut conn, &scope.visit_id).await?, scope)?;
            let lines = repo::live_lines(&mut conn, &row.visit_id).await?;
            (row, lines)
        };
        Self::check_open(&row)?;
        if row.insurance_type != i64::from(request::insurance_type_to_wire(input.insurance_type)) {
            return Err(Invalid::new("insurance_type", "is not the visit's insurance type").into());
        }
        let claim = Self::claim_of(&row.visit_id, &lines, input.total_amount)?;
        let today = yitong_core::today();
        self.check_person(
            &input.credential,
            &scope.person_no,
            input.insurance_type,
            today,
            &scope.institution,
            &input.operator_id,
        )
        .await?;
        let registered: pb::Visit = decode(&row.registered, "registered visit")?;
        let benefit_claim = self.benefit_claim(
            &row,
            &claim,
            today,
            input.use_personal_account,
            &registered.disease_code,
        );
        Ok((row, benefit_claim))
    }

    pub(super) async fn pre_settle(
        &self,
        input: SettleInput,
    ) -> Result<pb::PreSettleResponse, TreatmentError> {
        let (row, claim) = self.prepare(&input).await?;
        let insured = PoolCode::parse(&row.insured_city).map_err(|_| {
            TreatmentError::Corrupt(format!("insured city of visit {}", row.visit_id))
        })?;
        let quote = self
            .benefit(insured)?
            .quote(pb::QuoteRequest { claim: Some(claim) })
            .await
            .map_err(|status| TreatmentError::remote("insured city's benefit service", status))?;
        let split = quote
            .into_inner()
            .split
            .ok_or_else(|| TreatmentError::Peer("benefit answered without a split".into()))?;
        let mut conn = self.store.pool().acquire().await?;
        let visit = self.visit_wire(&mut conn, &row).await?;
        Ok(pb::PreSettleResponse {
            split: Some(split),
            visit: Some(visit),
        })
    }
}
