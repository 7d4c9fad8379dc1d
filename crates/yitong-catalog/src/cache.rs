//! Reference data in memory: the catalog's published changes and each policy key's versions,
//! held by the catalog node and checked against the version heads on every read, so that a
//! lookup or a policy read costs one head read instead of the reads of the data.
//!
//! Both are append-only histories with a head that moves with every append, in the same write
//! transaction: `catalog_head.version` for the catalog (a change of version v is never
//! rewritten, and later publications carry higher versions), `policy_heads.latest_effective_from`
//! per policy key (a new version is recorded only after the latest, and moves the head to its
//! first day). So a copy read up to a head is the store's content up to that head, and is
//! current exactly while the head reads the same: a read that finds the head moved reads what
//! was appended since (the catalog) or the key's versions again (a policy), and every answer is
//! as fresh as the head it read. The dates are applied to the copy by the same rules as to the
//! store (`item::classify`, `policies::in_force_among`). Institutions are not held: reading one
//! by its code is one statement, as reading a head would be.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use yitong_core::{Date, PoolCode};
use yitong_store::sqlx::AnyConnection;

use crate::item::Change;
use crate::policy::{PolicyKey, RecordedPolicy};
use crate::{CatalogError, ItemCode, catalog, policies};

/// Changes a node holds of its catalog. The seed catalog is about 2,150 changes a pool (some
/// 300 bytes each in memory: under a megabyte); a catalog that outgrows the bound is read from
/// the store on every lookup, as before, rather than held in part.
pub(crate) const CHANGES_HELD_MAX: usize = 200_000;
/// Versions a node holds of one policy key (a key gains one when its bureau changes it, a few a
/// year); a key with more is read from the store.
pub(crate) const POLICY_VERSIONS_HELD_MAX: usize = 1_000;

/// What a catalog node holds of its own pool's reference data.
#[derive(Debug, Default)]
pub(crate) struct ReferenceCache {
    catalog: Mutex<Arc<CatalogCopy>>,
    /// Set once the catalog has outgrown [`CHANGES_HELD_MAX`]: lookups then read the store.
    catalog_too_large: AtomicBool,
    /// One refresh of the catalog at a time, so lookups arriving after a publication read its
    /// changes once between them.
    refreshing: tokio::sync::Mutex<()>,
    policies: Mutex<HashMap<PolicyKey, Arc<KeyVersions>>>,
}

/// Every change of the catalog published up to `version`, by code.
#[derive(Debug, Default)]
pub(crate) struct CatalogCopy {
    /// The catalog version the copy holds every change up to; 0 before the first read.
    pub(crate) version: u64,
    /// Each code's changes in version order, as `catalog::histories` reads them.
    pub(crate) histories: HashMap<ItemCode, Vec<Change>>,
    changes: usize,
}

/// Every version of one policy key, read when its head stood at `head`.
#[derive(Debug)]
struct KeyVersions {
    /// The first day of the latest version held, which is what the key's head reads while no
    /// version has been recorded since.
    head: Date,
    /// The versions by first day, each without its last day (`in_force_among` sets it).
    versions: Vec<RecordedPolicy>,
}

impl ReferenceCache {
    /// The catalog as published up to at least `version` (a head just read), or `None` when it
    /// is too large to hold and the caller reads the store. A copy further on than `version`
    /// (another lookup refreshed it meanwhile) is returned as it is: it is the fresher answer,
    /// and the caller reports its version.
    pub(crate) async fn catalog(
        &self,
        conn: &mut AnyConnection,
        version: u64,
    ) -> Result<Option<Arc<CatalogCopy>>, CatalogError> {
        if self.catalog_too_large.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let held = self.held_catalog();
        if held.version >= version {
            return Ok(Some(held));
        }
        let _turn = self.refreshing.lock().await;
        let held = self.held_catalog();
        if held.version >= version {
            return Ok(Some(held));
        }
        let room = CHANGES_HELD_MAX - held.changes;
        // One change more than the room tells that the catalog has outgrown it.
        let newer = catalog::changes_after(conn, held.version, version, room + 1).await?;
        if newer.len() > room {
            self.catalog_too_large.store(true, Ordering::Relaxed);
            *self.catalog.lock().unwrap_or_else(PoisonError::into_inner) =
                Arc::new(CatalogCopy::default());
            tracing::warn!(
                changes_max = CHANGES_HELD_MAX,
                "the catalog outgrew what a node holds in memory; lookups read the store"
            );
            return Ok(None);
        }
        // Changes after the copy's version come after every change it holds, code by code, so
        // appending them in version order keeps each history in version order.
        let mut histories = held.histories.clone();
        let changes = held.changes + newer.len();
        for change in newer {
            histories
                .entry(change.item.code.clone())
                .or_default()
                .push(change);
        }
        let copy = Arc::new(CatalogCopy {
            version,
            histories,
            changes,
        });
        *self.catalog.lock().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&copy);
        tracing::debug!(catalog_version = version, changes, "catalog copy refreshed");
        Ok(Some(copy))
    }

    fn held_catalog(&self) -> Arc<CatalogCopy> {
        Arc::clone(&self.catalog.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The version of `key` in force on `date`, with its last day when a later version exists:
    /// one head read while the key's versions are held and current, else the versions read
    /// again (and held when within bounds).
    pub(crate) async fn policy_in_force(
        &self,
        conn: &mut AnyConnection,
        city: PoolCode,
        key: PolicyKey,
        date: Date,
    ) -> Result<Option<RecordedPolicy>, CatalogError> {
        let Some(head) = policies::head(conn, key).await? else {
            // No version recorded: nothing to hold, and the store's answer is none.
            return policies::in_force(conn, city, key, date).await;
        };
        let held = self
            .policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(held) = held.filter(|held| held.head == head) {
            return Ok(policies::in_force_among(&held.versions, date));
        }
        let versions = policies::versions(conn, city, key, POLICY_VERSIONS_HELD_MAX + 1).await?;
        if versions.len() > POLICY_VERSIONS_HELD_MAX {
            return policies::in_force(conn, city, key, date).await;
        }
        let answer = policies::in_force_among(&versions, date);
        // Tagged by what was read, not by the head read before it: a version recorded between
        // the two reads is in the list, and the tag then says so, so the copy is never taken
        // for current under a head it does not match.
        if let Some(latest) = versions.last() {
            let held = Arc::new(KeyVersions {
                head: latest.version.effective_from,
                versions,
            });
            self.policies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, held);
        }
        Ok(answer)
    }
}
