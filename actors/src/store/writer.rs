//! The store's writer: every write of the gateway goes through one thread that owns the
//! writer connection and commits in batches (group commit). The thread takes the first write
//! that arrives and every other one already queued behind it (up to a limit) into one
//! transaction, so under load hundreds of small writes share a commit, while a quiet gateway
//! still commits each write at once. Each write runs in a savepoint of its own: a failing one
//! is undone alone and its caller gets its error; callers hear back only after the commit.
//! Writes are applied in the order they were sent.

use std::sync::mpsc;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{guarded, StoreError};

/// Largest number of writes in one transaction.
const MAX_BATCH: usize = 1024;

type Finish = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write: runs on the writer connection, says whether it succeeded, and returns what to do
/// once the batch has committed (or failed to).
type Op = Box<dyn FnOnce(&Connection) -> (bool, Finish) + Send>;

/// The sending side of the writer thread; cheap to clone.
#[derive(Clone)]
pub struct StoreWriter {
    ops: mpsc::Sender<Op>,
}

impl StoreWriter {
    /// Start the writer thread on `conn`.
    pub(super) fn start(conn: r2d2::PooledConnection<SqliteConnectionManager>) -> StoreWriter {
        let (tx, rx) = mpsc::channel::<Op>();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx))
            .expect("start the store writer thread");
        StoreWriter { ops: tx }
    }

    /// Queue the write `f`; the future resolves with its result after its batch commits.
    pub fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, StoreError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            let result = guarded(|| f(conn));
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit| {
                let _ = tx.send(match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Commit(e)),
                });
            });
            (ok, finish)
        });
        let sent = self.ops.send(op).is_ok();
        async move {
            if !sent {
                return Err(StoreError::Panic("the store writer stopped".into()));
            }
            rx.await
                .unwrap_or_else(|_| Err(StoreError::Panic("the store writer stopped".into())))
        }
    }
}

impl StoreWriter {
    /// Queue the write `f` without waiting for it; a failure is logged.
    pub fn submit_detached<T: 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) {
        let op: Op = Box::new(move |conn| {
            let error = guarded(|| f(conn)).err().map(|e| e.to_string());
            let ok = error.is_none();
            let finish: Finish = Box::new(move |commit| {
                if let Some(e) = error.or(commit.err()) {
                    tracing::error!(error = %e, "a store write failed");
                }
            });
            (ok, finish)
        });
        if self.ops.send(op).is_err() {
            tracing::error!("the store writer stopped; a write was dropped");
        }
    }
}

/// The writer thread: batch, apply, commit, answer; until every sender is gone.
fn run(conn: r2d2::PooledConnection<SqliteConnectionManager>, ops: mpsc::Receiver<Op>) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        batch.extend(ops.try_iter().take(MAX_BATCH - 1));
        apply(&conn, batch);
    }
}

fn apply(conn: &Connection, batch: Vec<Op>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Run each write on its own then: the batch cannot be one transaction.
        tracing::error!(error = %e, "store writer could not begin a transaction");
        for op in batch {
            let (_, finish) = op(conn);
            finish(Ok(()));
        }
        return;
    }
    let mut finishers = Vec::with_capacity(batch.len());
    for op in batch {
        let savepoint = conn.execute_batch("SAVEPOINT w");
        let (ok, finish) = op(conn);
        if savepoint.is_ok() {
            let end = if ok {
                "RELEASE w"
            } else {
                "ROLLBACK TO w; RELEASE w"
            };
            if let Err(e) = conn.execute_batch(end) {
                tracing::error!(error = %e, "store writer savepoint");
            }
        }
        finishers.push(finish);
    }
    let commit = conn.execute_batch("COMMIT").map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK");
        tracing::error!(error = %e, "store writer commit failed");
        e.to_string()
    });
    for finish in finishers {
        finish(commit.clone());
    }
}
