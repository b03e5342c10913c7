//! Progress bars for `run` on a terminal: one line per entity type with its state, files,
//! bytes and rows, redrawn a few times a second from the run's live counters.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use mews_etl::progress::{LoadProgress, RunProgress};
use std::collections::BTreeMap;
use std::time::Duration;

/// Redraw interval: smooth enough to show movement, rare enough to cost nothing.
const REDRAW: Duration = Duration::from_millis(200);

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Updates each entity type's line from `progress`, adding lines for new ones.
fn draw(
    progress: &RunProgress,
    multi: &MultiProgress,
    style: &ProgressStyle,
    bars: &mut BTreeMap<String, ProgressBar>,
) {
    for (entity, view) in progress.snapshot() {
        let bar = bars.entry(entity.clone()).or_insert_with(|| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(style.clone());
            b
        });
        let mut msg = format!("{entity:<24} {:<11}", view.state);
        if let Some(l) = &view.load {
            msg.push_str(&format!(
                " files {}/{}  {:>10}  {:>10} rows",
                LoadProgress::get(&l.files_done),
                LoadProgress::get(&l.files_total),
                mib(LoadProgress::get(&l.bytes)),
                LoadProgress::get(&l.rows)
            ));
            let rejected = LoadProgress::get(&l.rejected);
            if rejected > 0 {
                msg.push_str(&format!("  {rejected} rejected"));
            }
        }
        bar.set_message(msg);
        bar.tick();
    }
}

/// Draws `progress` until the returned handle is stopped.
pub struct Bars {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Bars {
    /// Starts drawing on stderr.
    pub fn start(progress: RunProgress) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(REDRAW) => false,
                    _ = stopped.changed() => true,
                };
                // Drawn once more when stopping, so each line shows how its entity ended.
                draw(&progress, &multi, &style, &mut bars);
                if stopping {
                    break;
                }
            }
            for b in bars.values() {
                b.finish();
            }
            if !bars.is_empty() {
                // The last line drawn has no newline of its own: the summary that follows
                // on stdout would start on it.
                use std::io::Write;
                let _ = std::io::stderr().write_all(b"\n");
            }
        });
        Bars { stop, task }
    }

    /// Draws a last time and stops.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
