//! The preview behind `cargo xtask diff`: what a deploy of the committed template would change.
//! Two views: the template difference (deployed against committed, property by property, from
//! [`crate::template_diff`]) and, when the stack exists, CloudFormation's own change set
//! (created, described, then deleted, so nothing is left behind).

use std::collections::BTreeMap;

use sagaform_contract::template::function_of_code_key_parameter;
use serde::Serialize;

use crate::bootstrap;
use crate::changeset::{ChangeRow, Format, render_table};
use crate::stack::{self, ChangeSetResult, ChangeSetSpec, StackState};
use crate::template::Template;
use crate::template_diff::TemplateDiff;
use crate::{Artifact, DeployError, PatternEnv, Progress, Session};

/// What `diff` found.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Stack name.
    pub stack_name: String,
    /// The committed template file.
    pub template_file: String,
    /// Status of the deployed stack, if there is one.
    pub stack_status: Option<String>,
    /// The committed template is stale (deploy would refuse it).
    pub stale: bool,
    /// Deployed against committed.
    pub template: TemplateDiff,
    /// The change set's rows, when one could be computed.
    pub change_set: Option<Vec<ChangeRow>>,
    /// Why there is no change set view, when there is none.
    pub change_set_note: Option<String>,
}

impl DiffReport {
    /// Renders the report.
    pub fn render(&self, format: Format) -> String {
        let mut out = String::new();
        let markdown = format == Format::Markdown;
        let heading = |text: &str| {
            if markdown {
                format!("### {text}\n\n")
            } else {
                format!("== {text}\n")
            }
        };
        out.push_str(&heading(&format!(
            "{}: deployed ({}) vs {}",
            self.stack_name,
            self.stack_status.as_deref().unwrap_or("not deployed"),
            self.template_file
        )));
        if self.stale {
            out.push_str(&format!(
                "warning: {} is stale: run `cargo xtask synth` (deploy refuses stale templates)\n\n",
                self.template_file
            ));
        }
        out.push_str(&match format {
            Format::Text => self.template.to_text(),
            Format::Markdown => self.template.to_markdown(),
        });
        out.push('\n');
        out.push_str(&heading("change set"));
        match (&self.change_set, &self.change_set_note) {
            (Some(rows), _) if rows.is_empty() => out.push_str("no changes\n"),
            (Some(rows), _) => out.push_str(&render_table(rows, format)),
            (None, Some(note)) => out.push_str(&format!("{note}\n")),
            (None, None) => {}
        }
        out
    }

    /// Whether a deploy would change nothing.
    pub fn is_empty(&self) -> bool {
        self.template.is_empty() && self.change_set.as_ref().is_none_or(Vec::is_empty)
    }
}

/// `cargo xtask diff`. `artifacts` fill code-key parameters the stack does not have yet;
/// parameters it has keep their deployed values.
pub async fn diff_pattern(
    session: &Session,
    target: PatternEnv<'_>,
    artifacts: &[Artifact],
    progress: &Progress,
) -> Result<DiffReport, DeployError> {
    let (body, stale) = committed_or_stale(target)?;
    let committed = Template::parse(&target.template_file(), &body)?;
    let info = stack::describe(session, &target.stack_name()).await?;
    let mut report = DiffReport {
        stack_name: target.stack_name(),
        template_file: target.template_file(),
        stack_status: info.as_ref().map(|info| info.status.clone()),
        stale,
        template: TemplateDiff::default(),
        change_set: None,
        change_set_note: None,
    };
    let info = match info {
        Some(info) if stack::classify(&info.status) != StackState::NeverCreated => info,
        absent => {
            let what = match absent {
                None => "does not exist",
                Some(_) => "was never created",
            };
            report.template = TemplateDiff::between(&Template::empty(), &committed);
            report.change_set_note = Some(format!(
                "the stack {what}: a deploy creates every resource above"
            ));
            return Ok(report);
        }
    };
    let deployed = stack::deployed_template(session, &report.stack_name).await?;
    report.template = TemplateDiff::between(&deployed, &committed);
    if stack::classify(&info.status) != StackState::Ready {
        report.change_set_note = Some(format!("no change set: the stack is in {}", info.status));
        return Ok(report);
    }
    match change_set_parameters(session, &committed, &info.parameters, artifacts)? {
        PreviewParameters::Values(parameters) => {
            let rows = preview_change_set(session, target, &body, &parameters, progress).await?;
            report.change_set = Some(rows);
        }
        PreviewParameters::Unavailable(note) => report.change_set_note = Some(note),
    }
    Ok(report)
}

/// The committed template's body and whether it is stale (`synth` would write something else):
/// a stale template is still compared, with a warning.
fn committed_or_stale(target: PatternEnv<'_>) -> Result<(String, bool), DeployError> {
    let PatternEnv {
        workspace,
        env,
        pattern,
    } = target;
    match crate::deploy::committed_template(workspace, pattern, &env.name) {
        Ok(body) => Ok((body, false)),
        Err(DeployError::Refused(_)) => {
            let path = target.template_path();
            let body = std::fs::read_to_string(&path).map_err(DeployError::io("read", path))?;
            Ok((body, true))
        }
        Err(e) => Err(e),
    }
}

/// The parameters of a preview change set, or why there can be none.
enum PreviewParameters {
    /// Each parameter's value; `None` keeps the deployed one.
    Values(Vec<(String, Option<String>)>),
    /// The note to show instead (a new function whose package is not built).
    Unavailable(String),
}

/// The parameters of the preview change set: the deployed values, the artifact bucket, and the
/// keys of built packages for functions the stack does not have yet.
fn change_set_parameters(
    session: &Session,
    committed: &Template,
    deployed: &BTreeMap<String, String>,
    artifacts: &[Artifact],
) -> Result<PreviewParameters, DeployError> {
    let bucket = bootstrap::bucket_name(&session.account_id, &session.region, &session.env_name)?;
    let mut parameters = Vec::new();
    for name in committed.parameter_names() {
        let artifact = artifacts.iter().find(|a| a.parameter_name() == name);
        let value = if name == "ArtifactBucket" {
            Some(bucket.clone())
        } else if let Some(artifact) = artifact.filter(|a| deployed.get(&name) != Some(&a.key())) {
            // A new package would need uploading first; the change set view only shows the
            // template's effect, so the deployed key is kept when there is one.
            if deployed.contains_key(&name) {
                None
            } else {
                Some(artifact.key())
            }
        } else if deployed.contains_key(&name) {
            None
        } else if committed.parameter_has_default(&name) {
            continue;
        } else {
            let function = function_of_code_key_parameter(&name).unwrap_or(name.clone());
            return Ok(PreviewParameters::Unavailable(format!(
                "no change set: the committed template adds the {function} function, whose package is not built; run `cargo xtask build` first"
            )));
        };
        parameters.push((name, value));
    }
    Ok(PreviewParameters::Values(parameters))
}

/// Creates the change set of a deploy of `body`, reads its rows and deletes it.
async fn preview_change_set(
    session: &Session,
    target: PatternEnv<'_>,
    body: &str,
    parameters: &[(String, Option<String>)],
    progress: &Progress,
) -> Result<Vec<ChangeRow>, DeployError> {
    let stack_name = target.stack_name();
    let spec = ChangeSetSpec {
        stack_name: &stack_name,
        create: false,
        template_body: body,
        parameters,
        tags: &crate::deploy::stack_tags(target.env, target.pattern),
        purpose: "diff",
    };
    Ok(
        match stack::create_change_set(session, &spec, progress).await? {
            ChangeSetResult::NoChanges => Vec::new(),
            ChangeSetResult::Ready(change_set) => {
                stack::delete_change_set(session, &stack_name, &change_set.id).await?;
                change_set.rows
            }
        },
    )
}
