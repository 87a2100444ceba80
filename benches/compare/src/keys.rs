//! Keys files: one session per fixed-width line, written by the parent when it preloads a
//! template and read by the children with `pread` at a random index.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::systems::{Key, R};

/// A keys file holds one session per fixed-width line, read with `pread` at a random index, so
/// a worker's memory holds no list of keys (its peak RSS is the store's).
const KEY_LINE: usize = 96;

pub fn write_keys(path: &Path, keys: &[Key]) -> R<()> {
    let mut out = std::io::BufWriter::new(File::create(path)?);
    for k in keys {
        let line = format!("{} {}", k.id, k.token);
        if line.len() >= KEY_LINE {
            return Err("key too long".into());
        }
        out.write_all(format!("{line:<width$}\n", width = KEY_LINE - 1).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

pub struct Keys {
    file: File,
    pub n: u64,
}

impl Keys {
    pub fn open(path: &Path) -> R<Keys> {
        let file = File::open(path)?;
        let n = file.metadata()?.len() / KEY_LINE as u64;
        if n == 0 {
            return Err("empty keys file".into());
        }
        Ok(Keys { file, n })
    }
    pub fn get(&self, i: u64) -> R<Key> {
        let mut buf = [0u8; KEY_LINE];
        self.file.read_exact_at(&mut buf, (i % self.n) * KEY_LINE as u64)?;
        let line = std::str::from_utf8(&buf)?.trim_end();
        let (id, token) = line.split_once(' ').unwrap_or((line, ""));
        Ok(Key { id: id.to_string(), token: token.to_string() })
    }
}
