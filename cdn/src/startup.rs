//! Building and running the CDN.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tracing::info;

use crate::routes::{router, CdnState};
use crate::settings::Settings;
use crate::store::BlobStore;

/// How often staging files left by a crash are looked for.
const STAGING_SWEEP: std::time::Duration = std::time::Duration::from_secs(600);

/// A bound CDN, ready to serve.
#[derive(Debug)]
pub struct Cdn {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: CdnState,
}

impl Cdn {
    /// Opens the storage and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = BlobStore::open(&settings.storage, settings.part_size)?;
        Self::with_store(settings, store).await
    }

    /// As [`Cdn::build`], over a store opened by the caller (tests share one).
    pub async fn with_store(settings: Settings, store: BlobStore) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            state: CdnState {
                store,
                secret: settings.url_secret,
            },
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then drains connections.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        info!(addr = %self.local_addr, "NexySync CDN listening");
        let store = self.state.store.clone();
        let sweeper = tokio::spawn(async move {
            let mut every = tokio::time::interval(STAGING_SWEEP);
            every.tick().await; // The store swept once when it opened.
            loop {
                every.tick().await;
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.sweep_staging()).await;
            }
        });
        let served = axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("CDN server failed");
        sweeper.abort();
        served
    }
}
