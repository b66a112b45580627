//! A small, typed model of a CloudFormation template: only what sagaform's stacks use, with real
//! types for intrinsic functions ([`Expr`]), fixed values (enums) and IAM policy documents, and a
//! YAML writer that keeps CloudFormation's reviewable key order.
//!
//! Keys are written in the order reviewers expect (`AWSTemplateFormatVersion`, `Description`,
//! `Parameters`, `Conditions`, `Resources`, `Outputs`; inside a resource `Type`, `Condition`,
//! `DependsOn`, `DeletionPolicy`, `UpdateReplacePolicy`, `Metadata`, `Properties`), resources
//! in the order they were added, and every map is an [`IndexMap`], so the same input always
//! gives the same bytes.

pub mod apigatewayv2;
pub mod checkov;
pub mod cloudwatch;
pub mod custom;
pub mod dynamodb;
pub mod ec2;
mod expr;
pub mod iam;
pub mod kms;
pub mod lambda;
pub mod logs;
pub mod rds;
pub mod secretsmanager;
pub mod sns;
pub mod sqs;
pub mod stepfunctions;
pub mod yaml;

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

pub use checkov::CheckovSkip;
pub use expr::{Expr, Pseudo};

/// Errors building or writing a template.
#[derive(Debug, thiserror::Error)]
pub enum CfnError {
    /// Two entries of one section share a logical id.
    #[error("duplicate logical id `{0}` in section {1}")]
    DuplicateLogicalId(String, &'static str),
    /// CloudFormation logical ids are ASCII letters and digits only.
    #[error("invalid logical id `{0}`: only ASCII letters and digits are allowed")]
    InvalidLogicalId(String),
    /// The YAML writer failed.
    #[error("cannot write the template as YAML: {0}")]
    Yaml(#[from] yaml::YamlError),
}

/// A CloudFormation template.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Template {
    /// Always `2010-09-09`, the only version CloudFormation knows.
    #[serde(rename = "AWSTemplateFormatVersion")]
    pub format_version: &'static str,
    /// What the stack is, in one or two sentences.
    pub description: String,
    /// Values supplied at deploy time.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub parameters: IndexMap<String, Parameter>,
    /// Named conditions (built from `Equals`, `Not`, `And`, `Or`).
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub conditions: IndexMap<String, Expr>,
    /// Resources, in insertion order.
    pub resources: IndexMap<String, Resource>,
    /// Outputs, in insertion order.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, Output>,
}

impl Template {
    /// An empty template.
    pub fn new(description: impl Into<String>) -> Template {
        Template {
            format_version: "2010-09-09",
            description: description.into(),
            parameters: IndexMap::new(),
            conditions: IndexMap::new(),
            resources: IndexMap::new(),
            outputs: IndexMap::new(),
        }
    }

    /// Adds a parameter.
    pub fn add_parameter(
        &mut self,
        logical_id: &str,
        parameter: Parameter,
    ) -> Result<(), CfnError> {
        insert_unique(&mut self.parameters, logical_id, parameter, "Parameters")
    }

    /// Adds a condition.
    pub fn add_condition(&mut self, logical_id: &str, condition: Expr) -> Result<(), CfnError> {
        insert_unique(&mut self.conditions, logical_id, condition, "Conditions")
    }

    /// Adds a resource.
    pub fn add_resource(
        &mut self,
        logical_id: &str,
        resource: impl Into<Resource>,
    ) -> Result<(), CfnError> {
        insert_unique(
            &mut self.resources,
            logical_id,
            resource.into(),
            "Resources",
        )
    }

    /// Adds an output.
    pub fn add_output(&mut self, logical_id: &str, output: Output) -> Result<(), CfnError> {
        insert_unique(&mut self.outputs, logical_id, output, "Outputs")
    }

    /// The resources whose properties are of one kind, with their logical ids.
    pub fn resources_of<'a, T: 'a>(
        &'a self,
        select: impl Fn(&'a Properties) -> Option<&'a T> + 'a,
    ) -> impl Iterator<Item = (&'a str, &'a Resource, &'a T)> + 'a {
        self.resources
            .iter()
            .filter_map(move |(id, r)| select(&r.properties).map(|p| (id.as_str(), r, p)))
    }

    /// The template as YAML in CloudFormation's short form.
    pub fn to_yaml(&self) -> Result<String, CfnError> {
        Ok(yaml::to_string(self)?)
    }
}

fn insert_unique<T>(
    map: &mut IndexMap<String, T>,
    logical_id: &str,
    value: T,
    section: &'static str,
) -> Result<(), CfnError> {
    if logical_id.is_empty() || !logical_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CfnError::InvalidLogicalId(logical_id.to_owned()));
    }
    if map.contains_key(logical_id) {
        return Err(CfnError::DuplicateLogicalId(logical_id.to_owned(), section));
    }
    map.insert(logical_id.to_owned(), value);
    Ok(())
}

/// Type of a template parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ParameterType {
    /// A string.
    String,
    /// A number.
    Number,
}

/// A template parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Parameter {
    /// Value type.
    #[serde(rename = "Type")]
    pub kind: ParameterType,
    /// What the value is for.
    pub description: String,
    /// Value used when the deploy supplies none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Regular expression the value must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_pattern: Option<String>,
    /// Shortest accepted value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// Message shown when the value breaks a constraint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint_description: Option<String>,
}

impl Parameter {
    /// A required string parameter.
    pub fn string(description: impl Into<String>) -> Parameter {
        Parameter {
            kind: ParameterType::String,
            description: description.into(),
            default: None,
            allowed_pattern: None,
            min_length: None,
            constraint_description: None,
        }
    }
}

/// What CloudFormation does with a resource's physical resource when it leaves the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeletionPolicy {
    /// Delete it (the default).
    Delete,
    /// Keep it.
    Retain,
    /// Keep a snapshot, then delete it.
    Snapshot,
}

/// A resource: its properties (which determine its `Type`) and its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Condition that decides whether the resource is created.
    pub condition: Option<String>,
    /// Resources created before this one, beyond those its properties reference.
    pub depends_on: Vec<String>,
    /// What happens to it when it is removed from the stack or the stack is deleted.
    pub deletion_policy: Option<DeletionPolicy>,
    /// What happens to the old one when an update replaces it.
    pub update_replace_policy: Option<DeletionPolicy>,
    /// Free-form metadata (for example cfn-lint suppressions).
    pub metadata: Option<IndexMap<String, Expr>>,
    /// The checkov checks it skips, written into `Metadata` under `checkov` with their reasons.
    pub checkov_skips: Vec<CheckovSkip>,
    /// The typed properties.
    pub properties: Properties,
}

impl Resource {
    /// A resource with these properties and no attributes.
    pub fn new(properties: impl Into<Properties>) -> Resource {
        Resource {
            condition: None,
            depends_on: Vec::new(),
            deletion_policy: None,
            update_replace_policy: None,
            metadata: None,
            checkov_skips: Vec::new(),
            properties: properties.into(),
        }
    }

    /// Sets both the deletion and the update-replace policy.
    pub fn with_policies(mut self, policy: DeletionPolicy) -> Resource {
        self.deletion_policy = Some(policy);
        self.update_replace_policy = Some(policy);
        self
    }

    /// Adds explicit dependencies.
    pub fn depends_on<S: Into<String>>(
        mut self,
        logical_ids: impl IntoIterator<Item = S>,
    ) -> Resource {
        self.depends_on
            .extend(logical_ids.into_iter().map(Into::into));
        self
    }

    /// Skips a checkov check, with the skip's reason (once: a second equal skip is dropped).
    pub fn with_checkov_skip(mut self, skip: CheckovSkip) -> Resource {
        if !self.checkov_skips.contains(&skip) {
            self.checkov_skips.push(skip);
        }
        self
    }

    /// The CloudFormation type name, e.g. `AWS::SQS::Queue`.
    pub fn resource_type(&self) -> &'static str {
        self.properties.resource_type()
    }
}

impl<T: Into<Properties>> From<T> for Resource {
    fn from(properties: T) -> Self {
        Resource::new(properties)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("Type", self.resource_type())?;
        if let Some(condition) = &self.condition {
            map.serialize_entry("Condition", condition)?;
        }
        if !self.depends_on.is_empty() {
            map.serialize_entry("DependsOn", &self.depends_on)?;
        }
        if let Some(policy) = &self.deletion_policy {
            map.serialize_entry("DeletionPolicy", policy)?;
        }
        if let Some(policy) = &self.update_replace_policy {
            map.serialize_entry("UpdateReplacePolicy", policy)?;
        }
        if self.checkov_skips.is_empty() {
            if let Some(metadata) = &self.metadata {
                map.serialize_entry("Metadata", metadata)?;
            }
        } else {
            let mut metadata = self.metadata.clone().unwrap_or_default();
            let skips = self
                .checkov_skips
                .iter()
                .map(|skip| skip.to_expr())
                .collect();
            let mut checkov = IndexMap::new();
            checkov.insert("skip".to_owned(), Expr::List(skips));
            metadata.insert("checkov".to_owned(), Expr::Map(checkov));
            map.serialize_entry("Metadata", &metadata)?;
        }
        map.serialize_entry("Properties", &self.properties)?;
        map.end()
    }
}

macro_rules! properties {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty) => $type_name:literal, )*) => {
        /// The typed properties of every resource type the model knows.
        // A template holds a few dozen resources built once: boxing the large variants would
        // only add indirection to every match.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum Properties {
            $( $(#[$doc])* $variant($ty), )*
        }

        impl Properties {
            /// The CloudFormation type name.
            pub fn resource_type(&self) -> &'static str {
                match self {
                    $( Properties::$variant(_) => $type_name, )*
                }
            }
        }

        impl Serialize for Properties {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Properties::$variant(p) => p.serialize(serializer), )*
                }
            }
        }

        $(
            impl From<$ty> for Properties {
                fn from(p: $ty) -> Self {
                    Properties::$variant(p)
                }
            }
        )*
    };
}

properties! {
    /// `AWS::ApiGatewayV2::Api`.
    HttpApi(apigatewayv2::Api) => "AWS::ApiGatewayV2::Api",
    /// `AWS::ApiGatewayV2::Authorizer`.
    ApiAuthorizer(apigatewayv2::Authorizer) => "AWS::ApiGatewayV2::Authorizer",
    /// `AWS::ApiGatewayV2::Integration`.
    ApiIntegration(apigatewayv2::Integration) => "AWS::ApiGatewayV2::Integration",
    /// `AWS::ApiGatewayV2::Route`.
    ApiRoute(apigatewayv2::Route) => "AWS::ApiGatewayV2::Route",
    /// `AWS::ApiGatewayV2::Stage`.
    ApiStage(apigatewayv2::Stage) => "AWS::ApiGatewayV2::Stage",
    /// `AWS::CloudWatch::Alarm`.
    Alarm(cloudwatch::Alarm) => "AWS::CloudWatch::Alarm",
    /// `AWS::DynamoDB::Table`.
    Table(dynamodb::Table) => "AWS::DynamoDB::Table",
    /// `AWS::EC2::VPC`.
    Vpc(ec2::Vpc) => "AWS::EC2::VPC",
    /// `AWS::EC2::Subnet`.
    Subnet(ec2::Subnet) => "AWS::EC2::Subnet",
    /// `AWS::EC2::InternetGateway`.
    InternetGateway(ec2::InternetGateway) => "AWS::EC2::InternetGateway",
    /// `AWS::EC2::VPCGatewayAttachment`.
    VpcGatewayAttachment(ec2::VpcGatewayAttachment) => "AWS::EC2::VPCGatewayAttachment",
    /// `AWS::EC2::RouteTable`.
    RouteTable(ec2::RouteTable) => "AWS::EC2::RouteTable",
    /// `AWS::EC2::Route`.
    Route(ec2::Route) => "AWS::EC2::Route",
    /// `AWS::EC2::SubnetRouteTableAssociation`.
    SubnetRouteTableAssociation(ec2::SubnetRouteTableAssociation) => "AWS::EC2::SubnetRouteTableAssociation",
    /// `AWS::EC2::EIP`.
    ElasticIp(ec2::Eip) => "AWS::EC2::EIP",
    /// `AWS::EC2::NatGateway`.
    NatGateway(ec2::NatGateway) => "AWS::EC2::NatGateway",
    /// `AWS::EC2::SecurityGroup`.
    SecurityGroup(ec2::SecurityGroup) => "AWS::EC2::SecurityGroup",
    /// `AWS::EC2::SecurityGroupIngress`.
    SecurityGroupIngress(ec2::SecurityGroupIngress) => "AWS::EC2::SecurityGroupIngress",
    /// `AWS::IAM::Role`.
    Role(iam::Role) => "AWS::IAM::Role",
    /// `AWS::KMS::Key`.
    KmsKey(kms::Key) => "AWS::KMS::Key",
    /// `AWS::Lambda::Function`.
    Function(lambda::Function) => "AWS::Lambda::Function",
    /// `AWS::Lambda::Permission`.
    Permission(lambda::Permission) => "AWS::Lambda::Permission",
    /// `AWS::Lambda::EventSourceMapping`.
    EventSourceMapping(lambda::EventSourceMapping) => "AWS::Lambda::EventSourceMapping",
    /// `AWS::Lambda::EventInvokeConfig`.
    EventInvokeConfig(lambda::EventInvokeConfig) => "AWS::Lambda::EventInvokeConfig",
    /// `AWS::Logs::LogGroup`.
    LogGroup(logs::LogGroup) => "AWS::Logs::LogGroup",
    /// `AWS::Logs::MetricFilter`.
    MetricFilter(logs::MetricFilter) => "AWS::Logs::MetricFilter",
    /// `AWS::RDS::DBCluster`.
    DbCluster(rds::DbCluster) => "AWS::RDS::DBCluster",
    /// `AWS::RDS::DBInstance`.
    DbInstance(rds::DbInstance) => "AWS::RDS::DBInstance",
    /// `AWS::RDS::DBSubnetGroup`.
    DbSubnetGroup(rds::DbSubnetGroup) => "AWS::RDS::DBSubnetGroup",
    /// `AWS::RDS::DBProxy`.
    DbProxy(rds::DbProxy) => "AWS::RDS::DBProxy",
    /// `AWS::RDS::DBProxyTargetGroup`.
    DbProxyTargetGroup(rds::DbProxyTargetGroup) => "AWS::RDS::DBProxyTargetGroup",
    /// `AWS::SecretsManager::Secret`.
    Secret(secretsmanager::Secret) => "AWS::SecretsManager::Secret",
    /// `Custom::DatabaseMigrations`.
    DatabaseMigrations(custom::DatabaseMigrations) => "Custom::DatabaseMigrations",
    /// `AWS::SNS::Topic`.
    Topic(sns::Topic) => "AWS::SNS::Topic",
    /// `AWS::SNS::Subscription`.
    Subscription(sns::Subscription) => "AWS::SNS::Subscription",
    /// `AWS::SQS::Queue`.
    Queue(sqs::Queue) => "AWS::SQS::Queue",
    /// `AWS::StepFunctions::StateMachine`.
    StateMachine(stepfunctions::StateMachine) => "AWS::StepFunctions::StateMachine",
}

/// A template output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    /// What the value is.
    pub description: String,
    /// The value.
    pub value: Expr,
    /// The name other stacks import it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
    /// Condition that decides whether the output exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

impl Output {
    /// An output exported as `${AWS::StackName}-<logical_id>`.
    pub fn exported(logical_id: &str, description: impl Into<String>, value: Expr) -> Output {
        Output {
            description: description.into(),
            value,
            export: Some(Export {
                name: Expr::sub(format!("${{AWS::StackName}}-{logical_id}")),
            }),
            condition: None,
        }
    }
}

/// The export of an output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Export {
    /// Export name, unique per account and region.
    pub name: Expr,
}

/// A `{Key, Value}` tag, the form most resource types take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Tag key.
    pub key: String,
    /// Tag value.
    pub value: String,
}

/// The tags of a stack's resources, sorted by key so output is deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(pub BTreeMap<String, String>);

impl Tags {
    /// As a `[{Key, Value}]` list.
    pub fn list(&self) -> Vec<Tag> {
        self.0
            .iter()
            .map(|(key, value)| Tag {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// As a `{key: value}` map (API Gateway v2 takes this form).
    pub fn map(&self) -> IndexMap<String, String> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// These tags plus one more (a `Name` tag, say).
    pub fn with(&self, key: &str, value: impl Into<String>) -> Tags {
        let mut tags = self.clone();
        tags.0.insert(key.to_owned(), value.into());
        tags
    }
}

/// `skip_serializing_if` helper for flags that default to false.
pub(crate) fn is_false(value: &bool) -> bool {
    !*value
}
