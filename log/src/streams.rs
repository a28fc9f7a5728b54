//! Creating (or adopting) the product's streams, through a race of nats-server's own.
//!
//! nats-server (seen on 2.9) removes an account's stream directory when its last stream
//! is deleted. A stream created at that moment fails with a server error ("error creating
//! store for stream", 10049; "could not create storage directory", 10077; or even
//! "stream not found", 10059) and is created when asked again. Another instance, an operator's cleanup or a test finishing
//! beside this one can each delete that last stream, so the create is tried again a few
//! times before it fails.

use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::{self, stream, ErrorCode};
use tracing::warn;

/// Tries in all.
const ATTEMPTS: u32 = 4;
/// The pause after the first failed try; doubled after each.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// The stream `config` names, created if missing (see the module docs).
pub(crate) async fn get_or_create(
    jetstream: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, CreateStreamError> {
    let mut pause = FIRST_PAUSE;
    for _ in 1..ATTEMPTS {
        match jetstream.get_or_create_stream(config.clone()).await {
            Err(e) if lost_its_directory(&e) => {
                warn!(stream = %config.name, error = %e, "stream store not created; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            done => return done,
        }
    }
    jetstream.get_or_create_stream(config).await
}

/// Codes a create answers while the account's stream directory is being removed.
const RACING: [ErrorCode; 3] = [
    ErrorCode::STREAM_CREATE,
    ErrorCode::STREAM_STORE_FAILED,
    ErrorCode::STREAM_NOT_FOUND,
];

fn lost_its_directory(e: &CreateStreamError) -> bool {
    match e.kind() {
        CreateStreamErrorKind::JetStream(js) => RACING.contains(&js.error_code()),
        // A get-or-create that finds no stream after creating it.
        CreateStreamErrorKind::NotFound => true,
        _ => false,
    }
}
