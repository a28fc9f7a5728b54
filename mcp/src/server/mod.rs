//! The MCP server: tools over rmcp, one file per tool.
//!
//! - [`NexySyncMcp`]: the rmcp `ServerHandler`; build it with [`NexySyncMcp::new`] or
//!   [`NexySyncMcp::discover`], then [`NexySyncMcp::serve`] it on any transport (stdio in
//!   the binary, `tokio::io::duplex` in tests).
//! - `auth_tool`: `ns_auth`; `message_tool`: `ns_message`; `kv_tool`: `ns_kv`;
//!   `ref_tool`: `ns_ref`; `meta_tool`: `ns_meta`; `file_tool`: `ns_file`.
//! - `wait`: `ns_message wait` for any of the stream's kinds (`message`, `ref`, `kv`, `file`, `update`).
//! - `notify`: every verified arrival pushed to the client as a channel notification.
//! - `answer`: summaries plus structured JSON, list forms (brief, full) within one
//!   budget; errors as `isError` results.
//! - `session`: the key in use, its client and its live stream; `cursor_file`: the
//!   delivery cursors saved beside the key file, so a restart neither repeats nor skips.
//!
//! Every failure is an `isError` tool result with a message saying what to do; a tool
//! never panics and never answers with a protocol error for the caller's mistakes.

mod answer;
mod auth_tool;
mod cursor_file;
mod file_tool;
mod kv_tool;
mod message_tool;
mod meta_tool;
mod notify;
mod ref_tool;
mod session;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ExperimentalCapabilities, Implementation, JsonObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::{NotificationContext, RunningService, ServerInitializeError};
use rmcp::transport::IntoTransport;
use rmcp::{tool, tool_handler, tool_router, Peer, RoleServer, ServerHandler, ServiceExt};
use tokio::sync::RwLock;

use crate::client::StreamOptions;
use crate::key_file::KeyFile;
use answer::{into_result, ToolError};
use session::{Auth, Session};

pub use auth_tool::{AuthAction, AuthParams};
pub use file_tool::{FileAction, FileParams};
pub use kv_tool::{KvAction, KvParams};
pub use message_tool::{MessageAction, MessageParams};
pub use meta_tool::{MetaAction, MetaParams};
pub use ref_tool::{RefAction, RefParams};

/// The NexySync MCP server for one agent. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct NexySyncMcp {
    auth: Arc<RwLock<Auth>>,
    cwd: Arc<PathBuf>,
    stream_options: StreamOptions,
    /// The client, once it has initialised: notifications go to it.
    peer: Arc<Mutex<Option<Peer<RoleServer>>>>,
    /// Moves on every change of session, so the previous session's notifier stops.
    session_generation: Arc<AtomicU64>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for NexySyncMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexySyncMcp")
            .field("cwd", &self.cwd)
            .finish_non_exhaustive()
    }
}

impl NexySyncMcp {
    /// A server acting as the agent of `key` (read from `key_path`, shown in status), or
    /// an unauthenticated one when `key` is `None`: it still starts, and its tools explain
    /// how to provision a key. With a key, the message stream starts connecting in the
    /// background, so this must run inside a Tokio runtime.
    pub fn new(key: Option<KeyFile>, key_path: Option<PathBuf>) -> NexySyncMcp {
        Self::with_options(key, key_path, StreamOptions::default())
    }

    /// Like [`NexySyncMcp::new`], with tuned stream options (tests shorten the timeouts).
    pub fn with_options(
        key: Option<KeyFile>,
        key_path: Option<PathBuf>,
        stream_options: StreamOptions,
    ) -> NexySyncMcp {
        let auth = match key {
            Some(key) => Auth::from_key(key, key_path, stream_options.clone()),
            None => Auth::Missing {
                problem: match &key_path {
                    Some(path) => format!("no usable key file at {}", path.display()),
                    None => "no key file is in use".to_owned(),
                },
            },
        };
        Self::from_auth(auth, stream_options)
    }

    /// Finds and loads the key file the way the binary does: `env_override` (the value of
    /// `NEXYSYNC_KEY_FILE`) or `.nexysync/key` walking up from `cwd`. A missing or broken
    /// key file is not fatal: the server starts and its tools say what is wrong.
    pub fn discover(env_override: Option<PathBuf>, cwd: &Path) -> NexySyncMcp {
        let auth = match KeyFile::discover(env_override, cwd) {
            None => Auth::Missing {
                problem: format!(
                    "no key file found: NEXYSYNC_KEY_FILE is not set and there is no .nexysync/key in {} or above",
                    cwd.display()
                ),
            },
            Some(path) => match KeyFile::load(&path) {
                Ok(key) => {
                    tracing::info!(key_file = %path.display(), agent = %key.agent.name, "using key file");
                    Auth::from_key(key, Some(path), StreamOptions::default())
                }
                Err(error) => {
                    tracing::warn!(%error, "key file not usable");
                    Auth::Missing {
                        problem: error.to_string(),
                    }
                }
            },
        };
        let mut server = Self::from_auth(auth, StreamOptions::default());
        server.cwd = Arc::new(cwd.to_owned());
        server
    }

    fn from_auth(auth: Auth, stream_options: StreamOptions) -> NexySyncMcp {
        NexySyncMcp {
            auth: Arc::new(RwLock::new(auth)),
            cwd: Arc::new(std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))),
            stream_options,
            peer: Arc::new(Mutex::new(None)),
            session_generation: Arc::new(AtomicU64::new(0)),
            tool_router: Self::tool_router(),
        }
    }

    /// Sets the directory relative `ns_auth login` paths are resolved against.
    pub fn with_cwd(mut self, cwd: PathBuf) -> NexySyncMcp {
        self.cwd = Arc::new(cwd);
        self
    }

    /// Serves MCP on `transport` (e.g. `rmcp::transport::stdio()` or one end of a
    /// `tokio::io::duplex`) once the client has initialised; await
    /// [`RunningService::waiting`] to run until the client goes away.
    pub async fn serve<T, E, A>(
        self,
        transport: T,
    ) -> Result<RunningService<RoleServer, NexySyncMcp>, ServerInitializeError>
    where
        T: IntoTransport<RoleServer, E, A>,
        E: std::error::Error + Send + Sync + 'static,
    {
        ServiceExt::serve(self, transport).await
    }

    /// The current session, or the `isError` answer explaining why there is none.
    async fn session(&self) -> Result<Arc<Session>, ToolError> {
        match &*self.auth.read().await {
            Auth::Ready(session) => Ok(session.clone()),
            Auth::Missing { problem } => Err(ToolError::not_authenticated(problem)),
        }
    }

    /// Switches to `auth`; the previous session's stream stops when its last user is done,
    /// and its notifications stop at once.
    async fn replace_auth(&self, auth: Auth) {
        let mut current = self.auth.write().await;
        *current = auth;
        self.session_generation.fetch_add(1, Ordering::AcqRel);
        self.start_notifications(&current);
    }

    /// Forwards the session's arrivals to the client, if it has initialised.
    fn start_notifications(&self, auth: &Auth) {
        let Auth::Ready(session) = auth else {
            return;
        };
        let peer = self.peer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(peer) = peer.as_ref() {
            let (arrivals, waiting) = session.stream.subscribe_counting_waiting();
            notify::forward(
                peer.clone(),
                arrivals,
                waiting,
                self.session_generation.clone(),
                self.session_generation.load(Ordering::Acquire),
            );
        }
    }

    fn cwd(&self) -> &Path {
        &self.cwd
    }

    fn stream_options(&self) -> &StreamOptions {
        &self.stream_options
    }
}

#[tool_router]
impl NexySyncMcp {
    /// Identity and key management.
    #[tool(
        name = "ns_auth",
        description = "NexySync identity. action `status`: which agent and project you are, the server URL, whether the server answers, the key file in use and the live stream's state. action `login` with `path`: switch to another key file (verified with the server first)."
    )]
    async fn ns_auth(&self, Parameters(params): Parameters<AuthParams>) -> CallToolResult {
        into_result(auth_tool::run(self, params).await)
    }

    /// Messaging between the project's agents.
    #[tool(
        name = "ns_message",
        description = "Talk to the other AI agents of this project; end-to-end encrypted and signature-verified. action `send` (to, body, optional topic, reply_to, ttl_s): message one agent. `broadcast` (body, optional topic): message every agent. `check` (optional since, limit): your inbox after a cursor, oldest first, with next_since. `read` (id): one whole message. `thread` (id): the conversation it belongs to. `wait` (optional kinds, timeout_s (default 30), limit): returns as soon as an event of `kinds` arrives (`message` (default), `ref`, `kv`, `file`, `update`: a reaction, read mark, pin or deletion by another agent), or timed_out. check, thread and wait take `limit` and answer a cursor (`next_since`); their rows are brief unless `full` is true, long bodies cut with their length shown. `react` (id, emoji): add an emoji reaction; the same emoji again takes it back. `ack` (id): mark read; `check` with unread_only=true lists what you have not acked. `pin` / `unpin` (id). `delete` (id): delete a message you sent; its content is erased and its thread shows a deleted node. read/thread show reactions, pinned and deleted."
    )]
    async fn ns_message(&self, Parameters(params): Parameters<MessageParams>) -> CallToolResult {
        into_result(message_tool::run(self, params).await)
    }

    /// The project's shared key-value store.
    #[tool(
        name = "ns_kv",
        description = "Shared key-value store of this project's agents; keys and values end-to-end encrypted, every value signature-verified. Answers carry each entry's `revision`. action `get` (key). `set` (key, value, optional expected_revision, optional ttl_s): expected_revision makes it a compare-and-set (0 = only if the key does not exist); ttl_s makes the key disappear by itself. `delete` (key, optional expected_revision). `list` (optional limit, cursor, full): brief rows unless `full` is true, long values cut (length shown), with next_cursor. Lease pattern: set `lease:<path>` with expected_revision 0 and ttl_s before editing a file; on revision_mismatch someone else holds it; release with delete and your revision."
    )]
    async fn ns_kv(&self, Parameters(params): Parameters<KvParams>) -> CallToolResult {
        into_result(kv_tool::run(self, params).await)
    }

    /// Shared code references.
    #[tool(
        name = "ns_ref",
        description = "Share code references with this project's agents; path, snippet, note, language and commit end-to-end encrypted, every reference signature-verified. action `share` (path, start_line, end_line, snippet, optional language, commit (or branch), note, to): to one agent, or everyone when `to` is omitted. `list` (optional since, limit, full): references shared with you, with everyone, or by you, oldest first, brief unless `full` is true, snippets cut (full length shown), with next_since. `get` (id): one whole reference."
    )]
    async fn ns_ref(&self, Parameters(params): Parameters<RefParams>) -> CallToolResult {
        into_result(ref_tool::run(self, params).await)
    }

    /// Who is here, who is online, the quota, and your own role.
    #[tool(
        name = "ns_meta",
        description = "This project's agents and limits. action `whoami`: your agent, project and role. `agents`: every agent with role, description, online and last seen (roles are end-to-end encrypted and signature-verified). `presence`: who is online now (an agent is online while its MCP server holds a live stream). `quota`: messages today, stored bytes and the largest message allowed, with when the daily count resets. `update_role` (role, optional description): tell the other agents what you do."
    )]
    async fn ns_meta(&self, Parameters(params): Parameters<MetaParams>) -> CallToolResult {
        into_result(meta_tool::run(self, params).await)
    }

    /// Shared files.
    #[tool(
        name = "ns_file",
        description = "Share files with this project's agents; contents, names and media types end-to-end encrypted, streamed in chunks (any size), every file signature-verified. action `upload` (path of a local file, or content for small text with name; optional name, media_type, to): to one agent, or everyone when `to` is omitted. `list` (optional since, limit): files you may read, with id, name, size and sender. `read` (id, optional path): save the file to `path` (a new file, or a directory), or without `path` get small text inline. `delete` (id): remove it for everyone."
    )]
    async fn ns_file(&self, Parameters(params): Parameters<FileParams>) -> CallToolResult {
        into_result(file_tool::run(self, params).await)
    }
}

const INSTRUCTIONS: &str = "NexySync connects the AI agents working on this project. Messages are end-to-end encrypted and every message shown to you was verified (sender signature, project, hash chain). Start with ns_auth {\"action\":\"status\"}. Use ns_message: `send`/`broadcast` to talk, `check` for your inbox, `wait` to block until someone writes (or, with `kinds`, shares a ref or changes a shared key), `read`/`thread` for whole messages and conversations, `react`/`ack`/`pin`/`unpin`/`delete` on a message. Use ns_kv for shared state and leases (compare-and-set on `revision`). Use ns_ref to point others at code (`share`, `list`, `get`). Use ns_meta to see who is here and online (`agents`, `presence`), set your role (`update_role`) and check the quota (`quota`). Use ns_file to share files (`upload`, `list`, `read`, `delete`). When something arrives, this server also pushes a short channel notification (kind, from, id): read the whole of it with the tool it names.";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for NexySyncMcp {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder().enable_tools().build();
        // Claude Code registers a listener for `notifications/claude/channel` only for
        // servers that declare this.
        capabilities.experimental = Some(ExperimentalCapabilities::from([(
            notify::CHANNEL_CAPABILITY.to_owned(),
            JsonObject::new(),
        )]));
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "nexysync-mcp",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        tracing::info!("client initialised; arrivals will be notified");
        *self.peer.lock().unwrap_or_else(PoisonError::into_inner) = Some(context.peer);
        self.start_notifications(&*self.auth.read().await);
    }
}
