//! Send-to-SSE delivery: many agents hold a stream (each a lean HTTP/1.1 reader, see
//! `sse_reader`); one broadcasts; each receipt is timed from the start of its send.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use super::fixture::{message, Fixture};
use super::sse_reader::SseReader;
use super::BenchOptions;

/// Pause between broadcasts, so each is measured on its own rather than queued.
pub const SPACING: Duration = Duration::from_millis(20);

pub async fn measure(
    options: &BenchOptions,
    subscribers: usize,
    deliveries: usize,
) -> anyhow::Result<Histogram<u64>> {
    let fixture = Fixture::provision(options, 1).await?;
    let listeners = fixture.add_agents(subscribers).await?;
    let (receipts, mut received) = mpsc::unbounded_channel::<(String, Instant)>();
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(subscribers);
    let server = reqwest::Url::parse(&format!("{}/", fixture.server.trim_end_matches('/')))?;
    for listener in listeners {
        let server = server.clone();
        let receipts = receipts.clone();
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let mut stream = SseReader::connect(&server, listener.token.expose_secret()).await?;
            while let Some(event) = stream.next_event().await? {
                match event.name.as_str() {
                    "ready" => {
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                    "new_message" => {
                        let at = Instant::now();
                        if let Some(id) = event_id(&event.data) {
                            let _ = receipts.send((id.to_owned(), at));
                        }
                    }
                    _ => {}
                }
            }
            anyhow::Ok(())
        }));
    }
    drop(receipts);
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < subscribers {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {subscribers} SSE streams became ready",
            ready.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let sender = &fixture.agents[0];
    let mut sent_at = HashMap::with_capacity(deliveries);
    for _ in 0..deliveries {
        let event = message(fixture.project, &fixture.keys, sender, None);
        sent_at.insert(event.id.to_string(), Instant::now());
        fixture.post(sender, &event).await?;
        tokio::time::sleep(SPACING).await;
    }

    let mut histogram = Histogram::new(3)?;
    let expected = deliveries * subscribers;
    let deadline = Instant::now() + Duration::from_secs(60);
    while (histogram.len() as usize) < expected {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (id, at) = tokio::time::timeout(remaining, received.recv())
            .await
            .with_context(|| format!("only {} of {expected} deliveries arrived", histogram.len()))?
            .context("every subscriber stream ended early")?;
        if let Some(sent) = sent_at.get(&id) {
            histogram.record(at.duration_since(*sent).as_micros() as u64)?;
        }
    }
    for task in tasks {
        task.abort();
    }
    Ok(histogram)
}

/// The event id inside `{"seq":N,"event":{"v":1,"id":"…"`, without parsing the rest.
fn event_id(data: &str) -> Option<&str> {
    let start = data.find(r#""id":""#)? + 6;
    data.get(start..start + 36)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_event_id_is_found_in_a_stored_event() {
        let data = r#"{"seq":7,"event":{"v":1,"id":"0190a0b1-0000-7000-8000-000000000001","project":"x"}}"#;
        assert_eq!(
            super::event_id(data),
            Some("0190a0b1-0000-7000-8000-000000000001")
        );
    }
}
