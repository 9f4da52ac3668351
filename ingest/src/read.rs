//! Streaming readers of event files, NDJSON or CSV by extension. They hold one line at a time
//! and hand out records that borrow from it, so reading allocates nothing per record. A line that
//! breaks the contract comes back as [`Read::Bad`] with its line number; the reader goes on.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vigil_schema::Validate;

use crate::{Error, Result};

/// An event file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Csv,
}

impl Format {
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ndjson" | "jsonl" | "json") => Ok(Format::Ndjson),
            Some("csv") => Ok(Format::Csv),
            _ => Err(Error::UnknownFormat {
                path: path.to_owned(),
            }),
        }
    }
}

/// A line that breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub line: u64,
    pub message: String,
}

/// What one read gave.
#[derive(Debug)]
pub enum Read<T> {
    Record(T),
    Bad(BadRecord),
    End,
}

#[derive(Debug)]
enum Source {
    Ndjson {
        reader: BufReader<File>,
        buf: String,
    },
    Csv {
        reader: csv::Reader<BufReader<File>>,
        headers: csv::StringRecord,
        record: csv::StringRecord,
    },
}

/// Reads the records of one file, in order.
#[derive(Debug)]
pub struct RecordReader {
    path: PathBuf,
    source: Source,
    line: u64,
}

const BUFFER: usize = 1 << 20;

impl RecordReader {
    /// Opens `path`; for CSV, checks the header against `columns` (the record type's fields).
    pub fn open(path: &Path, columns: &[&str]) -> Result<Self> {
        let io = |error| Error::Io {
            path: path.to_owned(),
            error,
        };
        let file = BufReader::with_capacity(BUFFER, File::open(path).map_err(io)?);
        let source = match Format::of(path)? {
            Format::Ndjson => Source::Ndjson {
                reader: file,
                buf: String::new(),
            },
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(file);
                let headers = reader.headers().map_err(|e| csv_error(path, &e))?.clone();
                if let Some(column) = headers.iter().find(|h| !columns.contains(h)) {
                    return Err(Error::UnknownColumn {
                        path: path.to_owned(),
                        column: column.to_owned(),
                        expected: columns.join(","),
                    });
                }
                Source::Csv {
                    reader,
                    headers,
                    record: csv::StringRecord::new(),
                }
            }
        };
        Ok(Self {
            path: path.to_owned(),
            source,
            line: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of the last line read (the header's, for CSV, before any record).
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next record. Blank NDJSON lines are skipped.
    pub fn next<'s, T>(&'s mut self) -> Result<Read<T>>
    where
        T: Deserialize<'s> + Validate,
    {
        match &mut self.source {
            Source::Ndjson { reader, buf } => loop {
                buf.clear();
                let n = reader.read_line(buf).map_err(|error| Error::Io {
                    path: self.path.clone(),
                    error,
                })?;
                if n == 0 {
                    return Ok(Read::End);
                }
                self.line += 1;
                if buf.trim().is_empty() {
                    continue;
                }
                let line = self.line;
                return Ok(match vigil_schema::from_json::<T>(buf.trim_end()) {
                    Ok(record) => Read::Record(record),
                    Err(e) => Read::Bad(BadRecord {
                        line,
                        message: e.to_string(),
                    }),
                });
            },
            Source::Csv {
                reader,
                headers,
                record,
            } => {
                match reader.read_record(record) {
                    Ok(false) => return Ok(Read::End),
                    Ok(true) => {}
                    Err(e) if e.is_io_error() => return Err(csv_error(&self.path, &e)),
                    Err(e) => {
                        let line = e.position().map_or(self.line + 1, csv::Position::line);
                        self.line = line;
                        return Ok(Read::Bad(BadRecord {
                            line,
                            message: e.to_string(),
                        }));
                    }
                }
                self.line = record.position().map_or(self.line + 1, csv::Position::line);
                let line = self.line;
                let parsed = record
                    .deserialize::<T>(Some(headers))
                    .map_err(|e| csv_field_error(headers, &e));
                Ok(
                    match parsed.and_then(|r| r.validate().map(|()| r).map_err(|e| e.to_string())) {
                        Ok(r) => Read::Record(r),
                        Err(message) => Read::Bad(BadRecord { line, message }),
                    },
                )
            }
        }
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> Error {
    Error::Csv {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A CSV deserialization error, naming the column like the JSON errors name the field.
fn csv_field_error(headers: &csv::StringRecord, e: &csv::Error) -> String {
    if let csv::ErrorKind::Deserialize { err, .. } = e.kind() {
        let message = err.kind().to_string();
        return match err.field().and_then(|i| headers.get(i as usize)) {
            Some(column) => format!("field `{column}`: {message}"),
            None => message,
        };
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use vigil_schema::{Label, Transaction};

    fn file(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (dir, path)
    }

    /// Reads every record, returning the ids read and the bad lines.
    fn read_all(path: &Path) -> (Vec<String>, Vec<BadRecord>) {
        let mut reader = RecordReader::open(path, &Transaction::FIELDS).unwrap();
        let (mut ids, mut bad) = (vec![], vec![]);
        loop {
            match reader.next::<Transaction>().unwrap() {
                Read::Record(tx) => ids.push(tx.transaction_id.to_string()),
                Read::Bad(b) => bad.push(b),
                Read::End => return (ids, bad),
            }
        }
    }

    #[test]
    fn ndjson_reports_bad_lines_by_number_and_goes_on() {
        let text = concat!(
            r#"{"transaction_id":"a","occurred_at":"2026-01-01T00:00:00Z","card_id":"c","merchant_id":"m","amount_minor":1,"currency":"USD"}"#,
            "\n",
            "\n",
            r#"{"transaction_id":"b","occurred_at":"2026-01-01T00:00:00Z","card_id":"c","merchant_id":"m","amount_minor":-1,"currency":"USD"}"#,
            "\n",
            "not json\n",
            r#"{"transaction_id":"c","occurred_at":"2026-01-01T00:00:00Z","card_id":"c","merchant_id":"m","amount_minor":2,"currency":"USD"}"#,
            "\n",
        );
        let (_dir, path) = file("tx.ndjson", text);
        let (ids, bad) = read_all(&path);
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [3, 4]);
        assert!(
            bad[0].message.starts_with("field `amount_minor`"),
            "{}",
            bad[0].message
        );
    }

    #[test]
    fn csv_reads_the_same_contract() {
        let text = "transaction_id,occurred_at,card_id,merchant_id,amount_minor,currency,lat,lon,channel\n\
                    a,2026-01-01T00:00:00Z,c,m,100,USD,,,\n\
                    b,2026-01-01T00:00:00Z,c,m,lots,USD,,,\n\
                    c,2026-01-01T00:00:00Z,c,m,100,USD,48.1,11.5,pos\n\
                    d,2026-01-01T00:00:00Z,c,m,100,USD,48.1,,pos\n";
        let (_dir, path) = file("tx.csv", text);
        let (ids, bad) = read_all(&path);
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [3, 5]);
        assert!(
            bad[0].message.starts_with("field `amount_minor`"),
            "{}",
            bad[0].message
        );
        assert!(bad[1].message.contains("lon"), "{}", bad[1].message);
    }

    #[test]
    fn csv_with_an_unknown_column_is_refused_at_open() {
        let (_dir, path) = file(
            "labels.csv",
            "transaction_id,is_fraud,labelled_at,source,verdict\n",
        );
        let err = RecordReader::open(&path, &Label::FIELDS).unwrap_err();
        assert!(
            err.to_string().contains("unknown column `verdict`"),
            "{err}"
        );
        let (_dir, path) = file("labels.txt", "");
        assert!(RecordReader::open(&path, &Label::FIELDS).is_err());
    }
}
