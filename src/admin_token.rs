//! The admin token that guards provisioning (`POST /v1/projects…`).
//!
//! `nexysync up` takes it from the settings (`NEXYSYNC_ADMIN_TOKEN`) or else generates it
//! once into `<data-dir>/admin-token` (mode 0600) and reuses that file on later starts.
//! The provisioning commands read it from `--admin-token-file`, the settings, or that
//! same file. The token itself is never printed; only where it lives.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use nexysync_api::Secret;
use rand::RngCore;

use crate::private_file;
use crate::settings::Settings;

/// The file name of the generated token inside the data directory.
pub const FILE_NAME: &str = "admin-token";

/// Where a token came from, for messages (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `NEXYSYNC_ADMIN_TOKEN` (or `admin_token` in the settings file).
    Settings,
    /// Read from this file.
    File(PathBuf),
    /// Generated just now into this file.
    Generated(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Settings => {
                f.write_str("from NEXYSYNC_ADMIN_TOKEN (or admin_token in the settings file)")
            }
            Origin::File(path) => write!(f, "in {}", path.display()),
            Origin::Generated(path) => write!(f, "generated into {}", path.display()),
        }
    }
}

/// The default token file of a data directory.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// A fresh token: `nsadm_` and 32 random bytes in base64url.
pub fn generate() -> Secret {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Secret::new(format!("nsadm_{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The server's token: from the settings, else the data directory's file, generating
/// that file (mode 0600, directory 0700) on first use.
pub fn for_server(settings: &Settings) -> anyhow::Result<(Secret, Origin)> {
    if let Some(token) = &settings.admin_token {
        return Ok((token.clone(), Origin::Settings));
    }
    let path = default_path(&settings.data_dir);
    load_or_create(&path)
}

/// Reads the token at `path`, or creates it there if the file does not exist.
pub fn load_or_create(path: &Path) -> anyhow::Result<(Secret, Origin)> {
    if let Some(dir) = path.parent() {
        private_file::create_dir(dir)
            .with_context(|| format!("failed to create the data directory {}", dir.display()))?;
    }
    let token = generate();
    match private_file::write_new(path, format!("{}\n", token.expose()).as_bytes()) {
        Ok(()) => Ok((token, Origin::Generated(path.to_owned()))),
        // Created earlier (or by a concurrent start): reuse it.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            Ok((read(path)?, Origin::File(path.to_owned())))
        }
        Err(err) => Err(err)
            .with_context(|| format!("failed to write the admin token file {}", path.display())),
    }
}

/// Reads a token file (surrounding whitespace ignored).
pub fn read(path: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the admin token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "the admin token file {} is empty; delete it to have `nexysync up` generate a new one",
            path.display()
        );
    }
    if private_file::is_shared(path).unwrap_or(false) {
        tracing::warn!(
            path = %path.display(),
            "the admin token file is readable by other users; run `chmod 600` on it"
        );
    }
    Ok(Secret::new(token))
}

/// The token a provisioning command sends: `--admin-token-file`, else the settings, else
/// the data directory's file (which `nexysync up` writes on this machine).
pub fn for_client(
    explicit_file: Option<&Path>,
    settings: &Settings,
) -> anyhow::Result<(Secret, Origin)> {
    if let Some(path) = explicit_file {
        return Ok((read(path)?, Origin::File(path.to_owned())));
    }
    if let Some(token) = &settings.admin_token {
        return Ok((token.clone(), Origin::Settings));
    }
    let path = default_path(&settings.data_dir);
    if !path.exists() {
        bail!(
            "no admin token: {} does not exist. Set NEXYSYNC_ADMIN_TOKEN, pass --admin-token-file FILE, \
             or run this on the machine where `nexysync up` runs (it writes that file on first start)",
            path.display()
        );
    }
    Ok((read(&path)?, Origin::File(path)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_generated_token_has_the_admin_prefix_and_256_bits() {
        let token = generate();
        let body = token.expose().strip_prefix("nsadm_").unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert_ne!(generate(), token);
    }

    #[test]
    fn the_first_start_creates_the_token_file_private_and_later_starts_reuse_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(&dir.path().join("data"));

        let (first, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, Origin::Generated(path.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);

        let (second, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, Origin::File(path.clone()));
        assert_eq!(second, first);
        assert_eq!(read(&path).unwrap(), first);
    }

    #[test]
    fn an_empty_token_file_is_refused_with_a_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, "\n").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("delete it"), "{err}");
    }

    #[test]
    fn origins_never_show_the_token() {
        let (token, origin) = load_or_create(
            &tempfile::tempdir()
                .unwrap()
                .path()
                .join("d")
                .join(FILE_NAME),
        )
        .unwrap();
        assert!(!origin.to_string().contains(token.expose()));
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
