//! Send latency (one sender) and throughput (many).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::fixture::Fixture;

/// Sequential sends by one agent to another: the latency an agent sees for `send`.
pub async fn latency(fixture: &Fixture, sends: usize) -> anyhow::Result<Histogram<u64>> {
    let from = &fixture.agents[0];
    let to = fixture.agents[1].id;
    // Warm up connections and caches.
    for _ in 0..20 {
        fixture.send(from, Some(to)).await?;
    }
    let mut histogram = Histogram::new(3)?;
    for _ in 0..sends {
        let started = Instant::now();
        fixture.send(from, Some(to)).await?;
        histogram.record(started.elapsed().as_micros() as u64)?;
    }
    Ok(histogram)
}

/// `concurrency` agents, spread over the `fixtures`' projects, each sending back to back
/// for `duration`: sends per second.
pub async fn throughput(
    fixtures: &[Fixture],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let fixture = fixtures[i % fixtures.len()].clone();
            let done = done.clone();
            let n = i / fixtures.len();
            let from = fixture.agents[n % fixture.agents.len()].clone();
            let to = fixture.agents[(n + 1) % fixture.agents.len()].id;
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    fixture.send(&from, Some(to)).await?;
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
