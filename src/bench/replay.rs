//! `nexysync bench replay`: the log-side figures, for auditors and operators.
//!
//! Writes `events` signed, sealed, chained events of one project to a stream of the
//! bench's own (straight to JetStream: how they get there is not what is measured), then
//! measures, in the same run:
//! - `rebuild`: [`nexysync_projections::rebuild`] of a fresh database from that log;
//!   floors: the raw ordered-consumer replay of the same stream, and a plain batched
//!   PostgreSQL insert (1,000 rows a statement, one transaction each) of as many rows of
//!   the same size.
//! - `verify`: `nexysync audit verify`'s walk over the project's history (signatures,
//!   chain, on every core); floor: the raw replay.
//!
//! The stream and the database are deleted at the end.

use std::collections::VecDeque;
use std::time::Instant;

use anyhow::Context;
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt;
use nexysync_domain::crypto::{AgentToken, ContentKeys, ProjectKey, SigningKey};
use nexysync_domain::event::{
    fields, Actor, AgentRegistered, ChainLink, Draft, Envelope, EventBody, MessageSent,
    ProjectCreated,
};
use nexysync_domain::ids::{AgentId, AgentName, EventId, ProjectId, ProjectName, Seq};
use nexysync_log::{EventLog, Prefix};
use serde::Serialize;

/// Events signed per chunk (by two threads), then chained and published.
const CHUNK: usize = 20_000;
/// Publishes awaiting their ack at once (the client bounds them too).
const ACKS_IN_FLIGHT: usize = 256;
/// Rows a statement in the PostgreSQL floor.
const PG_BATCH: usize = 1_000;

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub events: u64,
    pub rebuild_per_s: f64,
    pub rebuild_s: f64,
    pub verify_per_s: f64,
    pub raw_replay_per_s: f64,
    pub raw_pg_insert_per_s: f64,
}

impl ReplayReport {
    pub fn table(&self) -> String {
        let pct = |a: f64, b: f64| 100.0 * a / b.max(1e-9);
        let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
        let rebuild_share = pct(self.rebuild_per_s, self.raw_pg_insert_per_s);
        let verify_share = pct(self.verify_per_s, self.raw_replay_per_s);
        format!(
            "figure ({} events)        nexysync        raw floor          share   target\n\
             rebuild                {:>9.0} /s   {:>9.0} /s (pg insert) {:>5.0}%   ≥ 70%  {}\n\
             rebuild time           {:>9.1} s                                  < 60 s {}\n\
             audit verify           {:>9.0} /s   {:>9.0} /s (replay)    {:>5.0}%   ≥ 30%  {}\n\
             raw replay (ordered consumer)         {:>9.0} /s\n",
            self.events,
            self.rebuild_per_s,
            self.raw_pg_insert_per_s,
            rebuild_share,
            verdict(rebuild_share >= 70.0),
            self.rebuild_s,
            verdict(self.rebuild_s < 60.0 || self.events < 1_000_000),
            self.verify_per_s,
            self.raw_replay_per_s,
            verify_share,
            verdict(verify_share >= 30.0),
            self.raw_replay_per_s,
        )
    }
}

/// Runs the log-side bench against the NATS server at `nats_url` and the PostgreSQL server
/// of `database_url` (a database of the bench's own is created there and dropped).
pub async fn run(
    nats_url: &str,
    database_url: &str,
    events: usize,
) -> anyhow::Result<ReplayReport> {
    let name = format!("benchrp{}", hex::encode(rand::random::<[u8; 4]>()));
    let client = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("failed to connect to NATS at {nats_url}"))?;
    let log = EventLog::connect(client, Prefix::parse(&name)?).await?;
    let database = database_url_named(database_url, &name)?;
    let result = measure(&log, &database, events).await;
    let _ = log
        .jetstream()
        .delete_stream(log.prefix().stream_name())
        .await;
    drop_database(database_url, &name).await;
    result
}

async fn measure(log: &EventLog, database: &str, events: usize) -> anyhow::Result<ReplayReport> {
    eprintln!("bench: writing {events} signed events to the log…");
    let (project, sample) = write_history(log, events).await?;
    let total = log.last_seq().await?;

    eprintln!("bench: raw replay…");
    let started = Instant::now();
    let mut stream = log.read_all(Seq(0)).await?;
    while let Some(event) = stream.next().await {
        if event?.seq.0 >= total {
            break;
        }
    }
    let raw_replay_per_s = total as f64 / started.elapsed().as_secs_f64();
    drop(stream);

    eprintln!("bench: plain batched PostgreSQL insert…");
    let raw_pg_insert_per_s = pg_insert_rate(database, &sample, total as usize).await?;

    eprintln!("bench: rebuild of the read models…");
    let report = nexysync_projections::rebuild(database, log, |_| {}).await?;
    let rebuild_s = report.elapsed.as_secs_f64();

    eprintln!("bench: audit verify…");
    let started = Instant::now();
    let mut source = crate::audit::source::EventSource::live(log, project).await?;
    let mut quiet = crate::audit::progress::Progress::on_terminal("verifying", None, false);
    let audited = crate::audit::verify::walk(&mut source, project, &mut quiet, |_, _, _, _| Ok(()))
        .await?
        .summary()
        .events;
    let verify_per_s = audited as f64 / started.elapsed().as_secs_f64();

    Ok(ReplayReport {
        events: total,
        rebuild_per_s: report.events as f64 / rebuild_s,
        rebuild_s,
        verify_per_s,
        raw_replay_per_s,
        raw_pg_insert_per_s,
    })
}

/// A project, two agents, then alice writing to bob (every tenth a reply), chained as
/// the log would chain them. Answers the project and a sample of stored payloads.
async fn write_history(log: &EventLog, events: usize) -> anyhow::Result<(ProjectId, Vec<Vec<u8>>)> {
    let project = ProjectId::generate();
    let owner = SigningKey::generate();
    let keys = ProjectKey::generate().content_keys();
    let alice = (AgentId::generate(), SigningKey::generate());
    let bob = AgentId::generate();
    let mut opening = vec![Draft::new(
        project,
        Actor::Owner,
        EventBody::ProjectCreated(ProjectCreated {
            name: ProjectName::parse("bench")?,
            owner_key: owner.public_key(),
            retention: Default::default(),
        }),
    )
    .sign(&owner)];
    for (id, name, key) in [
        (alice.0, "alice", alice.1.public_key()),
        (bob, "bob", SigningKey::generate().public_key()),
    ] {
        opening.push(
            Draft::new(
                project,
                Actor::Owner,
                EventBody::AgentRegistered(AgentRegistered {
                    agent: id,
                    name: AgentName::parse(name)?,
                    signing_key: key,
                    token_hash: AgentToken::generate().hash(),
                }),
            )
            .sign(&owner),
        );
    }
    let subject = log.prefix().project_subject(project);
    let mut prev: Option<ChainLink> = None;
    let mut sample = Vec::new();
    let mut written = 0usize;
    let mut chunk = opening;
    let mut last_id: Option<EventId> = None;
    while written < events {
        let wanted = (events - written).saturating_sub(chunk.len()).min(CHUNK);
        let (sender, keys2) = (alice.clone(), keys.clone());
        let replies_to = last_id;
        let mut signed = tokio::task::spawn_blocking(move || {
            sign_messages(project, &sender, bob, &keys2, wanted, replies_to)
        })
        .await?;
        chunk.append(&mut signed);
        let mut acks: VecDeque<PublishAckFuture> = VecDeque::with_capacity(ACKS_IN_FLIGHT);
        for mut event in chunk.drain(..) {
            event.prev = prev;
            let payload = event.to_json();
            written += 1;
            let seq = Seq(written as u64);
            if sample.len() < PG_BATCH {
                sample.push(payload.clone());
            }
            let expected = prev.map(|link| link.seq.0).unwrap_or(0);
            prev = Some(ChainLink {
                seq,
                hash: event.hash(),
            });
            last_id = Some(event.id);
            let publish = PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("{project}.{}", event.id))
                .expected_last_subject_sequence(expected);
            if acks.len() == ACKS_IN_FLIGHT {
                if let Some(ack) = acks.pop_front() {
                    ack.await.context("the bench stream refused an event")?;
                }
            }
            acks.push_back(
                log.jetstream()
                    .send_publish(subject.clone(), publish)
                    .await?,
            );
        }
        for ack in acks {
            ack.await.context("the bench stream refused an event")?;
        }
    }
    Ok((project, sample))
}

/// `count` messages from `sender` to `to`, sealed and signed on two threads.
fn sign_messages(
    project: ProjectId,
    sender: &(AgentId, SigningKey),
    to: AgentId,
    keys: &ContentKeys,
    count: usize,
    replies_to: Option<EventId>,
) -> Vec<Envelope> {
    let half = count / 2;
    let make = |n: usize| -> Vec<Envelope> {
        (0..n)
            .map(|i| {
                Draft::new(
                    project,
                    Actor::Agent(sender.0),
                    EventBody::MessageSent(MessageSent {
                        to: Some(to),
                        reply_to: if i % 10 == 9 { replies_to } else { None },
                        ttl_s: None,
                        topic_ix: None,
                    }),
                )
                .seal(
                    keys,
                    fields::BODY,
                    b"a typical short message between two agents, about the work at hand",
                )
                .sign(&sender.1)
            })
            .collect()
    };
    std::thread::scope(|scope| {
        let first = scope.spawn(|| make(half));
        let mut second = make(count - half);
        let mut all = first.join().unwrap_or_default();
        all.append(&mut second);
        all
    })
}

/// Rows per second of a plain batched insert of `total` rows shaped like stored events.
async fn pg_insert_rate(database: &str, sample: &[Vec<u8>], total: usize) -> anyhow::Result<f64> {
    let pool = nexysync_projections::db::connect(database, 2, "public").await?;
    sqlx::query("CREATE TABLE bench_floor (seq bigint PRIMARY KEY, envelope json NOT NULL)")
        .execute(&pool)
        .await?;
    let texts: Vec<String> = sample
        .iter()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let started = Instant::now();
    let mut done = 0usize;
    while done < total {
        let n = PG_BATCH.min(total - done);
        let seqs: Vec<i64> = (done..done + n).map(|s| s as i64).collect();
        let rows: Vec<&str> = (0..n).map(|i| texts[i % texts.len()].as_str()).collect();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO bench_floor (seq, envelope)
             SELECT s, e::json FROM UNNEST($1::bigint[], $2::text[]) AS t(s, e)",
        )
        .bind(&seqs)
        .bind(&rows)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done += n;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

/// `url` with its database replaced by `name`.
fn database_url_named(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base
        .find("://")
        .map(|i| i + 3)
        .context("DATABASE_URL is not a URL")?;
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    Ok(match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    })
}

async fn drop_database(url: &str, name: &str) {
    let Ok(maintenance) = database_url_named(url, "postgres") else {
        return;
    };
    if let Ok(pool) = sqlx::PgPool::connect(&maintenance).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&pool)
            .await;
        pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::database_url_named;

    #[test]
    fn the_bench_database_replaces_only_the_database_of_the_url() {
        assert_eq!(
            database_url_named("postgres://postgres@127.0.0.1:5432/nexysync", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            database_url_named("postgres://u:p@h/db?sslmode=disable", "b").unwrap(),
            "postgres://u:p@h/b?sslmode=disable"
        );
        assert_eq!(
            database_url_named("postgres://h:5432", "b").unwrap(),
            "postgres://h:5432/b"
        );
    }
}
