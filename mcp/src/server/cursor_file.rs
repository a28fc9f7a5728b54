//! The delivery cursors on disk, `cursor` beside the key file (`.nexysync/cursor`), so a
//! restarted server does not hand an agent again what an earlier session delivered, and
//! does not skip what arrived while no session ran. One cursor per stream kind: waiting
//! for refs does not consume messages.
//!
//! It is a convenience, not a source of truth: unreadable, missing or another agent's
//! cursor means "start from the beginning", and a failed write is only logged.

use std::io::Write;
use std::path::{Path, PathBuf};

use nexysync_domain::ids::{AgentId, Seq};
use serde::{Deserialize, Serialize};

use crate::client::{Cursors, StreamKind};

const FILE_NAME: &str = "cursor";

#[derive(Debug)]
pub(crate) struct CursorFile {
    path: PathBuf,
    agent: AgentId,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    agent: AgentId,
    /// The last message sequence delivered to the agent (the file's first form, kept so
    /// older and newer servers read each other's files).
    delivered: Seq,
    /// The last sequence delivered, per kind.
    #[serde(default)]
    kinds: Cursors,
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

    /// The saved cursors, or the beginning (of each kind without one).
    pub fn load(&self) -> Cursors {
        std::fs::read(&self.path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Stored>(&bytes).ok())
            .filter(|stored| stored.agent == self.agent)
            .map_or_else(Cursors::default, |stored| {
                let mut cursors = stored.kinds;
                cursors.advance(StreamKind::Message, stored.delivered);
                cursors
            })
    }

    /// Replaces the saved cursors atomically (a temporary file, then a rename).
    pub fn save(&self, cursors: &Cursors) {
        if let Err(error) = self.try_save(cursors) {
            tracing::warn!(path = %self.path.display(), %error, "failed to save the delivery cursor");
        }
    }

    fn try_save(&self, cursors: &Cursors) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let json = serde_json::to_vec(&Stored {
            agent: self.agent,
            delivered: cursors.get(StreamKind::Message),
            kinds: cursors.clone(),
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
        assert_eq!(cursor.load(), Cursors::default());
        let mut saved = Cursors::default();
        saved.advance(StreamKind::Message, Seq(42));
        saved.advance(StreamKind::Ref, Seq(50));
        cursor.save(&saved);
        assert_eq!(cursor.load(), saved);
        let other = CursorFile::beside(&key_path, AgentId::generate()).unwrap();
        assert_eq!(other.load(), Cursors::default());
    }

    #[test]
    fn a_cursor_file_of_the_first_form_still_gives_the_message_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key");
        let agent = AgentId::generate();
        let old = serde_json::json!({ "agent": agent, "delivered": 17 });
        std::fs::write(dir.path().join(FILE_NAME), old.to_string()).unwrap();
        let loaded = CursorFile::beside(&key_path, agent).unwrap().load();
        assert_eq!(loaded.get(StreamKind::Message), Seq(17));
        assert_eq!(loaded.get(StreamKind::Ref), Seq(0));
    }
}
