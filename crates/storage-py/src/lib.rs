//! Python bindings over the [`storage`] facade: the native module `agent_storage._native`.
//!
//! One class, [`NativeStorage`], wraps a facade [`storage::Storage`] configured exactly as Rust
//! callers configure it (explicit settings > `STORAGE_*` environment > `storage.toml` >
//! defaults, through [`storage::ConfigLoader`]). Every method returns an asyncio awaitable
//! (through `pyo3-async-runtimes` on a tokio runtime) or, with `blocking=True`, waits on
//! that runtime with the GIL released (a call that completes without waiting, such as a
//! memory-backend one, keeps it): LangGraph's checkpointer has sync and async halves, and
//! both call the same Rust code.
//!
//! Values cross the boundary as serde values through `pythonize`, so a Python dict is the
//! JSON shape of the Rust type; channel values and pending writes may also be typed bytes,
//! the `(type, bytes)` tuples of LangGraph's serializer (see `values.rs`). Errors become the Python classes of `agent_storage.errors`
//! (see `errors.rs`). The seed's record shapes (a session dict with a `metrics` sub-dict, a
//! message dict with a timestamp) are built in `seed.rs`, so the Python package stays thin.
//! How a call runs (awaitable or blocking, Ctrl-C while it waits) is `calls.rs`, on the
//! runtime of `runtime.rs` (its own, rebuilt in a forked child and kept from attaching to
//! an exiting interpreter); `args.rs` reads text and count arguments.

#![forbid(unsafe_code)]

mod args;
mod calls;
mod contexts;
mod conversation;
mod errors;
mod native;
mod operations;
mod runtime;
mod seed;
mod values;

use pyo3::prelude::*;

pub use native::NativeStorage;

/// The extension module `agent_storage._native`.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<NativeStorage>()?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    runtime::register(module)?;
    Ok(())
}
