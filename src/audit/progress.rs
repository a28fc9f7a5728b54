//! Progress of a long audit on stderr (events, events/s, ETA), drawn only when stderr is
//! a terminal so logs and pipes stay clean.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use nexysync_domain::ids::Seq;

const REDRAW_EVERY: Duration = Duration::from_millis(200);

/// A one-line progress display; silent when disabled.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    label: &'static str,
    /// The last sequence the run will reach, for the ETA.
    last: Option<Seq>,
    started: Instant,
    drawn: Instant,
    dirty: bool,
    /// Ticks since the clock was last read: reading it on every event would cost more
    /// than the event.
    ticks: u32,
    every: u32,
}

impl Progress {
    /// Drawn when stderr is a terminal and `also` holds (e.g. stdout is not one either).
    pub fn on_terminal(label: &'static str, last: Option<Seq>, also: bool) -> Self {
        let now = Instant::now();
        Self {
            enabled: also && std::io::stderr().is_terminal(),
            label,
            last,
            started: now,
            drawn: now,
            dirty: false,
            ticks: 0,
            every: 64,
        }
    }

    /// Reads the clock on every tick: for callers that tick once per batch, not per event.
    pub fn every_tick(mut self) -> Self {
        self.every = 1;
        self
    }

    /// Records that `events` events are done, the last at `seq`.
    pub fn tick(&mut self, events: u64, seq: Seq) {
        self.ticks += 1;
        if !self.enabled || self.ticks < self.every {
            return;
        }
        self.ticks = 0;
        let now = Instant::now();
        if now.duration_since(self.drawn) < REDRAW_EVERY {
            return;
        }
        self.drawn = now;
        let elapsed = now.duration_since(self.started).as_secs_f64();
        let rate = events as f64 / elapsed.max(1e-3);
        let eta = match self.last {
            Some(last) if seq.0 > 0 && last.0 > seq.0 => {
                let left = elapsed * (last.0 - seq.0) as f64 / seq.0 as f64;
                format!(", ETA {left:.0} s")
            }
            _ => String::new(),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{}: {events} events, {rate:.0} events/s, seq {seq}{eta}\x1b[K",
            self.label
        );
        let _ = err.flush();
        self.dirty = true;
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.dirty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
            self.dirty = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
