//! IAM roles with inline policies, and typed policy documents.
//!
//! Roles carry their policies inline (`Policies`) rather than through `AWS::IAM::ManagedPolicy`:
//! a policy then lives and dies with its role, and the local emulator cannot delete stacks that
//! hold managed policies. Actions are [`Action`] values, so a wildcard is visible in the type and
//! the policy checks can refuse it.

use std::borrow::Cow;
use std::fmt;

use indexmap::IndexMap;
use serde::{Serialize, Serializer};

use super::{Expr, Tag};

/// `AWS::IAM::Role`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    /// What the role is for.
    pub description: String,
    /// Who may assume the role.
    pub assume_role_policy_document: PolicyDocument,
    /// Inline policies.
    pub policies: Vec<InlinePolicy>,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// An inline policy of a role.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InlinePolicy {
    /// Policy name, unique within the role.
    pub policy_name: String,
    /// The permissions.
    pub policy_document: PolicyDocument,
}

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// Policy language version.
    pub version: PolicyVersion,
    /// Statements.
    pub statement: Vec<Statement>,
}

impl PolicyDocument {
    /// A document of these statements.
    pub fn new(statement: Vec<Statement>) -> PolicyDocument {
        PolicyDocument {
            version: PolicyVersion::V2012_10_17,
            statement,
        }
    }

    /// The trust policy letting an AWS service assume a role.
    pub fn assumed_by(service: &str) -> PolicyDocument {
        PolicyDocument::new(vec![Statement {
            sid: None,
            effect: Effect::Allow,
            principal: Some(Principal::service(service)),
            action: vec![Action::new("sts", "AssumeRole")],
            resource: Vec::new(),
            condition: None,
        }])
    }
}

/// IAM policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PolicyVersion {
    /// The current version; the only one with policy variables.
    #[serde(rename = "2012-10-17")]
    V2012_10_17,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// Statement id (letters and digits), saying what the statement is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Allow or deny.
    pub effect: Effect,
    /// Who (trust policies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// What.
    pub action: Vec<Action>,
    /// On which resources (empty in trust policies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource: Vec<Expr>,
    /// Extra conditions, operator -> key -> value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<IndexMap<String, IndexMap<String, Expr>>>,
}

impl Statement {
    /// An `Allow` statement.
    pub fn allow(sid: &str, action: Vec<Action>, resource: Vec<Expr>) -> Statement {
        Statement {
            sid: Some(sid.to_owned()),
            effect: Effect::Allow,
            principal: None,
            action,
            resource,
            condition: None,
        }
    }
}

/// Effect of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Denies, whatever else grants.
    Deny,
}

/// The principal of a trust policy or key policy statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Principal {
    /// AWS accounts or roles, by ARN.
    #[serde(rename = "AWS", skip_serializing_if = "Vec::is_empty")]
    pub aws: Vec<Expr>,
    /// AWS services, e.g. `lambda.amazonaws.com`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service: Vec<String>,
}

impl Principal {
    /// An AWS service.
    pub fn service(service: &str) -> Principal {
        Principal {
            aws: Vec::new(),
            service: vec![service.to_owned()],
        }
    }

    /// The account the stack is deployed in (its root: the account's IAM policies decide).
    pub fn this_account() -> Principal {
        Principal {
            aws: vec![Expr::sub(
                "arn:${AWS::Partition}:iam::${AWS::AccountId}:root",
            )],
            service: Vec::new(),
        }
    }
}

/// An IAM action, `service:Name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Action {
    /// Service prefix, e.g. `sqs`.
    pub service: Cow<'static, str>,
    /// Action name, e.g. `SendMessage`.
    pub name: Cow<'static, str>,
}

impl Action {
    /// An action; [`Action::is_wildcard`] tells whether it names more than one action.
    pub const fn new(service: &'static str, name: &'static str) -> Action {
        Action {
            service: Cow::Borrowed(service),
            name: Cow::Borrowed(name),
        }
    }

    /// Whether the action is a pattern rather than one action (`*`, `sqs:*`, `s3:Get*`).
    pub fn is_wildcard(&self) -> bool {
        self.service.contains(['*', '?']) || self.name.contains(['*', '?'])
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.name)
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The actions sagaform grants, named once so roles and tests agree on the spelling.
pub mod actions {
    use super::Action;

    /// `logs:CreateLogStream`.
    pub const LOGS_CREATE_LOG_STREAM: Action = Action::new("logs", "CreateLogStream");
    /// `logs:PutLogEvents`.
    pub const LOGS_PUT_LOG_EVENTS: Action = Action::new("logs", "PutLogEvents");
    /// `logs:CreateLogDelivery` (Step Functions log delivery).
    pub const LOGS_CREATE_LOG_DELIVERY: Action = Action::new("logs", "CreateLogDelivery");
    /// `logs:GetLogDelivery`.
    pub const LOGS_GET_LOG_DELIVERY: Action = Action::new("logs", "GetLogDelivery");
    /// `logs:UpdateLogDelivery`.
    pub const LOGS_UPDATE_LOG_DELIVERY: Action = Action::new("logs", "UpdateLogDelivery");
    /// `logs:DeleteLogDelivery`.
    pub const LOGS_DELETE_LOG_DELIVERY: Action = Action::new("logs", "DeleteLogDelivery");
    /// `logs:ListLogDeliveries`.
    pub const LOGS_LIST_LOG_DELIVERIES: Action = Action::new("logs", "ListLogDeliveries");
    /// `logs:PutResourcePolicy`.
    pub const LOGS_PUT_RESOURCE_POLICY: Action = Action::new("logs", "PutResourcePolicy");
    /// `logs:DescribeResourcePolicies`.
    pub const LOGS_DESCRIBE_RESOURCE_POLICIES: Action =
        Action::new("logs", "DescribeResourcePolicies");
    /// `logs:DescribeLogGroups`.
    pub const LOGS_DESCRIBE_LOG_GROUPS: Action = Action::new("logs", "DescribeLogGroups");

    /// `dynamodb:GetItem`.
    pub const DYNAMODB_GET_ITEM: Action = Action::new("dynamodb", "GetItem");
    /// `dynamodb:PutItem`.
    pub const DYNAMODB_PUT_ITEM: Action = Action::new("dynamodb", "PutItem");
    /// `dynamodb:UpdateItem`.
    pub const DYNAMODB_UPDATE_ITEM: Action = Action::new("dynamodb", "UpdateItem");
    /// `dynamodb:DeleteItem`.
    pub const DYNAMODB_DELETE_ITEM: Action = Action::new("dynamodb", "DeleteItem");
    /// `dynamodb:Query`.
    pub const DYNAMODB_QUERY: Action = Action::new("dynamodb", "Query");

    /// `sqs:SendMessage`.
    pub const SQS_SEND_MESSAGE: Action = Action::new("sqs", "SendMessage");
    /// `sqs:ReceiveMessage`.
    pub const SQS_RECEIVE_MESSAGE: Action = Action::new("sqs", "ReceiveMessage");
    /// `sqs:DeleteMessage`.
    pub const SQS_DELETE_MESSAGE: Action = Action::new("sqs", "DeleteMessage");
    /// `sqs:ChangeMessageVisibility`.
    pub const SQS_CHANGE_MESSAGE_VISIBILITY: Action = Action::new("sqs", "ChangeMessageVisibility");
    /// `sqs:GetQueueAttributes`.
    pub const SQS_GET_QUEUE_ATTRIBUTES: Action = Action::new("sqs", "GetQueueAttributes");

    /// `states:StartExecution`.
    pub const STATES_START_EXECUTION: Action = Action::new("states", "StartExecution");
    /// `lambda:InvokeFunction`.
    pub const LAMBDA_INVOKE_FUNCTION: Action = Action::new("lambda", "InvokeFunction");
    /// `secretsmanager:GetSecretValue`.
    pub const SECRETSMANAGER_GET_SECRET_VALUE: Action =
        Action::new("secretsmanager", "GetSecretValue");

    /// `ec2:CreateNetworkInterface` (Lambda in a VPC).
    pub const EC2_CREATE_NETWORK_INTERFACE: Action = Action::new("ec2", "CreateNetworkInterface");
    /// `ec2:DescribeNetworkInterfaces`.
    pub const EC2_DESCRIBE_NETWORK_INTERFACES: Action =
        Action::new("ec2", "DescribeNetworkInterfaces");
    /// `ec2:DescribeSubnets`.
    pub const EC2_DESCRIBE_SUBNETS: Action = Action::new("ec2", "DescribeSubnets");
    /// `ec2:DeleteNetworkInterface`.
    pub const EC2_DELETE_NETWORK_INTERFACE: Action = Action::new("ec2", "DeleteNetworkInterface");
    /// `ec2:AssignPrivateIpAddresses`.
    pub const EC2_ASSIGN_PRIVATE_IP_ADDRESSES: Action =
        Action::new("ec2", "AssignPrivateIpAddresses");
    /// `ec2:UnassignPrivateIpAddresses`.
    pub const EC2_UNASSIGN_PRIVATE_IP_ADDRESSES: Action =
        Action::new("ec2", "UnassignPrivateIpAddresses");
}
