//! Files that hold secrets (the admin token, project files): created with mode 0600 in
//! directories of mode 0700, and never overwritten.

use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` and any missing parents with mode 0700. Directories that already exist
/// keep their mode.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates `dir` like [`create_dir`] and then narrows it to 0700 even if it existed: for
/// directories that only ever hold our secrets.
pub fn create_owned_dir(dir: &Path) -> io::Result<()> {
    create_dir(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o700))
}

/// Writes `contents` to a new file of mode 0600. Fails with
/// [`io::ErrorKind::AlreadyExists`] if `path` exists (atomically: two racing writers
/// cannot both succeed), and removes the partial file if the write fails.
pub fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(err) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(err);
    }
    Ok(())
}

/// Whether anyone but the owner may read or write `path`.
pub fn is_shared(path: &Path) -> io::Result<bool> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_readable_by_its_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a").join("b").join("secret");
        create_dir(path.parent().unwrap()).unwrap();
        write_new(&path, b"first").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let parent_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(parent_mode, 0o700);

        let err = write_new(&path, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert!(!is_shared(&path).unwrap());
    }
}
