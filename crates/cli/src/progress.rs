//! Progress bars for transfers: shown only when stdout is a terminal. The only module that
//! knows indicatif.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A transfer's progress, or nothing when output is not a terminal.
pub struct Transfer {
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// A bar for `total` bytes (unknown when `None`) labelled `label`.
    pub fn start(label: &str, total: Option<u64>) -> Self {
        if !std::io::stdout().is_terminal() {
            return Self { bar: None };
        }
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template(
            "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(label.to_owned());
        Self { bar: Some(bar) }
    }

    /// `bytes` more moved.
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
