//! Rows in PostgreSQL's binary `COPY` format, for `COPY … FROM STDIN (FORMAT binary)`:
//! a header, then per row its field count and each field as a length and its bytes in
//! the type's binary form, then a trailer. The rows may be sent in chunks as they are
//! made ([`CopyRows::take`]), so a large load need not be held in memory at once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The signature, flags and header-extension length every binary `COPY` starts with.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// A row's field count of -1: no more rows.
const TRAILER: &[u8] = &(-1i16).to_be_bytes();
/// A field's length of -1: NULL.
const NULL: &[u8] = &(-1i32).to_be_bytes();
/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 00:00 UTC.
const POSTGRES_EPOCH_US: i64 = 946_684_800_000_000;

/// A value in the binary form of its column's type.
pub(crate) trait CopyValue {
    fn put(&self, out: &mut Vec<u8>);
}

/// Rows being written, each with [`CopyRows::row`] then one [`CopyRows::field`] per column.
#[derive(Debug)]
pub(crate) struct CopyRows {
    out: Vec<u8>,
    rows: usize,
}

impl CopyRows {
    pub(crate) fn new() -> Self {
        Self {
            out: HEADER.to_vec(),
            rows: 0,
        }
    }

    /// Starts a row of `fields` columns.
    pub(crate) fn row(&mut self, fields: i16) -> &mut Self {
        self.out.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
        self
    }

    /// Adds the next field of the row.
    pub(crate) fn field(&mut self, value: impl CopyValue) -> &mut Self {
        value.put(&mut self.out);
        self
    }

    /// How many rows were started.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// How many bytes wait to be taken.
    pub(crate) fn pending(&self) -> usize {
        self.out.len()
    }

    /// The data so far, to send before the rest: what follows continues it.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// The rest of the `COPY` data, trailer included.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.extend_from_slice(TRAILER);
        self.out
    }
}

fn put_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = i32::try_from(bytes.len()).expect("a COPY field is under 2 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl CopyValue for &Uuid {
    fn put(&self, out: &mut Vec<u8>) {
        put_sized(out, self.as_bytes());
    }
}

impl CopyValue for i64 {
    fn put(&self, out: &mut Vec<u8>) {
        put_sized(out, &self.to_be_bytes());
    }
}

impl CopyValue for i32 {
    fn put(&self, out: &mut Vec<u8>) {
        put_sized(out, &self.to_be_bytes());
    }
}

/// Text, and `json`, whose binary form is its text.
impl CopyValue for &str {
    fn put(&self, out: &mut Vec<u8>) {
        put_sized(out, self.as_bytes());
    }
}

impl CopyValue for DateTime<Utc> {
    fn put(&self, out: &mut Vec<u8>) {
        put_sized(
            out,
            &(self.timestamp_micros() - POSTGRES_EPOCH_US).to_be_bytes(),
        );
    }
}

impl<T: CopyValue> CopyValue for Option<T> {
    fn put(&self, out: &mut Vec<u8>) {
        match self {
            Some(value) => value.put(out),
            None => out.extend_from_slice(NULL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_by_the_header_and_the_trailer() {
        let mut rows = CopyRows::new();
        rows.row(2).field(7i64).field(None::<i32>);
        assert_eq!(rows.rows(), 1);
        let data = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0, 2]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(data, expected);
    }

    #[test]
    fn data_taken_in_chunks_is_the_data_made_at_once() {
        let make = |rows: &mut CopyRows, i: i64| {
            rows.row(2).field(i).field(Some("text"));
        };
        let mut whole = CopyRows::new();
        let mut chunked = CopyRows::new();
        let mut chunks = Vec::new();
        for i in 0..5 {
            make(&mut whole, i);
            make(&mut chunked, i);
            if i % 2 == 0 {
                chunks.extend(chunked.take());
            }
        }
        assert_eq!(chunked.rows(), 5);
        chunks.extend(chunked.finish());
        assert_eq!(chunks, whole.finish());
    }

    #[test]
    fn a_time_counts_microseconds_from_the_year_2000() {
        let mut out = Vec::new();
        DateTime::<Utc>::from_timestamp(946_684_801, 500_000_000)
            .unwrap()
            .put(&mut out);
        assert_eq!(out[..4], [0, 0, 0, 8]);
        assert_eq!(i64::from_be_bytes(out[4..].try_into().unwrap()), 1_500_000);
    }

    #[test]
    fn a_uuid_and_text_are_their_bytes() {
        let id = Uuid::from_u128(0x0102);
        let mut out = Vec::new();
        (&id).put(&mut out);
        "{}".put(&mut out);
        assert_eq!(out[..4], [0, 0, 0, 16]);
        assert_eq!(out[4..20], *id.as_bytes());
        assert_eq!(out[20..], [0, 0, 0, 2, b'{', b'}']);
    }
}
