//! Ctrl-C and SIGTERM cancel the running build: the step's process tree is
//! killed and the store is left consistent.

use std::sync::atomic::{AtomicBool, Ordering};

use kiln_builder::executor::CancelToken;

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Cancels `token` when SIGINT or SIGTERM arrives (a second one exits at once).
pub fn cancel_on_interrupt(token: &CancelToken) {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return;
    }
    let token = token.clone();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => return,
        };
        runtime.block_on(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            token.cancel();
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            std::process::exit(130);
        });
    });
}
