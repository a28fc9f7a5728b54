//! Per-project quotas: the limits an operator sets, the usage the read models count, and
//! the pure checks the write path makes before appending.
//!
//! What counts: every content-bearing event that stays in the project's history
//! (`message_sent`, `ref_shared`) is a message of its UTC day and adds its sealed bytes
//! to the stored bytes. KV writes never count (they replace one another), nor do
//! provisioning and profile updates. Other features that store content (files) call
//! [`Quota::check_stored_bytes`] with the bytes they are about to add.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::decide::Rejection;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The limits of one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaLimits {
    /// Messages (and code references) per UTC day.
    pub messages_per_day: u64,
    /// Sealed bytes of one message (all its ciphertext fields together).
    pub message_bytes: u64,
    /// Sealed bytes the project keeps stored.
    pub stored_bytes: u64,
}

impl Default for QuotaLimits {
    fn default() -> Self {
        Self {
            messages_per_day: 100_000,
            message_bytes: crate::decide::MAX_SEALED_BYTES as u64,
            stored_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

/// What a project has used, as the read models count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuotaUsage {
    /// Messages of the current UTC day.
    pub messages_today: u64,
    /// Sealed bytes of the project's stored messages.
    pub stored_bytes: u64,
}

/// Which limit a write would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaLimit {
    MessagesPerDay,
    MessageBytes,
    StoredBytes,
}

impl QuotaLimit {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::MessagesPerDay => "messages_per_day",
            Self::MessageBytes => "message_bytes",
            Self::StoredBytes => "stored_bytes",
        }
    }
}

impl std::fmt::Display for QuotaLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a broken limit stops refusing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaReset {
    /// The daily count starts again at this instant (the next UTC midnight, Unix ms).
    At(u64),
    /// Never by itself: a smaller message fits.
    Never,
    /// When stored content expires or is deleted.
    WhenFreed,
}

impl std::fmt::Display for QuotaReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::At(ms) => write!(f, "it resets at {} (UTC midnight)", utc_rfc3339(*ms)),
            Self::Never => f.write_str("it does not reset: send less per message"),
            Self::WhenFreed => f.write_str("it frees up as stored messages expire or are deleted"),
        }
    }
}

/// Limits and usage together: what the write path gathers and decides on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub limits: QuotaLimits,
    pub usage: QuotaUsage,
}

impl Quota {
    /// A new message of `sealed_bytes` at server time `now_ms`: within its size, today's
    /// count and the stored bytes?
    pub fn check_message(&self, sealed_bytes: u64, now_ms: u64) -> Result<(), Rejection> {
        if sealed_bytes > self.limits.message_bytes {
            return Err(Rejection::QuotaExceeded {
                limit: QuotaLimit::MessageBytes,
                value: self.limits.message_bytes,
                used: sealed_bytes,
                resets: QuotaReset::Never,
            });
        }
        if self.usage.messages_today >= self.limits.messages_per_day {
            return Err(Rejection::QuotaExceeded {
                limit: QuotaLimit::MessagesPerDay,
                value: self.limits.messages_per_day,
                used: self.usage.messages_today,
                resets: QuotaReset::At(next_utc_midnight_ms(now_ms)),
            });
        }
        self.check_stored_bytes(sealed_bytes)
    }

    /// Would storing `adding` more bytes go beyond the project's stored-bytes limit? The
    /// one check every feature that stores content makes (messages, refs, files).
    pub fn check_stored_bytes(&self, adding: u64) -> Result<(), Rejection> {
        let after = self.usage.stored_bytes.saturating_add(adding);
        if after > self.limits.stored_bytes {
            return Err(Rejection::QuotaExceeded {
                limit: QuotaLimit::StoredBytes,
                value: self.limits.stored_bytes,
                used: self.usage.stored_bytes,
                resets: QuotaReset::WhenFreed,
            });
        }
        Ok(())
    }
}

/// The sentence behind [`Rejection::QuotaExceeded`]: the limit, its value, what is used,
/// and when it resets.
pub fn explain(limit: QuotaLimit, value: u64, used: u64, resets: QuotaReset) -> String {
    let used = match limit {
        QuotaLimit::MessagesPerDay => format!("{used} sent today"),
        QuotaLimit::MessageBytes => format!("this message is {used} sealed bytes"),
        QuotaLimit::StoredBytes => format!("{used} bytes stored"),
    };
    format!("this project's {limit} limit is {value} ({used}); {resets}")
}

/// The first instant of the UTC day after the one `now_ms` falls in.
pub fn next_utc_midnight_ms(now_ms: u64) -> u64 {
    (now_ms / DAY_MS + 1) * DAY_MS
}

/// `YYYY-MM-DDThh:mm:ssZ` for a Unix millisecond instant (civil-from-days, proleptic
/// Gregorian), without pulling a date library into the domain.
pub fn utc_rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(messages_today: u64, stored_bytes: u64) -> Quota {
        Quota {
            limits: QuotaLimits {
                messages_per_day: 3,
                message_bytes: 100,
                stored_bytes: 250,
            },
            usage: QuotaUsage {
                messages_today,
                stored_bytes,
            },
        }
    }

    #[test]
    fn midnight_and_dates_are_utc() {
        // 2026-12-01T05:31:07Z
        let now = 1_796_103_067_000;
        assert_eq!(utc_rfc3339(now), "2026-12-01T05:31:07Z");
        assert_eq!(
            utc_rfc3339(next_utc_midnight_ms(now)),
            "2026-12-02T00:00:00Z"
        );
        assert_eq!(utc_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn a_message_within_every_limit_passes() {
        assert_eq!(quota(2, 100).check_message(100, 0), Ok(()));
    }

    #[test]
    fn the_daily_count_refuses_with_the_next_midnight() {
        let now = 1_796_103_067_000;
        let refused = quota(3, 0).check_message(10, now).unwrap_err();
        assert_eq!(
            refused,
            Rejection::QuotaExceeded {
                limit: QuotaLimit::MessagesPerDay,
                value: 3,
                used: 3,
                resets: QuotaReset::At(next_utc_midnight_ms(now)),
            }
        );
        let text = refused.to_string();
        assert!(text.contains("messages_per_day"), "{text}");
        assert!(text.contains("2026-12-02T00:00:00Z"), "{text}");
        assert_eq!(refused.code(), "quota_exceeded");
    }

    #[test]
    fn a_message_too_large_or_beyond_the_stored_bytes_is_refused() {
        assert!(matches!(
            quota(0, 0).check_message(101, 0),
            Err(Rejection::QuotaExceeded {
                limit: QuotaLimit::MessageBytes,
                ..
            })
        ));
        assert!(matches!(
            quota(0, 200).check_message(51, 0),
            Err(Rejection::QuotaExceeded {
                limit: QuotaLimit::StoredBytes,
                ..
            })
        ));
        assert_eq!(quota(0, 200).check_stored_bytes(50), Ok(()));
    }
}
