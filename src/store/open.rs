//! Opening the file: redb modes, and the `meta` check that tells our files from others.
//!
//! A read-write store opens the database file itself, private and checked (src/store/files.rs),
//! and hands the descriptor to redb: redb's own `Builder::create` would create it 0666 minus
//! the umask and accept anyone's file.

use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{
    ConcurrencyMode, Database, DatabaseError, MultimapTableHandle, ReadOnlyDatabase,
    ReadTransaction, ReadableDatabase, ReadableTable, StorageError, TableError, TableHandle,
    WriteTransaction,
};

use crate::error::{Error, Result};
use crate::format::schema::{
    self, ALL_TABLES, FORMAT_VERSION, MAGIC, META_CREATED, META_FORMAT, META_MAGIC, WriteTables,
};
use crate::store::config::{Config, Sharing};
use crate::store::files;

/// A write transaction with the handle it came from, held by the group-commit leader until
/// the commit: while it is alive, the handle is not replaced by a reopen.
pub(crate) struct Writing {
    pub(super) txn: WriteTransaction,
    pub(super) db: Arc<Db>,
}

/// The redb handle: read-write, or read-only for inspection.
pub(crate) enum Db {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

impl Db {
    pub(crate) fn begin_read(&self) -> Result<ReadTransaction> {
        Ok(match self {
            Db::ReadWrite(db) => db.begin_read()?,
            Db::ReadOnly(db) => db.begin_read()?,
        })
    }

    /// The read-write handle, or the error a read-only store gives for writes.
    pub(crate) fn read_write(&self) -> Result<&Database> {
        match self {
            Db::ReadWrite(db) => Ok(db),
            Db::ReadOnly(_) => Err(Error::InvalidInput(
                "this store was opened read-only: open it without read_only to write".into(),
            )),
        }
    }
}

pub(super) fn open_db(cfg: &Config) -> Result<Db> {
    if cfg.backend.is_none() && !cfg.read_only && !cfg.path.exists() {
        create_new_file(cfg)?;
    }
    let mut builder = redb::Builder::new();
    builder.set_cache_size(cfg.cache_size);
    builder.set_concurrency_mode(match cfg.sharing {
        Sharing::MultiProcess => ConcurrencyMode::MultiWriter,
        Sharing::SingleProcess => ConcurrencyMode::ExclusiveWriter,
    });
    match (&cfg.backend, cfg.read_only) {
        (None, true) => builder.open_read_only(&cfg.path).map(Db::ReadOnly),
        (None, false) => {
            let file = files::open_database(cfg.files, &cfg.path)?;
            FileBackend::new(file)
                .and_then(|backend| builder.create_with_backend(backend))
                .map(Db::ReadWrite)
        }
        (Some(b), true) => builder.open_read_only_with_backend(b.clone()).map(Db::ReadOnly),
        (Some(b), false) => builder.create_with_backend(b.clone()).map(Db::ReadWrite),
    }
    .map_err(open_error)
}

/// Creates the file at `cfg.path` whole or not at all: a complete, initialised database is
/// written and synced under a temporary name beside it, then renamed into place without
/// replacing (which fails if another process got there first: its file is then used; see
/// `files::rename_new`), so it never has a second name, which the open would refuse. Without
/// this, a crash during the first open would leave a file redb cannot open (it writes its magic
/// number last), and every later open would fail until someone moved the file aside.
///
/// The temporary file is created new (never an existing file or a link) with the store's
/// private mode ([`crate::Builder::file_access`]), which the rename keeps.
///
/// A crash before the rename leaves a `<name>.init-<pid>-<n>` file behind, which can be deleted.
fn create_new_file(cfg: &Config) -> Result<()> {
    let dir = files::parent_of(&cfg.path);
    let name = cfg.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!("{name}.init-{}-{}", std::process::id(), rand::random::<u32>()));
    let file = files::create_new(cfg.files, &temp)?;
    let result = (|| {
        let mut builder = redb::Builder::new();
        builder.set_concurrency_mode(ConcurrencyMode::ExclusiveWriter);
        let db = FileBackend::new(file)
            .and_then(|backend| builder.create_with_backend(backend))
            .map_err(open_error)?;
        let txn = db.begin_write()?;
        {
            let mut t = WriteTables::open(&txn)?;
            init(&mut t, &cfg.clock.now_ms().to_le_bytes())?;
        }
        txn.commit()?;
        drop(db);
        match files::rename_new(&temp, &cfg.path) {
            Ok(()) => {}
            // Another process created it meanwhile: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            // Neither renames without replacing nor hard links on this file system: the open
            // creates the file in place instead.
            Err(_) => return Ok(()),
        }
        // The new name must survive a power loss as the data does.
        std::fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    let _ = std::fs::remove_file(&temp);
    result
}

/// redb reports "not a redb file" as an invalid-data I/O error.
fn open_error(e: DatabaseError) -> Error {
    match e {
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            Error::NotSessionDb { reason: io.to_string() }
        }
        DatabaseError::Storage(StorageError::Io(io)) => io.into(),
        other => other.into(),
    }
}

fn not_ours(reason: &str) -> Error {
    Error::NotSessionDb { reason: reason.into() }
}

fn table_error(e: TableError) -> Error {
    match e {
        TableError::TableTypeMismatch { .. } | TableError::TableIsMultimap(_) => {
            not_ours("a table has the name of a sessiondb table but another type")
        }
        other => other.into(),
    }
}

/// Checks the markers in `meta`. `Ok(false)` if the file has no `meta` table yet.
fn check_meta(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<bool> {
    let Some(magic) = meta.get(META_MAGIC)? else {
        return Ok(false);
    };
    if magic.value() != MAGIC {
        return Err(not_ours("the meta table does not carry the sessiondb marker"));
    }
    let format = meta
        .get(META_FORMAT)?
        .ok_or_else(|| Error::Corrupted { table: "meta", key: META_FORMAT.into() })?;
    let found = <[u8; 4]>::try_from(format.value())
        .map(u32::from_le_bytes)
        .map_err(|_| Error::Corrupted { table: "meta", key: META_FORMAT.into() })?;
    if found != FORMAT_VERSION {
        return Err(Error::UnsupportedFormat { found, expected: FORMAT_VERSION });
    }
    Ok(true)
}

/// Verifies an existing file, or initialises a new one in one write transaction.
///
/// The common case — an initialised file — costs one read transaction and no write, so that a
/// CGI process pays no commit for opening. `now` (the creation time) is read only to
/// initialise: opening an initialised file reads no clock.
pub(super) fn check_or_init_meta(
    db: &Db,
    read_only: bool,
    now: impl FnOnce() -> u64,
) -> Result<()> {
    {
        let txn = db.begin_read()?;
        match schema::read_meta(&txn) {
            Ok(meta) => {
                if check_meta(&meta)? {
                    return Ok(());
                }
            }
            Err(TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(table_error(e)),
        }
    }
    if read_only {
        return Err(not_ours("the file holds no sessiondb tables (open it read-write once)"));
    }
    let Db::ReadWrite(rw) = db else {
        return Err(not_ours("the file holds no sessiondb tables (open it read-write once)"));
    };
    let txn = rw.begin_write()?;
    let foreign = |name: &str| !ALL_TABLES.contains(&name);
    if txn.list_tables()?.any(|h| foreign(h.name()))
        || txn.list_multimap_tables()?.any(|h| foreign(h.name()))
    {
        return Err(not_ours("it is a redb database of another program"));
    }
    {
        let mut t = WriteTables::open(&txn).map_err(table_error)?;
        // Another process may have initialised the file since the read above.
        if !check_meta(&t.meta)? {
            init(&mut t, &now().to_le_bytes())?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn init(t: &mut WriteTables<'_>, created: &[u8]) -> Result<()> {
    t.meta.insert(META_MAGIC, MAGIC)?;
    t.meta.insert(META_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())?;
    t.meta.insert(META_CREATED, created)?;
    Ok(())
}
