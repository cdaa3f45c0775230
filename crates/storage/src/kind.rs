//! The five kinds of state a facade routes; defined in `storage-core`, where each
//! operation's description names its kind.

pub use storage_core::Kind;
