//! The checks of the conformance suite, one module per contract.
//!
//! Every check is `pub async fn name(ctx: TestContext)` and panics on a violation. The list
//! in [`conformance_tests!`](crate::conformance_tests) names each one.

pub mod artifacts;
pub mod checkpoint_values;
pub mod checkpoints;
pub mod compaction;
pub mod context_versions;
pub mod conversation;
pub mod fork;
pub mod input;
pub mod langgraph;
pub mod lifecycle;
pub mod migration;
pub mod namespaces;
pub mod policy;
pub mod properties;
pub mod retention;
pub mod sessions;
pub mod task_context;
pub mod turns;
