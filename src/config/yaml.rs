//! A YAML document as a tree of located nodes.
//!
//! Pipelines are deserialized from this tree rather than straight from text so that every
//! error can point at the line and column of the node it is about, several errors can be
//! collected from one file, and `${VAR}` interpolation can happen per scalar before types
//! are resolved (so `requests_per_minute: ${RPM:-1000}` is still a number).

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span as ParserSpan};

use super::error::{ConfigError, Location};

/// One node of a YAML document with the place it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub location: Location,
    /// Names of the environment variables whose values went into this scalar. Errors about
    /// such a node never print its value, which may be a secret.
    pub interpolated: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Plain scalars are resolved by the YAML 1.2 core schema (`true`, `12`, `null`...);
    /// quoted and block scalars are always strings.
    pub plain: bool,
    /// Where the scalar's text starts: after the opening quote for quoted scalars. Used to
    /// point into jq expressions.
    pub text_start: Location,
    /// Whether text offsets map one to one onto source columns (single-line, no escapes).
    pub verbatim: bool,
}

/// What a scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
}

impl Scalar {
    pub fn resolve(&self) -> Resolved<'_> {
        if !self.plain {
            return Resolved::Str(&self.text);
        }
        resolve_plain(&self.text)
    }
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
pub fn resolve_plain(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" => return Resolved::Bool(true),
        "false" | "False" | "FALSE" => return Resolved::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Resolved::Int(i);
        }
        if let Ok(u) = text.trim_start_matches('+').parse::<u64>() {
            return Resolved::UInt(u);
        }
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Resolved::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Resolved::Int(i);
    }
    if looks_like_float(text)
        && let Ok(f) = text.parse::<f64>()
    {
        return Resolved::Float(f);
    }
    Resolved::Str(text)
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn looks_like_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s {
            return false;
        }
    }
    i == b.len()
}

impl Node {
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s) if s.resolve() == Resolved::Null)
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Calls `f` on every scalar that is a value (not a mapping key), depth first.
    pub fn for_each_value_scalar_mut(&mut self, f: &mut impl FnMut(&mut Node)) {
        match &mut self.kind {
            NodeKind::Scalar(_) => f(self),
            NodeKind::Seq(items) => items
                .iter_mut()
                .for_each(|n| n.for_each_value_scalar_mut(f)),
            NodeKind::Map(entries) => entries
                .iter_mut()
                .for_each(|(_, v)| v.for_each_value_scalar_mut(f)),
        }
    }

    /// A short description of the node's kind, for error messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Map(_) => "a mapping".into(),
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Scalar(s) => match s.resolve() {
                Resolved::Null => "null".into(),
                Resolved::Bool(b) => format!("boolean `{b}`"),
                Resolved::Int(_) | Resolved::UInt(_) | Resolved::Float(_)
                    if !self.interpolated.is_empty() =>
                {
                    "a number".into()
                }
                Resolved::Int(i) => format!("integer `{i}`"),
                Resolved::UInt(u) => format!("integer `{u}`"),
                Resolved::Float(f) => format!("number `{f}`"),
                Resolved::Str(_) if !self.interpolated.is_empty() => format!(
                    "the value of ${{{}}} (not shown)",
                    self.interpolated.join("}, ${")
                ),
                Resolved::Str(s) => format!("string {:?}", truncate(s, 60)),
            },
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

fn location_of(span: &ParserSpan) -> Location {
    Location {
        line: span.start.line() as u32,
        column: span.start.col() as u32 + 1,
    }
}

/// Parses one YAML document into a node tree. Anchors and aliases are resolved by copying.
pub fn parse(text: &str) -> Result<Node, ConfigError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = TreeBuilder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        text,
        expanded: Weight::default(),
    };
    let mut documents = 0;
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            ConfigError::new(
                Location {
                    line: m.line() as u32,
                    column: m.col() as u32 + 1,
                },
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(ConfigError::new(
                        location_of(&span),
                        "a pipeline file holds one YAML document; found a second one (`---`)",
                    ));
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let node = builder.scalar(value.into_owned(), style, &span);
                builder.push_node(node, anchor)?;
            }
            Event::SequenceStart(..) | Event::MappingStart(..)
                if builder.stack.len() >= MAX_DEPTH =>
            {
                return Err(ConfigError::new(
                    location_of(&span),
                    format!("lists and mappings nested more than {MAX_DEPTH} deep"),
                ));
            }
            Event::SequenceStart(_, anchor, _) => builder.stack.push(Frame {
                location: location_of(&span),
                anchor,
                kind: FrameKind::Seq(Vec::new()),
            }),
            Event::MappingStart(_, anchor, _) => builder.stack.push(Frame {
                location: location_of(&span),
                anchor,
                kind: FrameKind::Map(Vec::new(), None),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = builder
                    .stack
                    .pop()
                    .expect("parser balances start and end events");
                let kind = match frame.kind {
                    FrameKind::Seq(items) => NodeKind::Seq(items),
                    FrameKind::Map(entries, _) => NodeKind::Map(entries),
                };
                let node = Node {
                    kind,
                    location: frame.location,
                    interpolated: Vec::new(),
                };
                builder.push_node(node, frame.anchor)?;
            }
            Event::Alias(id) => {
                let (node, weight) = builder.anchors.get(&id).cloned().ok_or_else(|| {
                    ConfigError::new(location_of(&span), "alias refers to an unknown anchor")
                })?;
                builder.expanded.nodes += weight.nodes;
                builder.expanded.bytes += weight.bytes;
                if builder.expanded.nodes > MAX_ALIAS_NODES
                    || builder.expanded.bytes > MAX_ALIAS_BYTES
                {
                    return Err(ConfigError::new(
                        location_of(&span),
                        format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} nodes or {} KiB \
                             (an alias bomb?): write the repeated part out or use fewer aliases",
                            MAX_ALIAS_BYTES / 1024
                        ),
                    ));
                }
                builder.push_node(node, 0)?;
            }
            Event::UnresolvedAlias(name) => {
                return Err(ConfigError::new(
                    location_of(&span),
                    format!("alias `*{name}` has no anchor `&{name}` before it"),
                ));
            }
            _ => {}
        }
    }
    Ok(builder.root.unwrap_or(Node {
        kind: NodeKind::Scalar(Scalar {
            text: String::new(),
            plain: true,
            text_start: Location { line: 1, column: 1 },
            verbatim: true,
        }),
        location: Location { line: 1, column: 1 },
        interpolated: Vec::new(),
    }))
}

/// How deep lists and mappings may nest; a pipeline needs a handful of levels, and deeper
/// trees would only risk the stack of the recursive steps after parsing.
pub const MAX_DEPTH: usize = 100;
/// How many nodes aliases may copy in all: a pipeline reuses a few blocks, an alias bomb
/// (aliases of aliases) would copy billions.
pub const MAX_ALIAS_NODES: usize = 10_000;
/// How many bytes of scalar text aliases may copy in all.
pub const MAX_ALIAS_BYTES: usize = 1 << 20;

/// The size of a subtree: its nodes and the bytes of its scalars.
#[derive(Debug, Clone, Copy, Default)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

impl Weight {
    fn of(node: &Node) -> Weight {
        let mut weight = Weight { nodes: 1, bytes: 0 };
        match &node.kind {
            NodeKind::Scalar(s) => weight.bytes = s.text.len(),
            NodeKind::Seq(items) => {
                for item in items {
                    weight.add(Weight::of(item));
                }
            }
            NodeKind::Map(entries) => {
                for (k, v) in entries {
                    weight.add(Weight::of(k));
                    weight.add(Weight::of(v));
                }
            }
        }
        weight
    }

    fn add(&mut self, other: Weight) {
        self.nodes += other.nodes;
        self.bytes += other.bytes;
    }
}

struct Frame {
    location: Location,
    anchor: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    /// Entries so far and a key waiting for its value.
    Map(Vec<(Node, Node)>, Option<Node>),
}

struct TreeBuilder<'t> {
    stack: Vec<Frame>,
    /// Anchored nodes with their weight, copied by aliases.
    anchors: HashMap<usize, (Node, Weight)>,
    root: Option<Node>,
    text: &'t str,
    /// What aliases copied so far.
    expanded: Weight,
}

impl TreeBuilder<'_> {
    fn scalar(&self, text: String, style: ScalarStyle, span: &ParserSpan) -> Node {
        let location = location_of(span);
        let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
        let text_start = if quoted {
            Location {
                line: location.line,
                column: location.column + 1,
            }
        } else {
            location
        };
        // The text maps column for column onto the source when it sits on one line and the
        // source slice between the quotes is exactly the text (no escapes or doubled quotes).
        let verbatim = match (span.start.byte_offset(), span.end.byte_offset()) {
            (Some(start), Some(end)) if span.start.line() == span.end.line() => {
                let source = self.text.get(start..end).unwrap_or("");
                let inner = if quoted && source.len() >= 2 {
                    &source[1..source.len() - 1]
                } else {
                    source
                };
                inner == text
            }
            _ => false,
        };
        Node {
            kind: NodeKind::Scalar(Scalar {
                text,
                plain: matches!(style, ScalarStyle::Plain),
                text_start,
                verbatim,
            }),
            location,
            interpolated: Vec::new(),
        }
    }

    fn push_node(&mut self, node: Node, anchor: usize) -> Result<(), ConfigError> {
        if anchor != 0 {
            self.anchors
                .insert(anchor, (node.clone(), Weight::of(&node)));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame {
                kind: FrameKind::Seq(items),
                ..
            }) => items.push(node),
            Some(Frame {
                kind: FrameKind::Map(entries, pending),
                ..
            }) => match pending.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar(_)) {
                        return Err(ConfigError::new(
                            node.location,
                            "mapping keys must be plain words, not lists or mappings",
                        ));
                    }
                    if let Some((first, _)) =
                        entries.iter().find(|(k, _)| k.as_str() == node.as_str())
                    {
                        return Err(ConfigError::new(
                            node.location,
                            format!(
                                "duplicate key `{}` (first at line {})",
                                node.as_str().unwrap_or_default(),
                                first.location.line
                            ),
                        ));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_nodes_and_resolves_plain_scalars() {
        let text = "a: 1\nb:\n  - 'x'\n  - true\nc: ~\nd: 1.5e3\ne: '12'\n";
        let root = parse(text).unwrap();
        let b = root.get("b").unwrap();
        assert_eq!(b.location.line, 3);
        let items = b.as_seq().unwrap();
        assert_eq!(items[0].location, Location { line: 3, column: 5 });
        match &items[0].kind {
            NodeKind::Scalar(s) => {
                assert_eq!(s.resolve(), Resolved::Str("x"));
                assert_eq!(s.text_start.column, 6);
                assert!(s.verbatim);
            }
            _ => panic!("scalar expected"),
        }
        assert!(root.get("c").unwrap().is_null());
        let scalar = |k: &str| match &root.get(k).unwrap().kind {
            NodeKind::Scalar(s) => s.resolve().clone_static(),
            _ => panic!(),
        };
        assert_eq!(scalar("a"), Resolved::Int(1));
        assert_eq!(scalar("d"), Resolved::Float(1500.0));
        assert_eq!(scalar("e"), Resolved::Str("12"));
    }

    impl Resolved<'_> {
        fn clone_static(&self) -> Resolved<'static> {
            match self {
                Resolved::Str(s) => Resolved::Str(Box::leak(s.to_string().into_boxed_str())),
                Resolved::Null => Resolved::Null,
                Resolved::Bool(b) => Resolved::Bool(*b),
                Resolved::Int(i) => Resolved::Int(*i),
                Resolved::UInt(u) => Resolved::UInt(*u),
                Resolved::Float(f) => Resolved::Float(*f),
            }
        }
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_are_located() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.location, Location { line: 3, column: 1 });
        assert!(err.message.contains("duplicate key `a`"), "{}", err.message);

        let err = parse("a:\n  b: 1\n   c: 2\n").unwrap_err();
        assert_eq!(err.location.line, 3, "{err:?}");
        assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let root = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(
            root.get("other").unwrap().get("x").unwrap().as_str(),
            Some("1")
        );
    }

    /// The billion laughs in YAML: each level aliases the one before nine times.
    fn alias_bomb() -> String {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for pair in names.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let items = vec![format!("*{prev}"); 9].join(",");
            text.push_str(&format!("{next}: &{next} [{items}]\n"));
        }
        text
    }

    #[test]
    fn an_alias_bomb_stops_at_the_alias_that_crosses_the_limit() {
        let text = alias_bomb();
        assert!(text.len() < 512, "{} bytes", text.len());
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{}", err.message);
        assert!(err.location.line >= 4, "{err:?}");
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_located() {
        for depth in [150, 5000] {
            let text = "[".repeat(depth) + &"]".repeat(depth);
            let err = parse(&text).unwrap_err();
            assert!(
                err.message.contains("nested more than") || err.message.contains("recursion"),
                "{}",
                err.message
            );
            assert_eq!(err.location.line, 1);
        }
        assert!(parse(&("[".repeat(50) + &"]".repeat(50))).is_ok());
    }

    #[test]
    fn plain_scalar_resolution_follows_the_core_schema() {
        assert_eq!(resolve_plain("0x1f"), Resolved::Int(31));
        assert_eq!(resolve_plain("-7"), Resolved::Int(-7));
        assert_eq!(resolve_plain("1."), Resolved::Float(1.0));
        assert_eq!(resolve_plain("yes"), Resolved::Str("yes"));
        assert_eq!(resolve_plain("1e"), Resolved::Str("1e"));
        assert_eq!(
            resolve_plain("18446744073709551615"),
            Resolved::UInt(u64::MAX)
        );
        assert_eq!(resolve_plain("2024-01-01"), Resolved::Str("2024-01-01"));
    }
}
