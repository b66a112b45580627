//! The YAML writer of templates.
//!
//! `serde_yaml_ng` writes intrinsic functions as short-form tags, but it quotes strings by YAML
//! 1.2 rules only: `2012-10-17` stays a plain scalar, which YAML 1.1 parsers (PyYAML, used by
//! cfn-lint and the local emulator) read as a date, and so would `yes`, `on` or `1:30`. This
//! writer serializes through serde into a small node tree, then prints it with conservative
//! quoting: a string stays plain only when no YAML 1.1 or 1.2 parser can read it as anything
//! else. Multi-line strings (the state machine definition) become literal blocks, sequences are
//! indented under their key, and intrinsic functions keep their short form (`!Ref X`).

use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

/// A serialized value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in insertion order.
    Map(Vec<(String, Node)>),
    /// A tagged node: an intrinsic function in short form (`!Ref`).
    Tagged(String, Box<Node>),
}

/// Why a value could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct YamlError(String);

impl ser::Error for YamlError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        YamlError(msg.to_string())
    }
}

/// Serializes `value` into a node tree.
pub fn to_node<T: Serialize + ?Sized>(value: &T) -> Result<Node, YamlError> {
    value.serialize(NodeSerializer)
}

/// Serializes `value` as a YAML document.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, YamlError> {
    let node = to_node(value)?;
    let mut out = String::new();
    match &node {
        Node::Map(entries) if !entries.is_empty() => write_map(&mut out, entries, 0),
        Node::Seq(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        other => {
            write_inline(&mut out, other, 0);
            out.push('\n');
        }
    }
    Ok(out)
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

fn write_map(out: &mut String, entries: &[(String, Node)], width: usize) {
    for (key, value) in entries {
        indent(out, width);
        write_scalar_str(out, key, width);
        out.push(':');
        write_after_key(out, value, width);
    }
}

fn write_seq(out: &mut String, items: &[Node], width: usize) {
    for item in items {
        indent(out, width);
        out.push_str("- ");
        write_item(out, item, width + 2);
    }
}

/// Writes a mapping value right after `key:`.
fn write_after_key(out: &mut String, value: &Node, width: usize) {
    match value {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(out, entries, width + 2);
        }
        Node::Seq(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, width + 2);
        }
        Node::Tagged(tag, inner) => {
            let _ = write!(out, " !{tag}");
            write_after_key(out, inner, width);
        }
        scalar => {
            out.push(' ');
            write_inline(out, scalar, width + 2);
            out.push('\n');
        }
    }
}

/// Writes a sequence item right after `- `; `width` is the column of its content.
fn write_item(out: &mut String, item: &Node, width: usize) {
    match item {
        Node::Map(entries) if !entries.is_empty() => {
            let (first_key, first_value) = &entries[0];
            write_scalar_str(out, first_key, width);
            out.push(':');
            write_after_key(out, first_value, width);
            write_map(out, &entries[1..], width);
        }
        Node::Seq(items) if !items.is_empty() => {
            out.push_str("- ");
            write_item(out, &items[0], width + 2);
            for rest in &items[1..] {
                indent(out, width);
                out.push_str("- ");
                write_item(out, rest, width + 2);
            }
        }
        Node::Tagged(tag, inner) => {
            let _ = write!(out, "!{tag}");
            match inner.as_ref() {
                Node::Map(entries) if !entries.is_empty() => {
                    out.push('\n');
                    write_map(out, entries, width);
                }
                Node::Seq(items) if !items.is_empty() => {
                    out.push('\n');
                    write_seq(out, items, width);
                }
                Node::Tagged(..) => {
                    // CloudFormation never nests two short forms directly; keep it valid YAML.
                    out.push(' ');
                    write_item(out, inner, width);
                }
                scalar => {
                    out.push(' ');
                    write_inline(out, scalar, width);
                    out.push('\n');
                }
            }
        }
        scalar => {
            write_inline(out, scalar, width);
            out.push('\n');
        }
    }
}

/// Writes a scalar (or an empty collection) on the current line; block strings continue on the
/// following lines at `width`.
fn write_inline(out: &mut String, node: &Node, width: usize) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Node::UInt(n) => {
            let _ = write!(out, "{n}");
        }
        // Whole floats keep their `.0` so they read back as floats, not integers.
        Node::Float(x) if x.is_finite() && x.fract() == 0.0 => {
            let _ = write!(out, "{x:.1}");
        }
        Node::Float(x) if x.is_finite() => {
            let _ = write!(out, "{x}");
        }
        Node::Float(x) => out.push_str(if x.is_nan() {
            ".nan"
        } else if *x > 0.0 {
            ".inf"
        } else {
            "-.inf"
        }),
        Node::Str(s) => write_scalar_str(out, s, width),
        Node::Seq(_) => out.push_str("[]"),
        Node::Map(_) => out.push_str("{}"),
        Node::Tagged(tag, inner) => {
            let _ = write!(out, "!{tag} ");
            write_inline(out, inner, width);
        }
    }
}

fn write_scalar_str(out: &mut String, s: &str, width: usize) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if s.contains('\n') && can_be_literal_block(s) {
        out.push_str("|-");
        for line in s.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                indent(out, width);
                out.push_str(line);
            }
        }
    } else if s.chars().all(|c| !c.is_control()) {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
    } else {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Whether `s` reads back as the same string in every YAML 1.1 and 1.2 parser when written
/// plain.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // Numbers, dates, times and sexagesimals all start with a digit, a sign or a dot.
    if !(first.is_ascii_alphabetic() || matches!(first, '/' | '$' | '_' | '(')) {
        return false;
    }
    if s.ends_with(' ') || s.ends_with(':') || s.contains(": ") || s.contains(" #") {
        return false;
    }
    // Byte by byte: every allowed character is ASCII, and this runs for every scalar written.
    let allowed = |b: &u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b' ' | b'_'
                    | b'.'
                    | b'/'
                    | b'$'
                    | b'-'
                    | b'{'
                    | b'}'
                    | b'('
                    | b')'
                    | b'@'
                    | b'+'
                    | b'='
                    | b','
                    | b'*'
                    | b';'
                    | b':'
                    | b'<'
                    | b'>'
                    | b'^'
                    | b'~'
                    | b'['
                    | b']'
            )
    };
    if !s.as_bytes().iter().all(allowed) {
        return false;
    }
    const RESERVED: [&str; 12] = [
        "y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf", "infinity",
    ];
    !RESERVED.iter().any(|word| word.eq_ignore_ascii_case(s))
}

/// Whether a multi-line string survives a `|-` literal block unchanged.
fn can_be_literal_block(s: &str) -> bool {
    !s.ends_with('\n')
        && !s.starts_with([' ', '\n'])
        && s.chars().all(|c| c == '\n' || !c.is_control())
        && s.split('\n').all(|line| !line.ends_with(' '))
}

struct NodeSerializer;

/// Collects a sequence, optionally tagged (tuple variants).
struct SeqBuilder {
    tag: Option<&'static str>,
    items: Vec<Node>,
}

/// Collects a mapping, optionally tagged (struct variants).
struct MapBuilder {
    tag: Option<&'static str>,
    entries: Vec<(String, Node)>,
    pending_key: Option<String>,
}

fn wrap(tag: Option<&'static str>, node: Node) -> Node {
    match tag {
        Some(tag) => Node::Tagged(tag.to_owned(), Box::new(node)),
        None => node,
    }
}

/// Writes the serializer methods of the primitives a node holds as they are or widened (an `i8`
/// as the `i64` of [`Node::Int`]), one line each instead of one function each.
macro_rules! serialize_primitives {
    ($($method:ident($primitive:ty) => $node:ident),+ $(,)?) => {$(
        fn $method(self, v: $primitive) -> Result<Node, YamlError> {
            Ok(Node::$node(v.into()))
        }
    )+};
}

impl ser::Serializer for NodeSerializer {
    type Ok = Node;
    type Error = YamlError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    serialize_primitives! {
        serialize_bool(bool) => Bool,
        serialize_i8(i8) => Int,
        serialize_i16(i16) => Int,
        serialize_i32(i32) => Int,
        serialize_i64(i64) => Int,
        serialize_u8(u8) => UInt,
        serialize_u16(u16) => UInt,
        serialize_u32(u32) => UInt,
        serialize_u64(u64) => UInt,
        serialize_f32(f32) => Float,
        serialize_f64(f64) => Float,
    }
    fn serialize_char(self, v: char) -> Result<Node, YamlError> {
        Ok(Node::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Node, YamlError> {
        Ok(Node::Str(v.to_owned()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Node, YamlError> {
        Err(YamlError(
            "binary values have no place in a template".to_owned(),
        ))
    }
    fn serialize_none(self) -> Result<Node, YamlError> {
        Ok(Node::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Node, YamlError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Node, YamlError> {
        Ok(Node::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Node, YamlError> {
        Ok(Node::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Node, YamlError> {
        Ok(Node::Str(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Node, YamlError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Node, YamlError> {
        Ok(Node::Tagged(
            variant.to_owned(),
            Box::new(value.serialize(self)?),
        ))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, YamlError> {
        Ok(SeqBuilder {
            tag: None,
            items: Vec::with_capacity(len.unwrap_or(0)),
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, YamlError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqBuilder, YamlError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, YamlError> {
        Ok(SeqBuilder {
            tag: Some(variant),
            items: Vec::with_capacity(len),
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, YamlError> {
        Ok(MapBuilder {
            tag: None,
            entries: Vec::with_capacity(len.unwrap_or(0)),
            pending_key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapBuilder, YamlError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, YamlError> {
        Ok(MapBuilder {
            tag: Some(variant),
            entries: Vec::with_capacity(len),
            pending_key: None,
        })
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Node;
    type Error = YamlError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), YamlError> {
        self.items.push(value.serialize(NodeSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Node, YamlError> {
        Ok(wrap(self.tag, Node::Seq(self.items)))
    }
}

/// Tuples of every kind are written as sequences, so their serializer traits only forward to
/// `SerializeSeq`; the macro writes that forwarding once for the three traits.
macro_rules! serialize_as_seq {
    ($($tuple_trait:ident :: $add:ident),+ $(,)?) => {$(
        impl ser::$tuple_trait for SeqBuilder {
            type Ok = Node;
            type Error = YamlError;
            fn $add<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), YamlError> {
                ser::SerializeSeq::serialize_element(self, value)
            }
            fn end(self) -> Result<Node, YamlError> {
                ser::SerializeSeq::end(self)
            }
        }
    )+};
}

serialize_as_seq!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl ser::SerializeMap for MapBuilder {
    type Ok = Node;
    type Error = YamlError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), YamlError> {
        match key.serialize(NodeSerializer)? {
            Node::Str(s) => self.pending_key = Some(s),
            Node::Int(n) => self.pending_key = Some(n.to_string()),
            Node::UInt(n) => self.pending_key = Some(n.to_string()),
            other => {
                return Err(YamlError(format!(
                    "mapping keys must be strings, got {other:?}"
                )));
            }
        }
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), YamlError> {
        let key = self
            .pending_key
            .take()
            .ok_or_else(|| YamlError("a value without a key".to_owned()))?;
        self.entries.push((key, value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Node, YamlError> {
        Ok(wrap(self.tag, Node::Map(self.entries)))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Node;
    type Error = YamlError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), YamlError> {
        self.entries
            .push((key.to_owned(), value.serialize(NodeSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Node, YamlError> {
        ser::SerializeMap::end(self)
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Node;
    type Error = YamlError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), YamlError> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<Node, YamlError> {
        ser::SerializeMap::end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_a_yaml_1_1_parser_would_retype_are_quoted() {
        for value in [
            "2012-10-17",
            "yes",
            "On",
            "NO",
            "1:30",
            "1_000",
            "0x1F",
            "5xx",
            "2.0",
            "~",
            "null",
            "",
            " lead",
            "a: b",
            "a #b",
            "-x",
            "*alias",
            "!tag",
            "@x",
        ] {
            let yaml = to_string(&[value]).unwrap();
            assert!(
                yaml.starts_with("- '") || yaml.starts_with("- \""),
                "{value:?} written as {yaml:?}"
            );
        }
    }

    #[test]
    fn ordinary_words_and_arns_stay_plain() {
        for value in [
            "Allow",
            "provided.al2023",
            "arn:${AWS::Partition}:sqs:${AWS::Region}",
            "GET /transactions/{id}",
            "$default",
        ] {
            assert_eq!(to_string(&[value]).unwrap(), format!("- {value}\n"));
        }
    }

    #[test]
    fn multi_line_strings_become_literal_blocks() {
        let yaml = to_string(
            &[("Key", "{\n  \"a\": 1\n}")]
                .into_iter()
                .collect::<indexmap::IndexMap<_, _>>(),
        )
        .unwrap();
        assert_eq!(yaml, "Key: |-\n  {\n    \"a\": 1\n  }\n");
    }
}
