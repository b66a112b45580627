//! CloudFormation custom resources: the request CloudFormation sends the function behind a
//! custom resource, the answer the function `PUT`s to the request's pre-signed `ResponseURL`
//! (CloudFormation's own protocol, written down here once), and the properties of sagaform's
//! one custom resource, `Custom::DatabaseMigrations`, which runs the Aurora schema migrations
//! as a deploy step.

use serde::{Deserialize, Serialize};

/// The type of the custom resource that applies the database migrations.
pub const DATABASE_MIGRATIONS_TYPE: &str = "Custom::DatabaseMigrations";

/// The properties of `Custom::DatabaseMigrations` (besides `ServiceToken`, the function's
/// ARN, and `ServiceTimeout`): what, when it changes, must make CloudFormation run the step
/// again. The function reads none of them; they are there to change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatabaseMigrationsProperties {
    /// Hash of the migrations' names and SQL, in order.
    pub migrations_hash: String,
    /// The cluster's identifier (a replaced cluster is empty).
    pub cluster_id: String,
    /// The application role's secret (a new password must reach the role).
    pub app_secret_arn: String,
    /// The migrate function's package key (a new grant logic must run).
    pub migrate_code_key: String,
}

/// What CloudFormation asks of a custom resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestType {
    /// The resource is new.
    Create,
    /// Its properties changed.
    Update,
    /// It leaves the stack.
    Delete,
}

/// A custom resource request, as CloudFormation sends it (the fields sagaform reads; others
/// such as `ResourceType` and `OldResourceProperties` are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomResourceRequest<P> {
    /// Create, update or delete.
    #[serde(rename = "RequestType")]
    pub request_type: RequestType,
    /// The pre-signed S3 URL the answer is `PUT` to.
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    /// The stack's ARN.
    #[serde(rename = "StackId")]
    pub stack_id: String,
    /// This request's id.
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// The resource's logical id.
    #[serde(rename = "LogicalResourceId")]
    pub logical_resource_id: String,
    /// The id the function gave the resource when it was created (absent on create).
    #[serde(
        rename = "PhysicalResourceId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub physical_resource_id: Option<String>,
    /// The resource's properties.
    #[serde(rename = "ResourceProperties")]
    pub resource_properties: P,
}

/// How a custom resource request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResponseStatus {
    /// Done.
    Success,
    /// Not done: CloudFormation fails the resource (and rolls back) with the reason.
    Failed,
}

/// The answer to a custom resource request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomResourceResponse {
    /// Success or failure.
    #[serde(rename = "Status")]
    pub status: ResponseStatus,
    /// Why it failed (CloudFormation shows it in the stack events).
    #[serde(rename = "Reason", default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The resource's id: a different one on update makes CloudFormation delete the old one.
    #[serde(rename = "PhysicalResourceId")]
    pub physical_resource_id: String,
    /// Echoed from the request.
    #[serde(rename = "StackId")]
    pub stack_id: String,
    /// Echoed from the request.
    #[serde(rename = "RequestId")]
    pub request_id: String,
    /// Echoed from the request.
    #[serde(rename = "LogicalResourceId")]
    pub logical_resource_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_as_cloudformation_sends_it_reads_and_round_trips() {
        let sent = r#"{
            "RequestType": "Update",
            "ServiceToken": "arn:aws:lambda:ap-northeast-1:111122223333:function:s-migrate",
            "ResponseURL": "https://cloudformation-custom-resource-response.s3.amazonaws.com/x?sig=1",
            "StackId": "arn:aws:cloudformation:ap-northeast-1:111122223333:stack/s/1",
            "RequestId": "r-1",
            "LogicalResourceId": "DatabaseMigrations",
            "PhysicalResourceId": "sagaform-schema",
            "ResourceType": "Custom::DatabaseMigrations",
            "ResourceProperties": {"ServiceToken": "arn", "ServiceTimeout": "600", "MigrationsHash": "abc", "ClusterId": "c-1", "AppSecretArn": "arn:secret", "MigrateCodeKey": "migrate/abc.zip"},
            "OldResourceProperties": {"ServiceToken": "arn", "MigrationsHash": "old"}
        }"#;
        let request: CustomResourceRequest<DatabaseMigrationsProperties> =
            serde_json::from_str(sent).unwrap();
        assert_eq!(request.request_type, RequestType::Update);
        assert_eq!(request.resource_properties.migrations_hash, "abc");
        assert_eq!(
            request.physical_resource_id.as_deref(),
            Some("sagaform-schema")
        );
        let again: CustomResourceRequest<DatabaseMigrationsProperties> =
            serde_json::from_str(&serde_json::to_string(&request).unwrap()).unwrap();
        assert_eq!(again, request);
    }

    #[test]
    fn a_response_has_the_fields_cloudformation_reads() {
        let response = CustomResourceResponse {
            status: ResponseStatus::Failed,
            reason: Some("migration 3 failed".to_owned()),
            physical_resource_id: "sagaform-schema".to_owned(),
            stack_id: "stack".to_owned(),
            request_id: "r-1".to_owned(),
            logical_resource_id: "DatabaseMigrations".to_owned(),
        };
        let json: serde_json::Value = serde_json::to_value(&response).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Status": "FAILED",
                "Reason": "migration 3 failed",
                "PhysicalResourceId": "sagaform-schema",
                "StackId": "stack",
                "RequestId": "r-1",
                "LogicalResourceId": "DatabaseMigrations"
            })
        );
        assert_eq!(
            serde_json::from_value::<CustomResourceResponse>(json).unwrap(),
            response
        );
    }
}
