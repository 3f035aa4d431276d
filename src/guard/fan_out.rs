//! A sweep over many accounts and Regions: the scheduled sweep puts one
//! part per account and Region on the FIFO work queue, in that place's
//! message group, and returns; each part that cannot read all its
//! instances in one invocation queues the next part in the same group.
//! SQS does the scheduling: one invocation per group at a time keeps each
//! place's Connect quota.

use std::time::Duration;

use aws_sdk_organizations::types::{AccountState, AccountStatus};
use tracing::info;

use super::{Guard, GuardError};
use crate::alert::recheck::{Queued, enqueue_all};
use crate::aws::{ConnectApi, ReadError};
use crate::config::MemberAccounts;
use crate::inventory::STORAGE_CALLS_PER_INSTANCE;
use crate::model::Place;
use crate::trigger::work::SweepPart;

impl Guard {
    /// Whether the scheduled sweep fans out (central mode, or Regions
    /// beyond the guard's own) rather than sweeping here.
    pub fn fans_out(&self) -> bool {
        self.settings.central.is_some()
            || self
                .settings
                .sweep_regions
                .iter()
                .any(|r| *r != self.aws.region)
    }

    /// Queues the first part of every place's sweep; `dedup_base` (the
    /// schedule message's id) makes a redelivered schedule a no-op.
    pub async fn fan_out(&self, work_queue: &str, dedup_base: &str) -> Result<usize, GuardError> {
        let places = self.sweep_places().await?;
        let messages: Vec<Queued> = places
            .iter()
            .map(|place| {
                let part = SweepPart::new(&place.account, &place.region);
                Queued {
                    group: part.group(),
                    dedup_id: format!("{dedup_base}:{}", part.group()),
                    body: part.body(),
                }
            })
            .collect();
        enqueue_all(&self.aws.sqs, work_queue, &messages).await?;
        info!(places = places.len(), "sweep fanned out");
        Ok(places.len())
    }

    /// Queues the part after `part`, in its group.
    pub async fn continue_sweep(
        &self,
        work_queue: &str,
        part: &SweepPart,
        last: &str,
        dedup_base: &str,
    ) -> Result<(), GuardError> {
        let next = part.next(last);
        let message = Queued {
            group: next.group(),
            dedup_id: format!("{dedup_base}:next"),
            body: next.body(),
        };
        enqueue_all(&self.aws.sqs, work_queue, &[message]).await?;
        info!(account = %next.account, region = %next.region, part = next.part, "sweep continues");
        Ok(())
    }

    /// Every account and Region a sweep covers.
    pub async fn sweep_places(&self) -> Result<Vec<Place>, GuardError> {
        let accounts = match self.settings.central.as_ref().map(|c| &c.accounts) {
            Some(MemberAccounts::Listed(ids)) => ids.clone(),
            Some(MemberAccounts::Organization) => self.organization_accounts().await?,
            None => vec![self.actor().await.map_err(GuardError::Accounts)?.account],
        };
        let regions = match self.settings.sweep_regions.as_slice() {
            [] => vec![self.aws.region.clone()],
            listed => listed.to_vec(),
        };
        Ok(accounts
            .iter()
            .flat_map(|account| {
                regions.iter().map(|region| Place {
                    account: account.clone(),
                    region: region.clone(),
                })
            })
            .collect())
    }

    /// The organisation's ACTIVE accounts.
    async fn organization_accounts(&self) -> Result<Vec<String>, GuardError> {
        let client = aws_sdk_organizations::Client::new(&self.aws.config);
        let pages: Vec<_> = client
            .list_accounts()
            .into_paginator()
            .send()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| GuardError::Accounts(ReadError::from(e).reason()))?;
        Ok(pages
            .iter()
            .flat_map(|page| page.accounts())
            .filter(|a| {
                a.state() == Some(&AccountState::Active)
                    || (a.state().is_none() && a.status() == Some(&AccountStatus::Active))
            })
            .filter_map(|a| a.id().map(str::to_owned))
            .collect())
    }

    /// How many instances one part of a sweep reads within `time`: the
    /// storage-config reads are the bottleneck (13 per instance at the
    /// `ListInstanceStorageConfigs` rate), and half the time is kept spare
    /// for the other reads and the alerts.
    pub fn part_size(&self, time: Duration) -> usize {
        let rate = self
            .settings
            .connect_rates
            .get(ConnectApi::ListInstanceStorageConfigs);
        let calls = time.as_secs_f64() / 2.0 * rate;
        ((calls / STORAGE_CALLS_PER_INSTANCE as f64) as usize).max(1)
    }
}
