//! Progress on stderr for the commands that can run for more than a second (migrate,
//! cleanup, bench, export): drawn only when stderr is a terminal and the output is not
//! JSON, so pipes, logs and scripts never see it.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether progress may be drawn.
fn visible(json_output: bool) -> bool {
    !json_output && std::io::stderr().is_terminal()
}

/// A spinner with a prefix (the phase) and a count of items.
pub fn spinner(json_output: bool, template: &str) -> ProgressBar {
    if !visible(json_output) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar of `total` steps with a message (the step running).
pub fn steps(json_output: bool, total: u64) -> ProgressBar {
    if !visible(json_output) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The migration's progress: one spinner-with-count per phase.
pub struct MigrateBar(pub ProgressBar);

impl storage::migrate::Progress for MigrateBar {
    fn phase(&self, name: &str) {
        self.0.set_prefix(name.to_owned());
        self.0.set_position(0);
    }

    fn advance(&self, items: u64) {
        self.0.inc(items);
    }
}
