use crate::cipher::TranscriptCipher;
use crate::error::{Result, StoreError};
use crate::model::StoreKind;
use crate::url::DatabaseUrl;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a caller waits for a free connection before getting [`StoreError::Unavailable`].
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits on a lock held by another process before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// PostgreSQL connections per node; several nodes share one server (default max_connections 100).
const POSTGRES_POOL_SIZE: u32 = 20;

/// The repository: every read and write of counsel's data goes through here.
///
/// Cheap to clone (the pools are shared).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) backend: Backend,
    pub(crate) cipher: TranscriptCipher,
}

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// SQLite allows one writer at a time. Writes go through a single connection so they queue in
/// the pool instead of failing with SQLITE_BUSY; reads use several connections (WAL lets them run
/// beside the writer).
#[derive(Clone, Debug)]
pub(crate) struct SqliteDb {
    pub(crate) reader: SqlitePool,
    pub(crate) writer: SqlitePool,
}

/// Runs `$body` with `$pool` bound to the right pool of whichever database the store uses. The body
/// is compiled once per database, so sqlx's generic query API serves both with the same code.
/// `$access` is `reader` or `writer` (PostgreSQL has one pool for both).
macro_rules! with_pool {
    ($store:expr, $access:ident, |$pool:ident| $body:expr) => {
        match &$store.backend {
            $crate::store::Backend::Sqlite(db) => {
                let $pool = &db.$access;
                $body
            }
            $crate::store::Backend::Postgres(pg) => {
                let $pool = pg;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Writes one [`AuditEntry`](crate::AuditEntry) stamped `$at` (microseconds) on `$executor`: a
/// pool, or a transaction when the entry must land with the change it records. The one place
/// the audit row's columns are spelled out for a single entry.
macro_rules! insert_audit {
    ($executor:expr, $entry:expr, $at:expr) => {{
        let entry: &$crate::AuditEntry = $entry;
        sqlx::query(
            "INSERT INTO audit_log (id, user_id, action, resource_type, resource_id, ip_address, user_agent, \"timestamp\") \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(entry.user_id.map(|u| *u.as_uuid()))
        .bind(entry.action.as_str())
        .bind(entry.resource_type.as_str())
        .bind(entry.resource_id)
        .bind(entry.ip.map(|ip| ip.to_string()))
        .bind(entry.user_agent.as_deref())
        .bind($at)
        .execute($executor)
        .await
    }};
}
pub(crate) use insert_audit;

impl Store {
    /// Connects to `sqlite://PATH` (the file is created if missing), `sqlite::memory:` (one
    /// connection, for throwaway use) or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str, cipher: TranscriptCipher) -> Result<Store> {
        let url = DatabaseUrl::parse(url).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let backend = match url.kind() {
            StoreKind::Sqlite => Backend::Sqlite(connect_sqlite(url.as_str()).await?),
            StoreKind::Postgres => {
                let options = PgConnectOptions::from_str(url.as_str()).map_err(|_| {
                    StoreError::Invalid("DATABASE_URL is not a valid postgres:// URL".to_owned())
                })?;
                let pool = PgPoolOptions::new()
                    .max_connections(POSTGRES_POOL_SIZE)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await?;
                Backend::Postgres(pool)
            }
        };
        Ok(Store { backend, cipher })
    }

    pub fn kind(&self) -> StoreKind {
        match self.backend {
            Backend::Sqlite(_) => StoreKind::Sqlite,
            Backend::Postgres(_) => StoreKind::Postgres,
        }
    }

    /// Applies every pending migration, then makes sure the six counselor categories exist
    /// (existing rows, and any edits made to them, are left alone).
    pub async fn migrate(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(db) => SQLITE_MIGRATIONS.run(&db.writer).await?,
            Backend::Postgres(pg) => POSTGRES_MIGRATIONS.run(pg).await?,
        }
        self.seed_categories().await
    }

    /// Reverts every migration, dropping all of counsel's tables and their data.
    pub async fn migrate_down_all(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(db) => SQLITE_MIGRATIONS.undo(&db.writer, 0).await?,
            Backend::Postgres(pg) => POSTGRES_MIGRATIONS.undo(pg, 0).await?,
        }
        Ok(())
    }

    /// Reverts the migrations newer than `version` (a migration's timestamp prefix, e.g.
    /// `20261122000001`), newest first, keeping the data the older schema can hold.
    pub async fn migrate_down_to(&self, version: i64) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(db) => SQLITE_MIGRATIONS.undo(&db.writer, version).await?,
            Backend::Postgres(pg) => POSTGRES_MIGRATIONS.undo(pg, version).await?,
        }
        Ok(())
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, reader, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Refreshes the query planner's statistics; worth running after loading many rows at once
    /// and now and then (the purge job is a good moment). On PostgreSQL it also vacuums: only a
    /// vacuumed page is marked all-visible, and until then an index-only scan (the history
    /// listing's pages and date counts) still reads every table row it passes to check
    /// visibility. Autovacuum does the same in time where it is on.
    pub async fn optimize(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(db) => {
                sqlx::query("ANALYZE").execute(&db.writer).await?;
            }
            Backend::Postgres(pg) => {
                // VACUUM refuses to run inside a transaction or a prepared statement.
                sqlx::raw_sql("VACUUM (ANALYZE)").execute(pg).await?;
            }
        }
        Ok(())
    }

    /// Called after transcript text was erased. SQLite keeps every page a transaction wrote in its
    /// write-ahead log (`counsel.db-wal`) until a checkpoint copies the log into the database file,
    /// so the erased ciphertext (written there when the lines were stored) would stay on disk
    /// beside the key. With `secure_delete` on, the pages the erasing transaction wrote have the
    /// deleted rows zeroed; checkpointing now copies them over the old ones and truncating the log
    /// discards every older frame. A reader still on an older snapshot can hold the checkpoint up
    /// for the busy timeout; the erase itself is committed either way, so a checkpoint that cannot
    /// finish is logged and the next one (SQLite's own, or the next erase) completes it.
    pub(crate) async fn checkpoint_after_erase(&self) {
        let Backend::Sqlite(db) = &self.backend else {
            return;
        };
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&db.writer)
            .await
        {
            Ok((0, _, _)) => {}
            Ok(_) => tracing::warn!(
                "the SQLite write-ahead log was busy and could not be truncated after erasing transcript text; a later checkpoint will"
            ),
            Err(error) => tracing::warn!(
                %error,
                "the SQLite write-ahead log could not be checkpointed after erasing transcript text"
            ),
        }
    }

    /// Closes every connection; later calls fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(db) => {
                db.reader.close().await;
                db.writer.close().await;
            }
            Backend::Postgres(pg) => pg.close().await,
        }
    }
}

async fn connect_sqlite(url: &str) -> Result<SqliteDb> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|_| StoreError::Invalid("DATABASE_URL is not a valid sqlite: URL".to_owned()))?
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .synchronous(SqliteSynchronous::Normal)
        // Deleted transcript rows are overwritten, not left readable in free pages.
        .pragma("secure_delete", "ON")
        // Reads through a shared memory map instead of a read() call per page, and a larger
        // per-connection page cache: the session index stays hot under many concurrent readers.
        .pragma("mmap_size", "268435456")
        .pragma("cache_size", "-16384");
    if in_memory {
        // An in-memory database lives and dies with its one connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        return Ok(SqliteDb {
            reader: pool.clone(),
            writer: pool,
        });
    }
    make_private(options.get_filename())?;
    let options = options.journal_mode(SqliteJournalMode::Wal);
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await?;
    let readers = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
        .clamp(4, 16);
    let reader = SqlitePoolOptions::new()
        .max_connections(readers)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.read_only(true))
        .await?;
    Ok(SqliteDb { reader, writer })
}

/// The database file and its `-wal` and `-shm` companions hold every student's sessions: only
/// counsel's own user may read them. A missing file is created here with mode 0600 (and any
/// missing directory above it with 0700) before SQLite opens it, because SQLite would create it
/// with the umask's mode (0644 as a rule) and gives its `-wal` and `-shm` files the database
/// file's own mode. Files made before this rule lose any group and other access.
#[cfg(unix)]
fn make_private(file: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

    let unusable = |error: std::io::Error| StoreError::Unavailable(Box::new(error));
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(unusable)?;
        }
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(unusable(e)),
    }
    let mut companions = [file.as_os_str().to_owned(), file.as_os_str().to_owned()];
    companions[0].push("-wal");
    companions[1].push("-shm");
    for path in [file, Path::new(&companions[0]), Path::new(&companions[1])] {
        let Ok(metadata) = std::fs::metadata(path) else {
            continue;
        };
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            if let Err(error) =
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))
            {
                tracing::warn!(
                    file = %path.display(),
                    %error,
                    "the database file is readable by other users and its mode could not be narrowed to 0600"
                );
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(_file: &Path) -> Result<()> {
    Ok(())
}
