//! [`Interrupt`]: stopping an operation from outside (Ctrl-C), as opposed to dropping its
//! future.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// Stops an operation from outside, for instance on Ctrl-C. The operation ends as soon as
/// it safely can and returns: an image create removes the partial image and answers
/// [`crate::CoreError::Cancelled`]; a build kills its running step and fails, keeping its
/// state as `<name>:failed` like any failed build ([`crate::CoreError::BuildFailed`]).
/// Dropping an operation's future instead abandons it: what it made is removed.
///
/// Cheap to clone; every clone is the same interrupt.
#[derive(Debug, Clone)]
pub struct Interrupt {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Interrupt {
    fn default() -> Self {
        Self::new()
    }
}

impl Interrupt {
    /// An interrupt not yet fired.
    pub fn new() -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Fires it: every operation given this interrupt stops.
    pub fn interrupt(&self) {
        self.tx.send_replace(true);
    }

    /// Whether it fired.
    pub fn is_interrupted(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes when it fires (at once if it did).
    pub async fn interrupted(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the wait ends only when it fires.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

/// Ends a helper task when dropped.
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets its flag when dropped, and (with an interrupt) when the interrupt fires: blocking
/// work polls the flag and stops, whether the async caller went away or was interrupted.
pub(crate) struct CancelFlag {
    flag: Arc<AtomicBool>,
    _watch: Option<AbortOnDrop>,
}

impl CancelFlag {
    /// A flag set on drop, and when `interrupt` fires. Needs a tokio runtime when
    /// `interrupt` is given.
    pub fn new(interrupt: Option<&Interrupt>) -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        let _watch = interrupt.map(|i| {
            let (i, f) = (i.clone(), Arc::clone(&flag));
            AbortOnDrop(tokio::spawn(async move {
                i.interrupted().await;
                f.store(true, Ordering::SeqCst);
            }))
        });
        Self { flag, _watch }
    }

    /// The flag, for the blocking work.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }
}

impl Drop for CancelFlag {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for CancelFlag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelFlag")
            .field("set", &self.flag.load(Ordering::SeqCst))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_every_clone() {
        let a = Interrupt::new();
        let b = a.clone();
        assert!(!b.is_interrupted());
        let waiter = tokio::spawn(async move { b.interrupted().await });
        a.interrupt();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter ends when the interrupt fires")
            .expect("the waiter task does not panic");
        assert!(a.is_interrupted());
        // Once fired, a new wait ends at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), a.interrupted())
            .await
            .expect("a fired interrupt answers at once");
    }
}
