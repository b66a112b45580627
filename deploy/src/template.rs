//! Reading CloudFormation templates (committed or deployed) into a normal form: the YAML
//! short-form tags (`!Ref`, `!GetAtt A.Arn`, `!Sub`, ...) become their long JSON form
//! (`{"Ref": ..}`, `{"Fn::GetAtt": [..]}`), so a YAML and a JSON template compare equal when
//! CloudFormation would treat them the same. Facts the deploy needs are read from that form:
//! parameters, resource types, Retain policies, outputs and the permissions the template grants.

use std::collections::BTreeSet;

use serde_yaml_ng::{Mapping, Value};

use crate::DeployError;

/// Resource types moto's CloudFormation does not create (DESIGN.md): they deploy as no-ops on the
/// local emulator, and a `GetAtt` on them fails there.
pub const NOT_EMULATED: [&str; 5] = [
    "AWS::CloudWatch::Alarm",
    "AWS::ApiGatewayV2::*",
    "AWS::SecretsManager::Secret",
    "AWS::RDS::DBCluster",
    "AWS::SNS::Subscription",
];

/// A parsed template in long form. Mappings keep the template's order (so diffs read in the
/// order reviewers know), while equality ignores order, as CloudFormation does.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    body: Value,
}

/// One permission a template grants, small enough that widening a statement shows up as a new
/// grant: one action on one resource for one principal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The resource that grants it.
    pub logical_id: String,
    /// `Allow` or `Deny` (or `Ingress` / `Egress` for security group rules).
    pub effect: String,
    /// Action, rule or permission, rendered.
    pub what: String,
    /// Resource, principal, condition, peer: rendered.
    pub on: String,
    /// The resource alone, for a policy statement's grant (none for rules and permissions).
    pub resource: Option<String>,
    /// The statement's principal and condition, rendered (empty for rules and permissions).
    pub context: String,
}

impl Template {
    /// Parses a YAML or JSON template; `file` names it in errors.
    pub fn parse(file: &str, body: &str) -> Result<Template, DeployError> {
        let yaml: Value = serde_yaml_ng::from_str(body).map_err(|e| DeployError::Template {
            file: file.to_owned(),
            reason: e.to_string(),
        })?;
        let body = long_form(yaml);
        if !body.is_mapping() {
            return Err(DeployError::Template {
                file: file.to_owned(),
                reason: "the top level is not a mapping".to_owned(),
            });
        }
        Ok(Template { body })
    }

    /// An empty template (a stack that does not exist yet).
    pub fn empty() -> Template {
        Template {
            body: Value::Mapping(Mapping::new()),
        }
    }

    /// The whole template in long form.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// The entries of a top-level section (`Resources`, `Parameters`, ...), in template order;
    /// empty when absent.
    pub fn section(&self, name: &str) -> Vec<(String, Value)> {
        self.body
            .get(name)
            .and_then(Value::as_mapping)
            .map(|m| m.iter().map(|(k, v)| (key_string(k), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Parameter names, in template order.
    pub fn parameter_names(&self) -> Vec<String> {
        self.section("Parameters")
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Whether a parameter has a default value (the deploy then leaves it to the template).
    pub fn parameter_has_default(&self, name: &str) -> bool {
        self.section("Parameters")
            .iter()
            .any(|(k, v)| k == name && v.get("Default").is_some())
    }

    /// Whether the template declares outputs.
    pub fn has_outputs(&self) -> bool {
        !self.section("Outputs").is_empty()
    }

    /// The distinct resource types.
    pub fn resource_types(&self) -> BTreeSet<String> {
        self.section("Resources")
            .iter()
            .filter_map(|(_, r)| r.get("Type").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    /// The resource types the local emulator does not create.
    pub fn not_emulated_types(&self) -> Vec<String> {
        self.resource_types()
            .into_iter()
            .filter(|t| {
                NOT_EMULATED
                    .iter()
                    .any(|pattern| match pattern.strip_suffix('*') {
                        Some(prefix) => t.starts_with(prefix),
                        None => t == pattern,
                    })
            })
            .collect()
    }

    /// Resources kept when the stack is deleted: `(logical id, type, policy)` for every
    /// `DeletionPolicy` of `Retain`, `RetainExceptOnCreate` or `Snapshot`.
    pub fn retained_resources(&self) -> Vec<(String, String, String)> {
        self.section("Resources")
            .into_iter()
            .filter_map(|(id, r)| {
                let policy = r.get("DeletionPolicy")?.as_str()?.to_owned();
                matches!(
                    policy.as_str(),
                    "Retain" | "RetainExceptOnCreate" | "Snapshot"
                )
                .then(|| {
                    let kind = r.get("Type").and_then(Value::as_str).unwrap_or("?");
                    (id, kind.to_owned(), policy)
                })
            })
            .collect()
    }

    /// Every permission the template grants: IAM statements (identity, trust and resource
    /// policies), managed policy attachments, Lambda permissions and security group rules.
    pub fn grants(&self) -> BTreeSet<Grant> {
        let mut grants = BTreeSet::new();
        for (id, resource) in self.section("Resources") {
            let kind = resource
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let props = resource.get("Properties").cloned().unwrap_or(Value::Null);
            resource_grants(&id, kind, &props, &mut grants);
        }
        grants
    }
}

/// The grants of one resource of type `kind` with properties `props`.
fn resource_grants(id: &str, kind: &str, props: &Value, grants: &mut BTreeSet<Grant>) {
    let grant = |effect: &str, what: String, on: String| Grant {
        logical_id: id.to_owned(),
        effect: effect.to_owned(),
        what,
        on,
        resource: None,
        context: String::new(),
    };
    match kind {
        "AWS::IAM::Role" => {
            statements(id, "trust", props.get("AssumeRolePolicyDocument"), grants);
            for policy in sequence(props.get("Policies")) {
                statements(id, "", policy.get("PolicyDocument"), grants);
            }
            for arn in sequence(props.get("ManagedPolicyArns")) {
                let what = format!("managed policy {}", render(&arn));
                grants.insert(grant("Allow", what, String::new()));
            }
        }
        "AWS::Lambda::Permission" => {
            let what = props.get("Action").map(render).unwrap_or_default();
            grants.insert(grant("Allow", what, render(props)));
        }
        "AWS::EC2::SecurityGroup" => {
            for (direction, key) in [
                ("Ingress", "SecurityGroupIngress"),
                ("Egress", "SecurityGroupEgress"),
            ] {
                for rule in sequence(props.get(key)) {
                    grants.insert(grant(direction, render(&rule), String::new()));
                }
            }
        }
        "AWS::EC2::SecurityGroupIngress" | "AWS::EC2::SecurityGroupEgress" => {
            let direction = kind.trim_start_matches("AWS::EC2::SecurityGroup");
            grants.insert(grant(direction, render(props), String::new()));
        }
        _ => {
            // Every other policy-holding resource carries a PolicyDocument (IAM::Policy,
            // QueuePolicy, TopicPolicy, BucketPolicy, ...), a KeyPolicy (KMS keys) or a
            // ResourcePolicy (Secrets Manager).
            let document = props
                .get("PolicyDocument")
                .or(props.get("KeyPolicy"))
                .or(props.get("ResourcePolicy"));
            statements(id, "", document, grants);
        }
    }
}

/// The items of a list property; none when it is absent or not a list.
fn sequence(value: Option<&Value>) -> Vec<Value> {
    value
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
}

/// Explodes a policy document into one grant per action and resource.
fn statements(id: &str, prefix: &str, document: Option<&Value>, grants: &mut BTreeSet<Grant>) {
    let Some(document) = document else { return };
    let list = match document.get("Statement") {
        Some(Value::Sequence(list)) => list.clone(),
        Some(single) => vec![single.clone()],
        None => return,
    };
    for statement in list {
        let effect = statement
            .get("Effect")
            .and_then(Value::as_str)
            .unwrap_or("Allow");
        // NotAction and NotResource grant everything but what they name, so they are kept apart
        // from Action and Resource: swapping one for the other is a different (wider) grant.
        let actions = match statement.get("NotAction") {
            Some(not) if statement.get("Action").is_none() => one_or_many(Some(not))
                .into_iter()
                .map(|a| format!("not {a}"))
                .collect(),
            _ => one_or_many(statement.get("Action")),
        };
        let resources = match statement.get("NotResource") {
            Some(not) if statement.get("Resource").is_none() => one_or_many(Some(not))
                .into_iter()
                .map(|r| format!("not {r}"))
                .collect(),
            _ => one_or_many(statement.get("Resource")),
        };
        let context = [
            statement
                .get("Principal")
                .map(|p| format!("principal {}", render(p))),
            statement
                .get("NotPrincipal")
                .map(|p| format!("not-principal {}", render(p))),
            statement
                .get("Condition")
                .map(|c| format!("if {}", render(c))),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        for action in &actions {
            for resource in &resources {
                let on = [resource.as_str(), context.as_str()]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                grants.insert(Grant {
                    logical_id: id.to_owned(),
                    effect: effect.to_owned(),
                    what: if prefix.is_empty() {
                        action.clone()
                    } else {
                        format!("{prefix} {action}")
                    },
                    on,
                    resource: Some(resource.clone()),
                    context: context.clone(),
                });
            }
        }
    }
}

fn one_or_many(value: Option<&Value>) -> Vec<String> {
    match value {
        None => vec![String::new()],
        Some(Value::Sequence(items)) if !items.is_empty() => items.iter().map(render).collect(),
        Some(other) => vec![render(other)],
    }
}

/// Replaces CloudFormation short-form tags by their long form, recursively.
fn long_form(value: Value) -> Value {
    match value {
        Value::Sequence(items) => Value::Sequence(items.into_iter().map(long_form).collect()),
        Value::Mapping(map) => Value::Mapping(
            map.into_iter()
                .map(|(k, v)| (Value::String(key_string(&k)), long_form(v)))
                .collect(),
        ),
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!').to_owned();
            let value = long_form(tagged.value);
            let (key, value) = match name.as_str() {
                "Ref" | "Condition" => (name, value),
                // `!GetAtt Res.Attr.Sub` splits at the first dot only.
                "GetAtt" => match value {
                    Value::String(s) => match s.split_once('.') {
                        Some((resource, attribute)) => (
                            "Fn::GetAtt".to_owned(),
                            Value::Sequence(vec![resource.into(), attribute.into()]),
                        ),
                        None => ("Fn::GetAtt".to_owned(), Value::String(s)),
                    },
                    other => ("Fn::GetAtt".to_owned(), other),
                },
                _ => (format!("Fn::{name}"), value),
            };
            let mut mapping = Mapping::new();
            mapping.insert(Value::String(key), value);
            Value::Mapping(mapping)
        }
        scalar => scalar,
    }
}

fn key_string(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => "null".to_owned(),
        other => serde_yaml_ng::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// The function name and argument of one intrinsic function call (`{"Ref": ..}`,
/// `{"Fn::X": ..}`).
pub(crate) fn intrinsic(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_mapping()?;
    if map.len() != 1 {
        return None;
    }
    let (key, arg) = map.iter().next()?;
    let key = key.as_str()?;
    (key == "Ref" || key == "Condition" || key.starts_with("Fn::")).then_some((key, arg))
}

/// A compact one-line rendering, intrinsics in their short form: `!GetAtt Queue.Arn`.
pub fn render(value: &Value) -> String {
    if let Some((key, arg)) = intrinsic(value) {
        let name = key.strip_prefix("Fn::").unwrap_or(key);
        return match (name, arg) {
            ("GetAtt", Value::Sequence(parts)) if parts.iter().all(Value::is_string) => format!(
                "!GetAtt {}",
                parts
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            _ => format!("!{name} {}", render(arg)),
        };
    }
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            // Quoted only where the plain text would be ambiguous inside the one-line form.
            let ambiguous = s.is_empty()
                || s.trim() != s
                || s.contains(['\n', '"'])
                || s.contains(", ")
                || s.starts_with(['{', '[', '!', '\'']);
            if ambiguous {
                format!("{s:?}")
            } else {
                s.clone()
            }
        }
        Value::Sequence(items) => format!(
            "[{}]",
            items.iter().map(render).collect::<Vec<_>>().join(", ")
        ),
        Value::Mapping(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", key_string(k), render(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, render(&tagged.value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
Parameters:
  ArtifactBucket: {Type: String}
  ApiCodeKey: {Type: String}
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: Retain
    Properties:
      TableName: !Sub "${AWS::StackName}-sagas"
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
      Policies:
        - PolicyName: data
          PolicyDocument:
            Statement:
              - Effect: Allow
                Action: [dynamodb:GetItem, dynamodb:PutItem]
                Resource: !GetAtt Table.Arn
  Alarm:
    Type: AWS::CloudWatch::Alarm
Outputs:
  TableName: {Value: !Ref Table}
"#;

    const JSON: &str = r#"{
 "Parameters": {"ArtifactBucket": {"Type": "String"}, "ApiCodeKey": {"Type": "String"}},
 "Resources": {
  "Table": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain",
            "Properties": {"TableName": {"Fn::Sub": "${AWS::StackName}-sagas"}}},
  "Role": {"Type": "AWS::IAM::Role", "Properties": {
    "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
    "Policies": [{"PolicyName": "data", "PolicyDocument": {"Statement": [
      {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": {"Fn::GetAtt": ["Table", "Arn"]}}]}}]}},
  "Alarm": {"Type": "AWS::CloudWatch::Alarm"}},
 "Outputs": {"TableName": {"Value": {"Ref": "Table"}}}
}"#;

    #[test]
    fn short_form_yaml_and_long_form_json_are_the_same_template() {
        let yaml = Template::parse("a.yaml", YAML).unwrap();
        let json = Template::parse("a.json", JSON).unwrap();
        assert_eq!(yaml, json);
    }

    #[test]
    fn facts_are_read_from_the_template() {
        let t = Template::parse("a.yaml", YAML).unwrap();
        assert_eq!(t.parameter_names(), ["ArtifactBucket", "ApiCodeKey"]);
        assert!(t.has_outputs());
        assert_eq!(
            t.retained_resources(),
            [(
                "Table".to_owned(),
                "AWS::DynamoDB::Table".to_owned(),
                "Retain".to_owned()
            )]
        );
        assert_eq!(t.not_emulated_types(), ["AWS::CloudWatch::Alarm"]);
    }

    #[test]
    fn grants_are_one_action_on_one_resource() {
        let t = Template::parse("a.yaml", YAML).unwrap();
        let whats: Vec<String> = t
            .grants()
            .into_iter()
            .map(|g| format!("{} {} {}", g.effect, g.what, g.on))
            .collect();
        assert!(
            whats.contains(&"Allow dynamodb:GetItem !GetAtt Table.Arn".to_owned()),
            "{whats:?}"
        );
        assert!(whats.contains(&"Allow dynamodb:PutItem !GetAtt Table.Arn".to_owned()));
        assert!(
            whats
                .iter()
                .any(|w| w.starts_with("Allow trust sts:AssumeRole"))
        );
    }

    #[test]
    fn intrinsics_render_in_short_form() {
        let t = Template::parse("a.yaml", YAML).unwrap();
        let resources = t.section("Resources");
        let table = &resources.iter().find(|(id, _)| id == "Table").unwrap().1;
        assert_eq!(
            render(&table["Properties"]["TableName"]),
            "!Sub ${AWS::StackName}-sagas"
        );
    }
}
