//! The floor: the same NATS server, used directly, in the same run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;

/// A stream of the bench's own, configured like the event stream, deleted at the end.
#[derive(Debug)]
pub struct RawFloor {
    jetstream: jetstream::Context,
    name: String,
    subject: String,
}

impl RawFloor {
    pub async fn connect(nats_url: &str) -> anyhow::Result<Self> {
        let client = async_nats::connect(nats_url)
            .await
            .with_context(|| format!("failed to connect to NATS at {nats_url}"))?;
        let jetstream = jetstream::new(client);
        let name = format!("benchraw_{}", hex::encode(rand::random::<[u8; 4]>()));
        let subject = format!("{name}.events.x");
        jetstream
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.events.>")],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(600),
                ..Default::default()
            })
            .await
            .context("failed to create the raw bench stream")?;
        Ok(Self {
            jetstream,
            name,
            subject,
        })
    }

    pub async fn delete(&self) {
        let _ = self.jetstream.delete_stream(&self.name).await;
    }

    pub(super) fn payload(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    pub(super) fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Where this floor's subjects live: `<name>.events`, inside the stream's subjects.
    pub(super) fn subject_prefix(&self) -> String {
        format!("{}.events", self.name)
    }

    async fn publish(&self, payload: Bytes) -> anyhow::Result<()> {
        // The same headers as an append: message id and expected-last-subject-sequence
        // are not set here, because the floor is the plain publish.
        self.jetstream
            .publish(self.subject.clone(), payload)
            .await?
            .await?;
        Ok(())
    }

    /// Publish and await the ack, one after another.
    pub async fn sync_publish_latency(
        &self,
        count: usize,
        payload_len: usize,
    ) -> anyhow::Result<Histogram<u64>> {
        let payload = Self::payload(payload_len);
        for _ in 0..20 {
            self.publish(payload.clone()).await?;
        }
        let mut histogram = Histogram::new(3)?;
        for _ in 0..count {
            let started = Instant::now();
            self.publish(payload.clone()).await?;
            histogram.record(started.elapsed().as_micros() as u64)?;
        }
        Ok(histogram)
    }

    /// `concurrency` tasks publishing and awaiting acks for `duration`: publishes per second.
    pub async fn concurrent_publish_rate(
        &self,
        concurrency: usize,
        duration: Duration,
        payload_len: usize,
    ) -> anyhow::Result<f64> {
        let payload = Self::payload(payload_len);
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let jetstream = self.jetstream.clone();
                let subject = self.subject.clone();
                let payload = payload.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        jetstream
                            .publish(subject.clone(), payload.clone())
                            .await?
                            .await?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
    }

    /// Publish, then receive through an ordered consumer: latency of each message.
    pub async fn publish_to_consumer_latency(
        &self,
        count: usize,
        payload_len: usize,
    ) -> anyhow::Result<Histogram<u64>> {
        let stream = self.jetstream.get_stream(&self.name).await?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.subject.clone(),
                deliver_policy: consumer::DeliverPolicy::New,
                ..Default::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        let payload = Self::payload(payload_len);
        let mut histogram = Histogram::new(3)?;
        for _ in 0..count {
            let started = Instant::now();
            self.jetstream
                .publish(self.subject.clone(), payload.clone())
                .await?;
            tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .context("the raw consumer received nothing within 10 s")?
                .context("the raw consumer ended")??;
            histogram.record(started.elapsed().as_micros() as u64)?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(histogram)
    }
}

/// The floor of a fan-out: one writer sends the same `payload_len` bytes to each of
/// `subscribers` loopback TCP connections, readers note when all of it arrived. No HTTP,
/// no SSE, no JSON: what 1,000 sockets cost on this machine.
pub async fn tcp_fanout_latency(
    subscribers: usize,
    deliveries: usize,
    payload_len: usize,
    spacing: Duration,
) -> anyhow::Result<Histogram<u64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (receipts, mut received) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut readers = Vec::with_capacity(subscribers);
    let mut writers = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (server_side, _) = listener.accept().await?;
        server_side.set_nodelay(true)?;
        writers.push(server_side);
        let receipts = receipts.clone();
        readers.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; payload_len];
            for delivery in 0..deliveries {
                stream.read_exact(&mut buffer).await?;
                let _ = receipts.send((delivery, Instant::now()));
            }
            anyhow::Ok(())
        }));
    }
    drop(receipts);
    let payload = vec![b'x'; payload_len];
    let mut sent_at = Vec::with_capacity(deliveries);
    for _ in 0..deliveries {
        sent_at.push(Instant::now());
        for writer in &mut writers {
            writer.write_all(&payload).await?;
        }
        tokio::time::sleep(spacing).await;
    }
    let mut histogram = Histogram::new(3)?;
    while let Some((delivery, at)) = received.recv().await {
        histogram.record(at.duration_since(sent_at[delivery]).as_micros() as u64)?;
    }
    for reader in readers {
        reader.await??;
    }
    Ok(histogram)
}
