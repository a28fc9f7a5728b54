//! Who the server acts as: a key file's client and its live stream, or nothing yet (with
//! the reason, so every tool can say what is missing).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nexysync_domain::ids::Seq;

use super::cursor_file::CursorFile;
use crate::client::{Client, MessageStream, StreamOptions};
use crate::key_file::KeyFile;

/// An authenticated session: one agent's client and its message stream.
#[derive(Debug)]
pub(crate) struct Session {
    pub key_path: Option<PathBuf>,
    pub client: Client,
    pub stream: MessageStream,
    cursor_file: Option<CursorFile>,
    saved_cursor: AtomicU64,
}

impl Session {
    /// Starts the session's stream after the cursor saved beside the key file (from the
    /// beginning of the inbox when there is none: all of it is new to the agent).
    pub fn start(client: Client, key_path: Option<PathBuf>, options: StreamOptions) -> Session {
        let cursor_file = key_path
            .as_deref()
            .and_then(|path| CursorFile::beside(path, client.key_file().agent.id));
        let from = cursor_file.as_ref().map_or(Seq(0), CursorFile::load);
        let stream = MessageStream::start(client.clone(), from, options);
        Session {
            key_path,
            client,
            stream,
            cursor_file,
            saved_cursor: AtomicU64::new(from.0),
        }
    }

    /// Saves the delivery cursor if it moved since the last save.
    pub fn save_cursor(&self) {
        let Some(file) = &self.cursor_file else {
            return;
        };
        let cursor = self.stream.cursor();
        if self.saved_cursor.fetch_max(cursor.0, Ordering::Relaxed) < cursor.0 {
            file.save(cursor);
        }
    }
}

/// The server's authentication state.
#[derive(Debug)]
pub(crate) enum Auth {
    Ready(Arc<Session>),
    /// No usable key; `problem` says why ("no key file found …").
    Missing {
        problem: String,
    },
}

impl Auth {
    /// A session for `key`, or the reason there is none.
    pub fn from_key(key: KeyFile, key_path: Option<PathBuf>, options: StreamOptions) -> Auth {
        match Client::new(key) {
            Ok(client) => Auth::Ready(Arc::new(Session::start(client, key_path, options))),
            Err(error) => Auth::Missing {
                problem: match key_path {
                    Some(path) => format!("the key file {} is not usable: {error}", path.display()),
                    None => format!("the key file is not usable: {error}"),
                },
            },
        }
    }
}
