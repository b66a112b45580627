//! Change sets as people review them: one row per resource (add / modify / remove), its
//! replacement, and the rows that touch permissions (IAM, resource policies, Lambda
//! permissions) or network access (security groups) marked so they stand out.

use serde::Serialize;

/// One row of a change set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeRow {
    /// `Add`, `Modify`, `Remove`, `Import`, `Dynamic`.
    pub action: String,
    /// Logical id.
    pub logical_id: String,
    /// Resource type.
    pub resource_type: String,
    /// `True`, `False`, `Conditional` (Modify only; empty when unknown).
    pub replacement: String,
    /// What changes (`Properties`, `Tags`, ...) and, when known, which properties.
    pub scope: Vec<String>,
    /// The row changes permissions.
    pub iam: bool,
    /// The row changes network access.
    pub security_group: bool,
}

impl ChangeRow {
    /// Builds a row and classifies it.
    pub fn new(
        action: &str,
        logical_id: &str,
        resource_type: &str,
        replacement: &str,
        scope: Vec<String>,
    ) -> ChangeRow {
        ChangeRow {
            action: action.to_owned(),
            logical_id: logical_id.to_owned(),
            resource_type: resource_type.to_owned(),
            replacement: replacement.to_owned(),
            scope,
            iam: is_permission_type(resource_type),
            security_group: resource_type.starts_with("AWS::EC2::SecurityGroup"),
        }
    }
}

/// Resource types whose changes alter who may do what.
pub fn is_permission_type(resource_type: &str) -> bool {
    resource_type.starts_with("AWS::IAM::")
        || resource_type == "AWS::Lambda::Permission"
        || resource_type.ends_with("Policy") && !resource_type.starts_with("AWS::AutoScaling::")
}

/// Rows from a DescribeChangeSet answer (every page).
pub fn rows_from(changes: &[aws_sdk_cloudformation::types::Change]) -> Vec<ChangeRow> {
    changes
        .iter()
        .filter_map(|c| c.resource_change())
        .map(|rc| {
            let mut scope: Vec<String> = rc.scope().iter().map(|s| s.as_str().to_owned()).collect();
            for detail in rc.details() {
                if let Some(name) = detail.target().and_then(|t| t.name()) {
                    let name = name.to_owned();
                    if !scope.contains(&name) {
                        scope.push(name);
                    }
                }
            }
            ChangeRow::new(
                rc.action().map(|a| a.as_str()).unwrap_or("?"),
                rc.logical_resource_id().unwrap_or("?"),
                rc.resource_type().unwrap_or("?"),
                rc.replacement().map(|r| r.as_str()).unwrap_or(""),
                scope,
            )
        })
        .collect()
}

/// Output format of tables and diffs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned columns for a terminal.
    #[default]
    Text,
    /// GitHub-flavoured Markdown.
    Markdown,
}

fn notes(row: &ChangeRow) -> String {
    let mut notes = Vec::new();
    if row.iam {
        notes.push("IAM".to_owned());
    }
    if row.security_group {
        notes.push("SECURITY GROUP".to_owned());
    }
    if !row.scope.is_empty() {
        notes.push(row.scope.join(", "));
    }
    notes.join("; ")
}

fn replacement(row: &ChangeRow) -> &str {
    match (row.action.as_str(), row.replacement.as_str()) {
        ("Modify", "True") => "REPLACE",
        ("Modify", "Conditional") => "maybe",
        ("Modify", "False") => "no",
        _ => "",
    }
}

/// Renders the rows as a table.
pub fn render_table(rows: &[ChangeRow], format: Format) -> String {
    let headers = ["Action", "Logical ID", "Type", "Replacement", "Notes"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let marker = if r.iam || r.security_group { " !" } else { "" };
            [
                format!("{}{marker}", r.action),
                r.logical_id.clone(),
                r.resource_type.clone(),
                replacement(r).to_owned(),
                notes(r),
            ]
        })
        .collect();
    match format {
        Format::Markdown => {
            let mut out = format!(
                "| {} |\n|{}\n",
                headers.join(" | "),
                "---|".repeat(headers.len())
            );
            for row in &cells {
                let escaped: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                out.push_str(&format!("| {} |\n", escaped.join(" | ")));
            }
            out
        }
        Format::Text => {
            let mut widths = headers.map(str::len);
            for row in &cells {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: &[String]| {
                let mut text = String::from("  ");
                for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                    if i + 1 == cells.len() {
                        text.push_str(c);
                    } else {
                        text.push_str(&format!("{c:<w$}  "));
                    }
                }
                text.trim_end().to_owned() + "\n"
            };
            let mut out = line(&headers.map(str::to_owned));
            for row in &cells {
                out.push_str(&line(row));
            }
            if rows.iter().any(|r| r.iam || r.security_group) {
                out.push_str("  (! = changes permissions or network access: review these rows)\n");
            }
            out
        }
    }
}

/// Counts of add, modify and remove rows.
pub fn counts(rows: &[ChangeRow]) -> (usize, usize, usize) {
    let count = |a: &str| rows.iter().filter(|r| r.action == a).count();
    (count("Add"), count("Modify"), count("Remove"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_and_network_rows_are_flagged() {
        let rows = [
            ChangeRow::new("Add", "Role", "AWS::IAM::Role", "", vec![]),
            ChangeRow::new(
                "Modify",
                "Queue",
                "AWS::SQS::Queue",
                "True",
                vec!["Properties".into()],
            ),
            ChangeRow::new("Add", "QueuePolicy", "AWS::SQS::QueuePolicy", "", vec![]),
            ChangeRow::new("Add", "Sg", "AWS::EC2::SecurityGroup", "", vec![]),
        ];
        assert!(rows[0].iam && rows[2].iam && !rows[1].iam);
        assert!(rows[3].security_group);
        let table = render_table(&rows, Format::Text);
        assert!(table.contains("  Add !   Role "), "{table}");
        assert!(table.contains("REPLACE"), "{table}");
        assert!(table.contains("SECURITY GROUP"), "{table}");
        let md = render_table(&rows, Format::Markdown);
        assert!(md.starts_with("| Action | Logical ID |"), "{md}");
        assert_eq!(counts(&rows), (3, 1, 0));
    }
}
