//! Progress bars for long work. Drawn on stderr only when it is a terminal; hidden otherwise,
//! so cron mails and `--json` output stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar counting bytes, with throughput and ETA.
pub fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), target());
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// A bar counting rows (or files), with rate.
pub fn count_bar(total: Option<u64>, what: &str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, target());
    let tpl = if total.is_some() {
        format!("{{prefix:>12}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}}")
    } else {
        format!("{{prefix:>12}} {{spinner}} {{pos}} {unit} {{per_sec}}")
    };
    bar.set_style(
        ProgressStyle::with_template(&tpl)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}
