use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use storage_core::StorageBackend;

type BoxedBackendFuture = Pin<Box<dyn Future<Output = Arc<dyn StorageBackend>> + Send>>;

/// Builds a backend for a namespace; what a backend crate hands the suite.
#[derive(Clone)]
pub struct BackendFactory {
    build: Arc<dyn Fn(String) -> BoxedBackendFuture + Send + Sync>,
}

impl std::fmt::Debug for BackendFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendFactory")
    }
}

impl BackendFactory {
    /// Wraps an async constructor taking the namespace.
    pub fn new<F, Fut>(build: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Arc<dyn StorageBackend>> + Send + 'static,
    {
        BackendFactory {
            build: Arc::new(move |namespace| Box::pin(build(namespace))),
        }
    }

    /// Builds and initializes a backend for `namespace`.
    pub async fn build(&self, namespace: &str) -> Arc<dyn StorageBackend> {
        let backend = (self.build)(namespace.to_owned()).await;
        backend
            .initialize()
            .await
            .unwrap_or_else(|err| panic!("initialize in namespace {namespace}: {err}"));
        backend
    }
}

/// What a check runs against: a backend in a namespace no other check uses.
#[derive(Debug)]
pub struct TestContext {
    /// The backend under test, initialized.
    pub backend: Arc<dyn StorageBackend>,
    /// Its namespace.
    pub namespace: String,
    factory: BackendFactory,
}

impl TestContext {
    /// A context in a fresh namespace.
    pub async fn new(factory: BackendFactory) -> Self {
        let namespace = fresh_namespace();
        let backend = factory.build(&namespace).await;
        TestContext {
            backend,
            namespace,
            factory,
        }
    }

    /// A second backend value on the same namespace, as another process would have.
    pub async fn same_namespace(&self) -> Arc<dyn StorageBackend> {
        self.factory.build(&self.namespace).await
    }

    /// A backend on another fresh namespace of the same server.
    pub async fn other_namespace(&self) -> Arc<dyn StorageBackend> {
        self.factory.build(&fresh_namespace()).await
    }

    /// An id no other check or call uses, starting with `prefix`.
    pub fn id(&self, prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
    }
}

/// `t_` and 24 hex digits: unique, and valid on every backend.
fn fresh_namespace() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The last 24 digits hold the counter and random bits that make ids unique.
    format!("t_{}", &id[8..])
}
