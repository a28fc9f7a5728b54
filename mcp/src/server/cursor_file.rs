//! The delivery cursor on disk, `cursor` beside the key file (`.nexysync/cursor`), so a
//! restarted server does not hand an agent again what an earlier session delivered, and
//! does not skip what arrived while no session ran.
//!
//! It is a convenience, not a source of truth: unreadable, missing or another agent's
//! cursor means "start from the beginning", and a failed write is only logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use nexysync_domain::ids::{AgentId, Seq};
use serde::{Deserialize, Serialize};

const FILE_NAME: &str = "cursor";

#[derive(Debug)]
pub(crate) struct CursorFile {
    path: PathBuf,
    agent: AgentId,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    agent: AgentId,
    /// The last sequence delivered to the agent.
    delivered: Seq,
}

impl CursorFile {
    /// The cursor file of the agent whose key file is `key_path`.
    pub fn beside(key_path: &Path, agent: AgentId) -> Option<CursorFile> {
        let dir = key_path.parent()?;
        Some(CursorFile {
            path: dir.join(FILE_NAME),
            agent,
        })
    }

    /// The saved cursor, or the beginning.
    pub fn load(&self) -> Seq {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Stored>(&bytes).ok())
            .filter(|stored| stored.agent == self.agent)
            .map_or(Seq(0), |stored| stored.delivered)
    }

    /// Replaces the saved cursor atomically (a temporary file, then a rename).
    pub fn save(&self, delivered: Seq) {
        if let Err(error) = self.try_save(delivered) {
            tracing::warn!(path = %self.path.display(), %error, "failed to save the delivery cursor");
        }
    }

    fn try_save(&self, delivered: Seq) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let json = serde_json::to_vec(&Stored {
            agent: self.agent,
            delivered,
        })?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        temp.write_all(&json)?;
        temp.persist(&self.path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_is_read_back_by_the_same_agent_only() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join(".nexysync/key");
        std::fs::create_dir_all(key_path.parent().unwrap()).unwrap();
        let agent = AgentId::generate();
        let cursor = CursorFile::beside(&key_path, agent).unwrap();
        assert_eq!(cursor.load(), Seq(0));
        cursor.save(Seq(42));
        assert_eq!(cursor.load(), Seq(42));
        let other = CursorFile::beside(&key_path, AgentId::generate()).unwrap();
        assert_eq!(other.load(), Seq(0));
    }
}
