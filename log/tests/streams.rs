//! Creating the log's stream while another client deletes the server's last stream: the
//! race of nats-server's own that `streams` retries through.
//!
//! It only happens when the stream deleted is the last one on the server, so with other
//! tests' streams alive it passes without meeting the race. Run alone
//! (`cargo test -p nexysync-log --test streams`) it meets it in most runs: a few creates
//! in a thousand fail without the retries.

// A test: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use async_nats::jetstream::{self, stream};
use nexysync_log::{EventLog, Prefix};

const ROUNDS: usize = 300;

#[tokio::test]
async fn the_stream_is_created_while_the_last_other_stream_is_deleted() {
    let url =
        std::env::var("NEXYSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let deleter = jetstream::new(async_nats::connect(&url).await.unwrap());
    let creator = async_nats::connect(&url).await.unwrap();
    let tag = hex::encode(rand::random::<[u8; 4]>());
    for round in 0..ROUNDS {
        let doomed = format!("race{tag}d{round}");
        deleter
            .create_stream(stream::Config {
                name: doomed.clone(),
                subjects: vec![format!("{doomed}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        let prefix = Prefix::parse(&format!("race{tag}c{round}")).unwrap();
        let (deleted, created) = tokio::join!(
            deleter.delete_stream(&doomed),
            EventLog::connect(creator.clone(), prefix)
        );
        deleted.unwrap();
        let log = created.unwrap_or_else(|e| panic!("round {round}: {e}"));
        log.jetstream()
            .delete_stream(log.prefix().stream_name())
            .await
            .unwrap();
    }
}
