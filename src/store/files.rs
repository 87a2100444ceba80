//! Who may use a store's files: the modes they are created with, and the checks they pass
//! before a read-write store uses them (docs/reliability.md, "Private files").
//!
//! Every file and directory a store creates gets its mode at creation, then exactly that mode
//! with `fchmod`, so the umask cannot widen or narrow it. Every one it opens read-write is
//! checked (a file on the open descriptor, `fstat`, no race with a rename; a directory by
//! path): it must belong to the effective uid (or, with [`FileAccess::Group`], to one of its
//! groups) and must not be writable by other users; a file must have one name (no hard link)
//! and, if it is another user's, must not be readable by every user. Bits beyond the
//! configured mode on a file this user owns (a 0644 file of an older sessiondb) are taken
//! away, never added.
//!
//! On other systems than Unix, files are created and opened as they always were: no checks.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Who besides the owner may use a store's files ([`Builder::file_access`]).
///
/// [`Builder::file_access`]: crate::Builder::file_access
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileAccess {
    /// Only the user the process runs as: the database and the lock files are created 0600,
    /// the lock directory 0700. Files of another user are refused. The default.
    #[default]
    Owner,
    /// The owner and the members of the file's group, for processes of several users that
    /// share a group (web-server workers): files 0660, the lock directory 2770 (setgid, so that
    /// every lock file gets the directory's group). A file or directory of another user is
    /// accepted when its group is one of this process's groups. Put the database in a
    /// directory of that group with the setgid bit (`chgrp www DIR; chmod 2770 DIR`), so that
    /// the database file and the lock directory get the shared group whoever creates them.
    Group,
}

/// The settings that decide how a store creates and checks its files.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Policy {
    pub(crate) access: FileAccess,
    /// Accept files of other users and files other users can write ([`Builder::trust_foreign_files`]).
    ///
    /// [`Builder::trust_foreign_files`]: crate::Builder::trust_foreign_files
    pub(crate) trust_foreign: bool,
}

#[cfg_attr(not(unix), allow(dead_code))]
impl Policy {
    /// The mode of a new file, and the most an existing file of this user keeps.
    pub(crate) fn file_mode(self) -> u32 {
        match self.access {
            FileAccess::Owner => 0o600,
            FileAccess::Group => 0o660,
        }
    }

    /// The mode of a new lock directory, and the most an existing one of this user keeps.
    pub(crate) fn dir_mode(self) -> u32 {
        match self.access {
            FileAccess::Owner => 0o700,
            FileAccess::Group => 0o2770,
        }
    }
}

#[cfg_attr(not(unix), allow(dead_code))]
fn unsafe_file(path: &Path, problem: String) -> Error {
    Error::UnsafeFile { path: path.to_path_buf(), problem }
}

/// The directory `path` is in.
pub(crate) fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
mod imp {
    use std::fs::{DirBuilder, File, Metadata, OpenOptions, Permissions};
    use std::io;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    use rustix::fs::OFlags;
    use rustix::process::{getegid, geteuid, getgroups};

    use super::{FileAccess, Policy, parent_of, unsafe_file};
    use crate::error::Result;

    const NOFOLLOW: i32 = OFlags::NOFOLLOW.bits().cast_signed();

    /// Whether `gid` is the effective group or a supplementary group of this process.
    fn in_my_groups(gid: u32) -> bool {
        getegid().as_raw() == gid
            || getgroups().is_ok_and(|all| all.iter().any(|g| g.as_raw() == gid))
    }

    /// Refuses what `meta` (of `path`, a file or a directory) shows unsafe, then takes away
    /// the bits beyond the configured mode if this user owns it.
    fn check(
        policy: Policy,
        path: &Path,
        meta: &Metadata,
        set_mode: impl FnOnce(Permissions) -> io::Result<()>,
    ) -> Result<()> {
        let dir = meta.is_dir();
        let me = geteuid().as_raw();
        let mode = meta.mode() & 0o7777;
        if !policy.trust_foreign {
            let group = policy.access == FileAccess::Group;
            if !dir && meta.nlink() != 1 {
                return Err(unsafe_file(
                    path,
                    format!(
                        "it has {} hard links: another user may have linked a file of this \
                         user here to have the store change and overwrite it; remove this \
                         name (or the other names), or set trust_foreign_files(true)",
                        meta.nlink()
                    ),
                ));
            }
            if meta.uid() != me && !(group && in_my_groups(meta.gid())) {
                let fix = if group {
                    "or give it a group of this process"
                } else {
                    "or use FileAccess::Group for workers of one group"
                };
                return Err(unsafe_file(
                    path,
                    format!(
                        "it belongs to uid {}, not to this process's uid {me}: if you did not \
                         create it, remove it (another user may have placed it to read or block \
                         the store); if it is yours, `chown {me}` it, run as its owner, {fix}, \
                         or set trust_foreign_files(true)",
                        meta.uid()
                    ),
                ));
            }
            if mode & 0o002 != 0 {
                return Err(unsafe_file(
                    path,
                    "every user can write it: `chmod o-w` it (and check who wrote to it), or set \
                     trust_foreign_files(true)"
                        .into(),
                ));
            }
            if mode & 0o020 != 0 && !group {
                return Err(unsafe_file(
                    path,
                    "its group can write it: `chmod g-w` it, or use FileAccess::Group if the \
                     group is trusted"
                        .into(),
                ));
            }
            if !dir && meta.uid() != me && mode & 0o004 != 0 {
                // A file of this user is narrowed below; another user's file cannot be.
                return Err(unsafe_file(
                    path,
                    format!(
                        "every user can read it, and it belongs to uid {}, so this process \
                         cannot narrow it: `chmod o-rwx` it as its owner, or set \
                         trust_foreign_files(true)",
                        meta.uid()
                    ),
                ));
            }
        }
        if meta.uid() == me {
            let allowed = if dir { policy.dir_mode() } else { policy.file_mode() };
            if mode & !allowed != 0 {
                set_mode(Permissions::from_mode(mode & allowed))
                    .map_err(|e| crate::error::Error::Io(with_path(path, &e)))?;
            }
        }
        Ok(())
    }

    fn with_path(path: &Path, e: &io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", path.display()))
    }

    /// Checks the directory the database is in. Whoever can rename in it can replace, keep
    /// aside and put back the database and its lock directory (reviving sessions logged out
    /// meanwhile, or splitting the locks): so it must belong to this user or root (with
    /// [`FileAccess::Group`], or to a group of this process), and no other user may write it:
    /// not every user unless the sticky bit is set (`/tmp`), not its group unless the sticky
    /// bit is set or the group is trusted ([`FileAccess::Group`]). The sticky bit does not stop
    /// the directory's owner.
    fn check_parent(policy: Policy, db: &Path) -> Result<()> {
        let dir = parent_of(db);
        let meta = std::fs::metadata(&dir).map_err(|e| with_path(&dir, &e))?;
        if policy.trust_foreign {
            return Ok(());
        }
        let (mode, owner, me) = (meta.mode(), meta.uid(), geteuid().as_raw());
        let (sticky, group) = (mode & 0o1000 != 0, policy.access == FileAccess::Group);
        if owner != me && owner != 0 && !(group && in_my_groups(meta.gid())) {
            return Err(unsafe_file(
                &dir,
                format!(
                    "the database's directory belongs to uid {owner}, who can replace or roll \
                     back the files in it: move the database to a directory of uid {me} or \
                     root, or set trust_foreign_files(true)"
                ),
            ));
        }
        if mode & 0o002 != 0 && !sticky {
            return Err(unsafe_file(
                &dir,
                "the database's directory is writable by every user without the sticky bit, \
                 so anyone can replace the files in it: `chmod o-w` (or `chmod +t`) it, or move \
                 the database"
                    .into(),
            ));
        }
        if mode & 0o020 != 0 && !sticky && !group {
            return Err(unsafe_file(
                &dir,
                "the database's directory is writable by its group, whose members can replace \
                 the files in it: `chmod g-w` it, or use FileAccess::Group if the group is \
                 trusted"
                    .into(),
            ));
        }
        Ok(())
    }

    /// How to open `path`, a symbolic link or not: a link is followed only if it belongs to
    /// this user or root (as Linux's `protected_symlinks` would in a sticky directory).
    fn may_follow(policy: Policy, path: &Path) -> Result<bool> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                if policy.trust_foreign || m.uid() == geteuid().as_raw() || m.uid() == 0 {
                    Ok(true)
                } else {
                    Err(unsafe_file(
                        path,
                        format!(
                            "it is a symbolic link of uid {}: remove it (another user may have \
                             placed it to make this process write elsewhere)",
                            m.uid()
                        ),
                    ))
                }
            }
            _ => Ok(false),
        }
    }

    /// Opens `path` read-write, creating it with the configured mode if it does not exist
    /// (never through a symbolic link), and checks it. A symbolic link is followed if
    /// `links` and [`may_follow`] allow it.
    pub(crate) fn open_file(policy: Policy, path: &Path, links: bool) -> Result<File> {
        let follow = links && may_follow(policy, path)?;
        for _ in 0..3 {
            let mut existing = OpenOptions::new();
            existing.read(true).write(true);
            if !follow {
                existing.custom_flags(NOFOLLOW);
            }
            let file = match existing.open(path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match create_new(policy, path) {
                        Ok(file) => return Ok(file),
                        // Another process created it meanwhile: open theirs.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(with_path(path, &e).into()),
                    }
                }
                Err(e) => return Err(with_path(path, &e).into()),
            };
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(unsafe_file(path, "it is not a regular file: move it aside".into()));
            }
            check(policy, path, &meta, |p| file.set_permissions(p))?;
            return Ok(file);
        }
        Err(with_path(path, &io::Error::other("neither opened nor created (a dangling link?)"))
            .into())
    }

    /// Creates `path`, which must not exist, read-write with exactly the configured mode.
    pub(crate) fn create_new(policy: Policy, path: &Path) -> io::Result<File> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(policy.file_mode())
            .custom_flags(NOFOLLOW)
            .open(path)?;
        // The umask took bits away (or a default ACL added some): set exactly the mode.
        file.set_permissions(Permissions::from_mode(policy.file_mode()))?;
        Ok(file)
    }

    /// Opens `path` for reading if it is a regular file: never through a symbolic link, and
    /// never waiting (a FIFO or a device under that name is refused, not opened for good).
    pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
        const NONBLOCK: i32 = OFlags::NONBLOCK.bits().cast_signed();
        let file = OpenOptions::new().read(true).custom_flags(NOFOLLOW | NONBLOCK).open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(file)
    }

    /// Gives the file `from` the name `to`, which must not exist (`AlreadyExists` if it does);
    /// `from` is gone afterwards if this succeeds. One `renameat2(RENAME_NOREPLACE)` where the
    /// system and file system have it, so the file never has two names (a database with two
    /// is refused); else a hard link and an unlink, which leave two names for an instant.
    pub(crate) fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
        {
            use rustix::fs::{CWD, RenameFlags, renameat_with};
            match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
                Ok(()) => return Ok(()),
                Err(e) if e == rustix::io::Errno::EXIST => {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                // Not supported here (an old kernel, some file systems): link and unlink.
                Err(_) => {}
            }
        }
        std::fs::hard_link(from, to)?;
        std::fs::remove_file(from)
    }

    /// Creates the directory `path` with the configured mode if it does not exist, and checks
    /// it (its parent with [`check_parent`] first). A symbolic link is followed as
    /// [`may_follow`] allows.
    pub(crate) fn prepare_dir(policy: Policy, path: &Path) -> Result<()> {
        check_parent(policy, path)?;
        let mode = policy.dir_mode();
        match DirBuilder::new().mode(mode & 0o777).create(path) {
            Ok(()) => {
                std::fs::set_permissions(path, Permissions::from_mode(mode))
                    .map_err(|e| with_path(path, &e))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(with_path(path, &e).into()),
        }
        let follow = may_follow(policy, path)?;
        let meta = if follow { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) }
            .map_err(|e| with_path(path, &e))?;
        if !meta.is_dir() {
            return Err(unsafe_file(path, "it is not a directory: move it aside".into()));
        }
        check(policy, path, &meta, |p| std::fs::set_permissions(path, p))
    }
}

#[cfg(not(unix))]
mod imp {
    use std::fs::{File, OpenOptions};
    use std::io;
    use std::path::Path;

    use super::Policy;
    use crate::error::Result;

    pub(crate) fn open_file(_: Policy, path: &Path, _: bool) -> Result<File> {
        Ok(OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?)
    }

    pub(crate) fn create_new(_: Policy, path: &Path) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create_new(true).open(path)
    }

    pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
        let file = OpenOptions::new().read(true).open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(file)
    }

    pub(crate) fn rename_new(from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)?;
        std::fs::remove_file(from)
    }

    pub(crate) fn prepare_dir(_: Policy, path: &Path) -> Result<()> {
        match std::fs::create_dir(path) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Opens the database file read-write, creating it if missing, and checks it. The database
/// may be a symbolic link of this user or root.
pub(crate) fn open_database(policy: Policy, path: &Path) -> Result<File> {
    imp::open_file(policy, path, true)
}

/// Opens a lock file read-write, creating it if missing, and checks it. Never a link.
pub(crate) fn open_lock_file(policy: Policy, path: &Path) -> Result<File> {
    imp::open_file(policy, path, false)
}

/// Creates a new file (which must not exist) with exactly the configured mode.
pub(crate) fn create_new(policy: Policy, path: &Path) -> std::io::Result<File> {
    imp::create_new(policy, path)
}

/// Renames `from` to `to`, which must not exist (`AlreadyExists` if it does), never replacing
/// a file: the database's creation.
pub(crate) fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    imp::rename_new(from, to)
}

/// Creates the lock directory if missing, and checks it and the directory it is in.
pub(crate) fn prepare_dir(policy: Policy, path: &Path) -> Result<()> {
    imp::prepare_dir(policy, path)
}

/// Opens an existing regular file for reading (a spool file): never through a symbolic link,
/// never a FIFO or a device, never blocking in `open`.
pub(crate) fn open_regular(path: &Path) -> std::io::Result<File> {
    imp::open_regular(path)
}

/// Opens an existing lock file for reading only, unchecked: for read-only stores, which
/// create nothing (an `flock` needs no write access).
pub(crate) fn open_existing(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).open(path)
}
