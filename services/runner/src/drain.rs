//! Shutting down (protocol rule 9): the phases of a drain, the signals that
//! start one, and the timer for its deadline. What a drain does to each
//! assignment is in `assignments`.

use std::time::Instant;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Where the runner is in shutting down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Taking work.
    Off,
    /// Taking no new work; running tests may finish until `deadline`.
    Finishing { deadline: Instant },
    /// Past the deadline (or told twice, or gone without a coordinator for
    /// longer than a lease): every running test was killed and is handed
    /// back; nothing more to wait for.
    HandedBack,
}

impl Drain {
    /// Whether the runner is draining (in either phase).
    pub fn is_on(self) -> bool {
        self != Self::Off
    }

    /// When running tests are to be handed back, if that is still ahead.
    pub fn deadline(self) -> Option<Instant> {
        match self {
            Self::Finishing { deadline } => Some(deadline),
            Self::Off | Self::HandedBack => None,
        }
    }
}

/// SIGTERM and SIGINT (Ctrl-C), either of which drains; a second one hands
/// back what still runs.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Hooks the signals (from now on they no longer end the process).
    pub fn hook() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Waits for a drain's deadline; forever if there is none.
pub async fn deadline(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
