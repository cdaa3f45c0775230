//! One module per group of commands.

pub mod checkpoints;
pub mod export;
pub mod health;
pub mod inspect;
pub mod ops;
pub mod ui;
