//! The owner's project file, `<home>/projects/<name>.json` (mode 0600, directory 0700):
//!
//! ```json
//! { "version": 1, "server": "http://127.0.0.1:8707", "id": "<uuid>", "name": "demo",
//!   "project_key": "<base64>", "owner_signing_key": "<base64>" }
//! ```
//!
//! It holds the two secrets of a project, made on the owner's machine and never sent to
//! the server: the project key (copied into each agent's key file) and the owner signing
//! key (which signs agent registrations). Losing it means no new agents can be added.

use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nexysync_domain::crypto::{ProjectKey, SigningKey};
use nexysync_domain::ids::{ProjectId, ProjectName};
use serde::{Deserialize, Serialize};

use crate::private_file;

/// The format version this code writes and reads.
pub const VERSION: u32 = 1;

/// A project as its owner holds it. `Debug` hides both keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectFile {
    pub version: u32,
    /// The API server the project was created on.
    pub server: String,
    pub id: ProjectId,
    pub name: ProjectName,
    #[serde(with = "project_key_base64")]
    pub project_key: ProjectKey,
    #[serde(with = "signing_key_base64")]
    pub owner_signing_key: SigningKey,
}

/// Saving failed; `AlreadyExists` is separate so callers can say what to do.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(
        "the project file {0} already exists (a project of this name was created from this machine); \
         choose another name, or move that file away if you really mean to replace it"
    )]
    AlreadyExists(PathBuf),
    #[error("failed to write the project file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ProjectFile {
    /// A fresh project: new id, project key and owner key.
    pub fn generate(name: ProjectName, server: String) -> Self {
        Self {
            version: VERSION,
            server,
            id: ProjectId::generate(),
            name,
            project_key: ProjectKey::generate(),
            owner_signing_key: SigningKey::generate(),
        }
    }

    /// The directory of project files under `home`.
    pub fn dir(home: &Path) -> PathBuf {
        home.join("projects")
    }

    /// Where the project called `name` is saved under `home`.
    pub fn path(home: &Path, name: &ProjectName) -> PathBuf {
        Self::dir(home).join(format!("{name}.json"))
    }

    /// Saves to [`Self::path`], refusing to overwrite an existing file.
    pub fn save_new(&self, home: &Path) -> Result<PathBuf, SaveError> {
        let path = Self::path(home, &self.name);
        let dir = Self::dir(home);
        let io_error = |source| SaveError::Io {
            path: path.clone(),
            source,
        };
        private_file::create_owned_dir(&dir).map_err(io_error)?;
        let mut json = serde_json::to_vec_pretty(self).expect("a project file always serialises");
        json.push(b'\n');
        match private_file::write_new(&path, &json) {
            Ok(()) => Ok(path),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(SaveError::AlreadyExists(path))
            }
            Err(err) => Err(io_error(err)),
        }
    }

    /// Reads one project file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path)
            .with_context(|| format!("failed to read the project file {}", path.display()))?;
        let file: Self = serde_json::from_slice(&text)
            .with_context(|| format!("failed to parse the project file {}", path.display()))?;
        if file.version != VERSION {
            bail!(
                "the project file {} has version {}, but this nexysync reads version {VERSION}; upgrade nexysync",
                path.display(),
                file.version
            );
        }
        Ok(file)
    }

    /// Finds a project by name (`<home>/projects/<name>.json`) or by id (any project file
    /// under `home` with that id).
    pub fn find(home: &Path, name_or_id: &str) -> anyhow::Result<(PathBuf, Self)> {
        if let Ok(name) = ProjectName::parse(name_or_id) {
            let path = Self::path(home, &name);
            if path.exists() {
                let file = Self::load(&path)?;
                return Ok((path, file));
            }
        }
        let dir = Self::dir(home);
        let mut known = Vec::new();
        if let Ok(id) = ProjectId::parse(name_or_id) {
            for path in Self::list(&dir)? {
                let file = Self::load(&path)?;
                if file.id == id {
                    return Ok((path, file));
                }
            }
        }
        for path in Self::list(&dir)? {
            if let Some(stem) = path.file_stem() {
                known.push(stem.to_string_lossy().into_owned());
            }
        }
        known.sort();
        let hint = if known.is_empty() {
            format!(
                "there are no project files in {}; create one with `nexysync project create NAME` \
                 (or set NEXYSYNC_HOME to where your project files are)",
                dir.display()
            )
        } else {
            format!("projects in {}: {}", dir.display(), known.join(", "))
        };
        bail!("no project named or with id `{name_or_id}` on this machine; {hint}")
    }

    /// The project files in `dir` (none if it does not exist).
    fn list(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(err).with_context(|| {
                    format!("failed to list the project files in {}", dir.display())
                })
            }
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry
                .with_context(|| format!("failed to list the project files in {}", dir.display()))?
                .path();
            if path.extension().is_some_and(|ext| ext == "json") {
                paths.push(path);
            }
        }
        Ok(paths)
    }
}

mod project_key_base64 {
    use nexysync_domain::crypto::ProjectKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &ProjectKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_base64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ProjectKey, D::Error> {
        let text = String::deserialize(d)?;
        ProjectKey::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

mod signing_key_base64 {
    use nexysync_domain::crypto::SigningKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(key: &SigningKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&key.to_base64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SigningKey, D::Error> {
        let text = String::deserialize(d)?;
        SigningKey::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn demo() -> ProjectFile {
        ProjectFile::generate(
            ProjectName::parse("demo").unwrap(),
            "http://127.0.0.1:8707".into(),
        )
    }

    #[test]
    fn a_saved_project_file_is_private_and_loads_back() {
        let home = tempfile::tempdir().unwrap();
        let project = demo();
        let path = project.save_new(home.path()).unwrap();
        assert_eq!(path, home.path().join("projects").join("demo.json"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);

        let back = ProjectFile::load(&path).unwrap();
        assert_eq!(back.id, project.id);
        assert_eq!(back.project_key, project.project_key);
        assert_eq!(
            back.owner_signing_key.public_key(),
            project.owner_signing_key.public_key()
        );
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for field in [
            "version",
            "server",
            "id",
            "name",
            "project_key",
            "owner_signing_key",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
    }

    #[test]
    fn an_existing_project_file_is_never_overwritten() {
        let home = tempfile::tempdir().unwrap();
        let first = demo();
        let path = first.save_new(home.path()).unwrap();
        let before = std::fs::read(&path).unwrap();

        let err = demo().save_new(home.path()).unwrap_err();
        assert!(matches!(err, SaveError::AlreadyExists(ref p) if *p == path));
        assert!(err.to_string().contains("choose another name"));
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_project_is_found_by_name_or_by_id() {
        let home = tempfile::tempdir().unwrap();
        let project = demo();
        project.save_new(home.path()).unwrap();
        let (_, by_name) = ProjectFile::find(home.path(), "demo").unwrap();
        assert_eq!(by_name.id, project.id);
        let (_, by_id) = ProjectFile::find(home.path(), &project.id.to_string()).unwrap();
        assert_eq!(by_id.name, project.name);

        let err = ProjectFile::find(home.path(), "other").unwrap_err();
        assert!(err.to_string().contains("projects in"), "{err}");
        assert!(err.to_string().contains("demo"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let project = demo();
        let shown = format!("{project:?}");
        assert!(!shown.contains(&project.project_key.to_base64()));
        assert!(!shown.contains(&project.owner_signing_key.to_base64()));
    }
}
