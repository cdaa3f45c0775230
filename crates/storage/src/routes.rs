//! Which backend serves each kind.

use std::sync::Arc;

use storage_core::StorageBackend;

use crate::Kind;

/// Every kind's backend, and each distinct backend once with the kinds it serves.
#[derive(Debug)]
pub(crate) struct Routes {
    by_kind: [Arc<dyn StorageBackend>; 5],
    /// Each backend once, with the kinds it serves.
    pub(crate) distinct: Vec<(Arc<dyn StorageBackend>, Vec<Kind>)>,
}

fn same_backend(a: &Arc<dyn StorageBackend>, b: &Arc<dyn StorageBackend>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

impl Routes {
    pub(crate) fn new(by_kind: [Arc<dyn StorageBackend>; 5]) -> Self {
        let mut distinct: Vec<(Arc<dyn StorageBackend>, Vec<Kind>)> = Vec::new();
        for kind in Kind::ALL {
            let backend = &by_kind[kind.index()];
            match distinct.iter_mut().find(|(b, _)| same_backend(b, backend)) {
                Some((_, kinds)) => kinds.push(kind),
                None => distinct.push((backend.clone(), vec![kind])),
            }
        }
        Routes { by_kind, distinct }
    }

    pub(crate) fn of(&self, kind: Kind) -> &Arc<dyn StorageBackend> {
        &self.by_kind[kind.index()]
    }

    pub(crate) fn is_shared(&self, a: Kind, b: Kind) -> bool {
        same_backend(self.of(a), self.of(b))
    }

    /// The facade's name: the one backend's, or `routed`.
    pub(crate) fn name(&self) -> &'static str {
        match self.distinct.as_slice() {
            [(only, _)] => only.name(),
            _ => "routed",
        }
    }
}

/// A label for a backend serving some kinds: `memory[sessions+conversations]`.
pub(crate) fn route_label(name: &str, kinds: &[Kind]) -> String {
    let kinds: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
    format!("{name}[{}]", kinds.join("+"))
}
