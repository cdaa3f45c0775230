//! The five kinds of state, each of which a facade can route to its own backend.

use serde::{Deserialize, Serialize};

/// One kind of agent state; each can be routed to its own backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Session records.
    Sessions,
    /// Conversation history.
    Conversations,
    /// Workflow checkpoints with their pending writes.
    Checkpoints,
    /// Per-session task context.
    TaskContext,
    /// Named, versioned blobs.
    Artifacts,
}

impl Kind {
    /// Every kind, in routing-table order.
    pub const ALL: [Kind; 5] = [
        Kind::Sessions,
        Kind::Conversations,
        Kind::Checkpoints,
        Kind::TaskContext,
        Kind::Artifacts,
    ];

    /// The kind's stable snake_case name, as used in configuration keys and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sessions => "sessions",
            Kind::Conversations => "conversations",
            Kind::Checkpoints => "checkpoints",
            Kind::TaskContext => "task_context",
            Kind::Artifacts => "artifacts",
        }
    }

    /// Position in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
