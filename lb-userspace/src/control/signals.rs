//! Signals, as ldirectord handles them: HUP reloads; TERM, INT, QUIT, ABRT (IOT), SYS, XCPU
//! and XFSZ stop the daemon cleanly. ldirectord also stops on ILL, FPE, SEGV and BUS; a Rust
//! process that gets one of those is broken and cannot safely go on (tokio refuses to catch
//! them), so they keep their default action. PIPE is ignored (Rust's default).

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::daemon::AgentHandle;

const STOP: [(&str, libc::c_int); 7] = [
    ("TERM", libc::SIGTERM),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ABRT", libc::SIGABRT),
    ("SYS", libc::SIGSYS),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
];

/// The daemon's signal handlers, installed as early as possible: until they are, HUP and
/// TERM would kill the process without cleaning up.
pub struct Signals {
    hup: Signal,
    stop: Vec<(&'static str, Signal)>,
}

impl Signals {
    /// Must be called within a tokio runtime.
    pub fn install() -> std::io::Result<Signals> {
        let hup = signal(SignalKind::hangup())?;
        let stop = STOP
            .iter()
            .map(|(name, number)| Ok((*name, signal(SignalKind::from_raw(*number))?)))
            .collect::<std::io::Result<_>>()?;
        Ok(Signals { hup, stop })
    }

    /// Reloads `agent` on every HUP until a stop signal arrives, then stops it (and waits)
    /// and returns the signal's name.
    pub async fn forward(mut self, agent: AgentHandle) -> &'static str {
        loop {
            let stop = futures_first(&mut self.stop);
            tokio::select! {
                _ = self.hup.recv() => {
                    agent.reload().await;
                }
                name = stop => {
                    agent.stop(name).await;
                    return name;
                }
            }
        }
    }
}

/// The name of the first stop signal to arrive.
async fn futures_first(signals: &mut [(&'static str, Signal)]) -> &'static str {
    std::future::poll_fn(|cx| {
        for (name, signal) in signals.iter_mut() {
            if signal.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(*name);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
