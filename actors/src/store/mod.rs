//! `Store`: the only place SQL lives. A SyncArbiter of `Store` actors over an r2d2 pool of
//! rusqlite connections, so SQLite's blocking calls never run on an event loop. Each query
//! family has its own module of messages (`users`, `sessions`, `runs`), and each message's
//! work is a plain function over a `Connection` so offline commands (`migrate`, `admin`) reuse
//! exactly the same SQL.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;

pub mod conversations;
pub mod counters;
pub mod runs;
pub mod schema;
pub mod sessions;
pub mod usage;
pub mod users;
pub mod webhooks;

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
}

/// Per-connection settings; WAL is a property of the file and is set once in [`open`].
const CONNECTION_PRAGMAS: &str =
    "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;";

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

/// One worker of the store's SyncArbiter. Reads run on pooled connections in parallel (WAL
/// lets them); writes take the one writer connection in turn. SQLite allows one writer at a
/// time anyway, and a second writer would not queue but sleep in SQLite's busy handler
/// (a millisecond or more per collision), so handing the writer over in process is far faster.
pub struct Store {
    pool: Pool,
    writer: Arc<Mutex<r2d2::PooledConnection<SqliteConnectionManager>>>,
}

impl Store {
    /// Start `threads` store workers sharing `pool` (which must hold more than one connection).
    pub fn start(pool: Pool, threads: usize) -> Result<Addr<Store>, StoreError> {
        let writer = Arc::new(Mutex::new(pool.get()?));
        Ok(SyncArbiter::start(threads, move || Store {
            pool: pool.clone(),
            writer: writer.clone(),
        }))
    }

    /// Run `f` on a pooled connection. A panic inside is turned into an error so it cannot
    /// kill the worker thread (a SyncArbiter does not replace dead threads).
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get()?;
        guarded(|| f(&mut conn))
    }

    /// Run `f` on the writer connection.
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock poisons it; the connection itself is still sound
        // (SQLite rolls back an unfinished transaction when it is next used or dropped).
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        guarded(|| f(&mut conn))
    }
}

fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let reason = crate::supervise::panic_message(&panic);
        tracing::error!(%reason, "store query panicked");
        Err(StoreError::Panic(reason))
    })
}

impl Actor for Store {
    type Context = SyncContext<Self>;
}

/// Check that the database answers (for `/api/health`).
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Ping;

impl Handler<Ping> for Store {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, _: Ping, _: &mut SyncContext<Self>) -> Self::Result {
        self.with_conn(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
    }
}

/// Declare a message answered by one store function: `store_handler!(Msg => fn_name)` makes
/// `Store` handle `Msg` by calling `fn_name(&mut Connection, Msg)` on a pooled connection;
/// `store_handler!(write Msg => fn_name)` does it on the writer connection.
#[macro_export]
macro_rules! store_handler {
    ($msg:ty => $func:path) => {
        impl ::actix::Handler<$msg> for $crate::store::Store {
            type Result = <$msg as ::actix::Message>::Result;

            fn handle(&mut self, msg: $msg, _: &mut ::actix::SyncContext<Self>) -> Self::Result {
                self.with_conn(move |conn| $func(conn, msg))
            }
        }
    };
    (write $msg:ty => $func:path) => {
        impl ::actix::Handler<$msg> for $crate::store::Store {
            type Result = <$msg as ::actix::Message>::Result;

            fn handle(&mut self, msg: $msg, _: &mut ::actix::SyncContext<Self>) -> Self::Result {
                self.with_writer(move |conn| $func(conn, msg))
            }
        }
    };
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
