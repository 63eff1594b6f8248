//! A serde `Deserializer` over the located YAML tree.
//!
//! Every error carries the location and the config path (`streams[0].sink`) of the node it is
//! about. Unknown keys of structs do not stop deserialization: they are collected on the side
//! (with a "did you mean" and a hint for mis-indented blocks) so one pass reports all of them.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use super::error::{ConfigError, Location, did_you_mean};
use super::spanned::SPANNED_MARKER;
use super::yaml::{Node, NodeKind, Resolved, Scalar};

/// Deserializes `T` from `node`; unknown-key errors go to `side_errors`, the first other
/// error is returned.
pub fn from_node<'a, T: serde::Deserialize<'a>>(
    node: &'a Node,
    path: &ConfigPath,
    side_errors: &'a RefCell<Vec<ConfigError>>,
) -> Result<T, ConfigError> {
    let de = NodeDeserializer {
        node,
        path: path.clone(),
        side_errors,
    };
    T::deserialize(de).map_err(|e| ConfigError::new(e.location, e.message_with_path()))
}

/// A path into the config, `streams[0].transforms[2].cast`, for error messages.
#[derive(Clone, Default)]
pub struct ConfigPath(Option<Rc<PathSegment>>);

struct PathSegment {
    parent: ConfigPath,
    segment: Segment,
}

enum Segment {
    Key(String),
    Index(usize),
}

impl ConfigPath {
    pub fn root() -> Self {
        ConfigPath(None)
    }

    pub fn key(&self, key: &str) -> Self {
        ConfigPath(Some(Rc::new(PathSegment {
            parent: self.clone(),
            segment: Segment::Key(key.to_string()),
        })))
    }

    pub fn index(&self, i: usize) -> Self {
        ConfigPath(Some(Rc::new(PathSegment {
            parent: self.clone(),
            segment: Segment::Index(i),
        })))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_none()
    }

    fn last_key(&self) -> Option<&str> {
        match self.0.as_deref() {
            Some(PathSegment {
                segment: Segment::Key(k),
                ..
            }) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(seg) = &self.0 else { return Ok(()) };
        seg.parent.fmt(f)?;
        match &seg.segment {
            Segment::Key(k) if seg.parent.is_root() => write!(f, "{k}"),
            Segment::Key(k) => write!(f, ".{k}"),
            Segment::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A deserialization error with the place it is about.
#[derive(Debug)]
pub struct DeError {
    message: String,
    location: Location,
    path: Option<String>,
}

impl DeError {
    fn message_with_path(&self) -> String {
        match &self.path {
            Some(p) if !p.is_empty() => format!("{p}: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message_with_path())
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            message: msg.to_string(),
            location: Location::UNKNOWN,
            path: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!(
            "unknown kind `{variant}`, expected one of {}",
            list(expected)
        );
        if let Some(s) = did_you_mean(variant, expected.iter().copied()) {
            message = format!(
                "unknown kind `{variant}`: did you mean `{s}`? (expected one of {})",
                list(expected)
            );
        }
        de::Error::custom(message)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(unknown_field_message(field, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing field `{field}`"))
    }
}

fn list(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("`{w}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    match did_you_mean(field, expected.iter().copied()) {
        Some(s) => format!("unknown field `{field}`: did you mean `{s}`?"),
        None if expected.is_empty() => {
            format!("unknown field `{field}`: no fields are allowed here")
        }
        None => format!(
            "unknown field `{field}`, expected one of {}",
            list(expected)
        ),
    }
}

pub struct NodeDeserializer<'a> {
    node: &'a Node,
    path: ConfigPath,
    side_errors: &'a RefCell<Vec<ConfigError>>,
}

impl<'a> NodeDeserializer<'a> {
    fn child(&self, node: &'a Node, path: ConfigPath) -> NodeDeserializer<'a> {
        NodeDeserializer {
            node,
            path,
            side_errors: self.side_errors,
        }
    }

    /// Attaches this node's location and path to an error that has none yet, and hides
    /// interpolated values (they may be secrets).
    fn locate<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|mut e| {
            if !e.location.is_known() {
                e.location = self.node.location;
                e.path = Some(self.path.to_string());
                if let NodeKind::Scalar(s) = &self.node.kind
                    && !self.node.interpolated.is_empty()
                    && !s.text.is_empty()
                {
                    let hidden =
                        format!("<value of ${{{}}}>", self.node.interpolated.join("}, ${"));
                    e.message = e.message.replace(&s.text, &hidden);
                }
            }
            e
        })
    }

    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.node.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    fn invalid_type(&self, expected: &str) -> DeError {
        let mut message = format!("expected {expected}, found {}", self.node.describe());
        if self.node.is_null()
            && let Some(key) = self.path.last_key()
        {
            message = format!(
                "`{key}` is empty: expected {expected} (is the block meant for it indented under it?)"
            );
        }
        de::Error::custom(message)
    }

    fn visit_resolved<V: Visitor<'a>>(&self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.kind {
            NodeKind::Scalar(s) => match s.resolve() {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Int(i) => visitor.visit_i64(i),
                Resolved::UInt(u) => visitor.visit_u64(u),
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str(t) => visitor.visit_str(t),
            },
            NodeKind::Seq(items) => visitor.visit_seq(SeqDeserializer {
                de: self,
                items: items.iter(),
                index: 0,
            }),
            NodeKind::Map(entries) => {
                let entries: Vec<&(Node, Node)> = entries.iter().collect();
                visitor.visit_map(MapDeserializer {
                    de: self,
                    entries: entries.into_iter(),
                    value: None,
                })
            }
        }
    }

    fn number<V: Visitor<'a>>(&self, visitor: V, expected: &str) -> Result<V::Value, DeError> {
        match self.scalar().map(|s| s.resolve()) {
            Some(Resolved::Int(i)) => visitor.visit_i64(i),
            Some(Resolved::UInt(u)) => visitor.visit_u64(u),
            Some(Resolved::Float(f)) => visitor.visit_f64(f),
            _ => Err(self.invalid_type(expected)),
        }
    }

    /// Reports keys of `entries` that are not in `fields`, with hints; returns the others.
    fn known_entries(
        &self,
        entries: &'a [(Node, Node)],
        fields: &'static [&'static str],
    ) -> Vec<&'a (Node, Node)> {
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = entry.0.as_str().unwrap_or_default();
            if fields.contains(&key) {
                known.push(entry);
                continue;
            }
            let mut message = unknown_field_message(key, fields);
            let mut explains = None;
            // A key that belongs one level down usually means the block above it lost its
            // indentation: `sink:` empty, then `parquet:` at the same level. This error then
            // also explains why `sink` is empty.
            if let Some((empty_key, empty_value)) = entries.iter().find(|(k, v)| {
                v.is_null()
                    && k.location.line < entry.0.location.line
                    && fields.contains(&k.as_str().unwrap_or_default())
            }) {
                message.push_str(&format!(
                    " (is it meant to be indented under `{}` on line {}?)",
                    empty_key.as_str().unwrap_or_default(),
                    empty_key.location.line
                ));
                explains = Some(empty_value.location);
            }
            let path = self.path.key(key).to_string();
            let mut error = ConfigError::new(entry.0.location, format!("{path}: {message}"));
            error.explains = explains;
            self.side_errors.borrow_mut().push(error);
        }
        known
    }
}

macro_rules! forward_number {
    ($($method:ident => $expected:literal),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let r = self.number(visitor, $expected);
                self.locate(r)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = self.visit_resolved(visitor);
        self.locate(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.scalar().map(|s| s.resolve()) {
            Some(Resolved::Bool(b)) => visitor.visit_bool(b),
            _ => Err(self.invalid_type("`true` or `false`")),
        };
        self.locate(r)
    }

    forward_number! {
        deserialize_i8 => "an integer", deserialize_i16 => "an integer", deserialize_i32 => "an integer",
        deserialize_i64 => "an integer", deserialize_i128 => "an integer", deserialize_u8 => "a whole number",
        deserialize_u16 => "a whole number", deserialize_u32 => "a whole number", deserialize_u64 => "a whole number",
        deserialize_u128 => "a whole number", deserialize_f32 => "a number", deserialize_f64 => "a number",
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.scalar() {
            Some(s) if !(s.plain && s.resolve() == Resolved::Null) => visitor.visit_str(&s.text),
            _ => Err(self.invalid_type("a string")),
        };
        self.locate(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = if self.node.is_null() {
            visitor.visit_unit()
        } else {
            Err(self.invalid_type("null"))
        };
        self.locate(r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED_MARKER {
            let (text_start, verbatim) = match self.scalar() {
                Some(s) => (s.text_start, s.verbatim),
                None => (self.node.location, false),
            };
            let l = self.node.location;
            let numbers = [
                l.line,
                l.column,
                text_start.line,
                text_start.column,
                u32::from(verbatim),
            ];
            let r = visitor.visit_seq(SpannedSeq {
                numbers: numbers.into_iter(),
                value: Some(self.child(self.node, self.path.clone())),
            });
            return self.locate(r);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqDeserializer {
                de: &self,
                items: items.iter(),
                index: 0,
            }),
            _ => Err(self.invalid_type("a list")),
        };
        self.locate(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Map(entries) => {
                let entries: Vec<&(Node, Node)> = entries.iter().collect();
                visitor.visit_map(MapDeserializer {
                    de: &self,
                    entries: entries.into_iter(),
                    value: None,
                })
            }
            _ => Err(self.invalid_type("a mapping")),
        };
        self.locate(r)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Map(entries) => {
                let known = self.known_entries(entries, fields);
                visitor.visit_map(MapDeserializer {
                    de: &self,
                    entries: known.into_iter(),
                    value: None,
                })
            }
            _ => Err(self.invalid_type(&format!("a mapping with {}", list(fields)))),
        };
        self.locate(r)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            NodeKind::Scalar(s) if !self.node.is_null() => visitor.visit_enum(EnumDeserializer {
                de: &self,
                key: self.node,
                key_text: &s.text,
                value: None,
            }),
            NodeKind::Map(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor.visit_enum(EnumDeserializer {
                    de: &self,
                    key,
                    key_text: key.as_str().unwrap_or_default(),
                    value: Some(value),
                })
            }
            NodeKind::Map(entries) if !entries.is_empty() => Err(de::Error::custom(format!(
                "expected exactly one of {}, found {} keys: {}",
                list(variants),
                entries.len(),
                list(
                    &entries
                        .iter()
                        .map(|(k, _)| k.as_str().unwrap_or_default())
                        .collect::<Vec<_>>()
                )
            ))),
            _ => Err(self.invalid_type(&format!("one of {}", list(variants)))),
        };
        self.locate(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SpannedSeq<'a, I> {
    numbers: I,
    value: Option<NodeDeserializer<'a>>,
}

impl<'de, I: Iterator<Item = u32>> SeqAccess<'de> for SpannedSeq<'de, I> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if let Some(n) = self.numbers.next() {
            return seed.deserialize(n.into_deserializer()).map(Some);
        }
        match self.value.take() {
            Some(de) => seed.deserialize(de).map(Some),
            None => Ok(None),
        }
    }
}

struct SeqDeserializer<'a, 'b> {
    de: &'b NodeDeserializer<'a>,
    items: std::slice::Iter<'a, Node>,
    index: usize,
}

impl<'de> SeqAccess<'de> for SeqDeserializer<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => {
                let path = self.de.path.index(self.index);
                self.index += 1;
                // An error the element's own `Deserialize` raises after reading it (a value
                // out of its range) is about the element.
                let r = seed.deserialize(self.de.child(node, path.clone()));
                self.de.child(node, path).locate(r).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDeserializer<'a, 'b> {
    de: &'b NodeDeserializer<'a>,
    entries: std::vec::IntoIter<&'a (Node, Node)>,
    value: Option<(&'a Node, ConfigPath)>,
}

impl<'de> MapAccess<'de> for MapDeserializer<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                let path = self.de.path.key(key.as_str().unwrap_or_default());
                self.value = Some((value, path.clone()));
                seed.deserialize(self.de.child(key, path)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (node, path) = self
            .value
            .take()
            .expect("next_value_seed follows next_key_seed");
        // An error the value's own `Deserialize` raises after reading it (`delimiter: ";;"`)
        // is about the value, not the mapping.
        let r = seed.deserialize(self.de.child(node, path.clone()));
        self.de.child(node, path).locate(r)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct EnumDeserializer<'a, 'b> {
    de: &'b NodeDeserializer<'a>,
    key: &'a Node,
    key_text: &'a str,
    value: Option<&'a Node>,
}

impl<'de, 'b> EnumAccess<'de> for EnumDeserializer<'de, 'b> {
    type Error = DeError;
    type Variant = VariantDeserializer<'de, 'b>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let path = self.de.path.key(self.key_text);
        let key_de = self.de.child(self.key, path.clone());
        let variant = seed.deserialize(key_de.key_text_deserializer(self.key_text));
        let variant = key_de.locate(variant)?;
        Ok((
            variant,
            VariantDeserializer {
                de: self.de,
                value: self.value,
                path,
            },
        ))
    }
}

impl<'a> NodeDeserializer<'a> {
    fn key_text_deserializer(
        &self,
        text: &'a str,
    ) -> de::value::BorrowedStrDeserializer<'a, DeError> {
        de::value::BorrowedStrDeserializer::new(text)
    }
}

struct VariantDeserializer<'a, 'b> {
    de: &'b NodeDeserializer<'a>,
    value: Option<&'a Node>,
    path: ConfigPath,
}

impl<'de> VariantAccess<'de> for VariantDeserializer<'de, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(node) if node.is_null() => Ok(()),
            Some(node) => {
                let child = self.de.child(node, self.path);
                let e = child.invalid_type("nothing");
                child.locate(Err(e))
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(node) => seed.deserialize(self.de.child(node, self.path)),
            None => {
                let e = self.de.invalid_type("a mapping");
                self.de.locate(Err(e))
            }
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => self.de.child(node, self.path).deserialize_seq(visitor),
            None => {
                let e = self.de.invalid_type("a list");
                self.de.locate(Err(e))
            }
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => self
                .de
                .child(node, self.path)
                .deserialize_struct("", fields, visitor),
            None => {
                let e = self.de.invalid_type("a mapping");
                self.de.locate(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::spanned::Spanned;
    use super::super::yaml;
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        count: Option<u32>,
        inner: Inner,
        kind: Kind,
        tag: Spanned<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        path: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Csv { path: String },
        Stdin,
    }

    fn load<T: for<'de> Deserialize<'de>>(
        text: &str,
    ) -> (Result<T, ConfigError>, Vec<ConfigError>) {
        let node = yaml::parse(text).unwrap();
        let side = RefCell::new(Vec::new());
        let r = from_node::<T>(&node, &ConfigPath::root(), &side);
        (r, side.into_inner())
    }

    #[test]
    fn deserializes_structs_enums_and_spans() {
        let (r, side) =
            load::<Outer>("name: x\ninner: {path: a}\nkind: {csv: {path: b}}\ntag: 'hello'\n");
        let o = r.unwrap();
        assert!(side.is_empty());
        assert_eq!(o.kind, Kind::Csv { path: "b".into() });
        assert_eq!(o.tag.span.location, Location { line: 4, column: 6 });
        assert_eq!(o.tag.span.text_start, Location { line: 4, column: 7 });
        assert!(o.tag.span.verbatim);
        let (r, _) = load::<Outer>("name: 5\ninner: {path: a}\nkind: stdin\ntag: t\n");
        assert_eq!(r.unwrap().name, "5");
    }

    #[test]
    fn collects_every_unknown_field_with_suggestions() {
        let (r, side) =
            load::<Outer>("name: x\nnmae: y\ninner: {path: a, paht: b}\nkind: stdin\ntag: t\n");
        assert!(r.is_ok());
        let msgs: Vec<_> = side
            .iter()
            .map(|e| (e.location.line, e.message.clone()))
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0].0, 2);
        assert!(
            msgs[0]
                .1
                .contains("nmae: unknown field `nmae`: did you mean `name`?"),
            "{msgs:?}"
        );
        assert!(
            msgs[1]
                .1
                .starts_with("inner.paht: unknown field `paht`: did you mean `path`?"),
            "{msgs:?}"
        );
    }

    #[test]
    fn type_errors_point_at_the_node_and_name_the_path() {
        let (r, _) = load::<Outer>("name: x\ncount: many\ninner: {path: a}\nkind: stdin\ntag: t\n");
        let e = r.unwrap_err();
        assert_eq!(e.location, Location { line: 2, column: 8 });
        assert_eq!(
            e.message,
            "count: expected a whole number, found string \"many\""
        );
    }

    #[test]
    fn unknown_enum_kinds_suggest_the_closest() {
        let (r, _) = load::<Outer>("name: x\ninner: {path: a}\nkind:\n  cvs: {path: b}\ntag: t\n");
        let e = r.unwrap_err();
        assert_eq!(e.location, Location { line: 4, column: 3 });
        assert!(
            e.message
                .contains("unknown kind `cvs`: did you mean `csv`?"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_lost_indentation_is_pointed_out() {
        let (r, side) = load::<Outer>("name: x\ninner:\npath: a\nkind: stdin\ntag: t\n");
        assert_eq!(side.len(), 1);
        assert!(
            side[0].message.contains("indented under `inner` on line 2"),
            "{}",
            side[0].message
        );
        let e = r.unwrap_err();
        assert_eq!(e.location.line, 2);
        assert!(e.message.contains("`inner` is empty"), "{}", e.message);
    }

    #[test]
    fn missing_fields_point_at_the_mapping() {
        let (r, _) = load::<Outer>("name: x\ninner:\n  other: 1\nkind: stdin\ntag: t\n");
        let e = r.unwrap_err();
        assert_eq!(e.location.line, 3);
        assert_eq!(e.message, "inner: missing field `path`");
    }

    #[test]
    fn interpolated_values_are_not_printed() {
        let mut node = yaml::parse("count: ${SECRET}\n").unwrap();
        let env = |n: &str| (n == "SECRET").then(|| "sk-live-123".to_string());
        assert!(super::super::interpolate::interpolate_tree(&mut node, &env).is_empty());
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct C {
            count: u32,
        }
        let side = RefCell::new(Vec::new());
        let e = from_node::<C>(&node, &ConfigPath::root(), &side).unwrap_err();
        assert!(!e.message.contains("sk-live"), "{}", e.message);
        assert!(e.message.contains("${SECRET}"), "{}", e.message);
    }
}
