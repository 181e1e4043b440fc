//! Small files replaced whole and durably: a first line `crc32c=<hex>` over
//! the body that follows, written to a temporary file, fsynced, renamed over
//! the old one, and the directory fsynced. A reader gets the old or the new
//! body, never a torn one, and a damaged file is reported, not guessed at.
//!
//! Blocking: call from a helper thread (`storage::segment::blocking`) on a
//! shard.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DurableFileError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Reads `path`'s body; `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<String>, DurableFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DurableFileError::Io { context: format!("read {}", path.display()), source: e }),
    };
    let corrupt = |reason: &str| DurableFileError::Corrupt { path: path.to_path_buf(), reason: reason.into() };
    let (first, body) = text.split_once('\n').ok_or_else(|| corrupt("no checksum line"))?;
    let stored = first
        .strip_prefix("crc32c=")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt("bad checksum line"))?;
    if crc32c::crc32c(body.as_bytes()) != stored {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(Some(body.to_string()))
}

/// Replaces `path` with `body`, durably.
pub fn store(path: &Path, body: &str) -> Result<(), DurableFileError> {
    let io = |context: String| move |source| DurableFileError::Io { context, source };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let text = format!("crc32c={:08x}\n{body}", crc32c::crc32c(body.as_bytes()));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(format!("create {}", tmp.display())))?;
        f.write_all(text.as_bytes()).map_err(io(format!("write {}", tmp.display())))?;
        f.sync_all().map_err(io(format!("fsync {}", tmp.display())))?;
    }
    std::fs::rename(&tmp, path).map_err(io(format!("rename {}", tmp.display())))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(format!("fsync {}", dir.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_body_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("defs");
        assert!(load(&path).expect("load").is_none());
        store(&path, "hello\nworld").expect("store");
        assert_eq!(load(&path).expect("load").as_deref(), Some("hello\nworld"));
    }

    #[test]
    fn a_damaged_body_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("defs");
        store(&path, "abc").expect("store");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        let e = load(&path).unwrap_err();
        assert!(e.to_string().contains("defs") && e.to_string().contains("checksum"), "{e}");
    }
}
