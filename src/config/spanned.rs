//! `Spanned<T>`: a config value together with where it was written, so checks that run after
//! deserialization (jq compilation, stream references) can still point at the right place.

use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::error::Location;

/// The name our YAML deserializer recognises to hand over a node's location.
pub(crate) const SPANNED_MARKER: &str = "$gleap_etl::Spanned";

/// Where a value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// The start of the node.
    pub location: Location,
    /// The start of a scalar's text (after an opening quote).
    pub text_start: Location,
    /// Whether character `i` of the text is at column `text_start.column + i` (a single-line
    /// scalar without escapes), so errors inside the text can be pointed at exactly.
    pub verbatim: bool,
}

impl Span {
    /// The location of character `offset` of a scalar's text, or of the node when the text
    /// does not map column for column onto the source.
    pub fn at_char(&self, offset: usize) -> Location {
        if self.verbatim && self.text_start.is_known() {
            self.text_start.shifted(offset)
        } else {
            self.location
        }
    }
}

/// A value with the place in the pipeline file it came from.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T) -> Self {
        Spanned {
            value,
            span: Span::default(),
        }
    }

    pub fn location(&self) -> Location {
        self.span.location
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }

            // Deserializers other than ours: no location.
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                T::deserialize(d).map(Spanned::new)
            }

            // Ours: line, column, text line, text column, verbatim, value.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut next = || -> Result<u32, A::Error> {
                    seq.next_element::<u32>()?
                        .ok_or_else(|| de::Error::custom("missing span"))
                };
                let location = Location {
                    line: next()?,
                    column: next()?,
                };
                let text_start = Location {
                    line: next()?,
                    column: next()?,
                };
                let verbatim = next()? == 1;
                let value = seq
                    .next_element::<T>()?
                    .ok_or_else(|| de::Error::custom("missing value"))?;
                Ok(Spanned {
                    value,
                    span: Span {
                        location,
                        text_start,
                        verbatim,
                    },
                })
            }
        }

        deserializer.deserialize_newtype_struct(SPANNED_MARKER, SpannedVisitor(PhantomData))
    }
}

impl<T: serde::Serialize> serde::Serialize for Spanned<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }

    fn inline_schema() -> bool {
        T::inline_schema()
    }
}
