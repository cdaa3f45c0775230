use serde::{Deserialize, Serialize};

/// Settings of the memory backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// The namespace; see `storage_core::validate::validate_namespace`.
    pub namespace: String,
    /// Artifacts larger than this many bytes are rejected before anything is stored.
    #[serde(default)]
    pub max_artifact_bytes: Option<u64>,
}

impl MemoryConfig {
    /// A configuration for `namespace` without an artifact size limit.
    pub fn new(namespace: impl Into<String>) -> Self {
        MemoryConfig {
            namespace: namespace.into(),
            max_artifact_bytes: None,
        }
    }
}
