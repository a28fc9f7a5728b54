//! A lean SSE subscriber for the delivery figure: HTTP/1.1 on a plain TCP connection, the
//! chunked body decoded and split into events in place. The bench's subscribers stand in
//! for agents on as many other machines, yet run on the server's own cores, where each
//! costs what its client costs: so they cost as little as a client can, like the plain
//! TCP floor's readers. (An agent's own client, reqwest and an SSE parser on tasks of its
//! own, cost as much CPU as the server's side of the fan-out, measured.)

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One server-sent event: its name (`message` when it has none) and its data lines.
#[derive(Debug, PartialEq, Eq)]
pub struct SseEvent {
    pub name: String,
    pub data: String,
}

/// A `GET /v1/stream` as one agent.
pub struct SseReader {
    socket: TcpStream,
    body: Body,
    events: EventSplitter,
    read: Vec<u8>,
}

impl SseReader {
    /// Opens the stream of the agent of `token` on the `http://` server at `server`.
    pub async fn connect(server: &reqwest::Url, token: &str) -> anyhow::Result<Self> {
        if server.scheme() != "http" {
            bail!("the delivery figure reads SSE over plain HTTP: give the server's http:// URL");
        }
        let host = server.host_str().context("the server URL has no host")?;
        let port = server.port_or_known_default().unwrap_or(80);
        let mut socket = TcpStream::connect((host, port)).await?;
        socket.set_nodelay(true)?;
        let path = server.join("v1/stream")?;
        socket
            .write_all(
                format!(
                    "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n\
                     Accept: text/event-stream\r\n\r\n",
                    path.path()
                )
                .as_bytes(),
            )
            .await?;
        let mut read = vec![0u8; 64 * 1024];
        let mut head = Vec::new();
        let end = loop {
            let n = socket.read(&mut read).await?;
            if n == 0 {
                bail!("the server closed the stream before answering");
            }
            head.extend_from_slice(&read[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
        if !text.starts_with("http/1.1 200") {
            bail!(
                "GET /v1/stream answered {}",
                text.lines().next().unwrap_or("")
            );
        }
        let mut body = if text.contains("transfer-encoding: chunked") {
            Body::Chunked(Dechunker::default())
        } else {
            Body::Plain
        };
        let mut events = EventSplitter::default();
        body.feed(&head[end..], &mut events)?;
        Ok(Self {
            socket,
            body,
            events,
            read,
        })
    }

    /// The next event, or `None` once the server ends the stream.
    pub async fn next_event(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(event) = self.events.next_event() {
                return Ok(Some(event));
            }
            let n = self.socket.read(&mut self.read).await?;
            if n == 0 {
                return Ok(None);
            }
            self.body.feed(&self.read[..n], &mut self.events)?;
        }
    }
}

/// How the response body is framed.
enum Body {
    Chunked(Dechunker),
    Plain,
}

impl Body {
    fn feed(&mut self, bytes: &[u8], events: &mut EventSplitter) -> anyhow::Result<()> {
        match self {
            Body::Chunked(dechunker) => dechunker.feed(bytes, |data| events.feed(data)),
            Body::Plain => {
                events.feed(bytes);
                Ok(())
            }
        }
    }
}

/// Decodes `Transfer-Encoding: chunked` as bytes arrive, however they are cut.
#[derive(Default)]
struct Dechunker {
    /// Bytes of the current chunk still to come, then its CRLF.
    remaining: usize,
    /// A size line (or a chunk's closing CRLF) not yet whole.
    line: Vec<u8>,
    in_data: bool,
}

impl Dechunker {
    fn feed(&mut self, mut bytes: &[u8], mut out: impl FnMut(&[u8])) -> anyhow::Result<()> {
        while !bytes.is_empty() {
            if self.in_data {
                let take = self.remaining.min(bytes.len());
                out(&bytes[..take]);
                self.remaining -= take;
                bytes = &bytes[take..];
                if self.remaining == 0 {
                    self.in_data = false;
                }
                continue;
            }
            let Some(end) = bytes.iter().position(|b| *b == b'\n') else {
                self.line.extend_from_slice(bytes);
                return Ok(());
            };
            self.line.extend_from_slice(&bytes[..end]);
            bytes = &bytes[end + 1..];
            let line = std::mem::take(&mut self.line);
            let size = std::str::from_utf8(&line)?.trim();
            // The CRLF that closes a chunk's data reads as an empty line.
            if size.is_empty() {
                continue;
            }
            let size = size.split(';').next().unwrap_or(size);
            self.remaining = usize::from_str_radix(size, 16)
                .with_context(|| format!("a chunk size that is not hex: {size:?}"))?;
            if self.remaining == 0 {
                bail!("the server ended the stream");
            }
            self.in_data = true;
        }
        Ok(())
    }
}

/// Splits an SSE body into events at their blank lines.
#[derive(Default)]
struct EventSplitter {
    pending: Vec<u8>,
}

impl EventSplitter {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.pending.windows(2).position(|w| w == b"\n\n")?;
            let frame: Vec<u8> = self.pending.drain(..end + 2).collect();
            let mut event = SseEvent {
                name: "message".into(),
                data: String::new(),
            };
            let mut fields = 0;
            for line in String::from_utf8_lossy(&frame).lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event.name = name.trim_start().to_owned();
                    fields += 1;
                } else if let Some(data) = line.strip_prefix("data:") {
                    if !event.data.is_empty() {
                        event.data.push('\n');
                    }
                    event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                    fields += 1;
                }
            }
            // A frame of comments only (a heartbeat) is no event.
            if fields > 0 {
                return Some(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_of(body: &[u8], cut_every: usize) -> Vec<SseEvent> {
        let mut dechunker = Dechunker::default();
        let mut events = EventSplitter::default();
        let mut out = Vec::new();
        for piece in body.chunks(cut_every) {
            dechunker.feed(piece, |data| events.feed(data)).unwrap();
            while let Some(event) = events.next_event() {
                out.push(event);
            }
        }
        out
    }

    #[test]
    fn chunked_events_come_out_whole_however_the_bytes_are_cut() {
        let frames = ": heartbeat\n\nevent: ready\ndata: {\"seq\":3}\n\n\
                      event: new_message\nid: 4\ndata: {\"seq\":4}\n\n";
        let mut body = Vec::new();
        for piece in [&frames[..13], &frames[13..40], &frames[40..]] {
            body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            body.extend_from_slice(piece.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        let expected = vec![
            SseEvent {
                name: "ready".into(),
                data: r#"{"seq":3}"#.into(),
            },
            SseEvent {
                name: "new_message".into(),
                data: r#"{"seq":4}"#.into(),
            },
        ];
        for cut in [1, 2, 3, 7, 64, body.len()] {
            assert_eq!(events_of(&body, cut), expected, "cut every {cut} bytes");
        }
    }

    #[test]
    fn the_last_chunk_is_the_end_of_the_stream() {
        let mut dechunker = Dechunker::default();
        let error = dechunker.feed(b"0\r\n\r\n", |_| {}).unwrap_err();
        assert!(error.to_string().contains("ended"), "{error}");
    }
}
