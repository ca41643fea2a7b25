//! The weigh task: reads each new registry, publishes weights.

use std::sync::Arc;

use tokio::sync::watch;

use super::{Weighted, weigh_static};
use crate::registry::Registry;

/// Publishes a `Weighted` for every registry change until the registry's
/// writer is gone. The returned receiver starts with the current registry's
/// weights.
pub fn run(mut registry: watch::Receiver<Arc<Registry>>) -> watch::Receiver<Arc<Weighted>> {
    let initial = weigh_static(&registry.borrow_and_update());
    let (tx, rx) = watch::channel(Arc::new(initial));
    tokio::spawn(async move {
        while registry.changed().await.is_ok() {
            let weighted = weigh_static(&registry.borrow_and_update());
            tx.send_if_modified(|current| {
                if **current == weighted {
                    false
                } else {
                    *current = Arc::new(weighted);
                    true
                }
            });
        }
    });
    rx
}
