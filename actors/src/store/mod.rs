//! `Store`: the only place SQL lives. A SyncArbiter of `Store` actors over an r2d2 pool of
//! rusqlite connections, so SQLite's blocking calls never run on an event loop. Each query
//! family has its own module of messages (`users`, `sessions`, `runs`), and each message's
//! work is a plain function over a `Connection` so offline commands (`migrate`, `admin`) reuse
//! exactly the same SQL.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use futures_util::future::BoxFuture;

use actix::prelude::*;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

pub mod approvals;
pub mod channels;
pub mod conversations;
pub mod counters;
pub mod groups;
pub mod runs;
pub mod schema;
pub mod sealed;
pub mod sessions;
pub mod tasks;
pub mod usage;
pub mod users;
pub mod webhooks;
pub mod writer;

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("the database at {path} has schema version {found}, newer than this loop-gateway supports ({supported}); upgrade loop-gateway or restore a backup")]
    TooNew {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("cannot create the data directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("internal error in the store: {0}")]
    Panic(String),
    #[error("the database could not commit: {0}")]
    Commit(String),
}

/// Per-connection settings; WAL is a property of the file and is set once in [`open`].
const CONNECTION_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;
     PRAGMA synchronous = NORMAL; PRAGMA cache_size = -8000; PRAGMA temp_store = MEMORY;";

/// Open (creating it and its directory if needed) the database at `path`, apply pending
/// migrations from schema.sql, and return a pool of `size` connections.
pub fn open(path: &Path, size: u32) -> Result<Pool, StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    {
        let mut conn = Connection::open(path)?;
        conn.execute_batch(CONNECTION_PRAGMAS)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        schema::migrate(&mut conn, &path.display().to_string())?;
    }
    let manager = SqliteConnectionManager::file(path).with_init(|c| {
        c.execute_batch(CONNECTION_PRAGMAS)?;
        counters::install(c)
    });
    Ok(r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .build(manager)?)
}

/// The store as the rest of the gateway sees it: `send` and `do_send` like an `Addr`, with
/// each message routed to where it belongs: reads to a SyncArbiter of readers on pooled
/// connections (WAL lets them run in parallel), writes to the [`writer::StoreWriter`] thread,
/// which commits them in batches on the one writer connection.
#[derive(Clone)]
pub struct Store {
    reader: Addr<StoreReader>,
    writer: writer::StoreWriter,
}

/// A message the store answers; the `store_handler!` macro says whether it reads or writes.
pub trait StoreMessage: Message + Send + 'static
where
    Self::Result: Send,
{
    fn route(self, store: &Store) -> BoxFuture<'static, Result<Self::Result, MailboxError>>;
    fn route_no_reply(self, store: &Store);
}

impl Store {
    /// Start `threads` readers and the writer over `pool` (which must hold more than one
    /// connection: the writer keeps one for itself).
    pub fn start(pool: Pool, threads: usize) -> Result<Store, StoreError> {
        let writer_conn = pool.get()?;
        prepare_writer(&writer_conn)?;
        Ok(Store {
            reader: SyncArbiter::start(threads, move || StoreReader { pool: pool.clone() }),
            writer: writer::StoreWriter::start(writer_conn),
        })
    }

    pub fn send<M>(&self, msg: M) -> BoxFuture<'static, Result<M::Result, MailboxError>>
    where
        M: StoreMessage,
        M::Result: Send,
    {
        msg.route(self)
    }

    /// Send without waiting for the answer.
    pub fn do_send<M>(&self, msg: M)
    where
        M: StoreMessage,
        M::Result: Send,
    {
        msg.route_no_reply(self)
    }
}

/// Write-ahead log pages past which the writer checkpoints after a commit (64 MiB).
const WAL_RESTART_PAGES: i64 = 16_384;

/// Settings of the writer connection. Checkpoints (and the fsync they need) mostly happen on a
/// reader, off the write path ([`Checkpoint`], twice a second). But under a steady stream of
/// commits a reader's checkpoint never reaches the last frame, so the log never starts over
/// and grows without end (520 MB after 12,000 runs in the benchmark, slowing every page
/// lookup). So once the log passes `WAL_RESTART_PAGES` the writer checkpoints after its
/// commit, copying only what the readers left; the next transaction then starts the log from
/// the beginning, and the file is cut back to the same size. (Cost at full load: about 6 % of
/// peak runs/s, for the fsync the writer now waits on every 64 MiB of log.)
fn prepare_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "wal_autocheckpoint", WAL_RESTART_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", WAL_RESTART_PAGES * 4096)?;
    Ok(())
}

/// One reader of the store's SyncArbiter.
pub struct StoreReader {
    pool: Pool,
}

impl StoreReader {
    /// Run `f` on a pooled connection. A panic inside is turned into an error so it cannot
    /// kill the worker thread (a SyncArbiter does not replace dead threads).
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        guarded(|| f(&mut conn))
    }
}

/// The reply of a store message with a mailbox failure folded into the store's error.
pub fn answered<T>(r: Result<Result<T, StoreError>, MailboxError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Panic(format!("the store did not answer: {e}")))?
}

pub(crate) fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let reason = crate::supervise::panic_message(&panic);
        tracing::error!(%reason, "store query panicked");
        Err(StoreError::Panic(reason))
    })
}

impl Actor for StoreReader {
    type Context = SyncContext<Self>;
}

/// Check that the database answers (for `/api/health`).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Ping;

fn ping(conn: &mut Connection, _: Ping) -> Result<(), StoreError> {
    Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)
}

crate::store_handler!(Ping => ping);

/// Answered once every write sent before it is committed (writes are applied in order):
/// shutdown waits on it so nothing queued is lost.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Barrier;

fn barrier(_: &Connection, _: Barrier) -> Result<(), StoreError> {
    Ok(())
}

crate::store_handler!(write Barrier => barrier);

/// Copy the write-ahead log into the database file without blocking the writer (run
/// periodically; the writer checkpoints by itself only when the log grows large).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Checkpoint;

fn checkpoint(conn: &mut Connection, _: Checkpoint) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

crate::store_handler!(Checkpoint => checkpoint);

/// Declare a message answered by one store function: `store_handler!(Msg => fn_name)` has a
/// reader call `fn_name(&mut Connection, Msg)` on a pooled connection;
/// `store_handler!(write Msg => fn_name)` has the writer call `fn_name(&Connection, Msg)`
/// inside its batch transaction (in a savepoint of its own).
#[macro_export]
macro_rules! store_handler {
    ($msg:ty => $func:path) => {
        impl ::actix::Handler<$msg> for $crate::store::StoreReader {
            type Result = <$msg as ::actix::Message>::Result;

            fn handle(&mut self, msg: $msg, _: &mut ::actix::SyncContext<Self>) -> Self::Result {
                self.with_conn(move |conn| $func(conn, msg))
            }
        }

        impl $crate::store::StoreMessage for $msg {
            fn route(
                self,
                store: &$crate::store::Store,
            ) -> ::futures_util::future::BoxFuture<
                'static,
                Result<<$msg as ::actix::Message>::Result, ::actix::MailboxError>,
            > {
                Box::pin(store.reader().send(self))
            }

            fn route_no_reply(self, store: &$crate::store::Store) {
                store.reader().do_send(self)
            }
        }
    };
    (write $msg:ty => $func:path) => {
        impl $crate::store::StoreMessage for $msg {
            fn route(
                self,
                store: &$crate::store::Store,
            ) -> ::futures_util::future::BoxFuture<
                'static,
                Result<<$msg as ::actix::Message>::Result, ::actix::MailboxError>,
            > {
                let done = store.writer().submit(move |conn| $func(conn, self));
                Box::pin(async move { Ok(done.await) })
            }

            fn route_no_reply(self, store: &$crate::store::Store) {
                // Queued in order like any write; a failure goes to the log.
                store
                    .writer()
                    .submit_detached(move |conn| $func(conn, self));
            }
        }
    };
}

impl Store {
    #[doc(hidden)]
    pub fn reader(&self) -> &Addr<StoreReader> {
        &self.reader
    }

    #[doc(hidden)]
    pub fn writer(&self) -> &writer::StoreWriter {
        &self.writer
    }
}

/// The window of a list query; every list endpoint shares it.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// One page of a list plus the total count matching the filter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands of commits in a row, with no reader checkpointing: the log still starts over
    /// and its file stays near `WAL_RESTART_PAGES`, instead of holding every frame.
    #[test]
    fn the_write_ahead_log_stays_bounded_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        let pool = open(&path, 2).unwrap();
        let conn = pool.get().unwrap();
        prepare_writer(&conn).unwrap();
        let writer = writer::StoreWriter::start(conn);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            writer
                .submit(|c| Ok(c.execute_batch("CREATE TABLE scratch (v BLOB)")?))
                .await
                .unwrap();
            // Each commit writes four 4 KiB pages or more: about twice the limit in all.
            for _ in 0..8_000 {
                writer
                    .submit(|c| {
                        Ok(c.execute("INSERT INTO scratch (v) VALUES (zeroblob(12000))", [])?)
                    })
                    .await
                    .unwrap();
            }
        });
        let wal = std::fs::metadata(dir.path().join("gateway.db-wal"))
            .unwrap()
            .len();
        let limit = (WAL_RESTART_PAGES as u64 + 1_000) * 4096;
        assert!(wal <= limit, "the log is {wal} bytes (limit {limit})");
    }
}
