//! The signals a long-running subcommand answers: SIGINT/SIGTERM → a cancellation token
//! that every server and worker watches; SIGHUP → re-read what can change without a
//! restart (certificates, webhook secrets).

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGINT or SIGTERM.
pub(crate) fn on_shutdown() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight work");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Calls `reload` on every SIGHUP until `shutdown` is cancelled. Without this, SIGHUP
/// would end the process (its default action); with it, a SIGHUP is never fatal.
pub(crate) fn on_hangup(shutdown: &CancellationToken, reload: impl Fn() + Send + 'static) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: reloading needs a restart");
            return;
        }
    };
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = hangups.recv() => if received.is_none() { return },
            }
            tracing::info!("SIGHUP: reloading");
            reload();
        }
    });
}
