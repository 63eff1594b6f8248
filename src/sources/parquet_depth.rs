//! How deep a Parquet file's schema nests, read from its footer before the parquet crate
//! reads it: the crate builds the schema tree recursively without a limit, so a file whose
//! schema nests a thousand levels overflowed the stack and aborted the process.
//!
//! The footer is Thrift (compact protocol); the schema is a flat list of elements in
//! depth-first order, each telling how many children it has. Only that much is decoded;
//! every other field is skipped, without recursion.

use std::io::{Read, Seek, SeekFrom};

use crate::record::MAX_DEPTH;

/// Why a footer is refused (or could not be read here; the parquet crate then says more).
pub type Problem = String;

/// How deep a schema may nest: as deep as a record's values may (a Parquet list takes
/// two schema levels, so about 63 nested lists). The Arrow reader recurses at every level
/// as well: 127 nested lists overflowed a reader thread's stack.
pub const MAX_SCHEMA_DEPTH: usize = MAX_DEPTH;

/// Fails when the schema of the Parquet file nests deeper than [`MAX_SCHEMA_DEPTH`]
/// levels. A footer this check cannot make sense of is left to the parquet crate to report.
pub fn check(file: &mut (impl Read + Seek)) -> Result<(), Problem> {
    let Some(footer) = read_footer(file) else {
        return Ok(());
    };
    match schema_depth(&footer) {
        Some(depth) if depth > MAX_SCHEMA_DEPTH => Err(format!(
            "the schema nests {depth} levels deep, more than the depth limit ({MAX_SCHEMA_DEPTH} levels)"
        )),
        _ => Ok(()),
    }
}

fn read_footer(file: &mut (impl Read + Seek)) -> Option<Vec<u8>> {
    let size = file.seek(SeekFrom::End(0)).ok()?;
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::End(-8)).ok()?;
    file.read_exact(&mut tail).ok()?;
    if &tail[4..] != b"PAR1" {
        return None;
    }
    let len = u64::from(u32::from_le_bytes(tail[..4].try_into().ok()?));
    if len + 8 > size {
        return None;
    }
    file.seek(SeekFrom::End(-8 - len as i64)).ok()?;
    let mut footer = vec![0u8; len as usize];
    file.read_exact(&mut footer).ok()?;
    Some(footer)
}

/// A reader of Thrift's compact protocol, as far as the schema needs.
struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

const STOP: u8 = 0;
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

impl Compact<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn zigzag(&mut self) -> Option<i64> {
        let v = self.varint()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// The next field header of a struct: its id and type, or `None` at the struct's end.
    fn field(&mut self, last_id: &mut i16) -> Option<Option<(i16, u8)>> {
        let header = self.byte()?;
        let kind = header & 0x0f;
        if kind == STOP {
            return Some(None);
        }
        let delta = header >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).ok()?
        } else {
            last_id.checked_add(i16::from(delta))?
        };
        *last_id = id;
        Some(Some((id, kind)))
    }

    /// A list's element type and length.
    fn list(&mut self) -> Option<(u8, u64)> {
        let header = self.byte()?;
        let len = match header >> 4 {
            15 => self.varint()?,
            n => u64::from(n),
        };
        Some((header & 0x0f, len))
    }

    /// Skips a value of type `kind`, nested values included, with a stack of its own.
    fn skip(&mut self, kind: u8) -> Option<()> {
        // What is left to skip: a struct's fields, or n more values of a type.
        enum Pending {
            Struct(i16),
            Values(u8, u64),
        }
        let mut stack = vec![Pending::Values(kind, 1)];
        while let Some(top) = stack.last_mut() {
            let kind = match top {
                Pending::Struct(last_id) => match self.field(last_id)? {
                    None => {
                        stack.pop();
                        continue;
                    }
                    Some((_, kind)) => kind,
                },
                Pending::Values(_, 0) => {
                    stack.pop();
                    continue;
                }
                Pending::Values(kind, n) => {
                    *n -= 1;
                    *kind
                }
            };
            match kind {
                BOOL_TRUE | BOOL_FALSE if matches!(stack.last(), Some(Pending::Struct(_))) => {}
                BOOL_TRUE | BOOL_FALSE | BYTE => {
                    self.byte()?;
                }
                4..=6 => {
                    self.varint()?;
                }
                DOUBLE => self.at = self.at.checked_add(8)?,
                BINARY => {
                    let len = usize::try_from(self.varint()?).ok()?;
                    self.at = self.at.checked_add(len)?;
                }
                LIST | SET => {
                    let (element, len) = self.list()?;
                    stack.push(Pending::Values(element, len));
                }
                // Keys and values alternate, which this skipper does not follow: a
                // non-empty map is given up on (the footer's schema part has none).
                MAP if self.varint()? > 0 => return None,
                MAP => {}
                STRUCT => stack.push(Pending::Struct(0)),
                _ => return None,
            }
            if stack.len() > 64 {
                return None;
            }
        }
        (self.at <= self.bytes.len()).then_some(())
    }
}

/// The depth of the schema in a FileMetaData footer (the root message not counted), or
/// `None` when the footer does not read as expected.
fn schema_depth(footer: &[u8]) -> Option<usize> {
    let mut r = Compact {
        bytes: footer,
        at: 0,
    };
    let mut last_id = 0i16;
    loop {
        let (id, kind) = r.field(&mut last_id)??;
        if id == 2 && kind == LIST {
            break;
        }
        r.skip(kind)?;
    }
    let (element, len) = r.list()?;
    if element != STRUCT {
        return None;
    }
    // Children still to come at each open level.
    let mut open: Vec<u64> = Vec::new();
    let mut deepest = 0usize;
    for _ in 0..len {
        let mut children = 0u64;
        let mut last_id = 0i16;
        while let Some((id, kind)) = r.field(&mut last_id)? {
            if id == 5 && (4..=6).contains(&kind) {
                children = u64::try_from(r.zigzag()?).unwrap_or(0);
            } else {
                r.skip(kind)?;
            }
        }
        deepest = deepest.max(open.len());
        if let Some(left) = open.last_mut() {
            *left = left.saturating_sub(1);
        }
        if children > 0 {
            open.push(children);
        }
        while open.last() == Some(&0) {
            open.pop();
        }
    }
    Some(deepest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;

    /// A Parquet file whose one column sits under `depth` nested groups.
    fn nested_file(depth: usize) -> Vec<u8> {
        // Building and writing a deep schema recurses in the parquet crate: give it room.
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                let mut node = Arc::new(
                    Type::primitive_type_builder("leaf", parquet::basic::Type::INT64)
                        .with_repetition(parquet::basic::Repetition::OPTIONAL)
                        .build()
                        .unwrap(),
                );
                for i in 0..depth {
                    node = Arc::new(
                        Type::group_type_builder(&format!("g{i}"))
                            .with_repetition(parquet::basic::Repetition::OPTIONAL)
                            .with_fields(vec![node])
                            .build()
                            .unwrap(),
                    );
                }
                let schema = Arc::new(
                    Type::group_type_builder("schema")
                        .with_fields(vec![node])
                        .build()
                        .unwrap(),
                );
                let mut out = Vec::new();
                let writer = SerializedFileWriter::new(
                    &mut out,
                    schema,
                    Arc::new(WriterProperties::builder().build()),
                )
                .unwrap();
                writer.close().unwrap();
                out
            })
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn reads_the_depth_of_a_schema_from_the_footer() {
        for depth in [0, 1, 5, 200] {
            let bytes = nested_file(depth);
            let footer = read_footer(&mut std::io::Cursor::new(&bytes)).unwrap();
            assert_eq!(schema_depth(&footer), Some(depth + 1), "{depth}");
        }
    }

    #[test]
    fn refuses_schemas_past_the_depth_limit_and_leaves_odd_files_to_the_crate() {
        let deep = nested_file(5000);
        let err = check(&mut std::io::Cursor::new(&deep)).unwrap_err();
        assert!(err.contains("5001 levels deep"), "{err}");
        assert!(check(&mut std::io::Cursor::new(&nested_file(3))).is_ok());
        assert!(
            check(&mut std::io::Cursor::new(&nested_file(
                MAX_SCHEMA_DEPTH - 1
            )))
            .is_ok()
        );
        assert!(check(&mut std::io::Cursor::new(&nested_file(MAX_SCHEMA_DEPTH))).is_err());
        assert!(check(&mut std::io::Cursor::new(b"not parquet at all")).is_ok());
        let mut cut = nested_file(3);
        cut.drain(4..20);
        assert!(check(&mut std::io::Cursor::new(&cut)).is_ok());
    }
}
