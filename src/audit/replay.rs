//! `nexysync audit replay`: the history as it happened, verified event by event and
//! decrypted with the project key, as text for people or JSON lines for tools.

use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use base64::Engine;
use nexysync_domain::crypto::{ContentKeys, PublicKey};
use nexysync_domain::event::{
    emoji_index, fields, Actor, Envelope, EventBody, EventHash, RetentionPolicy,
};
use nexysync_domain::ids::{AgentId, ProjectId, Seq};
use nexysync_mcp::{KeyFile, KeyFileError};
use serde_json::{json, Map, Value};

use super::progress::Progress;
use super::source::EventSource;
use super::verify::walk;
use super::{AuditFailure, ProjectAuditor};
use crate::project_file::ProjectFile;
use crate::settings::Settings;

/// How replayed events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One block per event, for people.
    Text,
    /// One JSON object per line, for tools.
    Jsonl,
}

/// What reading a project's content needs, from an agent key file or the owner's
/// project file. `Debug` hides the content keys.
#[derive(Debug)]
pub struct ReadingKeys {
    pub project: ProjectId,
    /// The owner key the holder of the file trusts: the log must have been created by it.
    pub owner_key: PublicKey,
    pub content: ContentKeys,
}

impl ReadingKeys {
    /// Loads an agent key file (`.nexysync/key`) or, failing that, a project file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match KeyFile::load(path) {
            Ok(key) => Ok(Self {
                project: key.project.id,
                owner_key: key.project.owner_key,
                content: key.project_key.content_keys(),
            }),
            Err(key_err @ KeyFileError::Invalid { .. }) => match ProjectFile::load(path) {
                Ok(file) => Ok(Self {
                    project: file.id,
                    owner_key: file.owner_signing_key.public_key(),
                    content: file.project_key.content_keys(),
                }),
                Err(_) => Err(anyhow::Error::new(key_err).context(format!(
                    "{} is neither an agent key file nor a project file",
                    path.display()
                ))),
            },
            Err(err) => Err(err.into()),
        }
    }
}

/// What to replay and how.
#[derive(Debug)]
pub struct ReplayOptions {
    pub project: ProjectId,
    pub format: Format,
    /// Print events from this sequence on (all are still verified from the first).
    pub since: Seq,
}

/// Replays `options.project` from the live log to stdout.
pub async fn replay(
    settings: &Settings,
    keys: &ReadingKeys,
    options: &ReplayOptions,
) -> anyhow::Result<()> {
    let log = super::open_log(settings).await?;
    let mut source = EventSource::live(&log, options.project).await?;
    let stdout = std::io::stdout();
    // Progress would tangle with events printed on the same terminal.
    let mut progress = Progress::on_terminal(
        "replaying",
        source.last_seq(),
        !std::io::IsTerminal::is_terminal(&stdout),
    );
    let mut out = BufWriter::new(stdout.lock());
    let walked = walk(
        &mut source,
        options.project,
        &mut progress,
        |seq, event, hash, auditor| {
            if matches!(event.body, EventBody::ProjectCreated(_))
                && auditor.owner_key() != Some(keys.owner_key)
            {
                return Err(AuditFailure::OwnerKeyMismatch { seq }.into());
            }
            if seq < options.since {
                return Ok(());
            }
            let printed = match options.format {
                Format::Text => write_text(&mut out, seq, event, auditor, &keys.content),
                Format::Jsonl => write_jsonl(&mut out, seq, event, hash, auditor, &keys.content),
            };
            printed.context("failed to write to stdout")
        },
    )
    .await
    .map(drop)
    .and_then(|()| out.flush().context("failed to write to stdout"));
    match walked {
        // `| head` closed the pipe: the reader has what it wanted.
        Err(err) if is_broken_pipe(&err) => Ok(()),
        other => other,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A sealed field opened: its text, or why it cannot be shown.
enum Opened {
    Absent,
    Text(String),
    Binary(Vec<u8>),
    Unopenable(String),
}

fn open(event: &Envelope, keys: &ContentKeys, field: &str) -> Opened {
    match event.open(keys, field) {
        Ok(None) => Opened::Absent,
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => Opened::Text(text),
            Err(err) => Opened::Binary(err.into_bytes()),
        },
        Err(err) => Opened::Unopenable(err.to_string()),
    }
}

fn name_of(auditor: &ProjectAuditor, agent: AgentId) -> String {
    auditor
        .agent(&agent)
        .map(|a| a.name.to_string())
        .unwrap_or_else(|| agent.to_string())
}

fn time_of(at: i64) -> String {
    chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| format!("{at} ms"))
}

fn write_text(
    out: &mut impl Write,
    seq: Seq,
    event: &Envelope,
    auditor: &ProjectAuditor,
    keys: &ContentKeys,
) -> std::io::Result<()> {
    let when = time_of(event.at);
    match &event.body {
        EventBody::ProjectCreated(created) => {
            writeln!(
                out,
                "#{seq} {when} owner created project `{}`",
                created.name
            )
        }
        EventBody::AgentRegistered(registered) => writeln!(
            out,
            "#{seq} {when} owner registered agent `{}` ({})",
            registered.name, registered.agent
        ),
        EventBody::MessageSent(sent) => {
            let from = actor_name(auditor, event.actor);
            let to = sent
                .to
                .map(|to| name_of(auditor, to))
                .unwrap_or_else(|| "everyone".into());
            write!(out, "#{seq} {when} {from} -> {to}")?;
            if let Some(parent) = sent.reply_to {
                write!(out, " (reply to {parent})")?;
            }
            if let Some(ttl) = sent.ttl_s {
                write!(out, " (ttl {ttl} s)")?;
            }
            writeln!(out)?;
            if let Opened::Text(topic) = open(event, keys, fields::TOPIC) {
                writeln!(out, "  topic: {}", printable(&topic))?;
            }
            match open(event, keys, fields::BODY) {
                Opened::Text(body) => {
                    for line in body.lines() {
                        writeln!(out, "  | {}", printable(line))?;
                    }
                    Ok(())
                }
                Opened::Binary(bytes) => {
                    writeln!(out, "  [body: {} bytes, not UTF-8]", bytes.len())
                }
                Opened::Unopenable(why) => {
                    writeln!(out, "  [body does not open with this project key: {why}]")
                }
                Opened::Absent => writeln!(out, "  [no body]"),
            }
        }
        EventBody::KvSet(set) => {
            let who = actor_name(auditor, event.actor);
            let key = match open(event, keys, fields::KEY) {
                Opened::Text(key) => printable(&key),
                _ => format!("[key {}]", set.key_ix.as_str()),
            };
            write!(out, "#{seq} {when} {who} set kv `{key}`")?;
            if let Some(expected) = set.expected_revision {
                write!(out, " (if revision {expected})")?;
            }
            if let Some(ttl) = set.ttl_s {
                write!(out, " (ttl {ttl} s)")?;
            }
            writeln!(out)?;
            match open(event, keys, fields::VALUE) {
                Opened::Text(value) => writeln!(out, "  = {}", printable(&value)),
                Opened::Binary(bytes) => {
                    writeln!(out, "  [value: {} bytes, not UTF-8]", bytes.len())
                }
                Opened::Unopenable(why) => {
                    writeln!(out, "  [value does not open with this project key: {why}]")
                }
                Opened::Absent => writeln!(out, "  [no value]"),
            }
        }
        EventBody::KvDeleted(deleted) => {
            let who = actor_name(auditor, event.actor);
            write!(
                out,
                "#{seq} {when} {who} deleted kv key {}",
                deleted.key_ix.as_str()
            )?;
            if let Some(expected) = deleted.expected_revision {
                write!(out, " (if revision {expected})")?;
            }
            writeln!(out)
        }
        EventBody::AgentProfileUpdated(_) => {
            let who = actor_name(auditor, event.actor);
            let role = match open(event, keys, fields::ROLE) {
                Opened::Text(role) => printable(&role),
                _ => "[role does not open]".into(),
            };
            writeln!(out, "#{seq} {when} {who} set its role: {role}")?;
            match open(event, keys, fields::DESCRIPTION) {
                Opened::Text(text) => writeln!(out, "  description: {}", printable(&text)),
                Opened::Binary(bytes) => {
                    writeln!(out, "  [description: {} bytes, not UTF-8]", bytes.len())
                }
                Opened::Unopenable(why) => writeln!(
                    out,
                    "  [description does not open with this project key: {why}]"
                ),
                Opened::Absent => Ok(()),
            }
        }
        EventBody::RefShared(shared) => {
            let who = actor_name(auditor, event.actor);
            let to = shared
                .to
                .map(|to| name_of(auditor, to))
                .unwrap_or_else(|| "everyone".into());
            let path = match open(event, keys, fields::PATH) {
                Opened::Text(path) => printable(&path),
                _ => "[path does not open]".into(),
            };
            writeln!(
                out,
                "#{seq} {when} {who} -> {to} shared ref {path}:{}-{}",
                shared.start_line, shared.end_line
            )?;
            for field in [fields::COMMIT, fields::LANGUAGE, fields::NOTE] {
                if let Opened::Text(text) = open(event, keys, field) {
                    writeln!(out, "  {field}: {}", printable(&text))?;
                }
            }
            match open(event, keys, fields::SNIPPET) {
                Opened::Text(snippet) => {
                    for line in snippet.lines() {
                        writeln!(out, "  | {}", printable(line))?;
                    }
                    Ok(())
                }
                Opened::Binary(bytes) => {
                    writeln!(out, "  [snippet: {} bytes, not UTF-8]", bytes.len())
                }
                Opened::Unopenable(why) => {
                    writeln!(
                        out,
                        "  [snippet does not open with this project key: {why}]"
                    )
                }
                Opened::Absent => writeln!(out, "  [no snippet]"),
            }
        }
        EventBody::ReactionAdded(reaction) => {
            let who = actor_name(auditor, event.actor);
            let emoji = match open(event, keys, fields::EMOJI) {
                Opened::Text(emoji)
                    if emoji_index(keys, reaction.message, &emoji) == reaction.emoji_ix =>
                {
                    printable(&emoji)
                }
                Opened::Text(emoji) => {
                    format!("{} [does not match its emoji_ix]", printable(&emoji))
                }
                Opened::Binary(bytes) => format!("[emoji: {} bytes, not UTF-8]", bytes.len()),
                Opened::Unopenable(why) => {
                    format!("[emoji does not open with this project key: {why}]")
                }
                Opened::Absent => "[no emoji]".into(),
            };
            writeln!(
                out,
                "#{seq} {when} {who} reacted {emoji} to {}",
                reaction.message
            )
        }
        EventBody::ReactionRemoved(reaction) => writeln!(
            out,
            "#{seq} {when} {} took back reaction {} from {}",
            actor_name(auditor, event.actor),
            reaction.emoji_ix.as_str(),
            reaction.message
        ),
        EventBody::MessageRead(target)
        | EventBody::MessagePinned(target)
        | EventBody::MessageUnpinned(target)
        | EventBody::MessageDeleted(target) => {
            let verb = match event.body {
                EventBody::MessageRead(_) => "marked read",
                EventBody::MessagePinned(_) => "pinned",
                EventBody::MessageUnpinned(_) => "unpinned",
                _ => "deleted",
            };
            writeln!(
                out,
                "#{seq} {when} {} {verb} message {}",
                actor_name(auditor, event.actor),
                target.message
            )
        }
        EventBody::FileShared(shared) => {
            let who = actor_name(auditor, event.actor);
            let to = shared
                .to
                .map(|to| name_of(auditor, to))
                .unwrap_or_else(|| "everyone".into());
            let name = match open(event, keys, fields::NAME) {
                Opened::Text(name) => printable(&name),
                _ => "[name does not open]".into(),
            };
            write!(
                out,
                "#{seq} {when} {who} -> {to} shared file `{name}` ({} bytes, id {})",
                shared.size, event.id
            )?;
            if let Opened::Text(media_type) = open(event, keys, fields::MEDIA_TYPE) {
                write!(out, " {}", printable(&media_type))?;
            }
            writeln!(out)?;
            writeln!(out, "  sha256 of the ciphertext: {}", shared.digest)
        }
        EventBody::FileDeleted(deleted) => {
            let who = actor_name(auditor, event.actor);
            writeln!(out, "#{seq} {when} {who} deleted file {}", deleted.file)
        }
        EventBody::RetentionSet(policy) => writeln!(
            out,
            "#{seq} {when} owner set retention: {}",
            policy_text(policy)
        ),
        EventBody::EventsErased(erased) => {
            let seqs: Vec<String> = erased.erased.iter().map(|e| e.seq.to_string()).collect();
            writeln!(
                out,
                "#{seq} {when} pruner erased {} expired event(s): seq {}",
                seqs.len(),
                seqs.join(", ")
            )
        }
    }
}

fn actor_name(auditor: &ProjectAuditor, actor: Actor) -> String {
    match actor {
        Actor::Agent(id) => name_of(auditor, id),
        Actor::Owner => "owner".into(),
        Actor::Pruner => "pruner".into(),
    }
}

/// A retention policy as text: "default 7d, max 30d".
fn policy_text(policy: &RetentionPolicy) -> String {
    let part = |ttl: Option<u32>| ttl.map_or("none".to_owned(), |t| format!("{t} s"));
    format!(
        "default ttl {}, max ttl {}",
        part(policy.default_ttl_s),
        part(policy.max_ttl_s)
    )
}

/// Text with control characters escaped, so a message cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn write_jsonl(
    out: &mut impl Write,
    seq: Seq,
    event: &Envelope,
    hash: EventHash,
    auditor: &ProjectAuditor,
    keys: &ContentKeys,
) -> std::io::Result<()> {
    let mut line = Map::new();
    line.insert("seq".into(), seq.0.into());
    line.insert("id".into(), event.id.to_string().into());
    line.insert("hash".into(), hash.to_hex().into());
    line.insert("at".into(), event.at.into());
    line.insert("time".into(), time_of(event.at).into());
    line.insert("kind".into(), event.body.kind().as_str().into());
    line.insert("actor".into(), json!(event.actor));
    if let Actor::Agent(id) = event.actor {
        line.insert("actor_name".into(), name_of(auditor, id).into());
    }
    match &event.body {
        EventBody::ProjectCreated(created) => {
            line.insert("name".into(), created.name.to_string().into());
            line.insert("owner_key".into(), created.owner_key.to_base64().into());
            line.insert("retention".into(), json!(created.retention));
        }
        EventBody::RetentionSet(policy) => {
            line.insert("retention".into(), json!(policy));
        }
        EventBody::EventsErased(erased) => {
            let seqs: Vec<u64> = erased.erased.iter().map(|e| e.seq.0).collect();
            line.insert("erased_seqs".into(), json!(seqs));
        }
        EventBody::AgentRegistered(registered) => {
            line.insert("agent".into(), registered.agent.to_string().into());
            line.insert("name".into(), registered.name.to_string().into());
            line.insert(
                "signing_key".into(),
                registered.signing_key.to_base64().into(),
            );
        }
        EventBody::MessageSent(sent) => {
            line.insert("to".into(), json!(sent.to));
            if let Some(to) = sent.to {
                line.insert("to_name".into(), name_of(auditor, to).into());
            }
            line.insert("reply_to".into(), json!(sent.reply_to));
            line.insert("ttl_s".into(), json!(sent.ttl_s));
            for field in [fields::TOPIC, fields::BODY] {
                insert_opened(&mut line, field, open(event, keys, field));
            }
        }
        EventBody::KvSet(set) => {
            line.insert("key_ix".into(), set.key_ix.as_str().into());
            line.insert("expected_revision".into(), json!(set.expected_revision));
            line.insert("ttl_s".into(), json!(set.ttl_s));
            for field in [fields::KEY, fields::VALUE] {
                insert_opened(&mut line, field, open(event, keys, field));
            }
        }
        EventBody::KvDeleted(deleted) => {
            line.insert("key_ix".into(), deleted.key_ix.as_str().into());
            line.insert("expected_revision".into(), json!(deleted.expected_revision));
        }
        EventBody::AgentProfileUpdated(_) => {
            for field in [fields::ROLE, fields::DESCRIPTION] {
                insert_opened(&mut line, field, open(event, keys, field));
            }
        }
        EventBody::RefShared(shared) => {
            line.insert("to".into(), json!(shared.to));
            if let Some(to) = shared.to {
                line.insert("to_name".into(), name_of(auditor, to).into());
            }
            line.insert("start_line".into(), shared.start_line.into());
            line.insert("end_line".into(), shared.end_line.into());
            for field in [
                fields::PATH,
                fields::COMMIT,
                fields::LANGUAGE,
                fields::NOTE,
                fields::SNIPPET,
            ] {
                insert_opened(&mut line, field, open(event, keys, field));
            }
        }
        EventBody::ReactionAdded(reaction) | EventBody::ReactionRemoved(reaction) => {
            line.insert("message".into(), reaction.message.to_string().into());
            line.insert("emoji_ix".into(), reaction.emoji_ix.as_str().into());
            let opened = open(event, keys, fields::EMOJI);
            if let Opened::Text(emoji) = &opened {
                line.insert(
                    "emoji_matches_index".into(),
                    (emoji_index(keys, reaction.message, emoji) == reaction.emoji_ix).into(),
                );
            }
            insert_opened(&mut line, fields::EMOJI, opened);
        }
        EventBody::MessageRead(target)
        | EventBody::MessagePinned(target)
        | EventBody::MessageUnpinned(target)
        | EventBody::MessageDeleted(target) => {
            line.insert("message".into(), target.message.to_string().into());
        }
        EventBody::FileShared(shared) => {
            line.insert("to".into(), json!(shared.to));
            if let Some(to) = shared.to {
                line.insert("to_name".into(), name_of(auditor, to).into());
            }
            line.insert("size".into(), shared.size.into());
            line.insert("ciphertext_size".into(), shared.ciphertext_size.into());
            line.insert("digest".into(), shared.digest.clone().into());
            line.insert("chunk_size".into(), shared.chunk_size.into());
            for field in [fields::NAME, fields::MEDIA_TYPE] {
                insert_opened(&mut line, field, open(event, keys, field));
            }
        }
        EventBody::FileDeleted(deleted) => {
            line.insert("file".into(), deleted.file.to_string().into());
        }
    }
    serde_json::to_writer(&mut *out, &Value::Object(line))?;
    out.write_all(b"\n")
}

fn insert_opened(line: &mut Map<String, Value>, field: &str, opened: Opened) {
    match opened {
        Opened::Absent => {}
        Opened::Text(text) => {
            line.insert(field.into(), text.into());
        }
        Opened::Binary(bytes) => {
            line.insert(
                format!("{field}_base64"),
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            );
        }
        Opened::Unopenable(why) => {
            line.insert(format!("{field}_error"), why.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_events_replay_with_their_name_size_and_deletion() {
        use nexysync_domain::crypto::file_stream::{ciphertext_len, FILE_CHUNK_SIZE};
        use nexysync_domain::crypto::{AgentToken, ProjectKey, SigningKey};
        use nexysync_domain::event::{
            AgentRegistered, Draft, FileDeleted, FileShared, ProjectCreated,
        };
        use nexysync_domain::ids::{AgentId, AgentName, ProjectId, ProjectName};

        let project = ProjectId::generate();
        let keys = ProjectKey::generate().content_keys();
        let owner = SigningKey::generate();
        let alice = AgentId::generate();
        let alice_key = SigningKey::generate();
        let mut events = vec![
            Draft::new(
                project,
                Actor::Owner,
                EventBody::ProjectCreated(ProjectCreated {
                    name: ProjectName::parse("replayed").unwrap(),
                    owner_key: owner.public_key(),
                    retention: Default::default(),
                }),
            )
            .sign(&owner),
            Draft::new(
                project,
                Actor::Owner,
                EventBody::AgentRegistered(AgentRegistered {
                    agent: alice,
                    name: AgentName::parse("alice").unwrap(),
                    signing_key: alice_key.public_key(),
                    token_hash: AgentToken::generate().hash(),
                }),
            )
            .sign(&owner),
        ];
        let shared = Draft::new(
            project,
            Actor::Agent(alice),
            EventBody::FileShared(FileShared {
                to: None,
                size: 7,
                ciphertext_size: ciphertext_len(7, FILE_CHUNK_SIZE).unwrap(),
                digest: "ab".repeat(32),
                chunk_size: FILE_CHUNK_SIZE,
            }),
        )
        .seal(&keys, fields::NAME, b"plan.md")
        .sign(&alice_key);
        let file = shared.id;
        events.push(shared);
        events.push(
            Draft::new(
                project,
                Actor::Agent(alice),
                EventBody::FileDeleted(FileDeleted { file }),
            )
            .sign(&alice_key),
        );
        let mut auditor = ProjectAuditor::new(project);
        let (mut text, mut jsonl) = (Vec::new(), Vec::new());
        let mut last = None;
        for (i, event) in events.iter().enumerate() {
            let seq = Seq(i as u64 + 1);
            let mut event = event.clone();
            // The log sets the chain link when it appends.
            event.prev = last.map(|(seq, hash)| nexysync_domain::event::ChainLink { seq, hash });
            let hash = auditor.push(seq, &event).unwrap();
            last = Some((seq, hash));
            write_text(&mut text, seq, &event, &auditor, &keys).unwrap();
            write_jsonl(&mut jsonl, seq, &event, hash, &auditor, &keys).unwrap();
        }
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("alice -> everyone shared file `plan.md` (7 bytes"),
            "{text}"
        );
        assert!(
            text.contains(&format!("alice deleted file {file}")),
            "{text}"
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(jsonl)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[2]["kind"], "file_shared");
        assert_eq!(lines[2]["name"], "plan.md");
        assert_eq!(lines[2]["size"], 7);
        assert_eq!(lines[3]["file"], file.to_string());
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(printable("ok\u{1b}[31mred\ttab"), "ok\\u{1b}[31mred\ttab");
    }
}
