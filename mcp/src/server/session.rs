//! Who the server acts as: a key file's client and its live stream, or nothing yet (with
//! the reason, so every tool can say what is missing).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::cursor_file::CursorFile;
use crate::client::{Client, Cursors, MessageStream, StreamOptions};
use crate::key_file::KeyFile;

/// An authenticated session: one agent's client and its message stream.
#[derive(Debug)]
pub(crate) struct Session {
    pub key_path: Option<PathBuf>,
    pub client: Client,
    pub stream: MessageStream,
    cursor_file: Option<CursorFile>,
    saved_cursors: Mutex<Cursors>,
}

impl Session {
    /// Starts the session's stream after the cursors saved beside the key file (from the
    /// beginning when there are none: all of it is new to the agent).
    pub fn start(client: Client, key_path: Option<PathBuf>, options: StreamOptions) -> Session {
        let cursor_file = key_path
            .as_deref()
            .and_then(|path| CursorFile::beside(path, client.key_file().agent.id));
        let from = cursor_file
            .as_ref()
            .map_or_else(Cursors::default, CursorFile::load);
        let stream = MessageStream::start_at(client.clone(), from.clone(), options);
        Session {
            key_path,
            client,
            stream,
            cursor_file,
            saved_cursors: Mutex::new(from),
        }
    }

    /// Saves the delivery cursors if they moved since the last save.
    pub fn save_cursor(&self) {
        let Some(file) = &self.cursor_file else {
            return;
        };
        // Held while reading and writing: two saves never race back to older cursors.
        let mut saved = self
            .saved_cursors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cursors = self.stream.cursors();
        if *saved != cursors {
            file.save(&cursors);
            *saved = cursors;
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
