//! The difference between two templates (deployed and committed), resource by resource and
//! property by property, rendered for a terminal or as Markdown for a pull-request comment.

use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

use crate::line_diff::diff_lines;
use crate::template::{Template, intrinsic, render};

/// How a section entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryChange {
    /// Only in the new template.
    Added,
    /// Only in the deployed template.
    Removed,
    /// In both, different.
    Modified,
}

impl EntryChange {
    fn sign(self) -> &'static str {
        match self {
            EntryChange::Added => "+",
            EntryChange::Removed => "-",
            EntryChange::Modified => "~",
        }
    }
}

/// One changed property (a path inside the entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyChange {
    /// Path inside the entry: `Properties.Environment.Variables.RUST_LOG`.
    pub path: String,
    /// Deployed value, rendered (absent when added).
    pub old: Option<String>,
    /// New value, rendered (absent when removed).
    pub new: Option<String>,
}

/// One changed entry of a section (a resource, parameter, output, condition, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryDiff {
    /// Section: `Resources`, `Parameters`, `Outputs`, `Conditions`, `Mappings` or `Template`.
    pub section: String,
    /// Logical id (or the key for top-level scalars).
    pub id: String,
    /// Resource type, for resources.
    pub resource_type: Option<String>,
    /// Added, removed or modified.
    pub change: EntryChange,
    /// For modified entries, every property that differs.
    pub properties: Vec<PropertyChange>,
}

/// The whole difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TemplateDiff {
    /// Changed entries, resources first, in the new template's order.
    pub entries: Vec<EntryDiff>,
}

const SECTIONS: [&str; 5] = [
    "Resources",
    "Parameters",
    "Conditions",
    "Mappings",
    "Outputs",
];

/// The entries of one section that were added, modified (with their properties) or removed:
/// new entries in the new template's order, then the removed ones.
fn diff_section(
    section: &str,
    old: &[(String, Value)],
    fresh: &[(String, Value)],
    entries: &mut Vec<EntryDiff>,
) {
    let find = |entries: &[(String, Value)], id: &str| {
        entries
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, v)| v.clone())
    };
    let entry =
        |id: &str, value: &Value, change: EntryChange, properties: Vec<PropertyChange>| EntryDiff {
            section: section.to_owned(),
            id: id.to_owned(),
            resource_type: (section == "Resources")
                .then(|| value.get("Type").and_then(Value::as_str).map(str::to_owned))
                .flatten(),
            change,
            properties,
        };
    for (id, value) in fresh {
        match find(old, id) {
            None => entries.push(entry(id, value, EntryChange::Added, Vec::new())),
            Some(previous) if previous != *value => {
                let mut properties = Vec::new();
                compare(String::new(), Some(&previous), Some(value), &mut properties);
                entries.push(entry(id, value, EntryChange::Modified, properties));
            }
            Some(_) => {}
        }
    }
    for (id, value) in old {
        if find(fresh, id).is_none() {
            entries.push(entry(id, value, EntryChange::Removed, Vec::new()));
        }
    }
}

/// Anything else at the top level (Description, Transform, Metadata, ...), as one entry when
/// it changed.
fn diff_top_level(deployed: &Template, new: &Template) -> Option<EntryDiff> {
    let others = |t: &Template| -> Mapping {
        t.body()
            .as_mapping()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.as_str().is_none_or(|k| !SECTIONS.contains(&k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut properties = Vec::new();
    compare(
        String::new(),
        Some(&Value::Mapping(others(deployed))),
        Some(&Value::Mapping(others(new))),
        &mut properties,
    );
    (!properties.is_empty()).then(|| EntryDiff {
        section: "Template".to_owned(),
        id: "(top level)".to_owned(),
        resource_type: None,
        change: EntryChange::Modified,
        properties,
    })
}

impl TemplateDiff {
    /// Compares the deployed template with the new one.
    pub fn between(deployed: &Template, new: &Template) -> TemplateDiff {
        let mut entries = Vec::new();
        for section in SECTIONS {
            diff_section(
                section,
                &deployed.section(section),
                &new.section(section),
                &mut entries,
            );
        }
        entries.extend(diff_top_level(deployed, new));
        TemplateDiff { entries }
    }

    /// Whether the templates are equivalent.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts of added, modified and removed entries.
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |c| self.entries.iter().filter(|e| e.change == c).count();
        (
            count(EntryChange::Added),
            count(EntryChange::Modified),
            count(EntryChange::Removed),
        )
    }

    /// A terminal rendering.
    pub fn to_text(&self) -> String {
        if self.is_empty() {
            return "templates are identical\n".to_owned();
        }
        let mut out = String::new();
        let mut current = "";
        for entry in &self.entries {
            if entry.section != current {
                current = &entry.section;
                out.push_str(&format!("{current}\n"));
            }
            out.push_str(&format!(
                "  {} {}{}\n",
                entry.change.sign(),
                entry.id,
                entry
                    .resource_type
                    .as_deref()
                    .map(|t| format!("  {t}"))
                    .unwrap_or_default()
            ));
            for p in &entry.properties {
                let line = match (&p.old, &p.new) {
                    (Some(o), Some(n)) => format!("{o} -> {n}"),
                    (None, Some(n)) => format!("(added) {n}"),
                    (Some(o), None) => format!("(removed) {o}"),
                    (None, None) => String::new(),
                };
                out.push_str(&format!("      {}: {line}\n", p.path));
            }
        }
        out
    }

    /// A Markdown rendering for a pull-request comment.
    pub fn to_markdown(&self) -> String {
        self.to_markdown_labelled("Deployed", "New")
    }

    /// [`TemplateDiff::to_markdown`] with other names for the old and new columns (a review
    /// against a git ref compares no deployed template).
    pub fn to_markdown_labelled(&self, old_label: &str, new_label: &str) -> String {
        if self.is_empty() {
            return "Templates are identical.\n".to_owned();
        }
        let (added, modified, removed) = self.counts();
        let mut out = format!("**{added} added, {modified} modified, {removed} removed**\n\n");
        out.push_str(&format!(
            "| | Section | Logical id | Type | Property | {old_label} | {new_label} |\n"
        ));
        out.push_str("|---|---|---|---|---|---|---|\n");
        for entry in &self.entries {
            let kind = entry.resource_type.as_deref().unwrap_or("");
            if entry.properties.is_empty() {
                out.push_str(&format!(
                    "| {} | {} | `{}` | {} | | | |\n",
                    entry.change.sign(),
                    entry.section,
                    entry.id,
                    md(kind)
                ));
            }
            for p in &entry.properties {
                out.push_str(&format!(
                    "| {} | {} | `{}` | {} | `{}` | {} | {} |\n",
                    entry.change.sign(),
                    entry.section,
                    entry.id,
                    md(kind),
                    p.path,
                    p.old.as_deref().map(code).unwrap_or_default(),
                    p.new.as_deref().map(code).unwrap_or_default(),
                ));
            }
        }
        out
    }
}

pub(crate) fn md(text: &str) -> String {
    text.replace('|', "\\|")
}

pub(crate) fn code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'").replace('|', "\\|"))
}

/// Records every leaf difference between two values; intrinsic calls count as leaves so a
/// changed `!Sub` shows as one line. A multi-line string (a state machine definition) is compared
/// line by line instead, so a changed retry shows as the lines that changed, not as two copies
/// of the whole definition.
fn compare(path: String, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<PropertyChange>) {
    if let (Some(a), Some(b)) = (old, new)
        && a != b
        && let (Some((text_a, vars_a)), Some((text_b, vars_b))) = (multiline(a), multiline(b))
    {
        for hunk in diff_lines(text_a, text_b, 0) {
            let joined = |lines: Vec<&str>| {
                (!lines.is_empty()).then(|| {
                    lines
                        .iter()
                        .map(|l| l.trim())
                        .collect::<Vec<_>>()
                        .join(" / ")
                })
            };
            out.push(PropertyChange {
                path: format!("{path} line {}", hunk.new_start),
                old: joined(hunk.removed().collect()),
                new: joined(hunk.added().collect()),
            });
        }
        if vars_a != vars_b {
            compare(format!("{path} (variables)"), vars_a, vars_b, out);
        }
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Some(a), Some(b)) if a == b => {}
        (Some(Value::Mapping(a)), Some(Value::Mapping(b)))
            if intrinsic(old.expect("some")).is_none()
                && intrinsic(new.expect("some")).is_none() =>
        {
            let name = |k: &Value| k.as_str().map_or_else(|| render(k), str::to_owned);
            for (key, value) in b {
                compare(join(&name(key)), a.get(key), Some(value), out);
            }
            for (key, value) in a {
                if !b.contains_key(key) {
                    compare(join(&name(key)), Some(value), None, out);
                }
            }
        }
        (Some(Value::Sequence(a)), Some(Value::Sequence(b))) => {
            for i in 0..a.len().max(b.len()) {
                compare(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) => out.push(PropertyChange {
            path: if path.is_empty() {
                "(value)".to_owned()
            } else {
                path
            },
            old: a.map(render),
            new: b.map(render),
        }),
    }
}

/// The text of a multi-line string, plain or the template of a `!Sub`, with the `!Sub`'s
/// variables when it has some.
fn multiline(value: &Value) -> Option<(&str, Option<&Value>)> {
    let (text, vars) = match intrinsic(value) {
        Some(("Fn::Sub", Value::String(s))) => (s.as_str(), None),
        Some(("Fn::Sub", Value::Sequence(items))) => (items.first()?.as_str()?, items.get(1)),
        Some(_) => return None,
        None => (value.as_str()?, None),
    };
    text.contains('\n').then_some((text, vars))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Template {
        Template::parse("t.yaml", body).unwrap()
    }

    #[test]
    fn property_changes_are_listed_by_path() {
        let old = parse(
            "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimeout: 30\n      Tags: [{Key: a, Value: b}]\n  Gone:\n    Type: AWS::SNS::Topic\n",
        );
        let new = parse(
            "Resources:\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      VisibilityTimeout: 60\n      Tags: [{Key: a, Value: b}, {Key: c, Value: !Ref AWS::StackName}]\n  New:\n    Type: AWS::SNS::Topic\n",
        );
        let diff = TemplateDiff::between(&old, &new);
        assert_eq!(diff.counts(), (1, 1, 1));
        let q = diff.entries.iter().find(|e| e.id == "Q").unwrap();
        assert_eq!(
            q.properties,
            [
                PropertyChange {
                    path: "Properties.VisibilityTimeout".into(),
                    old: Some("30".into()),
                    new: Some("60".into())
                },
                PropertyChange {
                    path: "Properties.Tags[1]".into(),
                    old: None,
                    new: Some("{Key: c, Value: !Ref AWS::StackName}".into())
                },
            ]
        );
        let text = diff.to_text();
        assert!(text.contains("  ~ Q  AWS::SQS::Queue"), "{text}");
        assert!(text.contains("  + New  AWS::SNS::Topic"), "{text}");
        assert!(text.contains("  - Gone  AWS::SNS::Topic"), "{text}");
        assert!(diff.to_markdown().contains("| ~ | Resources | `Q` | AWS::SQS::Queue | `Properties.VisibilityTimeout` | `30` | `60` |"));
    }

    #[test]
    fn multi_line_strings_show_the_lines_that_changed() {
        let definition = |attempts: u32| {
            format!(
                "Resources:\n  M:\n    Type: AWS::StepFunctions::StateMachine\n    Properties:\n      DefinitionString: !Sub\n        - |-\n          {{\n            \"Retry\": [{{\n              \"MaxAttempts\": {attempts},\n              \"BackoffRate\": 2.0\n            }}]\n          }}\n        - {{F: !GetAtt F.Arn}}\n"
            )
        };
        let diff = TemplateDiff::between(&parse(&definition(3)), &parse(&definition(5)));
        assert_eq!(
            diff.entries[0].properties,
            [PropertyChange {
                path: "Properties.DefinitionString line 3".into(),
                old: Some("\"MaxAttempts\": 3,".into()),
                new: Some("\"MaxAttempts\": 5,".into()),
            }]
        );
    }

    #[test]
    fn equal_templates_have_no_diff() {
        let t = parse("Resources:\n  Q:\n    Type: AWS::SQS::Queue\n");
        assert!(TemplateDiff::between(&t, &t).is_empty());
    }
}
