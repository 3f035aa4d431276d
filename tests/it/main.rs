//! The integration tests: one binary, one helper module (`support`) that
//! every test file uses.

mod alert;
mod catalogue;
mod inventory;
mod lifecycle;
mod outputs;
mod properties;
mod remediation;
mod rules;
mod support;
mod trigger;
