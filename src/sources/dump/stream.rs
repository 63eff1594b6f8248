//! A dump file that is one JSON document (an API page such as `{"audits": [...]}`, or a
//! top-level array), read element by element so that memory stays flat whatever its size.
//!
//! serde_json parses the file in a thread; a [`Visitor`] walks the page and hands each
//! element of its arrays, as soon as it is parsed, through a bounded channel to the source's
//! iterator. Each element comes as a page of one: the page's other members (`next_page`,
//! `ticket`, `field_headers`, `type`...) with the array holding that element alone, so dump
//! readers see the shapes they know. A first pass, which keeps no array element, reads
//! those members wherever they stand, tells a page (no `id`) from a record that is one
//! document (held whole, like a line), and finds a file that is not JSON before any of its
//! records is read. Each element carries the line its value starts on.

use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{Document, Item, LineDocuments};
use crate::error::{Error, Result};
use crate::sources::files;

/// Elements parsed ahead of the reader.
const ELEMENTS_IN_FLIGHT: usize = 64;

/// The items of `path`, a file holding one JSON document (then, if more follows, JSON
/// lines), parsed in a thread.
pub fn stream_document(path: &Path, counter: Arc<AtomicU64>) -> StreamedDocument {
    let (tx, rx) = sync_channel(ELEMENTS_IN_FLIGHT);
    let path = path.to_path_buf();
    let name = files::display_name(&path);
    let thread = std::thread::Builder::new()
        .name("read-json".into())
        .spawn(move || {
            if let Err(e) = read_document(&path, counter, &tx) {
                let _ = tx.send(Err(e));
            }
        });
    match thread {
        Ok(thread) => StreamedDocument {
            rx,
            thread: Some(thread),
            name,
            error: None,
        },
        Err(e) => StreamedDocument {
            rx,
            thread: None,
            name: name.clone(),
            error: Some(Error::input(
                name.to_string(),
                format!("cannot start a reader thread: {e}"),
            )),
        },
    }
}

/// The items a [`stream_document`] thread sends; a panic of the thread is an error.
pub struct StreamedDocument {
    rx: Receiver<Item>,
    thread: Option<JoinHandle<()>>,
    name: Arc<str>,
    error: Option<Error>,
}

impl Iterator for StreamedDocument {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        match self.rx.recv() {
            Ok(item) => Some(item),
            Err(_) => {
                let thread = self.thread.take()?;
                match thread.join() {
                    Ok(()) => None,
                    Err(_) => Some(Err(Error::input(
                        self.name.to_string(),
                        "the JSON reader stopped unexpectedly (a panic)",
                    ))),
                }
            }
        }
    }
}

/// The thread: the first pass, then the document's elements (or the document whole), then
/// JSON lines for whatever follows.
fn read_document(path: &Path, counter: Arc<AtomicU64>, tx: &SyncSender<Item>) -> Result<()> {
    let name = files::display_name(path);
    let located = |line: u64, e: &dyn std::fmt::Display| {
        Error::input(
            format!("{name}:{line}"),
            format!("not JSON nor JSON lines: {e}"),
        )
    };

    // First pass: what the document is, without keeping its arrays' elements.
    let mut scan = LineCounter::new(files::open(path, Arc::new(AtomicU64::new(0)))?);
    let start = scan
        .skip_whitespace()
        .map_err(|e| Error::input(name.to_string(), e))?;
    let shape = {
        let mut de = serde_json::Deserializer::from_reader(&mut scan);
        Shape::deserialize(&mut de).map_err(|e| located(e.line() as u64, &e))?
    };
    drop(scan);

    let mut input = LineCounter::new(files::open(path, counter)?);
    input
        .skip_whitespace()
        .map_err(|e| Error::input(name.to_string(), e))?;
    let line = input.line.clone();
    let hung_up = Cell::new(false);
    let send = |item: Item| {
        let sent = tx.send(item).is_ok();
        hung_up.set(!sent);
        sent
    };
    let mut de = serde_json::Deserializer::from_reader(&mut input);
    let read = match shape {
        Shape::Array => de.deserialize_seq(Elements {
            page: None,
            line: &line,
            send: &send,
        }),
        Shape::Object(head) if head.is_page() => de.deserialize_map(Page {
            head: &head,
            line: &line,
            send: &send,
        }),
        Shape::Object(_) => Value::deserialize(&mut de).map(|value| {
            send(Ok(Ok(Document { value, line: start })));
        }),
    };
    drop(de);
    if hung_up.get() {
        return Ok(());
    }
    read.map_err(|e| located(e.line() as u64, &e))?;
    // Anything after the document: newline-delimited JSON (a JSON-lines file whose first
    // line was too long to tell it by).
    let next_line = input.line.get();
    for item in LineDocuments::new(input, next_line - 1) {
        if !send(item) {
            break;
        }
    }
    Ok(())
}

/// What the first pass finds.
enum Shape {
    /// A top-level array.
    Array,
    /// A top-level object.
    Object(Head),
}

/// A top-level object's members, but its arrays, of which it keeps the keys and lengths.
#[derive(Default)]
struct Head {
    members: Map<String, Value>,
    arrays: Vec<(String, u64)>,
}

impl Head {
    /// A page (no `id` of its own, an array with elements) is read element by element; a
    /// record is read whole.
    fn is_page(&self) -> bool {
        !self.members.contains_key("id") && self.arrays.iter().any(|(_, n)| *n > 0)
    }

    fn is_array(&self, key: &str) -> bool {
        self.arrays.iter().any(|(k, _)| k == key)
    }

    /// A page of one: the page's members and `key: [element]`.
    fn page_of(&self, key: &str, element: Value) -> Value {
        let mut page = self.members.clone();
        page.insert(key.to_string(), Value::Array(vec![element]));
        Value::Object(page)
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Shape, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Shape, A::Error> {
        skip_elements(seq).map(|_| Shape::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Shape, A::Error> {
        let mut head = Head::default();
        while let Some(key) = map.next_key::<String>()? {
            match map.next_value::<Member>()? {
                Member::Array(n) => head.arrays.push((key, n)),
                Member::Value(v) => {
                    head.members.insert(key, v);
                }
            }
        }
        Ok(Shape::Object(head))
    }
}

/// Reads an array through, keeping nothing; its length.
fn skip_elements<'de, A: SeqAccess<'de>>(mut seq: A) -> std::result::Result<u64, A::Error> {
    let mut n = 0;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// A member of a top-level object in the first pass: an array's length, or the value.
enum Member {
    Array(u64),
    Value(Value),
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Member, D::Error> {
        d.deserialize_any(MemberVisitor)
    }
}

struct MemberVisitor;

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Member;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> std::result::Result<Member, A::Error> {
        skip_elements(seq).map(Member::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Member, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Member::Value)
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Member, E> {
        Ok(Member::Value(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Member, E> {
        Ok(Member::Value(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Member, E> {
        Ok(Member::Value(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Member, E> {
        Ok(Member::Value(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Member, E> {
        Ok(Member::Value(Value::String(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Member, E> {
        Ok(Member::Value(Value::String(v)))
    }

    fn visit_unit<E>(self) -> std::result::Result<Member, E> {
        Ok(Member::Value(Value::Null))
    }
}

/// The second pass over a page: its arrays' elements, each sent as a page of one.
struct Page<'a> {
    head: &'a Head,
    line: &'a Rc<Cell<u64>>,
    send: &'a dyn Fn(Item) -> bool,
}

impl<'de> Visitor<'de> for Page<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if self.head.is_array(&key) {
                map.next_value_seed(Elements {
                    page: Some((self.head, &key)),
                    line: self.line,
                    send: self.send,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// An array whose elements are sent one by one: as pages of one of `page`, or for a
/// top-level array as arrays of one.
struct Elements<'a> {
    page: Option<(&'a Head, &'a str)>,
    line: &'a Rc<Cell<u64>>,
    send: &'a dyn Fn(Item) -> bool,
}

impl<'de> DeserializeSeed<'de> for Elements<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while let Some((line, element)) = seq.next_element_seed(Element(self.line))? {
            let value = match self.page {
                Some((head, key)) => head.page_of(key, element),
                None => Value::Array(vec![element]),
            };
            if !(self.send)(Ok(Ok(Document { value, line }))) {
                return Err(de::Error::custom("the reader stopped"));
            }
        }
        Ok(())
    }
}

/// One element, with the line it starts on: the parser has just looked at its first
/// character when it asks for the element, so the lines passed are the lines before it.
struct Element<'a>(&'a Rc<Cell<u64>>);

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = (u64, Value);

    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<(u64, Value), D::Error> {
        let line = self.0.get();
        Value::deserialize(d).map(|v| (line, v))
    }
}

/// A buffered reader that knows the line of the next byte it gives. serde_json reads a
/// byte at a time, so the buffer is its own and the count is exact.
pub struct LineCounter<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    /// The 1-based line of the next byte.
    pub line: Rc<Cell<u64>>,
}

impl<R: Read> LineCounter<R> {
    pub fn new(inner: R) -> LineCounter<R> {
        LineCounter {
            inner,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            pos: 0,
            len: 0,
            line: Rc::new(Cell::new(1)),
        }
    }

    fn refill(&mut self) -> std::io::Result<bool> {
        if self.pos == self.len {
            self.len = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
            self.pos = 0;
        }
        Ok(self.len > 0)
    }

    /// Skips a byte-order mark and whitespace; returns the line of the first other byte.
    pub fn skip_whitespace(&mut self) -> std::io::Result<u64> {
        let mut first = true;
        while self.refill()? {
            if first && self.buf[self.pos..self.len].starts_with(b"\xef\xbb\xbf") {
                self.pos += 3;
            }
            first = false;
            let rest = &self.buf[self.pos..self.len];
            match rest.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    self.count(self.pos, self.pos + i);
                    self.pos += i;
                    break;
                }
                None => {
                    self.count(self.pos, self.len);
                    self.pos = self.len;
                }
            }
        }
        Ok(self.line.get())
    }

    fn count(&self, from: usize, to: usize) {
        let newlines = self.buf[from..to].iter().filter(|b| **b == b'\n').count();
        self.line.set(self.line.get() + newlines as u64);
    }
}

impl<R: Read> Read for LineCounter<R> {
    #[inline]
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if !self.refill()? {
            return Ok(0);
        }
        // serde_json asks for one byte at a time.
        if let [one] = out {
            *one = self.buf[self.pos];
            self.pos += 1;
            if *one == b'\n' {
                self.line.set(self.line.get() + 1);
            }
            return Ok(1);
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.count(self.pos, self.pos + n);
        self.pos += n;
        Ok(n)
    }
}

impl<R: Read> std::io::BufRead for LineCounter<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.refill()?;
        Ok(&self.buf[self.pos..self.len])
    }

    fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.len - self.pos);
        self.count(self.pos, self.pos + amt);
        self.pos += amt;
    }
}
