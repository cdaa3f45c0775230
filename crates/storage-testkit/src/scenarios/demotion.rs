//! A primary demoted under a backend's connection pool, as a failover leaves it: the same
//! checks for every pooled backend (PostgreSQL's standby, Redis' replica).
//!
//! The test fills the pool with [`fill_pool`], demotes the server and re-points the name
//! the backend connects through (a [`SwitchProxy`](crate::servers::proxy::SwitchProxy)),
//! then calls [`writes_leave_the_demoted_primary`].

use storage_core::{ErrorKind, NewMessage, NewSession, StorageBackend};

/// Opens `connections` pooled connections at once (concurrent reads of a session that
/// need not exist).
pub async fn fill_pool(backend: &dyn StorageBackend, connections: usize) {
    let reads: Vec<_> = (0..connections)
        .map(|_| backend.get_session("warm"))
        .collect();
    for read in futures::future::join_all(reads).await {
        read.expect("a read before the demotion");
    }
}

/// The first write through `backend` after the demotion is refused, temporarily, with an
/// error whose text holds `refusal`; every write after it lands on the new primary, which
/// `on_new` (a backend connected to it directly) reads back.
pub async fn writes_leave_the_demoted_primary(
    backend: &dyn StorageBackend,
    on_new: &dyn StorageBackend,
    refusal: &str,
) {
    let err = backend
        .create_session(NewSession::new("after", "u"))
        .await
        .expect_err("the demoted primary took a write");
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(
        err.is_temporary(),
        "a demoted primary's refusal is temporary: {err}"
    );
    assert!(err.to_string().contains(refusal), "{err}");
    // The refusal retired every pooled connection to the old primary.
    backend
        .create_session(NewSession::new("after", "u"))
        .await
        .unwrap_or_else(|err| panic!("the write after the refusal: {err}"));
    for n in 0..4 {
        backend
            .append_message("after", NewMessage::new("user", format!("m{n}")))
            .await
            .unwrap_or_else(|err| panic!("write {n} after the failover: {err}"));
    }
    let history = on_new
        .get_conversation_history("after", 10)
        .await
        .expect("a read on the new primary");
    assert_eq!(history.len(), 4, "the writes reached the new primary");
}
