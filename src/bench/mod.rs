//! `nexysync bench`: measures a live system, and beside each figure the raw floor of the
//! same NATS server measured in the same run.
//!
//! - `send`: one agent sends messages one after another (seal, sign, POST, appended);
//!   floor: a synchronous JetStream publish of the same bytes.
//! - `throughput`: `concurrency` agents send as fast as they can; floor: as many tasks
//!   publishing to JetStream and awaiting each ack.
//! - `delivery`: `subscribers` agents hold an SSE stream each; another broadcasts; the
//!   time from the start of the send to each subscriber's receipt. Floor: JetStream
//!   publish to an ordered consumer's receipt; and, as the floor of the fan-out itself,
//!   the same bytes written to as many plain loopback TCP sockets (`raw_fanout_*`).
//! - `kv`: set and get latency of one key through the API (floors: a JetStream publish
//!   conditional on the subject's last sequence, a read of a subject's last message), and
//!   compare-and-set throughput with `cas_agents` agents on one key, successes and
//!   conflicts per second (floor: as many tasks publishing conditionally on one subject).
//!
//! - [`replay`] (`nexysync bench replay`): rebuild and audit-verify rates over a log of its
//!   own, beside the raw replay and a plain PostgreSQL insert.
//!
//! - `files` (`--files`, on its own): upload and download of one large file through the
//!   agents' client and a `nexysync-cdn` child, beside a plain disk copy of the same
//!   bytes; and the CDN's peak memory.
//!
//! The bench provisions its own project and agents (with the admin token) and writes raw
//! events to a stream of its own, deleted at the end.

mod delivery;
pub mod files;
mod fixture;
mod kv;
mod raw;
mod raw_kv;
pub mod replay;
mod report;
mod send;
mod sse_reader;

use std::time::Duration;

use anyhow::Context;

pub use report::{BenchReport, Cas, Delivery, Kv, Latency, Throughput};

/// What to measure and how hard.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub server: String,
    pub admin_token: nexysync_api::Secret,
    pub nats_url: String,
    /// Sequential sends for the latency figure.
    pub sends: usize,
    pub concurrency: usize,
    /// Projects the throughput senders are spread over (appends to one project are
    /// serialised by its hash chain; projects append in parallel).
    pub projects: usize,
    pub throughput_for: Duration,
    pub subscribers: usize,
    pub deliveries: usize,
    /// Sequential KV sets, and as many gets, for the KV latency figures.
    pub kv_ops: usize,
    /// Agents contending on one key for the compare-and-set figure (for
    /// `throughput_for`).
    pub cas_agents: usize,
}

/// Runs every measurement and returns the report.
pub async fn run(options: &BenchOptions) -> anyhow::Result<BenchReport> {
    let raw = raw::RawFloor::connect(&options.nats_url)
        .await
        .context("failed to prepare the raw JetStream floor")?;
    let result = measure(options, &raw).await;
    raw.delete().await;
    result
}

async fn measure(options: &BenchOptions, raw: &raw::RawFloor) -> anyhow::Result<BenchReport> {
    let payload_len = fixture::typical_payload_len();

    eprintln!("bench: send latency ({} sequential sends)…", options.sends);
    let fixture = fixture::Fixture::provision(options, options.concurrency.max(2)).await?;
    let raw_send = raw.sync_publish_latency(options.sends, payload_len).await?;
    let send = send::latency(&fixture, options.sends).await?;
    fixture.settle().await?;

    eprintln!(
        "bench: throughput ({} concurrent senders, {:?} each)…",
        options.concurrency, options.throughput_for
    );
    let raw_per_s = raw
        .concurrent_publish_rate(options.concurrency, options.throughput_for, payload_len)
        .await?;
    let mut fixtures = vec![fixture];
    let per_project = options.concurrency.div_ceil(options.projects).max(2);
    for _ in 1..options.projects {
        fixtures.push(fixture::Fixture::provision(options, per_project).await?);
    }
    let sends_per_s =
        send::throughput(&fixtures, options.concurrency, options.throughput_for).await?;
    eprintln!("bench: waiting for the read models to apply the burst…");
    fixtures[0].settle().await?;

    eprintln!(
        "bench: delivery ({} SSE subscribers, {} broadcasts)…",
        options.subscribers, options.deliveries
    );
    let raw_delivery = raw
        .publish_to_consumer_latency(options.deliveries, payload_len)
        .await?;
    let delivered = delivery::measure(options, options.subscribers, options.deliveries).await?;
    let fanout = raw::tcp_fanout_latency(
        options.subscribers,
        options.deliveries,
        payload_len,
        delivery::SPACING,
    )
    .await?;

    let kv = measure_kv(options, raw).await?;

    Ok(BenchReport {
        send: Latency {
            p50_us: send.value_at_quantile(0.5),
            p99_us: send.value_at_quantile(0.99),
            raw_p50_us: raw_send.value_at_quantile(0.5),
            raw_p99_us: raw_send.value_at_quantile(0.99),
        },
        throughput: Throughput {
            concurrency: options.concurrency,
            projects: options.projects,
            sends_per_s,
            raw_per_s,
        },
        delivery: Delivery {
            subscribers: options.subscribers,
            p50_us: delivered.value_at_quantile(0.5),
            p99_us: delivered.value_at_quantile(0.99),
            raw_p99_us: raw_delivery.value_at_quantile(0.99),
            raw_fanout_p50_us: fanout.value_at_quantile(0.5),
            raw_fanout_p99_us: fanout.value_at_quantile(0.99),
        },
        kv,
    })
}

async fn measure_kv(options: &BenchOptions, raw: &raw::RawFloor) -> anyhow::Result<Kv> {
    eprintln!(
        "bench: kv set and get ({} each), compare-and-set ({} agents on one key, {:?})…",
        options.kv_ops, options.cas_agents, options.throughput_for
    );
    let fixture = fixture::Fixture::provision(options, options.cas_agents.max(2)).await?;
    let payload_len = fixture::typical_payload_len();
    let raw_set = raw
        .conditional_publish_latency(options.kv_ops, payload_len)
        .await?;
    let set = kv::set_latency(&fixture, options.kv_ops).await?;
    fixture.settle().await?;
    let raw_get = raw.last_message_latency(options.kv_ops).await?;
    let get = kv::get_latency(&fixture, options.kv_ops).await?;
    let raw_cas = raw
        .cas_contention(options.cas_agents, options.throughput_for, payload_len)
        .await?;
    let cas = kv::cas_contention(&fixture, options.cas_agents, options.throughput_for).await?;
    fixture.settle().await?;
    let latency =
        |api: &hdrhistogram::Histogram<u64>, floor: &hdrhistogram::Histogram<u64>| Latency {
            p50_us: api.value_at_quantile(0.5),
            p99_us: api.value_at_quantile(0.99),
            raw_p50_us: floor.value_at_quantile(0.5),
            raw_p99_us: floor.value_at_quantile(0.99),
        };
    Ok(Kv {
        set: latency(&set, &raw_set),
        get: latency(&get, &raw_get),
        cas: Cas {
            agents: options.cas_agents,
            successes_per_s: cas.successes_per_s,
            conflicts_per_s: cas.conflicts_per_s,
            raw_successes_per_s: raw_cas.successes_per_s,
            raw_conflicts_per_s: raw_cas.conflicts_per_s,
        },
    })
}
