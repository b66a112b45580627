//! The checkov findings a template accepts, each written into the resource's `Metadata` as
//! checkov reads it (`checkov: skip: [{id, comment}]`) with the reason the check does not fit.
//!
//! The test suite runs the pinned checkov on every template and fails on any finding that is
//! neither fixed nor skipped here (`stacks/tests/stacks/checkov.rs`). A skip is a variant of
//! [`CheckovSkip`] rather than a pair of free strings, so that each reason is written once, is
//! never empty, and the whole list of what sagaform accepts is this one enum.

use indexmap::IndexMap;

use super::Expr;

/// How a function is invoked, which is why it needs no dead-letter queue of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invoker {
    /// The HTTP API, synchronously.
    HttpApi,
    /// The HTTP API, and itself asynchronously with an on-failure destination (the
    /// orchestrator's resumes).
    HttpApiAndItself,
    /// An SQS event source mapping.
    QueueEventSource,
    /// A Step Functions Task.
    StateMachine,
    /// CloudFormation, for a custom resource.
    CustomResource,
}

/// A checkov check a resource skips, with its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckovSkip {
    /// `CKV_AWS_27` on a queue encrypted with SSE-SQS: checkov only counts a KMS key.
    QueueSseSqs,
    /// `CKV_AWS_119` on a table encrypted with the AWS managed DynamoDB key.
    TableAwsManagedKey,
    /// `CKV_AWS_158` on a log group, encrypted with the CloudWatch Logs key.
    LogGroupServiceKey,
    /// `CKV_AWS_173` on a function whose environment holds no secret.
    FunctionEnvironmentWithoutSecrets,
    /// `CKV_AWS_116` on a function that is never invoked asynchronously without a destination.
    FunctionDeadLetterQueue(Invoker),
    /// `CKV_AWS_117` on a function that reaches nothing inside a VPC.
    FunctionOutsideVpc,
    /// `CKV_AWS_115` on a function whose env reserves it no concurrency.
    FunctionUnreservedConcurrency,
    /// `CKV_AWS_117` on a function of the local emulator env.
    LocalFunctionOutsideVpc,
    /// `CKV_AWS_115` on a function of the local emulator env.
    LocalFunctionUnreservedConcurrency,
    /// `CKV_AWS_149` on a secret encrypted with the AWS managed Secrets Manager key.
    SecretAwsManagedKey,
    /// `CKV_AWS_162` on an Aurora cluster every client reaches through RDS Proxy with secrets.
    ClusterLoginThroughProxySecrets,
}

/// What a function's dead-letter queue would catch: only failed asynchronous invocations.
const DLQ_CATCHES: &str =
    "a function dead-letter queue only receives asynchronous invocations that failed";

impl CheckovSkip {
    /// The checkov check id.
    pub fn id(self) -> &'static str {
        match self {
            CheckovSkip::QueueSseSqs => "CKV_AWS_27",
            CheckovSkip::TableAwsManagedKey => "CKV_AWS_119",
            CheckovSkip::LogGroupServiceKey => "CKV_AWS_158",
            CheckovSkip::FunctionEnvironmentWithoutSecrets => "CKV_AWS_173",
            CheckovSkip::FunctionDeadLetterQueue(_) => "CKV_AWS_116",
            CheckovSkip::FunctionOutsideVpc | CheckovSkip::LocalFunctionOutsideVpc => "CKV_AWS_117",
            CheckovSkip::FunctionUnreservedConcurrency
            | CheckovSkip::LocalFunctionUnreservedConcurrency => "CKV_AWS_115",
            CheckovSkip::SecretAwsManagedKey => "CKV_AWS_149",
            CheckovSkip::ClusterLoginThroughProxySecrets => "CKV_AWS_162",
        }
    }

    /// Why the check does not fit, as the skip's `comment`.
    pub fn reason(self) -> String {
        match self {
            CheckovSkip::QueueSseSqs => "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled); checkov only counts a KMS key, which would add a key policy for every producer, consumer and Lambda destination, for no access boundary IAM does not already draw.".to_owned(),
            CheckovSkip::TableAwsManagedKey => "Encrypted at rest with the AWS managed DynamoDB key (SSEType KMS); a customer managed key would add a key, its policy and its monthly cost, for no cross-account or revocation need.".to_owned(),
            CheckovSkip::LogGroupServiceKey => "CloudWatch Logs encrypts every log group at rest with its own key; a customer managed key would add a key and a key policy for the logs service, for no access boundary IAM does not already draw on these operational logs.".to_owned(),
            CheckovSkip::FunctionEnvironmentWithoutSecrets => "The environment holds resource names, ARNs, URLs, timeouts and the log level, never a secret (the Aurora password is read from Secrets Manager at run time, and the local database URL carries none); Lambda encrypts it at rest with its AWS managed key.".to_owned(),
            CheckovSkip::FunctionDeadLetterQueue(invoker) => match invoker {
                Invoker::HttpApi => format!("The HTTP API invokes it synchronously and returns its errors to the caller; {DLQ_CATCHES}, and it has none."),
                Invoker::HttpApiAndItself => format!("The HTTP API invokes it synchronously; its asynchronous invocations of itself (resumes) send their failures to the resume dead-letter queue through the EventInvokeConfig on-failure destination, which keeps the error with the event where {DLQ_CATCHES} without it."),
                Invoker::QueueEventSource => format!("The SQS event source mapping invokes it synchronously; a message that keeps failing moves to the work queue's dead-letter queue by its redrive policy, and {DLQ_CATCHES}."),
                Invoker::StateMachine => format!("Step Functions invokes it synchronously and handles its errors with the state machine's retries and compensations; {DLQ_CATCHES}."),
                Invoker::CustomResource => format!("CloudFormation invokes it for a custom resource and waits for its answer, failing the stack operation (which rolls back) when none comes; {DLQ_CATCHES}."),
            },
            CheckovSkip::FunctionOutsideVpc => "It reaches only AWS service endpoints and the public SaaS APIs, over TLS with signed or authenticated requests, and nothing inside a VPC; a VPC would add NAT gateways or endpoints and isolate nothing.".to_owned(),
            CheckovSkip::FunctionUnreservedConcurrency => "The env sets no functions.<role>.reserved_concurrency for it: the function draws on the account's unreserved concurrency, whose exhaustion its throttles alarm reports. A reservation caps the function as well as guaranteeing it (and Lambda refuses one that leaves the account under 100 unreserved), so its size is a decision per env and role, made in env/<env>.toml.".to_owned(),
            CheckovSkip::LocalFunctionOutsideVpc => "Local emulator env: the functions run as processes on this machine, against the emulator and the local PostgreSQL server; there is no VPC.".to_owned(),
            CheckovSkip::LocalFunctionUnreservedConcurrency => "Local emulator env: the emulator does not enforce concurrency, so a reservation would mean nothing.".to_owned(),
            CheckovSkip::SecretAwsManagedKey => "Encrypted with the AWS managed Secrets Manager key; only this stack's roles may read it (IAM names the secret), and a customer managed key would add a key policy for RDS Proxy, the functions and the migration step, for no cross-account or revocation need.".to_owned(),
            CheckovSkip::ClusterLoginThroughProxySecrets => "Every client (the functions and the migration step) reaches the cluster through RDS Proxy, which logs in with the Secrets Manager secrets (the master's rotated by RDS); IAM database authentication on the cluster would be a second way in that nothing uses.".to_owned(),
        }
    }

    /// The skip as checkov reads it: `{id, comment}`.
    pub(crate) fn to_expr(self) -> Expr {
        let mut skip = IndexMap::new();
        skip.insert("id".to_owned(), Expr::str(self.id()));
        skip.insert("comment".to_owned(), Expr::str(self.reason()));
        Expr::Map(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CheckovSkip; 15] = [
        CheckovSkip::QueueSseSqs,
        CheckovSkip::TableAwsManagedKey,
        CheckovSkip::LogGroupServiceKey,
        CheckovSkip::FunctionEnvironmentWithoutSecrets,
        CheckovSkip::FunctionDeadLetterQueue(Invoker::HttpApi),
        CheckovSkip::FunctionDeadLetterQueue(Invoker::HttpApiAndItself),
        CheckovSkip::FunctionDeadLetterQueue(Invoker::QueueEventSource),
        CheckovSkip::FunctionDeadLetterQueue(Invoker::StateMachine),
        CheckovSkip::FunctionOutsideVpc,
        CheckovSkip::FunctionUnreservedConcurrency,
        CheckovSkip::LocalFunctionOutsideVpc,
        CheckovSkip::LocalFunctionUnreservedConcurrency,
        CheckovSkip::FunctionDeadLetterQueue(Invoker::CustomResource),
        CheckovSkip::SecretAwsManagedKey,
        CheckovSkip::ClusterLoginThroughProxySecrets,
    ];

    #[test]
    fn every_skip_names_a_check_and_gives_a_sentence_of_reason() {
        for skip in ALL {
            assert!(skip.id().starts_with("CKV_AWS_"), "{skip:?}");
            let reason = skip.reason();
            assert!(
                reason.len() > 40 && reason.ends_with('.'),
                "{skip:?}: {reason}"
            );
        }
    }

    #[test]
    fn the_local_skips_say_so() {
        for skip in ALL {
            let local = matches!(
                skip,
                CheckovSkip::LocalFunctionOutsideVpc
                    | CheckovSkip::LocalFunctionUnreservedConcurrency
            );
            assert_eq!(
                skip.reason().starts_with("Local emulator env"),
                local,
                "{skip:?}"
            );
        }
    }
}
