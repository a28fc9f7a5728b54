//! Building the application: connect, migrate, start the background tasks, bind.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use nexysync_log::{EventLog, Prefix, PresenceLog, PRESENCE_RETENTION};
use nexysync_projections::{
    db, PresenceProjector, ProjectionError, ProjectionWatch, Projector, ReadModels,
};
use sqlx::PgPool;
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
    presence_projector: Option<tokio::task::JoinHandle<()>>,
    presence_publisher: crate::presence::PresencePublisher,
    presence_log: PresenceLog,
    presence_heartbeat: std::time::Duration,
}

impl Application {
    /// Connects to NATS (failing clearly if JetStream is off), connects Postgres (creating
    /// the database if missing) and migrates it, starts the projector if configured and
    /// the hub, and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let prefix = Prefix::parse(&settings.stream_prefix)?;
        if settings.presence_heartbeat.is_zero()
            || settings.presence_timeout <= settings.presence_heartbeat
            || settings.presence_timeout >= PRESENCE_RETENTION
        {
            anyhow::bail!(
                "presence timeout ({:?}) must be longer than the presence heartbeat ({:?}) and shorter than the presence stream's retention ({:?})",
                settings.presence_timeout,
                settings.presence_heartbeat,
                PRESENCE_RETENTION
            );
        }
        let nats = async_nats::connect(&settings.nats_url)
            .await
            .with_context(|| {
                format!(
                    "failed to connect to NATS at {}",
                    crate::settings::redact_credentials(&settings.nats_url)
                )
            })?;
        let log = EventLog::connect(nats.clone(), prefix.clone()).await?;
        let presence_log = PresenceLog::connect(nats.clone(), prefix).await?;
        let pool = connect_read_models(&settings, &log).await?;
        let projection = ProjectionWatch::start(pool.clone()).await?;
        let projector = settings
            .run_projectors
            .then(|| tokio::spawn(Projector::new(pool.clone(), log.clone()).run()));
        let presence_projector = settings.run_projectors.then(|| {
            tokio::spawn(PresenceProjector::new(pool.clone(), presence_log.clone()).run())
        });
        let (stop_background, stopped) = watch::channel(false);
        let reads = ReadModels::new(pool.clone());
        let hub = Hub::start(
            log.clone(),
            reads.clone(),
            settings.sse_buffer,
            stopped.clone(),
        )
        .await?;
        tokio::spawn(crate::presence::watch_board(
            presence_log.clone(),
            hub.clone(),
            settings.presence_timeout,
            settings.presence_heartbeat,
            stopped.clone(),
        ));
        if let Some(pruner) = settings.pruner {
            let pruner = nexysync_projections::Pruner::new(
                log.clone(),
                pool.clone(),
                projection.clone(),
                pruner,
            );
            tokio::spawn(pruner.run(stopped.clone()));
        }
        let (presence, presence_publisher) = crate::presence::Presence::new();
        info!(instance = %presence.instance(), "presence instance id");
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        let cdn = crate::cdn::CdnClient::new(settings.files.clone())?;
        tokio::spawn(crate::sweep::run(reads.clone(), cdn.clone(), stopped));
        let state = AppState {
            log,
            reads,
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
            presence,
            presence_timeout: settings.presence_timeout,
            quota: settings.quota,
            quota_cache: Default::default(),
            cdn,
        };
        Ok(Self {
            listener,
            local_addr,
            state,
            stop_background,
            projector,
            presence_projector,
            presence_publisher,
            presence_log,
            presence_heartbeat: settings.presence_heartbeat,
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

    /// Serves until `shutdown` completes (tests use this to stop a server). The presence
    /// heartbeats run inside this future: dropping it unfinished (a crash, as tests
    /// simulate by aborting it) silences this instance without a goodbye.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        info!(addr = %self.local_addr, "NexySync API listening");
        let stop_background = Arc::new(self.stop_background);
        let presence = self.presence_publisher.run(
            self.presence_log,
            self.presence_heartbeat,
            stop_background.subscribe(),
        );
        let app = router(self.state);
        // No Nagle: SSE frames and small answers go out at once instead of waiting for
        // the peer's delayed ACK (up to 40 ms).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let stop_on_signal = stop_background.clone();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            // SSE streams end on this, so the graceful shutdown can finish; the presence
            // publisher says goodbye.
            stop_on_signal.send_replace(true);
        });
        let serving = async {
            let result = serve.await.context("server failed");
            // Also when serving failed: the background tasks and the publisher stop.
            stop_background.send_replace(true);
            result
        };
        let (result, ()) = tokio::join!(serving, presence);
        for task in [self.projector, self.presence_projector]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        result
    }
}

/// The live read models, rebuilt first when they are of an older version than this
/// build's and this instance runs the projectors (an instance that does not refuses, with
/// the command to run): a half-migrated schema is never served.
async fn connect_read_models(settings: &Settings, log: &EventLog) -> anyhow::Result<PgPool> {
    let url = settings.database_url.as_str();
    match db::connect_and_migrate(url, 32).await {
        Err(ProjectionError::Outdated { version, expected }) if settings.run_projectors => {
            info!(
                version,
                expected, "read models are outdated; rebuilding them beside the live ones"
            );
            let report = nexysync_projections::rebuild(url, log, |_| {}).await?;
            info!(
                events = report.events,
                seconds = report.elapsed.as_secs_f64(),
                "read models rebuilt"
            );
            Ok(db::connect_and_migrate(url, 32).await?)
        }
        other => Ok(other?),
    }
}
