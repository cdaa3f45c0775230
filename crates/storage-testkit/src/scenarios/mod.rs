//! Fault scenarios the full-stack tests run on every server: the same workload, the same
//! fault and the same checks, whatever the primary.
//!
//! The testkit cannot depend on the facade (the facade's tests depend on the testkit), so a
//! scenario takes what it needs as traits: the server ([`outage::Server`]) and the failover
//! backend under test ([`outage::FailoverHarness`], [`outage::FailoverUnderTest`]), which
//! the test crate implements for `storage::failover::FailoverBackend`.

pub mod demotion;
pub mod outage;
