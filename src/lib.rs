//! connect-slr-guard: re-verifies Amazon Connect service-linked roles (SLRs)
//! and the KMS grants behind them, and alerts on drift.
//!
//! One pass has four steps, one module each:
//!
//! - [`trigger`]: an untrusted EventBridge event -> a [`trigger::Scope`] (pure).
//! - [`inventory`]: the only code that reads AWS; scope -> [`model::Snapshot`].
//! - [`rules`]: snapshot -> [`finding::Finding`]s (pure, no IO, no clock).
//! - [`alert`]: findings -> SNS messages in the `connect-slr-guard/alert/v1` format
//!   (and, when configured, Security Hub findings and chat notifications).
//!
//! With `REMEDIATION` on, [`remediation`] sits between rules and alert: it
//! plans the safe fixes (KMS grants for the SLR) and makes them.
//!
//! Beside them: [`model`] is the snapshot's plain data (shared by every
//! step), [`finding`] the rule catalogue, [`policy`] IAM policy questions,
//! [`aws`] the clients and how their errors are judged, [`config`] the typed
//! settings, [`text`] cuts text to fit. [`guard`] runs one pass end to end
//! and [`report`] shows what it did (table, JSON, SARIF, EMF metrics, saved
//! snapshots). The two binaries in `src/bin/` only parse their input and call
//! [`guard`].
//!
//! Imports point one way: trigger -> inventory -> rules -> alert.

pub mod alert;
pub mod aws;
pub mod config;
pub mod finding;
pub mod guard;
pub mod inventory;
pub mod model;
pub mod policy;
pub mod remediation;
pub mod report;
pub mod rules;
pub mod text;
pub mod trigger;
