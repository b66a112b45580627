//! The security-relevant part of a template change, as rows a reviewer must look at: permissions
//! granted or widened (IAM statements, trust, key and resource policies, security group rules,
//! Lambda permissions), Deny statements removed, API authentication removed, encryption removed
//! or turned off, deletion policies weakened, stateful resources deleted, protections turned off
//! (deletion, point-in-time recovery, TLS, key rotation, backups), and alarms or their
//! subscriptions removed, silenced or loosened.
//!
//! Only what makes the stack less safe is a row: a narrowed statement or a stricter alarm is not.
//! The rows come from the two parsed templates, so they are the same whether the old template was
//! deployed (`diff --env`) or committed at a git ref (`diff --base`).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_yaml_ng::Value;

use crate::template::{Grant, Template, render};

/// Why a row is a risk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// A permission or rule that did not exist before (on a new resource).
    Added,
    /// A permission, principal or rule added to an existing resource, or a condition dropped.
    Widened,
    /// A protection removed: a Deny statement, encryption, an alarm or its actions.
    Removed,
    /// A protection switched off (`true` to `false`).
    TurnedOff,
    /// A deletion or replacement policy that keeps less data.
    Weakened,
    /// An alarm that goes off later or less often, or fewer days of backups.
    Loosened,
    /// A change whose direction cannot be judged (a comparison operator), worth a look.
    Changed,
}

impl Risk {
    /// The word shown in the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Added => "added",
            Risk::Widened => "widened",
            Risk::Removed => "removed",
            Risk::TurnedOff => "turned off",
            Risk::Weakened => "weakened",
            Risk::Loosened => "loosened",
            Risk::Changed => "changed",
        }
    }
}

/// One security-relevant change of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityChange {
    /// Logical id of the resource.
    pub resource: String,
    /// Its type, when the template names one.
    pub resource_type: Option<String>,
    /// What changed: `Allow dynamodb:DeleteItem`, `DeletionPolicy`, `Threshold`, ...
    pub what: String,
    /// The old value, rendered (absent when added).
    pub old: Option<String>,
    /// The new value, rendered (absent when removed).
    pub new: Option<String>,
    /// Why it is a risk.
    pub risk: Risk,
}

/// Property names whose values encrypt a resource; every leaf below them counts.
const ENCRYPTION_KEYS: [&str; 9] = [
    "SSESpecification",
    "KmsMasterKeyId",
    "SqsManagedSseEnabled",
    "StorageEncrypted",
    "KmsKeyId",
    "BucketEncryption",
    "Encrypted",
    "EncryptionConfiguration",
    "KmsDataKeyReusePeriodSeconds",
];

/// Boolean properties (dotted paths) that protect a resource when `true`: from deletion or
/// termination, from losing its data (point-in-time recovery), from plain-text traffic, or from
/// a key that never rotates.
const PROTECTION_KEYS: [&str; 6] = [
    "DeletionProtectionEnabled",
    "DeletionProtection",
    "DisableApiTermination",
    "PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled",
    "RequireTLS",
    "EnableKeyRotation",
];

/// Resource types that hold data: removing one from the template deletes the data unless its
/// DeletionPolicy keeps a snapshot or the resource.
const STATEFUL_TYPES: [&str; 9] = [
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::KMS::Key",
    "AWS::SecretsManager::Secret",
    "AWS::Logs::LogGroup",
    "AWS::RDS::DBCluster",
    "AWS::RDS::DBInstance",
    "AWS::S3::Bucket",
    "AWS::SNS::Topic",
];

/// Every change from `old` to `new` that makes the stack less safe, resource by resource in the
/// new template's order (removed resources last).
pub fn security_changes(old: &Template, new: &Template) -> Vec<SecurityChange> {
    let old_resources: BTreeMap<String, Value> = old.section("Resources").into_iter().collect();
    let new_resources = new.section("Resources");
    let mut changes = grant_changes(old, new, &old_resources);
    for (id, resource) in &new_resources {
        let Some(previous) = old_resources.get(id) else {
            continue;
        };
        let row = |what: &str, old: Option<String>, new: Option<String>, risk| SecurityChange {
            resource: id.clone(),
            resource_type: resource_type(resource),
            what: what.to_owned(),
            old,
            new,
            risk,
        };
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            let (before, after) = (policy_of(previous, policy), policy_of(resource, policy));
            if retention(&before) > retention(&after) {
                changes.push(row(policy, Some(before), Some(after), Risk::Weakened));
            }
        }
        let (props_old, props_new) = (properties(previous), properties(resource));
        for (path, value) in encryption_leaves(&props_old) {
            match leaf(&props_new, &path) {
                None => changes.push(row(&path, Some(render(&value)), None, Risk::Removed)),
                Some(now) if is_true(&value) && is_false(&now) => changes.push(row(
                    &path,
                    Some(render(&value)),
                    Some(render(&now)),
                    Risk::TurnedOff,
                )),
                Some(_) => {}
            }
        }
        for key in PROTECTION_KEYS {
            let before = leaf(&props_old, key);
            let after = leaf(&props_new, key);
            if before.as_ref().is_some_and(is_true) && !after.as_ref().is_some_and(is_true) {
                changes.push(row(
                    key,
                    before.as_ref().map(render),
                    Some(after.as_ref().map_or_else(|| "(absent)".to_owned(), render)),
                    Risk::TurnedOff,
                ));
            }
        }
        // A database reachable from outside its network, false when absent.
        let public = |props: &Value| props.get("PubliclyAccessible").is_some_and(is_true);
        if !public(&props_old) && public(&props_new) {
            changes.push(row(
                "PubliclyAccessible",
                Some(
                    props_old
                        .get("PubliclyAccessible")
                        .map_or_else(|| "(absent)".to_owned(), render),
                ),
                props_new.get("PubliclyAccessible").map(render),
                Risk::Widened,
            ));
        }
        // Fewer days of automated backups; RDS keeps one day when the property is absent.
        let backups = |props: &Value| number(props, "BackupRetentionPeriod").unwrap_or(1.0);
        if props_old.get("BackupRetentionPeriod").is_some()
            && backups(&props_new) < backups(&props_old)
        {
            changes.push(row(
                "BackupRetentionPeriod",
                props_old.get("BackupRetentionPeriod").map(render),
                Some(
                    props_new
                        .get("BackupRetentionPeriod")
                        .map_or_else(|| "(absent)".to_owned(), render),
                ),
                Risk::Loosened,
            ));
        }
        match resource_type(resource).as_deref() {
            Some("AWS::ApiGatewayV2::Route") => {
                if let Some((before, after)) = route_auth_removed(&props_old, &props_new) {
                    changes.push(row(
                        "AuthorizationType",
                        Some(before),
                        Some(after),
                        Risk::TurnedOff,
                    ));
                }
            }
            Some("AWS::ApiGatewayV2::Authorizer") => {
                for (what, before, after, risk) in authorizer_changes(&props_old, &props_new) {
                    changes.push(row(&what, before, after, risk));
                }
            }
            _ => {}
        }
        if resource_type(resource).as_deref() == Some("AWS::CloudWatch::Alarm") {
            for (what, before, after, risk) in alarm_changes(&props_old, &props_new) {
                changes.push(row(&what, before, after, risk));
            }
        }
    }
    changes.extend(open_routes(&new_resources, &old_resources));
    let new_ids: BTreeSet<&str> = new_resources.iter().map(|(id, _)| id.as_str()).collect();
    for (id, resource) in old.section("Resources") {
        if new_ids.contains(id.as_str()) {
            continue;
        }
        let kind = resource_type(&resource);
        let props = properties(&resource);
        let removed = |what: &str, old: Option<String>| SecurityChange {
            resource: id.clone(),
            resource_type: kind.clone(),
            what: what.to_owned(),
            old,
            new: None,
            risk: Risk::Removed,
        };
        match kind.as_deref() {
            Some("AWS::CloudWatch::Alarm") => {
                changes.push(removed("alarm", props.get("AlarmDescription").map(render)));
            }
            // A subscription is how an alarm's topic reaches people: removing it silences them.
            Some("AWS::SNS::Subscription") => {
                let endpoint = ["Protocol", "Endpoint"]
                    .iter()
                    .filter_map(|key| props.get(*key).map(render))
                    .collect::<Vec<_>>()
                    .join(" ");
                changes.push(removed("subscription", Some(endpoint)));
            }
            Some(stateful) if STATEFUL_TYPES.contains(&stateful) => {
                let policy = policy_of(&resource, "DeletionPolicy");
                if retention(&policy) < retention("Snapshot") {
                    changes.push(removed(
                        "resource deleted",
                        Some(format!("DeletionPolicy {policy}")),
                    ));
                }
            }
            _ => {}
        }
    }
    changes
}

/// The old and new authorization of a route that no longer asks for one: its type turned to
/// `NONE` (the default when absent), or its authorizer dropped.
fn route_auth_removed(old: &Value, new: &Value) -> Option<(String, String)> {
    let (before, after) = (authorization(old), authorization(new));
    if before == "NONE" {
        return None;
    }
    let authorizer_dropped = old.get("AuthorizerId").is_some() && new.get("AuthorizerId").is_none();
    if after == "NONE" || authorizer_dropped {
        let show = |auth: String, props: &Value| match props.get("AuthorizerId") {
            Some(id) => format!("{auth} {}", render(id)),
            None => auth,
        };
        return Some((show(before, old), show(after, new)));
    }
    None
}

/// A route's `AuthorizationType`, `NONE` when absent (API Gateway's default).
fn authorization(props: &Value) -> String {
    props
        .get("AuthorizationType")
        .map_or_else(|| "NONE".to_owned(), render)
}

/// New routes without authorization on an API whose other routes use an authorizer: likely an
/// endpoint that was meant to be protected like its neighbours.
fn open_routes(
    new_resources: &[(String, Value)],
    old_resources: &BTreeMap<String, Value>,
) -> Vec<SecurityChange> {
    let routes: Vec<(&String, Value)> = new_resources
        .iter()
        .filter(|(_, r)| resource_type(r).as_deref() == Some("AWS::ApiGatewayV2::Route"))
        .map(|(id, r)| (id, properties(r)))
        .collect();
    let api = |props: &Value| props.get("ApiId").map(render);
    let mut changes = Vec::new();
    for (id, props) in &routes {
        if old_resources.contains_key(*id) || authorization(props) != "NONE" {
            continue;
        }
        let guarded = routes
            .iter()
            .any(|(other, p)| other != id && api(p) == api(props) && authorization(p) != "NONE");
        if guarded {
            changes.push(SecurityChange {
                resource: (*id).clone(),
                resource_type: Some("AWS::ApiGatewayV2::Route".to_owned()),
                what: "AuthorizationType".to_owned(),
                old: None,
                new: Some(format!(
                    "NONE {}",
                    props.get("RouteKey").map(render).unwrap_or_default()
                )),
                risk: Risk::Added,
            });
        }
    }
    changes
}

/// A JWT authorizer that trusts another issuer or more audiences.
fn authorizer_changes(
    old: &Value,
    new: &Value,
) -> Vec<(String, Option<String>, Option<String>, Risk)> {
    let mut changes = Vec::new();
    let jwt = |props: &Value, key: &str| {
        props
            .get("JwtConfiguration")
            .and_then(|j| j.get(key))
            .cloned()
    };
    let (issuer_old, issuer_new) = (jwt(old, "Issuer"), jwt(new, "Issuer"));
    if issuer_old != issuer_new {
        changes.push((
            "JwtConfiguration.Issuer".to_owned(),
            issuer_old.as_ref().map(render),
            issuer_new.as_ref().map(render),
            Risk::Changed,
        ));
    }
    let audience = |props: &Value| -> Vec<String> {
        match jwt(props, "Audience") {
            Some(Value::Sequence(items)) => items.iter().map(render).collect(),
            Some(one) => vec![render(&one)],
            None => Vec::new(),
        }
    };
    let before = audience(old);
    for added in audience(new).into_iter().filter(|a| !before.contains(a)) {
        changes.push((
            "JwtConfiguration.Audience".to_owned(),
            None,
            Some(added),
            Risk::Widened,
        ));
    }
    changes
}

/// Permissions granted now and not before (Allow statements, trust and resource policy
/// principals, security group rules, Lambda permissions) and Deny statements dropped. A grant is
/// one action on one resource for one principal under one condition, so an added action,
/// resource or principal, or a dropped condition, is a new grant.
fn grant_changes(
    old: &Template,
    new: &Template,
    old_resources: &BTreeMap<String, Value>,
) -> Vec<SecurityChange> {
    let (before, after) = (old.grants(), new.grants());
    let types: BTreeMap<String, Value> = new.section("Resources").into_iter().collect();
    let type_of = |id: &str| {
        types
            .get(id)
            .or(old_resources.get(id))
            .and_then(resource_type)
    };
    let gone: Vec<&Grant> = before.difference(&after).collect();
    let mut changes = Vec::new();
    for grant in after.difference(&before) {
        // A grant an old one covered (`*` narrowed to one ARN, `s3:*` to `s3:GetObject`, or a
        // narrower statement next to a wide one that stays) grants nothing new.
        if grant.effect == "Deny" || before.iter().any(|g| covers(g, grant)) {
            continue;
        }
        // What the same resource granted in its place, when it granted it otherwise before (a
        // condition dropped, a rule's CIDR or ports changed).
        let replaced = gone
            .iter()
            .find(|g| {
                g.logical_id == grant.logical_id && g.effect == grant.effect && g.what == grant.what
            })
            .or_else(|| {
                let same: Vec<&&Grant> = gone
                    .iter()
                    .filter(|g| g.logical_id == grant.logical_id && g.effect == grant.effect)
                    .collect();
                (same.len() == 1).then(|| same[0])
            });
        let risk = if old_resources.contains_key(&grant.logical_id) {
            Risk::Widened
        } else {
            Risk::Added
        };
        changes.push(SecurityChange {
            resource: grant.logical_id.clone(),
            resource_type: type_of(&grant.logical_id),
            what: grant_what(grant),
            old: replaced.map(|g| grant_on(g)),
            new: Some(grant_on(grant)),
            risk,
        });
    }
    // Every Deny grant that is gone is a row, even when a Deny of the same action remains: a Deny
    // narrowed to fewer resources, principals or conditions lets through what it used to stop.
    for grant in gone.iter().filter(|g| g.effect == "Deny") {
        // A Deny replaced by a wider one (`s3:DeleteObject` by `s3:*`) still denies it.
        if after.iter().any(|g| covers(g, grant)) {
            continue;
        }
        changes.push(SecurityChange {
            resource: grant.logical_id.clone(),
            resource_type: type_of(&grant.logical_id),
            what: grant_what(grant),
            old: Some(grant_on(grant)),
            new: None,
            risk: Risk::Removed,
        });
    }
    changes
}

/// Whether `wide` grants (or denies) everything `narrow` does: the same resource, effect,
/// principal and condition, with an action and a resource that IAM's wildcards (`*`, `?`) in
/// `wide` match. Only policy statements qualify; `NotAction` and `NotResource` grants must be
/// equal, since a wider pattern there excludes more and so grants less.
fn covers(wide: &Grant, narrow: &Grant) -> bool {
    let (Some(wide_resource), Some(narrow_resource)) = (&wide.resource, &narrow.resource) else {
        return false;
    };
    let negated = |s: &str| s.starts_with("not ") || s.starts_with("trust not ");
    let matches = |pattern: &str, text: &str| {
        if negated(pattern) || negated(text) {
            pattern == text
        } else {
            glob(pattern, text)
        }
    };
    wide.logical_id == narrow.logical_id
        && wide.effect == narrow.effect
        && wide.context == narrow.context
        && matches(&wide.what.to_lowercase(), &narrow.what.to_lowercase())
        && matches(wide_resource, narrow_resource)
}

/// IAM's wildcard match: `*` stands for any run of characters, `?` for any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) =
        (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it was tried at, to backtrack to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((at, from)) = star {
            star = Some((at, from + 1));
            p = at + 1;
            t = from + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// The grant's effect and action (or the rule, for security groups, whose `on` is empty).
fn grant_what(grant: &Grant) -> String {
    match grant.effect.as_str() {
        "Ingress" | "Egress" => format!("{} rule", grant.effect),
        _ => format!("{} {}", grant.effect, grant.what),
    }
}

/// What the grant applies to: resource, principal and condition, or the whole rule.
fn grant_on(grant: &Grant) -> String {
    match grant.effect.as_str() {
        "Ingress" | "Egress" => grant.what.clone(),
        _ if grant.on.is_empty() => "*".to_owned(),
        _ => grant.on.clone(),
    }
}

/// Alarm changes that make it go off later, less often or to nobody.
fn alarm_changes(old: &Value, new: &Value) -> Vec<(String, Option<String>, Option<String>, Risk)> {
    let mut changes = Vec::new();
    let actions = |props: &Value| -> Vec<String> {
        props
            .get("AlarmActions")
            .and_then(Value::as_sequence)
            .map(|items| items.iter().map(render).collect())
            .unwrap_or_default()
    };
    let now = actions(new);
    for action in actions(old).into_iter().filter(|a| !now.contains(a)) {
        changes.push(("AlarmActions".to_owned(), Some(action), None, Risk::Removed));
    }
    if old.get("ActionsEnabled").is_none_or(|v| !is_false(v))
        && new.get("ActionsEnabled").is_some_and(is_false)
    {
        let after = new.get("ActionsEnabled").map(render);
        changes.push(("ActionsEnabled".to_owned(), None, after, Risk::TurnedOff));
    }
    let operator = |props: &Value| {
        props
            .get("ComparisonOperator")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (op_old, op_new) = (operator(old), operator(new));
    if op_old != op_new {
        changes.push((
            "ComparisonOperator".to_owned(),
            op_old,
            op_new.clone(),
            Risk::Changed,
        ));
    } else if let (Some(before), Some(after)) = (number(old, "Threshold"), number(new, "Threshold"))
    {
        let op = op_new.unwrap_or_default();
        let looser = (op.starts_with("GreaterThan") && after > before)
            || (op.starts_with("LessThan") && after < before);
        if looser {
            changes.push((
                format!("Threshold ({op})"),
                Some(render(&old["Threshold"])),
                Some(render(&new["Threshold"])),
                Risk::Loosened,
            ));
        }
    }
    // An alarm goes off when DatapointsToAlarm of the EvaluationPeriods breach (all of them when
    // it is absent): more datapoints needed, or longer periods, mean later.
    let datapoints = |props: &Value| {
        number(props, "DatapointsToAlarm").or_else(|| number(props, "EvaluationPeriods"))
    };
    if let (Some(before), Some(after)) = (datapoints(old), datapoints(new))
        && after > before
    {
        changes.push((
            "DatapointsToAlarm".to_owned(),
            Some(before.to_string()),
            Some(after.to_string()),
            Risk::Loosened,
        ));
    }
    if let (Some(before), Some(after)) = (number(old, "Period"), number(new, "Period"))
        && after > before
    {
        changes.push((
            "Period".to_owned(),
            Some(render(&old["Period"])),
            Some(render(&new["Period"])),
            Risk::Loosened,
        ));
    }
    let missing = |props: &Value| {
        props
            .get("TreatMissingData")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if missing(old).as_deref() == Some("breaching") && missing(new).as_deref() != Some("breaching")
    {
        changes.push((
            "TreatMissingData".to_owned(),
            missing(old),
            Some(missing(new).unwrap_or_else(|| "(absent)".to_owned())),
            Risk::Loosened,
        ));
    }
    changes
}

fn resource_type(resource: &Value) -> Option<String> {
    resource
        .get("Type")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn properties(resource: &Value) -> Value {
    resource.get("Properties").cloned().unwrap_or(Value::Null)
}

/// A deletion or replacement policy, CloudFormation's default when absent: `Delete`, except the
/// DeletionPolicy of an RDS cluster or of an instance outside a cluster, which is `Snapshot`.
fn policy_of(resource: &Value, key: &str) -> String {
    if let Some(policy) = resource.get(key) {
        return render(policy);
    }
    let snapshot_by_default = key == "DeletionPolicy"
        && match resource_type(resource).as_deref() {
            Some("AWS::RDS::DBCluster") => true,
            Some("AWS::RDS::DBInstance") => {
                properties(resource).get("DBClusterIdentifier").is_none()
            }
            _ => false,
        };
    if snapshot_by_default {
        "Snapshot".to_owned()
    } else {
        "Delete".to_owned()
    }
}

/// How much a policy keeps: everything, a snapshot, or nothing.
fn retention(policy: &str) -> u8 {
    match policy {
        "Retain" | "RetainExceptOnCreate" => 2,
        "Snapshot" => 1,
        _ => 0,
    }
}

/// Every leaf below an encryption property, with its dotted path.
fn encryption_leaves(props: &Value) -> Vec<(String, Value)> {
    fn walk(value: &Value, path: String, inside: bool, out: &mut Vec<(String, Value)>) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            Value::Mapping(map) if crate::template::intrinsic(value).is_none() => {
                for (key, child) in map {
                    let key = key.as_str().unwrap_or_default();
                    walk(
                        child,
                        join(key),
                        inside || ENCRYPTION_KEYS.contains(&key),
                        out,
                    );
                }
            }
            Value::Sequence(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{index}]"), inside, out);
                }
            }
            leaf if inside => out.push((path, leaf.clone())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(props, String::new(), false, &mut out);
    out
}

/// The value at a dotted path written by [`encryption_leaves`].
fn leaf(props: &Value, path: &str) -> Option<Value> {
    let mut value = props;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        value = value.get(key)?;
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            value = value.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(value.clone())
}

fn is_true(value: &Value) -> bool {
    value.as_bool() == Some(true) || value.as_str() == Some("true")
}

fn is_false(value: &Value) -> bool {
    value.as_bool() == Some(false) || value.as_str() == Some("false")
}

fn number(props: &Value, key: &str) -> Option<f64> {
    let value = props.get(key)?;
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(old: &str, new: &str) -> Vec<SecurityChange> {
        security_changes(
            &Template::parse("old.yaml", old).unwrap(),
            &Template::parse("new.yaml", new).unwrap(),
        )
    }

    fn role(statements: &str) -> String {
        format!(
            "Resources:\n  Role:\n    Type: AWS::IAM::Role\n    Properties:\n      AssumeRolePolicyDocument:\n        Statement:\n          - {{Effect: Allow, Principal: {{Service: lambda.amazonaws.com}}, Action: sts:AssumeRole}}\n      Policies:\n        - PolicyName: p\n          PolicyDocument:\n            Statement:\n{statements}"
        )
    }

    fn rows(changes: &[SecurityChange]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                format!(
                    "{} {} {} -> {} {}",
                    c.resource,
                    c.what,
                    c.old.as_deref().unwrap_or("-"),
                    c.new.as_deref().unwrap_or("-"),
                    c.risk.as_str()
                )
            })
            .collect()
    }

    #[test]
    fn an_added_action_or_resource_widens_the_statement() {
        let old = role(
            "              - {Effect: Allow, Action: [sqs:SendMessage], Resource: !GetAtt Q.Arn}\n",
        );
        let new = role(
            "              - {Effect: Allow, Action: [sqs:SendMessage, sqs:PurgeQueue], Resource: [!GetAtt Q.Arn, !GetAtt D.Arn]}\n",
        );
        let found = rows(&changes(&old, &new));
        assert_eq!(
            found,
            [
                "Role Allow sqs:PurgeQueue - -> !GetAtt D.Arn widened",
                "Role Allow sqs:PurgeQueue - -> !GetAtt Q.Arn widened",
                "Role Allow sqs:SendMessage - -> !GetAtt D.Arn widened",
            ]
        );
        assert!(changes(&new, &old).is_empty(), "narrowing is no risk");
    }

    #[test]
    fn a_dropped_condition_widens_and_a_dropped_deny_is_removed() {
        let old = role(
            "              - {Effect: Allow, Action: s3:GetObject, Resource: '*', Condition: {Bool: {aws:SecureTransport: 'true'}}}\n              - {Effect: Deny, Action: s3:DeleteObject, Resource: '*'}\n",
        );
        let new = role("              - {Effect: Allow, Action: s3:GetObject, Resource: '*'}\n");
        let found = changes(&old, &new);
        let allow = found
            .iter()
            .find(|c| c.what == "Allow s3:GetObject")
            .unwrap();
        assert_eq!(allow.risk, Risk::Widened);
        assert!(
            allow
                .old
                .as_deref()
                .unwrap()
                .contains("aws:SecureTransport"),
            "{allow:?}"
        );
        assert_eq!(allow.new.as_deref(), Some("*"));
        let deny = found
            .iter()
            .find(|c| c.what == "Deny s3:DeleteObject")
            .unwrap();
        assert_eq!(deny.risk, Risk::Removed);
    }

    #[test]
    fn a_principal_added_to_a_trust_or_key_policy_is_listed() {
        let old = role("              - {Effect: Allow, Action: sqs:SendMessage, Resource: '*'}\n");
        let new = old.replace(
            "Principal: {Service: lambda.amazonaws.com}",
            "Principal: {Service: [lambda.amazonaws.com, ec2.amazonaws.com]}",
        );
        let found = rows(&changes(&old, &new));
        assert!(
            found
                .iter()
                .any(|r| r.starts_with("Role Allow trust sts:AssumeRole")
                    && r.contains("ec2.amazonaws.com")
                    && r.ends_with("widened")),
            "{found:?}"
        );

        let key = |principal: &str| {
            format!(
                "Resources:\n  Key:\n    Type: AWS::KMS::Key\n    Properties:\n      KeyPolicy:\n        Statement:\n          - {{Effect: Allow, Principal: {{AWS: {principal}}}, Action: 'kms:*', Resource: '*'}}\n"
            )
        };
        let found = changes(&key("!Ref AWS::AccountId"), &key("'*'"));
        assert!(
            found.iter().any(|c| c.resource == "Key"
                && c.risk == Risk::Widened
                && c.new.as_deref().unwrap().contains("principal {AWS: *}")),
            "{found:?}"
        );
    }

    #[test]
    fn security_group_rules_added_or_widened_are_listed_with_the_old_rule() {
        let sg = |cidr: &str| {
            format!(
                "Resources:\n  Sg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: g\n      SecurityGroupIngress:\n        - {{IpProtocol: tcp, FromPort: 5432, ToPort: 5432, CidrIp: {cidr}}}\n"
            )
        };
        let found = changes(&sg("10.0.0.0/16"), &sg("0.0.0.0/0"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].what, "Ingress rule");
        assert!(found[0].old.as_deref().unwrap().contains("10.0.0.0/16"));
        assert!(found[0].new.as_deref().unwrap().contains("0.0.0.0/0"));
        assert_eq!(found[0].risk, Risk::Widened);
    }

    #[test]
    fn a_new_lambda_permission_is_added() {
        let old = "Resources:\n  F:\n    Type: AWS::Lambda::Function\n";
        let new = format!(
            "{old}  P:\n    Type: AWS::Lambda::Permission\n    Properties:\n      Action: lambda:InvokeFunction\n      FunctionName: !Ref F\n      Principal: '*'\n"
        );
        let found = changes(old, &new);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].resource, "P");
        assert_eq!(found[0].what, "Allow lambda:InvokeFunction");
        assert_eq!(found[0].risk, Risk::Added);
    }

    #[test]
    fn encryption_removed_or_turned_off_is_listed() {
        let old = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      SSESpecification: {SSEEnabled: true, SSEType: KMS}\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      KmsMasterKeyId: !Ref Key\n  C:\n    Type: AWS::RDS::DBCluster\n    Properties:\n      StorageEncrypted: true\n";
        let new = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      SSESpecification: {SSEEnabled: false, SSEType: KMS}\n  Q:\n    Type: AWS::SQS::Queue\n    Properties:\n      SqsManagedSseEnabled: false\n  C:\n    Type: AWS::RDS::DBCluster\n";
        let found = rows(&changes(old, new));
        assert_eq!(
            found,
            [
                "T SSESpecification.SSEEnabled true -> false turned off",
                "Q KmsMasterKeyId !Ref Key -> - removed",
                "C StorageEncrypted true -> - removed",
            ],
        );
    }

    #[test]
    fn weaker_deletion_policies_and_protection_turned_off_are_listed() {
        let old = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Retain\n    UpdateReplacePolicy: Snapshot\n    Properties:\n      DeletionProtectionEnabled: true\n";
        let new = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Snapshot\n    Properties:\n      DeletionProtectionEnabled: false\n";
        let found = rows(&changes(old, new));
        assert_eq!(
            found,
            [
                "T DeletionPolicy Retain -> Snapshot weakened",
                "T UpdateReplacePolicy Snapshot -> Delete weakened",
                "T DeletionProtectionEnabled true -> false turned off",
            ],
        );
        assert!(
            changes(new, old).is_empty(),
            "stronger policies are no risk"
        );
    }

    fn alarm(body: &str) -> String {
        format!(
            "Resources:\n  A:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n      AlarmDescription: errors\n{body}"
        )
    }

    #[test]
    fn alarms_removed_silenced_or_loosened_are_listed() {
        let old = alarm(
            "      AlarmActions: [!Ref Topic]\n      ComparisonOperator: GreaterThanOrEqualToThreshold\n      Threshold: 1\n      EvaluationPeriods: 3\n      DatapointsToAlarm: 1\n      Period: 60\n",
        );
        let new = alarm(
            "      ComparisonOperator: GreaterThanOrEqualToThreshold\n      Threshold: 5\n      EvaluationPeriods: 3\n      Period: 300\n",
        );
        let found = rows(&changes(&old, &new));
        assert_eq!(
            found,
            [
                "A AlarmActions !Ref Topic -> - removed",
                "A Threshold (GreaterThanOrEqualToThreshold) 1 -> 5 loosened",
                "A DatapointsToAlarm 1 -> 3 loosened",
                "A Period 60 -> 300 loosened",
            ],
        );
        assert!(
            changes(&new, &old).is_empty(),
            "a stricter alarm is no risk"
        );

        let below = |t: &str| {
            alarm(&format!(
                "      ComparisonOperator: LessThanThreshold\n      Threshold: {t}\n"
            ))
        };
        assert_eq!(
            rows(&changes(&below("10"), &below("2"))),
            ["A Threshold (LessThanThreshold) 10 -> 2 loosened"]
        );
        assert!(changes(&below("2"), &below("10")).is_empty());

        let gone = changes(&old, "Resources: {}\n");
        assert_eq!(rows(&gone), ["A alarm errors -> - removed"]);
    }

    #[test]
    fn not_action_not_resource_and_not_principal_are_other_grants() {
        let old = role("              - {Effect: Allow, Action: s3:DeleteObject, Resource: '*'}\n");
        let new =
            role("              - {Effect: Allow, NotAction: s3:DeleteObject, Resource: '*'}\n");
        assert_eq!(
            rows(&changes(&old, &new)),
            ["Role Allow not s3:DeleteObject * -> * widened"]
        );

        let old = role(
            "              - {Effect: Allow, Action: s3:GetObject, Resource: arn:aws:s3:::b/k}\n",
        );
        let new = role(
            "              - {Effect: Allow, Action: s3:GetObject, NotResource: arn:aws:s3:::b/k}\n",
        );
        assert_eq!(
            rows(&changes(&old, &new)),
            ["Role Allow s3:GetObject arn:aws:s3:::b/k -> not arn:aws:s3:::b/k widened"]
        );

        let key = |principal: &str| {
            format!(
                "Resources:\n  Key:\n    Type: AWS::KMS::Key\n    Properties:\n      KeyPolicy:\n        Statement:\n          - {{Effect: Allow, {principal}, Action: kms:Decrypt, Resource: '*'}}\n"
            )
        };
        let found = changes(
            &key("Principal: {AWS: arn:aws:iam::1:root}"),
            &key("NotPrincipal: {AWS: arn:aws:iam::1:root}"),
        );
        assert!(
            found
                .iter()
                .any(|c| c.risk == Risk::Widened
                    && c.new.as_deref().unwrap().contains("not-principal")),
            "{found:?}"
        );
    }

    fn api(routes: &str) -> String {
        format!(
            "Resources:\n  Auth:\n    Type: AWS::ApiGatewayV2::Authorizer\n    Properties:\n      ApiId: !Ref Api\n      AuthorizerType: JWT\n      JwtConfiguration: {{Issuer: https://issuer.example, Audience: [app]}}\n{routes}"
        )
    }

    fn route(id: &str, key: &str, auth: &str) -> String {
        format!(
            "  {id}:\n    Type: AWS::ApiGatewayV2::Route\n    Properties:\n      ApiId: !Ref Api\n      RouteKey: {key}\n{auth}"
        )
    }

    const JWT: &str = "      AuthorizationType: JWT\n      AuthorizerId: !Ref Auth\n";

    #[test]
    fn api_authentication_removed_or_missing_on_a_new_route_is_listed() {
        let old = api(&route("Post", "POST /t", JWT));
        let new = api(&route("Post", "POST /t", ""));
        assert_eq!(
            rows(&changes(&old, &new)),
            ["Post AuthorizationType JWT !Ref Auth -> NONE turned off"]
        );
        let dropped = api(&route("Post", "POST /t", "      AuthorizationType: JWT\n"));
        assert_eq!(
            rows(&changes(&old, &dropped)),
            ["Post AuthorizationType JWT !Ref Auth -> JWT turned off"]
        );
        assert!(changes(&new, &old).is_empty(), "adding auth is no risk");

        let more = api(&format!(
            "{}{}",
            route("Post", "POST /t", JWT),
            route("Get", "GET /t", "")
        ));
        assert_eq!(
            rows(&changes(&old, &more)),
            ["Get AuthorizationType - -> NONE GET /t added"]
        );
        let guarded = api(&format!(
            "{}{}",
            route("Post", "POST /t", JWT),
            route("Get", "GET /t", JWT)
        ));
        assert!(changes(&old, &guarded).is_empty());
    }

    #[test]
    fn a_jwt_authorizer_trusting_another_issuer_or_audience_is_listed() {
        let old = api("");
        let new = old
            .replace("https://issuer.example", "https://other.example")
            .replace("[app]", "[app, other]");
        assert_eq!(
            rows(&changes(&old, &new)),
            [
                "Auth JwtConfiguration.Issuer https://issuer.example -> https://other.example changed",
                "Auth JwtConfiguration.Audience - -> other widened",
            ]
        );
        assert!(changes(&new, &new).is_empty());
    }

    #[test]
    fn a_narrowed_deny_is_removed() {
        let old = role(
            "              - {Effect: Deny, Action: s3:DeleteObject, Resource: [arn:aws:s3:::a/*, arn:aws:s3:::b/*]}\n",
        );
        let new = role(
            "              - {Effect: Deny, Action: s3:DeleteObject, Resource: arn:aws:s3:::a/*}\n",
        );
        assert_eq!(
            rows(&changes(&old, &new)),
            ["Role Deny s3:DeleteObject arn:aws:s3:::b/* -> - removed"]
        );
    }

    #[test]
    fn stateful_resources_deleted_and_subscriptions_removed_are_listed() {
        let old = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n  Kept:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Retain\n  C:\n    Type: AWS::RDS::DBCluster\n  I:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      DBClusterIdentifier: !Ref C\n  F:\n    Type: AWS::Lambda::Function\n  S:\n    Type: AWS::SNS::Subscription\n    Properties:\n      Protocol: email\n      Endpoint: ops@example.com\n";
        assert_eq!(
            rows(&changes(old, "Resources: {}\n")),
            [
                "T resource deleted DeletionPolicy Delete -> - removed",
                "I resource deleted DeletionPolicy Delete -> - removed",
                "S subscription email ops@example.com -> - removed",
            ]
        );
    }

    #[test]
    fn an_rds_cluster_keeps_a_snapshot_by_default() {
        let cluster =
            |policy: &str| format!("Resources:\n  C:\n    Type: AWS::RDS::DBCluster\n{policy}");
        assert!(changes(&cluster("    DeletionPolicy: Snapshot\n"), &cluster("")).is_empty());
        assert_eq!(
            rows(&changes(
                &cluster(""),
                &cluster("    DeletionPolicy: Delete\n")
            )),
            ["C DeletionPolicy Snapshot -> Delete weakened"]
        );
    }

    #[test]
    fn recovery_tls_rotation_public_access_and_backups_are_protections() {
        let old = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: true}\n  K:\n    Type: AWS::KMS::Key\n    Properties:\n      EnableKeyRotation: true\n  B:\n    Type: AWS::Some::Broker\n    Properties:\n      RequireTLS: true\n  D:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      BackupRetentionPeriod: 7\n";
        let new = "Resources:\n  T:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      PointInTimeRecoverySpecification: {PointInTimeRecoveryEnabled: false}\n  K:\n    Type: AWS::KMS::Key\n    Properties:\n      EnableKeyRotation: false\n  B:\n    Type: AWS::Some::Broker\n    Properties:\n      RequireTLS: false\n  D:\n    Type: AWS::RDS::DBInstance\n    Properties:\n      BackupRetentionPeriod: 1\n      PubliclyAccessible: true\n";
        assert_eq!(
            rows(&changes(old, new)),
            [
                "T PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled true -> false turned off",
                "K EnableKeyRotation true -> false turned off",
                "B RequireTLS true -> false turned off",
                "D PubliclyAccessible (absent) -> true widened",
                "D BackupRetentionPeriod 7 -> 1 loosened",
            ]
        );
        assert!(
            changes(new, old).is_empty(),
            "stronger protections are no risk"
        );
    }

    #[test]
    fn glob_matches_iam_wildcards() {
        assert!(glob("*", ""));
        assert!(glob("s3:*", "s3:GetObject"));
        assert!(glob("s3:Get*Acl", "s3:GetObjectAcl"));
        assert!(glob("arn:aws:s3:::b/?", "arn:aws:s3:::b/k"));
        assert!(!glob("arn:aws:s3:::b/?", "arn:aws:s3:::b/kk"));
        assert!(!glob("s3:Get*", "sqs:GetQueueUrl"));
        assert!(!glob("s3:GetObject", "s3:*"));
    }

    #[test]
    fn a_narrowed_allow_is_no_risk_and_a_widened_one_is() {
        let star = role("              - {Effect: Allow, Action: 's3:*', Resource: '*'}\n");
        let one = role(
            "              - {Effect: Allow, Action: s3:GetObject, Resource: arn:aws:s3:::b/k}\n",
        );
        assert!(changes(&star, &one).is_empty(), "narrowing is no risk");
        let both = star.replace("Resource: '*'}\n", "Resource: '*'}\n              - {Effect: Allow, Action: s3:GetObject, Resource: arn:aws:s3:::b/k}\n");
        assert_ne!(both, star);
        assert!(
            changes(&star, &both).is_empty(),
            "a covered grant adds nothing"
        );
        assert_eq!(
            rows(&changes(&one, &star)),
            ["Role Allow s3:* arn:aws:s3:::b/k -> * widened"]
        );

        let not = |action: &str| {
            role(&format!(
                "              - {{Effect: Allow, NotAction: '{action}', Resource: '*'}}\n"
            ))
        };
        assert_eq!(
            rows(&changes(&not("s3:*"), &not("s3:GetObject"))),
            ["Role Allow not s3:GetObject * -> * widened"],
            "excluding less grants more"
        );

        let deny = |action: &str| {
            role(&format!(
                "              - {{Effect: Deny, Action: '{action}', Resource: '*'}}\n"
            ))
        };
        assert!(changes(&deny("s3:DeleteObject"), &deny("s3:*")).is_empty());
        assert_eq!(
            rows(&changes(&deny("s3:*"), &deny("s3:DeleteObject"))),
            ["Role Deny s3:* * -> - removed"]
        );
    }
}
