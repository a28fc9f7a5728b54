//! Building the application: connect, migrate, start the background tasks, bind.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use nexysync_log::{EventLog, Prefix};
use nexysync_projections::{db, ProjectionWatch, Projector, ReadModels};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::auth::TokenCache;
use crate::hub::Hub;
use crate::routes::router;
use crate::settings::Settings;
use crate::state::AppState;

/// A started server: listening, connected, migrated.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
    stop_background: watch::Sender<bool>,
    projector: Option<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Connects to NATS (failing clearly if JetStream is off), connects Postgres (creating
    /// the database if missing) and migrates it, starts the projector if configured and
    /// the hub, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let prefix = Prefix::parse(&settings.stream_prefix)?;
        let nats = async_nats::connect(&settings.nats_url)
            .await
            .with_context(|| {
                format!(
                    "failed to connect to NATS at {}",
                    crate::settings::redact_credentials(&settings.nats_url)
                )
            })?;
        let log = EventLog::connect(nats.clone(), prefix).await?;
        let pool = db::connect_and_migrate(&settings.database_url, 32).await?;
        let projection = ProjectionWatch::start(pool.clone()).await?;
        let projector = settings
            .run_projectors
            .then(|| tokio::spawn(Projector::new(pool.clone(), log.clone()).run()));
        let (stop_background, stopped) = watch::channel(false);
        let hub = Hub::start(log.clone(), settings.sse_buffer, stopped.clone()).await?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        let cdn = crate::cdn::CdnClient::new(settings.files.clone())?;
        tokio::spawn(crate::sweep::run(
            ReadModels::new(pool.clone()),
            cdn.clone(),
            stopped,
        ));
        let state = AppState {
            log,
            reads: ReadModels::new(pool),
            projection,
            hub,
            tokens: TokenCache::default(),
            directory: Default::default(),
            admin_token: Arc::new(settings.admin_token),
            nats,
            heartbeat: settings.heartbeat,
            read_your_writes_timeout: settings.read_your_writes_timeout,
            max_body_bytes: settings.max_body_bytes,
            last_appended: Arc::new(AtomicU64::new(0)),
            provisioning: Default::default(),
            kv_locks: Default::default(),
            cdn,
        };
        Ok(Self {
            listener,
            local_addr,
            state,
            stop_background,
            projector,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// Serves until Ctrl-C or SIGTERM, then drains connections.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(crate::shutdown::signal()).await
    }

    /// Serves until `shutdown` completes (tests use this to stop a server).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        info!(addr = %self.local_addr, "NexySync API listening");
        let stop_background = self.stop_background;
        let app = router(self.state);
        // No Nagle: SSE frames and small answers go out at once instead of waiting for
        // the peer's delayed ACK (up to 40 ms).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                // SSE streams end on this, so the graceful shutdown can finish.
                stop_background.send_replace(true);
            })
            .await
            .context("server failed");
        if let Some(projector) = self.projector {
            projector.abort();
        }
        result
    }
}
