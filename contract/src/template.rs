//! Template parameter and stack output names: what the stacks crate declares and the deploy
//! library, the ops commands, the local environment and the e2e harness look up.

/// Parameter naming the bucket of the deployment packages.
pub const ARTIFACT_BUCKET_PARAMETER: &str = "ArtifactBucket";

/// The suffix of the parameter holding a function's package key.
const CODE_KEY_SUFFIX: &str = "CodeKey";

/// Parameter holding the S3 key of the package of the function `function` (`api` ->
/// `ApiCodeKey`).
pub fn code_key_parameter(function: &str) -> String {
    format!("{}{CODE_KEY_SUFFIX}", pascal_case(function))
}

/// The function whose package key a parameter holds (`ApiCodeKey` -> `api`); `None` for any
/// other parameter.
pub fn function_of_code_key_parameter(parameter: &str) -> Option<String> {
    let stem = parameter.strip_suffix(CODE_KEY_SUFFIX)?;
    (!stem.is_empty()).then(|| stem.to_ascii_lowercase())
}

/// `api` -> `Api`: the first letter in upper case.
pub(crate) fn pascal_case(name: &str) -> String {
    let mut chars = name.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase());
    first.into_iter().chain(chars).collect()
}

/// Stack outputs that other processes read, by name.
pub mod outputs {
    /// The HTTP API's base URL.
    pub const API_URL: &str = "ApiUrl";
    /// Pattern `sqs`: the work queue.
    pub const WORK_QUEUE_URL: &str = "WorkQueueUrl";
    /// Pattern `sqs`: the work queue's dead-letter queue.
    pub const DEAD_LETTER_QUEUE_URL: &str = "DeadLetterQueueUrl";
    /// Pattern `orchestrator`: where Lambda puts resume invocations that failed for good.
    pub const RESUME_DEAD_LETTER_QUEUE_URL: &str = "ResumeDeadLetterQueueUrl";
    /// Pattern `stepfunctions`: the saga's state machine.
    pub const STATE_MACHINE_ARN: &str = "StateMachineArn";
    /// DynamoDB store: the saga table.
    pub const SAGA_TABLE_NAME: &str = "SagaTableName";
    /// DynamoDB store: the idempotency table.
    pub const IDEMPOTENCY_TABLE_NAME: &str = "IdempotencyTableName";
    /// Aurora store: the RDS Proxy endpoint.
    pub const DATABASE_PROXY_ENDPOINT: &str = "DatabaseProxyEndpoint";
    /// Aurora store: the secret with the database credentials.
    pub const DATABASE_SECRET_ARN: &str = "DatabaseSecretArn";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FunctionRole;

    #[test]
    fn every_functions_code_key_parameter_names_it_back() {
        for role in FunctionRole::ALL {
            let parameter = code_key_parameter(role.name());
            assert_eq!(
                function_of_code_key_parameter(&parameter).as_deref(),
                Some(role.name())
            );
        }
        assert_eq!(code_key_parameter("api"), "ApiCodeKey");
    }

    #[test]
    fn other_parameters_name_no_function() {
        assert_eq!(
            function_of_code_key_parameter(ARTIFACT_BUCKET_PARAMETER),
            None
        );
        assert_eq!(function_of_code_key_parameter("CodeKey"), None);
        assert_eq!(function_of_code_key_parameter("VpcId"), None);
    }
}
