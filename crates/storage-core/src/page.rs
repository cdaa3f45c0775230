//! Paged results.

use serde::{Deserialize, Serialize};

/// One page of a listing, with the cursor of the next page if there may be one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Pass this back to get the next page; `None` when this is the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page with no successor.
    pub fn last(items: Vec<T>) -> Self {
        Page {
            items,
            next_cursor: None,
        }
    }
}
