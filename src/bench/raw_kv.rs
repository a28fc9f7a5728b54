//! The KV figures' floor: the same NATS server, used directly, in the same run. A set is
//! a publish conditional on the subject's last sequence (what every append does); a get
//! is a point read of a subject's last message; compare-and-set under contention is
//! several tasks publishing conditionally on one subject, re-reading it when refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use hdrhistogram::Histogram;

use super::kv::CasRates;
use super::raw::RawFloor;

/// One publish of `payload` to `subject`, only if `expected` is its last sequence.
/// `Ok(Some(seq))`: appended at `seq`; `Ok(None)`: someone else appended first.
async fn conditional_publish(
    jetstream: &jetstream::Context,
    subject: &str,
    payload: bytes::Bytes,
    expected: u64,
) -> anyhow::Result<Option<u64>> {
    let publish = PublishMessage::build()
        .payload(payload)
        .expected_last_subject_sequence(expected);
    let acked = match jetstream.send_publish(subject.to_owned(), publish).await {
        Ok(ack) => ack.await,
        Err(e) => Err(e),
    };
    match acked {
        Ok(ack) => Ok(Some(ack.sequence)),
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The last sequence of `subject` (0 when it holds nothing).
async fn last_seq(stream: &Stream, subject: &str) -> anyhow::Result<u64> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(message) => Ok(message.sequence),
        Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

impl RawFloor {
    fn kv_subject(&self, name: &str) -> String {
        format!("{}.{name}", self.subject_prefix())
    }

    /// Conditional publishes to one subject, one after another.
    pub async fn conditional_publish_latency(
        &self,
        count: usize,
        payload_len: usize,
    ) -> anyhow::Result<Histogram<u64>> {
        let subject = self.kv_subject("kvset");
        let payload = Self::payload(payload_len);
        let mut last = 0;
        let mut histogram = Histogram::new(3)?;
        for i in 0..count + 20 {
            let started = Instant::now();
            last = conditional_publish(self.jetstream(), &subject, payload.clone(), last)
                .await?
                .ok_or_else(|| anyhow::anyhow!("a lone writer was refused"))?;
            if i >= 20 {
                histogram.record(started.elapsed().as_micros() as u64)?;
            }
        }
        Ok(histogram)
    }

    /// Point reads of the last message of the subject [`Self::conditional_publish_latency`]
    /// wrote to.
    pub async fn last_message_latency(&self, count: usize) -> anyhow::Result<Histogram<u64>> {
        let subject = self.kv_subject("kvset");
        let stream = self.jetstream().get_stream(self.name()).await?;
        let mut histogram = Histogram::new(3)?;
        for i in 0..count + 20 {
            let started = Instant::now();
            anyhow::ensure!(last_seq(&stream, &subject).await? > 0, "nothing to read");
            if i >= 20 {
                histogram.record(started.elapsed().as_micros() as u64)?;
            }
        }
        Ok(histogram)
    }

    /// `writers` tasks publishing conditionally on one subject for `duration`, each
    /// re-reading the subject's last sequence when refused.
    pub async fn cas_contention(
        &self,
        writers: usize,
        duration: Duration,
        payload_len: usize,
    ) -> anyhow::Result<CasRates> {
        let subject = self.kv_subject("kvcas");
        let stream = self.jetstream().get_stream(self.name()).await?;
        let payload = Self::payload(payload_len);
        let successes = Arc::new(AtomicU64::new(0));
        let conflicts = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let deadline = started + duration;
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let jetstream = self.jetstream().clone();
                let stream = stream.clone();
                let subject = subject.clone();
                let payload = payload.clone();
                let (successes, conflicts) = (successes.clone(), conflicts.clone());
                tokio::spawn(async move {
                    let mut known = last_seq(&stream, &subject).await?;
                    while Instant::now() < deadline {
                        match conditional_publish(&jetstream, &subject, payload.clone(), known)
                            .await?
                        {
                            Some(seq) => {
                                known = seq;
                                successes.fetch_add(1, Ordering::Relaxed);
                            }
                            None => {
                                known = last_seq(&stream, &subject).await?;
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        Ok(CasRates {
            successes_per_s: successes.load(Ordering::Relaxed) as f64 / elapsed,
            conflicts_per_s: conflicts.load(Ordering::Relaxed) as f64 / elapsed,
        })
    }
}
