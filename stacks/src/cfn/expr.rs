//! CloudFormation values: literals and intrinsic functions.
//!
//! [`Expr`] serializes through serde as an externally tagged enum, which the template writer
//! ([`super::yaml`]) prints as a YAML tag: exactly CloudFormation's short form (`!Ref X`,
//! `!GetAtt Dlq.Arn`, `!Sub [ "...", {vars} ]`). Literals serialize as plain values. The one
//! place where the short form is not allowed, `!ImportValue` directly holding another short-form
//! function, is written in the long form.

use indexmap::IndexMap;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// A CloudFormation value: a literal or an intrinsic function.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A string literal.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A floating-point literal.
    Float(f64),
    /// A boolean literal.
    Bool(bool),
    /// A list of values.
    List(Vec<Expr>),
    /// A JSON-like object of values, in insertion order.
    Map(IndexMap<String, Expr>),
    /// `!Ref Name`: a parameter, a resource or a pseudo parameter.
    Ref(String),
    /// `!GetAtt Resource.Attribute`.
    GetAtt {
        /// Logical id of the resource.
        resource: String,
        /// Attribute, possibly dotted (`Endpoint.Address`).
        attribute: String,
    },
    /// `!Sub "..."` with `${Name}` references to parameters, resources and pseudo parameters.
    Sub(String),
    /// `!Sub [ "...", {vars} ]`.
    SubWith(String, IndexMap<String, Expr>),
    /// `!Join [ delimiter, [values] ]`.
    Join(String, Vec<Expr>),
    /// `!If [ condition, when_true, when_false ]`.
    If(String, Box<Expr>, Box<Expr>),
    /// `!Select [ index, list ]`.
    Select(u32, Box<Expr>),
    /// `!GetAZs region` (an empty region means the stack's region).
    GetAzs(String),
    /// `!Cidr [ block, count, bits ]`: `count` blocks of `bits` host bits carved from `block`.
    Cidr(Box<Expr>, u32, u32),
    /// `!ImportValue name`: an output exported by another stack.
    ImportValue(Box<Expr>),
    /// `!Equals [ a, b ]` (conditions only).
    Equals(Box<Expr>, Box<Expr>),
    /// `!Not [ condition ]` (conditions only).
    Not(Box<Expr>),
    /// `!And [ conditions ]` (conditions only).
    And(Vec<Expr>),
    /// `!Or [ conditions ]` (conditions only).
    Or(Vec<Expr>),
    /// `!Condition Name`: another condition, inside a condition.
    Condition(String),
}

/// The pseudo parameters CloudFormation defines in every stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pseudo {
    /// `AWS::AccountId`.
    AccountId,
    /// `AWS::Region`.
    Region,
    /// `AWS::Partition` (`aws`, `aws-cn`, `aws-us-gov`).
    Partition,
    /// `AWS::StackName`.
    StackName,
    /// `AWS::StackId`.
    StackId,
    /// `AWS::URLSuffix` (`amazonaws.com` in most partitions).
    UrlSuffix,
    /// `AWS::NoValue`: removes the property it is assigned to.
    NoValue,
}

impl Pseudo {
    /// The name used in `!Ref` and in `${...}` of `!Sub`.
    pub fn name(self) -> &'static str {
        match self {
            Pseudo::AccountId => "AWS::AccountId",
            Pseudo::Region => "AWS::Region",
            Pseudo::Partition => "AWS::Partition",
            Pseudo::StackName => "AWS::StackName",
            Pseudo::StackId => "AWS::StackId",
            Pseudo::UrlSuffix => "AWS::URLSuffix",
            Pseudo::NoValue => "AWS::NoValue",
        }
    }
}

impl Expr {
    /// A string literal.
    pub fn str(value: impl Into<String>) -> Expr {
        Expr::Str(value.into())
    }

    /// `!Ref logical_id`.
    pub fn reference(logical_id: impl Into<String>) -> Expr {
        Expr::Ref(logical_id.into())
    }

    /// `!Ref AWS::...`.
    pub fn pseudo(pseudo: Pseudo) -> Expr {
        Expr::Ref(pseudo.name().to_owned())
    }

    /// `!GetAtt resource.attribute`.
    pub fn get_att(resource: impl Into<String>, attribute: impl Into<String>) -> Expr {
        Expr::GetAtt {
            resource: resource.into(),
            attribute: attribute.into(),
        }
    }

    /// `!Sub template`.
    pub fn sub(template: impl Into<String>) -> Expr {
        Expr::Sub(template.into())
    }

    /// `!Sub [ template, vars ]`.
    pub fn sub_with<K: Into<String>>(
        template: impl Into<String>,
        vars: impl IntoIterator<Item = (K, Expr)>,
    ) -> Expr {
        Expr::SubWith(
            template.into(),
            vars.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        )
    }

    /// A list of string literals.
    pub fn strs<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Expr {
        Expr::List(values.into_iter().map(|v| Expr::Str(v.into())).collect())
    }

    /// The logical id this expression points at when it is a `!Ref` or a `!GetAtt` of a
    /// resource (not of a pseudo parameter), with the attribute for `!GetAtt`.
    pub fn target(&self) -> Option<(&str, Option<&str>)> {
        match self {
            Expr::Ref(name) if !name.starts_with("AWS::") => Some((name, None)),
            Expr::GetAtt {
                resource,
                attribute,
            } => Some((resource, Some(attribute))),
            _ => None,
        }
    }

    /// Whether this is `!Ref logical_id`.
    pub fn is_ref_to(&self, logical_id: &str) -> bool {
        matches!(self, Expr::Ref(name) if name == logical_id)
    }

    /// Whether this is `!GetAtt logical_id.attribute`.
    pub fn is_get_att_of(&self, logical_id: &str, attribute: &str) -> bool {
        matches!(self, Expr::GetAtt { resource, attribute: a } if resource == logical_id && a == attribute)
    }

    /// The literal string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Expr::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is a literal (serialized as a plain YAML value or collection head).
    fn is_intrinsic(&self) -> bool {
        !matches!(
            self,
            Expr::Str(_)
                | Expr::Int(_)
                | Expr::Float(_)
                | Expr::Bool(_)
                | Expr::List(_)
                | Expr::Map(_)
        )
    }
}

impl From<&str> for Expr {
    fn from(value: &str) -> Self {
        Expr::Str(value.to_owned())
    }
}

impl From<String> for Expr {
    fn from(value: String) -> Self {
        Expr::Str(value)
    }
}

impl From<i64> for Expr {
    fn from(value: i64) -> Self {
        Expr::Int(value)
    }
}

impl From<u32> for Expr {
    fn from(value: u32) -> Self {
        Expr::Int(i64::from(value))
    }
}

impl From<bool> for Expr {
    fn from(value: bool) -> Self {
        Expr::Bool(value)
    }
}

impl From<Pseudo> for Expr {
    fn from(value: Pseudo) -> Self {
        Expr::pseudo(value)
    }
}

/// The name serde hands to the serializer for every tagged variant; YAML ignores it.
const ENUM_NAME: &str = "Fn";

impl Serialize for Expr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Expr::Str(s) => serializer.serialize_str(s),
            Expr::Int(n) => serializer.serialize_i64(*n),
            Expr::Float(n) => serializer.serialize_f64(*n),
            Expr::Bool(b) => serializer.serialize_bool(*b),
            Expr::List(items) => items.serialize(serializer),
            Expr::Map(map) => map.serialize(serializer),
            Expr::Ref(name) => serializer.serialize_newtype_variant(ENUM_NAME, 0, "Ref", name),
            Expr::GetAtt {
                resource,
                attribute,
            } => serializer.serialize_newtype_variant(
                ENUM_NAME,
                1,
                "GetAtt",
                &format!("{resource}.{attribute}"),
            ),
            Expr::Sub(template) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 2, "Sub", template)
            }
            Expr::SubWith(template, vars) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 2, "Sub", &(template, vars))
            }
            Expr::Join(delimiter, items) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 3, "Join", &(delimiter, items))
            }
            Expr::If(condition, a, b) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 4, "If", &(condition, a, b))
            }
            Expr::Select(index, list) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 5, "Select", &(index, list))
            }
            Expr::GetAzs(region) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 6, "GetAZs", region)
            }
            Expr::Cidr(block, count, bits) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 13, "Cidr", &(block, count, bits))
            }
            Expr::ImportValue(name) if name.is_intrinsic() => {
                // CloudFormation rejects `!ImportValue !Sub ...`: the outer function must use
                // its long form when it directly holds a short-form function.
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("Fn::ImportValue", name)?;
                map.end()
            }
            Expr::ImportValue(name) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 7, "ImportValue", name)
            }
            Expr::Equals(a, b) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 8, "Equals", &(a, b))
            }
            Expr::Not(condition) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 9, "Not", &[condition])
            }
            Expr::And(conditions) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 10, "And", conditions)
            }
            Expr::Or(conditions) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 11, "Or", conditions)
            }
            Expr::Condition(name) => {
                serializer.serialize_newtype_variant(ENUM_NAME, 12, "Condition", name)
            }
        }
    }
}
