//! The agent key file, `DIR/.nexysync/key`: everything one agent needs to talk to its
//! project (server URL, ids, bearer token, project key, signing key), as JSON, mode 0600.
//!
//! ```json
//! { "version": 1, "server": "http://127.0.0.1:8707",
//!   "project": { "id": "<uuid>", "name": "demo", "owner_key": "<base64 Ed25519 public key>" },
//!   "agent": { "id": "<uuid>", "name": "alice" },
//!   "token": "nsa_...", "project_key": "<base64 32 bytes>", "signing_key": "<base64 32-byte seed>" }
//! ```
//!
//! `nexysync agent add` writes it with [`KeyFile::write_new`]; `nexysync-mcp` finds it with
//! [`KeyFile::discover`] and reads it with [`KeyFile::load`]. The secrets never appear in
//! `Debug` output.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use nexysync_domain::crypto::{AgentToken, ProjectKey, PublicKey, SigningKey};
use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName};
use serde::{Deserialize, Serialize};

/// The key file format this code reads and writes.
pub const KEY_FILE_VERSION: u32 = 1;
/// The directory, relative to an agent's working directory, that holds its key file.
pub const KEY_DIR: &str = ".nexysync";
/// The key file's name inside [`KEY_DIR`].
pub const KEY_FILE_NAME: &str = "key";

/// One agent's credentials for one project.
#[derive(Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Always [`KEY_FILE_VERSION`]; [`KeyFile::load`] refuses other versions.
    pub version: u32,
    /// Base URL of the NexySync API, e.g. `http://127.0.0.1:8707`.
    pub server: String,
    pub project: ProjectEntry,
    pub agent: AgentEntry,
    #[serde(with = "secret_serde::token")]
    pub token: AgentToken,
    #[serde(with = "secret_serde::project_key")]
    pub project_key: ProjectKey,
    #[serde(with = "secret_serde::signing_key")]
    pub signing_key: SigningKey,
}

/// The project part of a key file. `owner_key` is the root of trust: agent registrations
/// the server lists are only believed when signed by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectEntry {
    pub id: ProjectId,
    pub name: ProjectName,
    pub owner_key: PublicKey,
}

/// The agent the key file belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEntry {
    pub id: AgentId,
    pub name: AgentName,
}

/// Why a key file could not be read or written. Messages name the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "no key file at {path}; provision one with `nexysync agent add PROJECT AGENT --dir .`"
    )]
    NotFound { path: PathBuf },
    #[error("failed to read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not a valid NexySync key file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("key file {path} has version {found}; this build reads version {KEY_FILE_VERSION}")]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("key file {path} already exists; pass --force to overwrite it")]
    AlreadyExists { path: PathBuf },
    #[error("failed to write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl KeyFile {
    /// The conventional key file path for an agent working in `dir`: `dir/.nexysync/key`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(KEY_DIR).join(KEY_FILE_NAME)
    }

    /// Reads and validates a key file. Loose permissions are not an error (the file is
    /// still usable) but are logged; see [`KeyFile::permissions_problem`].
    pub fn load(path: &Path) -> Result<KeyFile, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => KeyFileError::NotFound {
                path: path.to_owned(),
            },
            _ => KeyFileError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        let key: KeyFile = serde_json::from_str(&text).map_err(|e| KeyFileError::Invalid {
            path: path.to_owned(),
            // serde_json's message names the line and column and the field's rule; the
            // secret fields are decoded from strings, so their text never ends up here.
            reason: e.to_string(),
        })?;
        if key.version != KEY_FILE_VERSION {
            return Err(KeyFileError::UnsupportedVersion {
                path: path.to_owned(),
                found: key.version,
            });
        }
        if let Err(reason) = key.server_url() {
            return Err(KeyFileError::Invalid {
                path: path.to_owned(),
                reason,
            });
        }
        if let Some(problem) = Self::permissions_problem(path) {
            tracing::warn!(path = %path.display(), "{problem}");
        }
        Ok(key)
    }

    /// Writes `key` to `path` with mode 0600, atomically (a temporary file in the same
    /// directory, then a rename), creating the parent directory. An existing file is only
    /// replaced when `force` is set. A `.nexysync` parent directory also gets a
    /// `.gitignore` so the secret is not committed by accident.
    pub fn write_new(path: &Path, key: &KeyFile, force: bool) -> Result<(), KeyFileError> {
        let write_error = |source| KeyFileError::Write {
            path: path.to_owned(),
            source,
        };
        if !force && path.exists() {
            return Err(KeyFileError::AlreadyExists {
                path: path.to_owned(),
            });
        }
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(write_error)?;
        if parent.file_name().is_some_and(|name| name == KEY_DIR) {
            ignore_directory_in_git(&parent).map_err(write_error)?;
        }

        let mut json = serde_json::to_vec_pretty(key).map_err(|e| write_error(e.into()))?;
        json.push(b'\n');
        // tempfile creates the file with mode 0600 on Unix; it is set again below so the
        // guarantee does not hang on a library default.
        let mut temp = tempfile::NamedTempFile::new_in(&parent).map_err(write_error)?;
        restrict_to_owner(temp.path()).map_err(write_error)?;
        temp.write_all(&json).map_err(write_error)?;
        temp.as_file().sync_all().map_err(write_error)?;
        if force {
            temp.persist(path).map_err(|e| write_error(e.error))?;
        } else {
            // `persist_noclobber` closes the race between the check above and the rename.
            temp.persist_noclobber(path).map_err(|e| {
                if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyFileError::AlreadyExists {
                        path: path.to_owned(),
                    }
                } else {
                    write_error(e.error)
                }
            })?;
        }
        Ok(())
    }

    /// Where the key file is: `env_override` (the value of `NEXYSYNC_KEY_FILE`, read by the
    /// binary) when given, else the first `.nexysync/key` found walking up from `cwd`.
    /// An override is returned even if nothing is there, so loading it reports the path
    /// the user asked for rather than silently using another key.
    pub fn discover(env_override: Option<PathBuf>, cwd: &Path) -> Option<PathBuf> {
        if let Some(path) = env_override.filter(|p| !p.as_os_str().is_empty()) {
            return Some(if path.is_relative() {
                cwd.join(path)
            } else {
                path
            });
        }
        cwd.ancestors()
            .map(Self::path_in)
            .find(|candidate| candidate.is_file())
    }

    /// A warning when the file can be read by others than its owner (Unix only).
    pub fn permissions_problem(path: &Path) -> Option<String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| {
                format!(
                    "key file {} has mode {mode:o}; it holds secrets and should be 600 (chmod 600 {})",
                    path.display(),
                    path.display()
                )
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }

    /// The server's base URL: https, or plain http only to this machine (the bearer token
    /// travels with every request and must not cross a network in the clear).
    pub fn server_url(&self) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(&self.server)
            .map_err(|e| format!("server `{}` is not a URL: {e}", self.server))?;
        let loopback = url.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match url.scheme() {
            "https" => Ok(url),
            "http" if loopback => Ok(url),
            "http" => Err(format!(
                "server `{}` uses plain http to another machine; the agent's token would \
                 travel in the clear: use https",
                self.server
            )),
            other => Err(format!(
                "server `{}` must be an http or https URL, not {other}",
                self.server
            )),
        }
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("version", &self.version)
            .field("server", &self.server)
            .field("project", &self.project)
            .field("agent", &self.agent)
            .field("token", &self.token)
            .field("project_key", &self.project_key)
            .field("signing_key", &self.signing_key)
            .finish()
    }
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn restrict_to_owner(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn ignore_directory_in_git(dir: &Path) -> std::io::Result<()> {
    let gitignore = dir.join(".gitignore");
    if gitignore.exists() {
        return Ok(());
    }
    std::fs::write(
        gitignore,
        "# NexySync agent secrets: never commit this directory.\n*\n",
    )
}

/// Serde for the secret fields, through their text forms.
mod secret_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    pub mod token {
        use super::*;
        use nexysync_domain::crypto::AgentToken;

        pub fn serialize<S: Serializer>(token: &AgentToken, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(token.expose_secret())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AgentToken, D::Error> {
            let text = String::deserialize(d)?;
            if text.is_empty() {
                return Err(serde::de::Error::custom("token is empty"));
            }
            Ok(AgentToken::from_secret(text))
        }
    }

    pub mod project_key {
        use super::*;
        use nexysync_domain::crypto::ProjectKey;

        pub fn serialize<S: Serializer>(key: &ProjectKey, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&key.to_base64())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProjectKey, D::Error> {
            ProjectKey::from_base64(&String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }

    pub mod signing_key {
        use super::*;
        use nexysync_domain::crypto::SigningKey;

        pub fn serialize<S: Serializer>(key: &SigningKey, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&key.to_base64())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SigningKey, D::Error> {
            SigningKey::from_base64(&String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> KeyFile {
        KeyFile {
            version: KEY_FILE_VERSION,
            server: "http://127.0.0.1:8707".into(),
            project: ProjectEntry {
                id: ProjectId::generate(),
                name: ProjectName::parse("demo").unwrap(),
                owner_key: SigningKey::generate().public_key(),
            },
            agent: AgentEntry {
                id: AgentId::generate(),
                name: AgentName::parse("alice").unwrap(),
            },
            token: AgentToken::generate(),
            project_key: ProjectKey::generate(),
            signing_key: SigningKey::generate(),
        }
    }

    #[test]
    fn plain_http_is_only_for_this_machine() {
        let mut key = sample();
        for ok in [
            "http://127.0.0.1:8707",
            "http://localhost:8707",
            "http://[::1]:8707",
            "https://sync.example.com",
        ] {
            key.server = ok.into();
            assert!(key.server_url().is_ok(), "{ok}");
        }
        key.server = "http://sync.example.com".into();
        assert!(key.server_url().unwrap_err().contains("https"));
    }

    #[test]
    fn a_key_file_survives_a_write_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = KeyFile::path_in(dir.path());
        let key = sample();
        KeyFile::write_new(&path, &key, false).unwrap();
        let back = KeyFile::load(&path).unwrap();
        assert_eq!(back.server, key.server);
        assert_eq!(back.project, key.project);
        assert_eq!(back.agent, key.agent);
        assert_eq!(back.token, key.token);
        assert_eq!(back.project_key, key.project_key);
        assert_eq!(back.signing_key.public_key(), key.signing_key.public_key());
    }

    #[test]
    fn the_json_uses_the_documented_field_names() {
        let key = sample();
        let json: serde_json::Value = serde_json::to_value(&key).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["project"]["name"], "demo");
        assert_eq!(json["agent"]["name"], "alice");
        assert_eq!(json["token"], key.token.expose_secret());
        assert_eq!(json["project_key"], key.project_key.to_base64());
        assert_eq!(json["signing_key"], key.signing_key.to_base64());
        assert_eq!(
            json["project"]["owner_key"],
            key.project.owner_key.to_base64()
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_written_key_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = KeyFile::path_in(dir.path());
        KeyFile::write_new(&path, &sample(), false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(KeyFile::permissions_problem(&path).is_none());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(KeyFile::permissions_problem(&path)
            .unwrap()
            .contains("chmod 600"));
    }

    #[test]
    fn an_existing_key_file_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = KeyFile::path_in(dir.path());
        let first = sample();
        KeyFile::write_new(&path, &first, false).unwrap();
        let second = sample();
        let err = KeyFile::write_new(&path, &second, false).unwrap_err();
        assert!(matches!(err, KeyFileError::AlreadyExists { .. }));
        assert!(err.to_string().contains("--force"));
        assert_eq!(KeyFile::load(&path).unwrap().agent, first.agent);
        KeyFile::write_new(&path, &second, true).unwrap();
        assert_eq!(KeyFile::load(&path).unwrap().agent, second.agent);
    }

    #[test]
    fn the_key_directory_is_ignored_by_git() {
        let dir = tempfile::tempdir().unwrap();
        KeyFile::write_new(&KeyFile::path_in(dir.path()), &sample(), false).unwrap();
        let ignore = std::fs::read_to_string(dir.path().join(".nexysync/.gitignore")).unwrap();
        assert!(ignore.lines().any(|line| line == "*"));
    }

    #[test]
    fn discovery_walks_up_from_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = KeyFile::path_in(dir.path());
        KeyFile::write_new(&path, &sample(), false).unwrap();
        let deep = dir.path().join("src/a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(KeyFile::discover(None, &deep), Some(path));
    }

    #[test]
    fn discovery_prefers_the_override_and_finds_nothing_without_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        assert_eq!(
            KeyFile::discover(Some(elsewhere.clone()), dir.path()),
            Some(elsewhere)
        );
        assert_eq!(
            KeyFile::discover(Some("rel/key".into()), dir.path()),
            Some(dir.path().join("rel/key"))
        );
        let empty = dir.path().join("nothing-here");
        std::fs::create_dir_all(&empty).unwrap();
        // The temp dir's ancestors (/tmp, /) hold no `.nexysync/key` on a sane machine.
        assert_eq!(KeyFile::discover(None, &empty), None);
    }

    #[test]
    fn loading_explains_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = KeyFile::load(&missing).unwrap_err();
        assert!(matches!(err, KeyFileError::NotFound { .. }));
        assert!(err.to_string().contains("nexysync agent add"));

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "{ not json").unwrap();
        assert!(matches!(
            KeyFile::load(&garbage),
            Err(KeyFileError::Invalid { .. })
        ));

        let mut json = serde_json::to_value(sample()).unwrap();
        json["version"] = 2.into();
        let future = dir.path().join("future");
        std::fs::write(&future, json.to_string()).unwrap();
        assert!(matches!(
            KeyFile::load(&future),
            Err(KeyFileError::UnsupportedVersion { found: 2, .. })
        ));

        let mut json = serde_json::to_value(sample()).unwrap();
        json["server"] = "ftp://example".into();
        let ftp = dir.path().join("ftp");
        std::fs::write(&ftp, json.to_string()).unwrap();
        assert!(matches!(
            KeyFile::load(&ftp),
            Err(KeyFileError::Invalid { .. })
        ));
    }

    #[test]
    fn debug_output_hides_every_secret() {
        let key = sample();
        let debug = format!("{key:?}");
        assert!(!debug.contains(key.token.expose_secret()));
        assert!(!debug.contains(&key.project_key.to_base64()));
        assert!(!debug.contains(&key.signing_key.to_base64()));
        assert!(debug.contains("alice"));
    }
}
