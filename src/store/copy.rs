//! PostgreSQL's binary `COPY` format (the "Binary Format" section of the `COPY` manual
//! page), written into one buffer per statement: a first load's page goes to the server as
//! one `COPY … FROM STDIN (FORMAT binary)`, which inserts rows in batches and parses
//! nothing but each record's JSON.
//!
//! Written by hand: the format is a header, then per row a field count and per field a
//! length and the value's binary send format; the crates that write it bring a second
//! PostgreSQL driver along.

use chrono::{Datelike, NaiveDate};

/// 2000-01-01, PostgreSQL's epoch for dates and timestamps, in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// The `oid` of `text`, named in an array's header.
const TEXT_OID: i32 = 25;

/// One `COPY` statement's data.
pub(super) struct CopyRows {
    buf: Vec<u8>,
}

/// A value that the binary format cannot carry (the caller falls back to plain SQL, whose
/// error names the record).
#[derive(Debug)]
pub(super) struct OutOfRange;

impl CopyRows {
    pub fn new() -> CopyRows {
        let mut buf = Vec::with_capacity(64 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0_i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0_i32.to_be_bytes()); // no header extension
        CopyRows { buf }
    }

    /// Starts a row of `fields` fields.
    pub fn row(&mut self, fields: usize) {
        self.buf.extend_from_slice(&(fields as i16).to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1_i32).to_be_bytes());
    }

    pub fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    /// `jsonb`: a version byte, then the JSON text.
    pub fn jsonb(&mut self, json: &str) {
        self.buf.extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
    }

    pub fn bigint(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.field(&[u8::from(v)]);
    }

    /// `timestamptz` from epoch milliseconds, exactly as `epoch_ms_to_timestamptz`.
    pub fn timestamptz_ms(&mut self, ms: i64) -> Result<(), OutOfRange> {
        let micros = ms.checked_mul(1_000).and_then(|us| us.checked_sub(PG_EPOCH_MICROS)).ok_or(OutOfRange)?;
        self.field(&micros.to_be_bytes());
        Ok(())
    }

    pub fn date(&mut self, date: NaiveDate) {
        let days = date.num_days_from_ce() - NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date").num_days_from_ce();
        self.field(&days.to_be_bytes());
    }

    /// A one-dimensional `text[]` (empty when `items` is).
    pub fn text_array<'a>(&mut self, items: impl Iterator<Item = &'a str>) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0_i32.to_be_bytes()); // length, set below
        let header = self.buf.len();
        self.buf.extend_from_slice(&1_i32.to_be_bytes()); // dimensions
        self.buf.extend_from_slice(&0_i32.to_be_bytes()); // no NULL elements
        self.buf.extend_from_slice(&TEXT_OID.to_be_bytes());
        self.buf.extend_from_slice(&0_i32.to_be_bytes()); // element count, set below
        self.buf.extend_from_slice(&1_i32.to_be_bytes()); // lower bound
        let mut count = 0_i32;
        for item in items {
            self.text(item);
            count += 1;
        }
        if count == 0 {
            // An empty array has no dimensions.
            self.buf.truncate(header);
            self.buf.extend_from_slice(&0_i32.to_be_bytes());
            self.buf.extend_from_slice(&0_i32.to_be_bytes());
            self.buf.extend_from_slice(&TEXT_OID.to_be_bytes());
        } else {
            self.buf[header + 12..header + 16].copy_from_slice(&count.to_be_bytes());
        }
        let len = (self.buf.len() - header) as i32;
        self.buf[start..header].copy_from_slice(&len.to_be_bytes());
    }

    /// The data, with the trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1_i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let mut rows = CopyRows::new();
        let at = rows.buf.len();
        rows.timestamptz_ms(946_684_800_001).unwrap();
        assert_eq!(&rows.buf[at..], &[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
        assert!(rows.timestamptz_ms(i64::MAX).is_err());
    }

    #[test]
    fn an_array_carries_its_length_and_element_count() {
        let mut rows = CopyRows::new();
        let at = rows.buf.len();
        rows.text_array(["a", "bc"].into_iter());
        let field = &rows.buf[at..];
        assert_eq!(i32::from_be_bytes(field[0..4].try_into().unwrap()) as usize, field.len() - 4);
        assert_eq!(i32::from_be_bytes(field[16..20].try_into().unwrap()), 2, "two elements");
        let at = rows.buf.len();
        rows.text_array(std::iter::empty());
        assert_eq!(rows.buf.len() - at, 16, "length, then no dimensions, no NULLs, the element type");
    }
}
