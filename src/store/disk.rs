//! Candles that outlive the process: every closed candle the store keeps, in a SQLite file.
//!
//! The in-memory [`Store`](super::Store) hands each new closed candle to this backend's
//! [`WriteThrough`] hook under its lock, so the hook only queues it; one writer thread owns
//! the file's write connection and commits what queued in one transaction per tick with a
//! prepared upsert (idempotent: the same candle twice is one row). A slow or full disk
//! therefore never slows polling. While a commit fails (a full disk, a read-only mount) the
//! batch is kept and retried, with one loud line when writing stops and one when it
//! resumes: nothing queued is lost, and polling and serving go on from memory.
//!
//! The file runs in WAL mode with `synchronous = NORMAL` (a commit survives a crash of the
//! process; the last ones may be lost to a power cut, never the file), so readers are never
//! blocked by the writer; the writer runs `wal_checkpoint(RESTART)` every
//! [`CHECKPOINT_EVERY`] so a long reader cannot grow the WAL without bound, and deletes what
//! is past each timeframe's retention.
//!
//! Rows are keyed (market, symbol, timeframe, open time); prices and volumes are stored as
//! the exact decimal text Bitget sent, never as floating point. A file is ours when its
//! `application_id` says so; one that is not (another program's database, a file that is
//! not a database, a newer schema, a damaged one) is refused at open with the path and
//! what to do, before anything is written.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use rust_decimal::Decimal;
use thiserror::Error;

use super::series::{SeriesKey, WriteThrough};
use crate::core::clock::Clock;
use crate::core::market::{Candle, Market, Symbol};
use crate::core::timeframe::Timeframe;

/// `PRAGMA application_id` of our files: "BGPC".
const APPLICATION_ID: i32 = 0x4247_5043;
/// The schema this build writes (`PRAGMA user_version`).
const SCHEMA: i32 = 1;
/// The WAL is folded back into the file this often.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// Retention runs this often.
const RETENTION_EVERY: Duration = Duration::from_secs(600);
/// At most this many rows per transaction.
const BATCH: usize = 20_000;
/// A failed commit is tried again after this long (doubling up to ten times it).
const RETRY: Duration = Duration::from_secs(1);

const UPSERT: &str = "INSERT INTO candles
    (market, symbol, timeframe, open_time, open, high, low, close, base_volume, quote_volume)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
    ON CONFLICT (market, symbol, timeframe, open_time) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    base_volume = excluded.base_volume, quote_volume = excluded.quote_volume";

/// What cannot be opened, or read.
#[derive(Debug, Error)]
pub enum DiskError {
    #[error("candle store {path}: cannot create its folder: {source}; create it or set [store] path elsewhere")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("candle store {path}: cannot be opened for writing: {source}; check its permissions or set [store] path elsewhere")]
    Unwritable {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "candle store {path}: is not a SQLite database; move it away or set [store] path elsewhere"
    )]
    NotADatabase { path: PathBuf },
    #[error("candle store {path}: is another program's database (application id {found:#x}); set [store] path to a file of ours or a new one")]
    Foreign { path: PathBuf, found: i32 },
    #[error("candle store {path}: has schema {found}, newer than the {supported} this build reads; use a newer bitget-poller or another [store] path")]
    Newer {
        path: PathBuf,
        found: i32,
        supported: i32,
    },
    #[error("candle store {path}: is damaged ({detail}); move it away (a backfill refills it) or restore a copy")]
    Corrupt { path: PathBuf, detail: String },
    #[error("no candle store at {path}; run, gateway or backfill write one, or name another with --store")]
    Missing { path: PathBuf },
    #[error("candle store {path}: read failed: {source}")]
    Read {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Where the file is and what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskConfig {
    pub path: PathBuf,
    /// How long each timeframe's candles are kept (by REST spelling of its market); the
    /// others forever.
    pub retention: BTreeMap<Timeframe, Duration>,
}

/// Counters since open, for summaries and metrics.
#[derive(Debug, Default)]
pub struct DiskStats {
    pub rows_written: AtomicU64,
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub checkpoints: AtomicU64,
    pub rows_expired: AtomicU64,
    /// Rows queued and not yet committed.
    pub pending: AtomicU64,
    /// Writing is failing now (a full disk, say).
    pub failing: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    rows: VecDeque<Candle>,
    /// Rows taken by the writer and not yet committed.
    in_flight: usize,
    stop: bool,
}

/// The SQLite candle store; see the module doc.
#[derive(Debug)]
pub struct DiskStore {
    path: PathBuf,
    queue: Mutex<Queue>,
    /// Signals the writer (rows queued, stop) and waiters on [`DiskStore::flush`].
    wake: Condvar,
    drained: Condvar,
    reader: Mutex<Connection>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: DiskStats,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn market_code(market: Market) -> i64 {
    match market {
        Market::Futures => 0,
        Market::Spot => 1,
    }
}

fn market_of(code: i64) -> Option<Market> {
    match code {
        0 => Some(Market::Futures),
        1 => Some(Market::Spot),
        _ => None,
    }
}

impl DiskStore {
    /// Opens (creating it if need be) the file at `config.path` and starts its writer.
    ///
    /// # Errors
    /// The folder or file cannot be written, or the file is not ours, newer, or damaged.
    /// Retention is measured on `wall`.
    pub fn open(config: &DiskConfig, wall: Arc<dyn Clock>) -> Result<Arc<Self>, DiskError> {
        let path = config.path.clone();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| DiskError::Folder {
                path: path.clone(),
                source,
            })?;
        }
        let writer = Self::connect(&path, false)?;
        Self::check_and_init(&writer, &path)?;
        let reader = Self::connect(&path, true)?;
        let store = Arc::new(Self {
            path: path.clone(),
            queue: Mutex::default(),
            wake: Condvar::new(),
            drained: Condvar::new(),
            reader: Mutex::new(reader),
            writer: Mutex::new(None),
            stats: DiskStats::default(),
        });
        let retention = config.retention.clone();
        let handle = std::thread::Builder::new()
            .name("candle-store".to_owned())
            .spawn({
                let store = Arc::clone(&store);
                move || store.write_loop(writer, &retention, wall.as_ref())
            })
            .map_err(|e| DiskError::Folder {
                path: path.clone(),
                source: e,
            })?;
        *lock(&store.writer) = Some(handle);
        Ok(store)
    }

    /// Opens an existing file only to read it (export): nothing is created or written.
    ///
    /// # Errors
    /// There is no such file, or it is not ours, newer, or damaged.
    pub fn open_read_only(path: &Path) -> Result<Arc<Self>, DiskError> {
        if !path.is_file() {
            return Err(DiskError::Missing {
                path: path.to_owned(),
            });
        }
        let reader = Self::connect(path, true)?;
        Self::check(&reader, path)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            queue: Mutex::new(Queue {
                stop: true,
                ..Queue::default()
            }),
            wake: Condvar::new(),
            drained: Condvar::new(),
            reader: Mutex::new(reader),
            writer: Mutex::new(None),
            stats: DiskStats::default(),
        }))
    }

    fn connect(path: &Path, read_only: bool) -> Result<Connection, DiskError> {
        let flags = if read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| DiskError::Unwritable {
                path: path.to_owned(),
                source,
            })?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|source| Self::classify(path, source))?;
        Ok(conn)
    }

    /// Names what an error on first contact means.
    fn classify(path: &Path, source: rusqlite::Error) -> DiskError {
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => DiskError::NotADatabase {
                path: path.to_owned(),
            },
            Some(ErrorCode::DatabaseCorrupt) => DiskError::Corrupt {
                path: path.to_owned(),
                detail: source.to_string(),
            },
            Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                DiskError::Unwritable {
                    path: path.to_owned(),
                    source,
                }
            }
            _ => DiskError::Read {
                path: path.to_owned(),
                source,
            },
        }
    }

    /// Refuses a file that is not ours, newer, or damaged; returns whether it has tables.
    fn check(conn: &Connection, path: &Path) -> Result<bool, DiskError> {
        let e = |source| Self::classify(path, source);
        let id: i32 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(e)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(e)?;
        if id != APPLICATION_ID && tables > 0 {
            return Err(DiskError::Foreign {
                path: path.to_owned(),
                found: id,
            });
        }
        let version: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(e)?;
        if version > SCHEMA {
            return Err(DiskError::Newer {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA,
            });
        }
        if tables > 0 {
            let verdict: String = conn
                .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
                .map_err(e)?;
            if verdict != "ok" {
                return Err(DiskError::Corrupt {
                    path: path.to_owned(),
                    detail: verdict,
                });
            }
        }
        Ok(tables > 0)
    }

    fn check_and_init(conn: &Connection, path: &Path) -> Result<(), DiskError> {
        let e = |source| Self::classify(path, source);
        Self::check(conn, path)?;
        // WAL first: it is what lets readers run beside the writer.
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(e)?;
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL;
             BEGIN;
             CREATE TABLE IF NOT EXISTS candles (
                 market INTEGER NOT NULL,
                 symbol TEXT NOT NULL,
                 timeframe TEXT NOT NULL,
                 open_time INTEGER NOT NULL,
                 open TEXT NOT NULL,
                 high TEXT NOT NULL,
                 low TEXT NOT NULL,
                 close TEXT NOT NULL,
                 base_volume TEXT NOT NULL,
                 quote_volume TEXT NOT NULL,
                 PRIMARY KEY (market, symbol, timeframe, open_time)
             ) WITHOUT ROWID;
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA};
             COMMIT;"
        ))
        .map_err(|source| match source.sqlite_error_code() {
            Some(ErrorCode::ReadOnly | ErrorCode::DiskFull | ErrorCode::CannotOpen) => {
                DiskError::Unwritable {
                    path: path.to_owned(),
                    source,
                }
            }
            _ => e(source),
        })?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &DiskStats {
        &self.stats
    }

    /// Queues candles to be written (closed ones; others are ignored).
    pub fn write(&self, candles: impl IntoIterator<Item = Candle>) {
        let mut q = lock(&self.queue);
        if q.stop {
            tracing::error!(path = %self.path.display(), "candles handed to a closed candle store; not written");
            return;
        }
        let before = q.rows.len();
        q.rows.extend(candles.into_iter().filter(|c| c.closed));
        let added = (q.rows.len() - before) as u64;
        drop(q);
        if added > 0 {
            self.stats.pending.fetch_add(added, Ordering::Relaxed);
            self.wake.notify_all();
        }
    }

    /// Waits until everything queued before the call is committed, or `timeout` passes;
    /// true when it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = lock(&self.queue);
        while !q.rows.is_empty() || q.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.wake.notify_all();
            q = self
                .drained
                .wait_timeout(q, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Commits what is queued (waiting at most `timeout`) and stops the writer.
    pub fn close(&self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        lock(&self.queue).stop = true;
        self.wake.notify_all();
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
        flushed
    }

    fn write_loop(
        &self,
        mut conn: Connection,
        retention: &BTreeMap<Timeframe, Duration>,
        wall: &dyn Clock,
    ) {
        let mut last_checkpoint = Instant::now();
        let mut last_retention: Option<Instant> = None;
        let mut retry = RETRY;
        let mut batch: Vec<Candle> = Vec::new();
        loop {
            {
                let mut q = lock(&self.queue);
                while q.rows.is_empty() && batch.is_empty() && !q.stop {
                    q = self
                        .wake
                        .wait_timeout(q, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                        break;
                    }
                }
                if q.stop && q.rows.is_empty() && batch.is_empty() {
                    return;
                }
                let take = BATCH.saturating_sub(batch.len()).min(q.rows.len());
                batch.extend(q.rows.drain(..take));
                q.in_flight = batch.len();
            }
            if !batch.is_empty() {
                match commit(&mut conn, &batch) {
                    Ok(()) => {
                        let n = batch.len() as u64;
                        self.stats.rows_written.fetch_add(n, Ordering::Relaxed);
                        self.stats.pending.fetch_sub(n, Ordering::Relaxed);
                        self.stats.commits.fetch_add(1, Ordering::Relaxed);
                        batch.clear();
                        retry = RETRY;
                        if self.stats.failing.swap(false, Ordering::Relaxed) {
                            tracing::warn!(path = %self.path.display(), "candle store writing again; nothing queued was lost");
                        }
                    }
                    Err(error) => {
                        self.stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                        if !self.stats.failing.swap(true, Ordering::Relaxed) {
                            tracing::error!(path = %self.path.display(), %error, rows = batch.len(), "candle store cannot write (full disk?); candles are kept in memory and written when it can");
                        }
                        // Wait (or stop) before trying the same batch again.
                        let q = lock(&self.queue);
                        if q.stop {
                            tracing::error!(path = %self.path.display(), rows = batch.len() + q.rows.len(), "candle store stopping with candles it could not write");
                            return;
                        }
                        let _ = self.wake.wait_timeout(q, retry);
                        retry = (retry * 2).min(RETRY * 10);
                        continue;
                    }
                }
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                last_checkpoint = Instant::now();
                match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(())) {
                    Ok(()) => {
                        self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "candle store checkpoint failed"),
                }
            }
            if !retention.is_empty()
                && last_retention.is_none_or(|t| t.elapsed() >= RETENTION_EVERY)
            {
                last_retention = Some(Instant::now());
                match expire(&conn, retention, wall.now_ms()) {
                    Ok(n) => {
                        self.stats.rows_expired.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "candle store retention failed"),
                }
            }
            // Those waiting for a flush see the writes and the expiry they made due.
            let mut q = lock(&self.queue);
            q.in_flight = 0;
            if q.rows.is_empty() {
                self.drained.notify_all();
            }
        }
    }

    /// Closed candles of `key` opening in `[from, until)`, oldest first, the newest `limit`.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn range(
        &self,
        key: &SeriesKey,
        from: u64,
        until: u64,
        limit: usize,
    ) -> Result<Vec<Candle>, DiskError> {
        let conn = lock(&self.reader);
        let mut stmt = conn
            .prepare_cached(
                "SELECT open_time, open, high, low, close, base_volume, quote_volume
                 FROM candles WHERE market = ?1 AND symbol = ?2 AND timeframe = ?3
                 AND open_time >= ?4 AND open_time < ?5
                 ORDER BY open_time DESC LIMIT ?6",
            )
            .map_err(|e| self.read_error(e))?;
        let rows = stmt
            .query_map(
                params![
                    market_code(key.market()),
                    key.symbol.as_str(),
                    key.timeframe.rest(),
                    to_i64(from),
                    to_i64(until),
                    limit as i64
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        [
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?,
                        ],
                    ))
                },
            )
            .map_err(|e| self.read_error(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (open_time, text) = row.map_err(|e| self.read_error(e))?;
            let value = |i: usize| Decimal::from_str(&text[i]).ok();
            let (Some(open), Some(high), Some(low), Some(close), Some(base), Some(quote)) =
                (value(0), value(1), value(2), value(3), value(4), value(5))
            else {
                return Err(DiskError::Corrupt {
                    path: self.path.clone(),
                    detail: format!(
                        "a price of {} {} at {open_time} is not a number",
                        key.symbol, key.timeframe
                    ),
                });
            };
            out.push(Candle {
                symbol: key.symbol.clone(),
                timeframe: key.timeframe,
                open_time: open_time.max(0) as u64,
                open,
                high,
                low,
                close,
                base_volume: base,
                quote_volume: quote,
                closed: true,
            });
        }
        out.reverse();
        Ok(out)
    }

    /// The newest `limit` closed candles of `key`, oldest first.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn latest(&self, key: &SeriesKey, limit: usize) -> Result<Vec<Candle>, DiskError> {
        self.range(key, 0, u64::MAX >> 1, limit)
    }

    /// Every series held, with its oldest and newest open time and its row count.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn series(&self) -> Result<Vec<(SeriesKey, u64, u64, u64)>, DiskError> {
        let conn = lock(&self.reader);
        let mut stmt = conn
            .prepare_cached(
                "SELECT market, symbol, timeframe, min(open_time), max(open_time), count(*)
                 FROM candles GROUP BY market, symbol, timeframe",
            )
            .map_err(|e| self.read_error(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .map_err(|e| self.read_error(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (market, symbol, timeframe, first, last, count) =
                row.map_err(|e| self.read_error(e))?;
            let Some(timeframe) = market_of(market).and_then(|m| Timeframe::parse(m, &timeframe))
            else {
                continue; // a spelling this build does not know
            };
            out.push((
                SeriesKey::new(Symbol::from_exchange(&symbol), timeframe),
                first.max(0) as u64,
                last.max(0) as u64,
                count.max(0) as u64,
            ));
        }
        Ok(out)
    }

    /// The ranges `[from, to)` of open times in `[since, until)` that `key` lacks, oldest
    /// first: interior holes, and the edges before the first and after the last it holds.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn missing(
        &self,
        key: &SeriesKey,
        since: u64,
        until: u64,
    ) -> Result<Vec<(u64, u64)>, DiskError> {
        let tf = key.timeframe;
        let since = tf.open_of(since);
        if since >= until {
            return Ok(Vec::new());
        }
        let opens: Vec<u64> = {
            let conn = lock(&self.reader);
            let mut stmt = conn
                .prepare_cached(
                    "SELECT open_time FROM candles WHERE market = ?1 AND symbol = ?2
                     AND timeframe = ?3 AND open_time >= ?4 AND open_time < ?5
                     ORDER BY open_time",
                )
                .map_err(|e| self.read_error(e))?;
            let rows = stmt
                .query_map(
                    params![
                        market_code(key.market()),
                        key.symbol.as_str(),
                        tf.rest(),
                        to_i64(since),
                        to_i64(until)
                    ],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| self.read_error(e))?;
            rows.map(|r| r.map(|v| v.max(0) as u64))
                .collect::<Result<_, _>>()
                .map_err(|e| self.read_error(e))?
        };
        let mut out = Vec::new();
        let mut expected = since;
        for open in opens {
            if open > expected {
                out.push((expected, open));
            }
            expected = tf.next_open(open);
        }
        if expected < until {
            out.push((expected, until));
        }
        Ok(out)
    }

    fn read_error(&self, source: rusqlite::Error) -> DiskError {
        DiskStore::classify(&self.path, source)
    }

    /// The total size of the file and its WAL, in bytes.
    pub fn size(&self) -> (u64, u64) {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        (len(&self.path), len(Path::new(&wal)))
    }

    /// Whether a row for `key` at `open` is held.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn has(&self, key: &SeriesKey, open: u64) -> Result<bool, DiskError> {
        let conn = lock(&self.reader);
        conn.query_row(
            "SELECT 1 FROM candles WHERE market = ?1 AND symbol = ?2 AND timeframe = ?3 AND open_time = ?4",
            params![market_code(key.market()), key.symbol.as_str(), key.timeframe.rest(), to_i64(open)],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(|e| self.read_error(e))
    }
}

impl WriteThrough for DiskStore {
    fn closed(&self, candle: &Candle) {
        self.write(std::iter::once(candle.clone()));
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn commit(conn: &mut Connection, batch: &[Candle]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(UPSERT)?;
        for c in batch {
            stmt.execute(params![
                market_code(c.timeframe.market()),
                c.symbol.as_str(),
                c.timeframe.rest(),
                to_i64(c.open_time),
                c.open.to_string(),
                c.high.to_string(),
                c.low.to_string(),
                c.close.to_string(),
                c.base_volume.to_string(),
                c.quote_volume.to_string(),
            ])?;
        }
    }
    tx.commit()
}

fn expire(
    conn: &Connection,
    retention: &BTreeMap<Timeframe, Duration>,
    now_ms: u64,
) -> rusqlite::Result<u64> {
    let mut n = 0;
    for (tf, keep) in retention {
        let before = now_ms.saturating_sub(keep.as_millis() as u64);
        n += conn.execute(
            "DELETE FROM candles WHERE market = ?1 AND timeframe = ?2 AND open_time < ?3",
            params![market_code(tf.market()), tf.rest(), to_i64(before)],
        )? as u64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::clock::ManualClock;

    const M: u64 = 60_000;
    /// A day boundary (UTC).
    const T: u64 = 1_795_305_600_000;

    fn tf(t: &str) -> Timeframe {
        Timeframe::parse(Market::Futures, t).unwrap()
    }

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bitget-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn candle(symbol: &str, open: u64, close: i64) -> Candle {
        Candle {
            symbol: Symbol::from_exchange(symbol),
            timeframe: tf("1m"),
            open_time: open,
            open: Decimal::new(100_000, 2),
            high: Decimal::new(100_500, 2),
            low: Decimal::new(99_500, 2),
            close: Decimal::new(close, 2),
            base_volume: Decimal::new(12_340, 3),
            quote_volume: Decimal::from_str("12345.678901").unwrap(),
            closed: true,
        }
    }

    fn open(path: &Path) -> Arc<DiskStore> {
        let config = DiskConfig {
            path: path.to_owned(),
            retention: BTreeMap::new(),
        };
        DiskStore::open(&config, Arc::new(ManualClock::new(T))).unwrap()
    }

    fn key(symbol: &str) -> SeriesKey {
        SeriesKey::new(Symbol::from_exchange(symbol), tf("1m"))
    }

    #[test]
    fn candles_outlive_the_process_exactly() {
        let path = dir("persist").join("candles.sqlite");
        let store = open(&path);
        store.write((0..10).map(|k| candle("BTCUSDT", T + k * M, 100_100 + k as i64)));
        store.write([candle("ETHUSDT", T, 5)]);
        assert!(store.close(Duration::from_secs(10)));
        drop(store);
        let store = open(&path);
        let read = store
            .range(&key("BTCUSDT"), T + 2 * M, T + 5 * M, 100)
            .unwrap();
        let want: Vec<Candle> = (2..5)
            .map(|k| candle("BTCUSDT", T + k * M, 100_100 + k as i64))
            .collect();
        assert_eq!(read, want);
        // Exact decimals, scale included.
        assert_eq!(read[0].base_volume.to_string(), "12.340");
        assert_eq!(read[0].quote_volume.to_string(), "12345.678901");
        assert_eq!(
            store
                .latest(&key("BTCUSDT"), 2)
                .unwrap()
                .iter()
                .map(|c| c.open_time)
                .collect::<Vec<_>>(),
            [T + 8 * M, T + 9 * M]
        );
        let mut series = store.series().unwrap();
        series.sort_by(|a, b| a.0.symbol.as_str().cmp(b.0.symbol.as_str()));
        assert_eq!(
            series,
            [
                (key("BTCUSDT"), T, T + 9 * M, 10),
                (key("ETHUSDT"), T, T, 1)
            ]
        );
        store.close(Duration::from_secs(5));
    }

    #[test]
    fn the_same_candle_twice_is_one_row_and_a_new_state_replaces_it() {
        let path = dir("upsert").join("candles.sqlite");
        let store = open(&path);
        store.write([candle("BTCUSDT", T, 1), candle("BTCUSDT", T, 1)]);
        store.write([candle("BTCUSDT", T, 2)]);
        assert!(store.flush(Duration::from_secs(10)));
        let read = store.latest(&key("BTCUSDT"), 10).unwrap();
        assert_eq!(read, [candle("BTCUSDT", T, 2)]);
        assert_eq!(store.stats().rows_written.load(Ordering::Relaxed), 3);
        // A forming candle is not stored.
        let mut forming = candle("BTCUSDT", T + M, 3);
        forming.closed = false;
        store.write([forming]);
        assert!(store.flush(Duration::from_secs(10)));
        assert!(!store.has(&key("BTCUSDT"), T + M).unwrap());
        store.close(Duration::from_secs(5));
    }

    #[test]
    fn missing_ranges_interior_edges_and_none() {
        let path = dir("missing").join("candles.sqlite");
        let store = open(&path);
        let held = [2, 3, 4, 7, 8];
        store.write(held.iter().map(|&k| candle("BTCUSDT", T + k * M, 1)));
        assert!(store.flush(Duration::from_secs(10)));
        let k = key("BTCUSDT");
        assert_eq!(
            store.missing(&k, T, T + 10 * M).unwrap(),
            [
                (T, T + 2 * M),
                (T + 5 * M, T + 7 * M),
                (T + 9 * M, T + 10 * M)
            ]
        );
        assert_eq!(store.missing(&k, T + 2 * M, T + 5 * M).unwrap(), []);
        // A start inside a minute counts from that minute's open.
        assert_eq!(store.missing(&k, T + 7 * M + 5, T + 9 * M).unwrap(), []);
        assert_eq!(
            store.missing(&key("ETHUSDT"), T, T + 3 * M).unwrap(),
            [(T, T + 3 * M)]
        );
        assert_eq!(store.missing(&k, T + 5 * M, T + 5 * M).unwrap(), []);
        store.close(Duration::from_secs(5));
    }

    #[test]
    fn retention_drops_what_is_past_its_timeframe_keep() {
        let path = dir("retention").join("candles.sqlite");
        let now = T + 3 * 86_400_000;
        let config = DiskConfig {
            path: path.clone(),
            retention: BTreeMap::from([(tf("1m"), Duration::from_secs(86_400))]),
        };
        let store = DiskStore::open(&config, Arc::new(ManualClock::new(now))).unwrap();
        let mut five = candle("BTCUSDT", T, 1);
        five.timeframe = tf("5m");
        store.write([
            candle("BTCUSDT", T, 1),
            candle("BTCUSDT", now - 3_600_000, 1),
            five,
        ]);
        assert!(store.flush(Duration::from_secs(10)));
        assert!(
            !store.has(&key("BTCUSDT"), T).unwrap(),
            "older than a day: gone"
        );
        assert!(store.has(&key("BTCUSDT"), now - 3_600_000).unwrap());
        assert!(
            store
                .has(
                    &SeriesKey::new(Symbol::from_exchange("BTCUSDT"), tf("5m")),
                    T
                )
                .unwrap(),
            "5m is kept"
        );
        assert_eq!(store.stats().rows_expired.load(Ordering::Relaxed), 1);
        store.close(Duration::from_secs(5));
    }

    #[test]
    fn files_not_ours_newer_or_damaged_are_refused_with_their_path() {
        let d = dir("refused");
        // Another program's database.
        let foreign = d.join("foreign.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let config = |path: &Path| DiskConfig {
            path: path.to_owned(),
            retention: BTreeMap::new(),
        };
        let clock = || -> Arc<dyn Clock> { Arc::new(ManualClock::new(T)) };
        let err = DiskStore::open(&config(&foreign), clock()).unwrap_err();
        assert!(matches!(err, DiskError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("foreign.sqlite"), "{err}");
        // Not a database at all.
        let text = d.join("notes.sqlite");
        std::fs::write(&text, "these are my notes, not a database; ".repeat(200)).unwrap();
        let err = DiskStore::open(&config(&text), clock()).unwrap_err();
        assert!(matches!(err, DiskError::NotADatabase { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(&text).unwrap().len(),
            36 * 200,
            "left as it was"
        );
        // Ours, from a newer build.
        let newer = d.join("newer.sqlite");
        open(&newer).close(Duration::from_secs(5));
        Connection::open(&newer)
            .unwrap()
            .execute_batch("PRAGMA user_version = 9")
            .unwrap();
        let err = DiskStore::open(&config(&newer), clock()).unwrap_err();
        assert!(matches!(err, DiskError::Newer { found: 9, .. }), "{err}");
        // Ours, damaged: pages past the header overwritten.
        let damaged = d.join("damaged.sqlite");
        let store = open(&damaged);
        store.write((0..3000).map(|k| candle("BTCUSDT", T + k * M, 1)));
        store.close(Duration::from_secs(10));
        drop(store);
        let mut bytes = std::fs::read(&damaged).unwrap();
        assert!(bytes.len() > 16_384);
        for b in &mut bytes[4096..12_288] {
            *b = 0xA5;
        }
        std::fs::write(&damaged, &bytes).unwrap();
        let err = DiskStore::open(&config(&damaged), clock()).unwrap_err();
        assert!(
            matches!(
                err,
                DiskError::Corrupt { .. } | DiskError::NotADatabase { .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("damaged.sqlite"), "{err}");
        // A folder that cannot be made.
        let err =
            DiskStore::open(&config(&text.join("sub").join("c.sqlite")), clock()).unwrap_err();
        assert!(matches!(err, DiskError::Folder { .. }), "{err}");
    }

    /// A full disk stops writes, keeps every queued candle, and resumes when space returns.
    /// Needs a small filesystem of its own: a tmpfs mounted by the test when it runs as
    /// root, else skipped with a message.
    #[test]
    fn a_full_disk_loses_nothing_and_writing_resumes() {
        let mnt = dir("full");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: mounting a small tmpfs needs root");
            return;
        }
        let unmount = |mnt: &Path| {
            let _ = std::process::Command::new("umount").arg(mnt).status();
        };
        let path = mnt.join("candles.sqlite");
        let store = open(&path);
        let n = 5_000;
        store.write((0..n).map(|k| candle("BTCUSDT", T + k * M, 1)));
        // 5,000 rows do not fit in 256 KiB: the writer stops and keeps them.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !store.stats().failing.load(Ordering::Relaxed) {
            assert!(
                Instant::now() < deadline,
                "the writer noticed the full disk"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !store.flush(Duration::from_millis(300)),
            "nothing more fits"
        );
        // Space returns.
        let grown = std::process::Command::new("mount")
            .args(["-o", "remount,size=16m"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        assert!(grown);
        assert!(
            store.flush(Duration::from_secs(30)),
            "written once there was room"
        );
        assert!(!store.stats().failing.load(Ordering::Relaxed));
        let all = store
            .range(&key("BTCUSDT"), 0, u64::MAX >> 1, n as usize + 1)
            .unwrap();
        assert_eq!(all.len(), n as usize);
        assert_eq!(store.missing(&key("BTCUSDT"), T, T + n * M).unwrap(), []);
        store.close(Duration::from_secs(5));
        drop(store);
        unmount(&mnt);
    }
}
