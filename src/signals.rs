//! SIGINT and SIGTERM for `run` and `convert`: the first stops the work gracefully (see
//! `main::interrupted`), a second exits at once.

use crate::console::note;
use tokio::sync::watch;

/// Exit status after SIGINT (Ctrl-C): 128 + 2, as shells report a death by that signal.
pub const SIGINT_STATUS: u8 = 130;
/// Exit status after SIGTERM: 128 + 15.
pub const SIGTERM_STATUS: u8 = 143;

/// A signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// `SIGINT` or `SIGTERM`.
    pub name: &'static str,
    /// The exit status it maps to.
    pub status: u8,
}

/// Tells the work that a stop was asked for.
pub struct Signals(watch::Receiver<Option<Stop>>);

impl Signals {
    /// Starts listening. The handlers live on a thread of their own with its own small
    /// runtime, so a second signal is heard even while the main runtime shuts down.
    pub fn listen() -> std::io::Result<Self> {
        let (tx, rx) = watch::channel(None);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut listener = match Listener::new() {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let first = listener.next().await;
                    note!(
                        "{}: stopping; any load in progress is abandoned (a second signal exits at once)",
                        first.name
                    );
                    let _ = tx.send(Some(first));
                    let second = listener.next().await;
                    note!("{}: exiting at once; the next run cleans up", second.name);
                    std::process::exit(i32::from(second.status));
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("the signal thread ended before listening"))??;
        Ok(Signals(rx))
    }

    /// Resolves at the first signal (at once if it came already); never if none comes.
    pub async fn stopped(&mut self) -> Stop {
        match self.0.wait_for(Option::is_some).await {
            Ok(stop) => stop.unwrap_or(Stop {
                name: "SIGINT",
                status: SIGINT_STATUS,
            }),
            // The listener is gone (its runtime failed): no signal can arrive any more.
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(unix)]
struct Listener {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Listener {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Listener {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) -> Stop {
        tokio::select! {
            Some(()) = self.int.recv() => Stop { name: "SIGINT", status: SIGINT_STATUS },
            Some(()) = self.term.recv() => Stop { name: "SIGTERM", status: SIGTERM_STATUS },
            else => std::future::pending().await,
        }
    }
}

#[cfg(not(unix))]
struct Listener;

#[cfg(not(unix))]
impl Listener {
    fn new() -> std::io::Result<Self> {
        Ok(Listener)
    }

    async fn next(&mut self) -> Stop {
        match tokio::signal::ctrl_c().await {
            Ok(()) => Stop {
                name: "Ctrl-C",
                status: SIGINT_STATUS,
            },
            Err(_) => std::future::pending().await,
        }
    }
}
