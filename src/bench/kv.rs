//! The shared key-value store through the API: set latency (sealed, signed `kv_set`,
//! `PUT /v1/kv`), get latency (`GET /v1/kv/{key_ix}`), and compare-and-set under
//! contention (several agents on one key, each retrying with the revision its conflict
//! answer names).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use nexysync_domain::event::{fields, Actor, Draft, EventBody, KvSet, KV_NAMESPACE};
use nexysync_domain::wire::KvAppended;

use super::fixture::{BenchAgent, Fixture};

/// The value every bench write carries: a lease note, as agents write them.
pub const VALUE: &str = "held by the storage refactor until 14:30; ping before touching";

/// Successful and refused compare-and-sets per second.
#[derive(Debug, Clone, Copy)]
pub struct CasRates {
    pub successes_per_s: f64,
    pub conflicts_per_s: f64,
}

/// What one write answered.
enum Written {
    Done(u64),
    /// Refused: someone else wrote first; the key's current revision.
    Conflict(u64),
}

impl Fixture {
    /// Seals, signs and sends one `kv_set` of `key`, compare-and-set when `expected`.
    async fn kv_set(
        &self,
        from: &BenchAgent,
        key: &str,
        expected: Option<u64>,
    ) -> anyhow::Result<Written> {
        let event = Draft::new(
            self.project,
            Actor::Agent(from.id),
            EventBody::KvSet(KvSet {
                key_ix: self.keys.blind_index(KV_NAMESPACE, key),
                expected_revision: expected,
                ttl_s: None,
            }),
        )
        .seal(&self.keys, fields::KEY, key.as_bytes())
        .seal(&self.keys, fields::VALUE, VALUE.as_bytes())
        .sign(&from.key);
        let response = self
            .http
            .put(format!("{}/v1/kv", self.server))
            .bearer_auth(from.token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(event.to_json())
            .send()
            .await
            .context("failed to send a bench kv_set")?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("failed to read the answer")?;
        if status == reqwest::StatusCode::CONFLICT {
            return Ok(Written::Conflict(current_revision(&body)?));
        }
        anyhow::ensure!(
            status.is_success(),
            "the server refused a bench kv_set: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let appended: KvAppended =
            serde_json::from_slice(&body).context("unreadable answer to a kv_set")?;
        Ok(Written::Done(appended.revision))
    }

    /// One `GET /v1/kv/{key_ix}`; fails unless the key is there.
    async fn kv_get(&self, from: &BenchAgent, key: &str) -> anyhow::Result<()> {
        let ix = self.keys.blind_index(KV_NAMESPACE, key);
        let response = self
            .http
            .get(format!("{}/v1/kv/{}", self.server, ix.as_str()))
            .bearer_auth(from.token.expose_secret())
            .send()
            .await
            .context("failed to read a bench key")?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .context("failed to read the answer")?;
        anyhow::ensure!(
            status.is_success(),
            "the server refused a bench kv get: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }
}

/// The revision a `revision_mismatch` answer names ("… current_revision is N …").
fn current_revision(body: &[u8]) -> anyhow::Result<u64> {
    let answer: serde_json::Value =
        serde_json::from_slice(body).context("unreadable conflict answer")?;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    message
        .split("current_revision is ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .with_context(|| format!("a conflict answer without the current revision: {message}"))
}

/// Sequential unconditional sets of one key by one agent.
pub async fn set_latency(fixture: &Fixture, count: usize) -> anyhow::Result<Histogram<u64>> {
    let from = &fixture.agents[0];
    for _ in 0..20 {
        fixture.kv_set(from, "bench:set", None).await?;
    }
    let mut histogram = Histogram::new(3)?;
    for _ in 0..count {
        let started = Instant::now();
        match fixture.kv_set(from, "bench:set", None).await? {
            Written::Done(_) => {}
            Written::Conflict(_) => anyhow::bail!("an unconditional set was refused"),
        }
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(histogram)
}

/// Sequential reads of the key [`set_latency`] wrote (call after the read models settle).
pub async fn get_latency(fixture: &Fixture, count: usize) -> anyhow::Result<Histogram<u64>> {
    let from = &fixture.agents[1];
    for _ in 0..20 {
        fixture.kv_get(from, "bench:set").await?;
    }
    let mut histogram = Histogram::new(3)?;
    for _ in 0..count {
        let started = Instant::now();
        fixture.kv_get(from, "bench:set").await?;
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(histogram)
}

/// `agents` agents compare-and-set one key back to back for `duration`, each retrying a
/// refused write with the revision the refusal named.
pub async fn cas_contention(
    fixture: &Fixture,
    agents: usize,
    duration: Duration,
) -> anyhow::Result<CasRates> {
    let key = "bench:cas";
    let first = match fixture.kv_set(&fixture.agents[0], key, Some(0)).await? {
        Written::Done(revision) | Written::Conflict(revision) => revision,
    };
    let successes = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..agents)
        .map(|i| {
            let fixture = fixture.clone();
            let from = fixture.agents[i % fixture.agents.len()].clone();
            let (successes, conflicts) = (successes.clone(), conflicts.clone());
            tokio::spawn(async move {
                let mut known = first;
                while Instant::now() < deadline {
                    match fixture.kv_set(&from, key, Some(known)).await? {
                        Written::Done(revision) => {
                            known = revision;
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        Written::Conflict(current) => {
                            known = current;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_revision_is_read_from_a_conflict_answer() {
        let body = br#"{"error":{"code":"revision_mismatch","message":"compare-and-set failed: expected revision 4, but the key's current_revision is 19 (0: the key does not exist); read the key again and retry"}}"#;
        assert_eq!(current_revision(body).unwrap(), 19);
        assert!(current_revision(br#"{"error":{"code":"x","message":"no"}}"#).is_err());
    }
}
