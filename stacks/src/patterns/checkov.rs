//! The checkov skips that follow from a resource's own properties and its env, attached to every
//! resource as it is added to a stack ([`super::StackBuilder::add`]).
//!
//! Deriving them from the properties keeps each skip true: a queue gets the SSE-SQS skip only
//! while it is encrypted with SSE-SQS, and a function the reserved-concurrency skip only while it
//! reserves none, so a later change that fixes the finding drops its skip by itself. Skips whose
//! reason the properties do not show are given where the resource is built: the dead-letter
//! queue skip of a function depends on what invokes it ([`super::functions`]). Resource types
//! not named here get no skip, so a finding on them fails the checkov test until it is fixed
//! or given a reason.

use crate::cfn::{CheckovSkip, Properties, Resource};
use crate::config::EnvConfig;

/// `resource` with the skips its properties and `env` justify.
pub(super) fn with_property_skips(resource: Resource, env: &EnvConfig) -> Resource {
    let skips: Vec<CheckovSkip> = match &resource.properties {
        Properties::Queue(queue)
            if queue.sqs_managed_sse_enabled == Some(true) && queue.kms_master_key_id.is_none() =>
        {
            vec![CheckovSkip::QueueSseSqs]
        }
        // The model has no KMSMasterKeyId on tables: SSE enabled is the AWS managed key.
        Properties::Table(table) if table.sse_specification.sse_enabled => {
            vec![CheckovSkip::TableAwsManagedKey]
        }
        // The model has no KmsKeyId on log groups: every one has the service's key.
        Properties::LogGroup(_) => vec![CheckovSkip::LogGroupServiceKey],
        Properties::Function(function) => {
            let mut skips = vec![CheckovSkip::FunctionEnvironmentWithoutSecrets];
            if function.vpc_config.is_none() {
                skips.push(if env.is_local() {
                    CheckovSkip::LocalFunctionOutsideVpc
                } else {
                    CheckovSkip::FunctionOutsideVpc
                });
            }
            if function.reserved_concurrent_executions.is_none() {
                skips.push(if env.is_local() {
                    CheckovSkip::LocalFunctionUnreservedConcurrency
                } else {
                    CheckovSkip::FunctionUnreservedConcurrency
                });
            }
            skips
        }
        // The model has no KmsKeyId on secrets: every one has the AWS managed key.
        Properties::Secret(_) => vec![CheckovSkip::SecretAwsManagedKey],
        // The model has no IAM authentication on clusters: logins go through the proxy.
        Properties::DbCluster(_) => vec![CheckovSkip::ClusterLoginThroughProxySecrets],
        _ => Vec::new(),
    };
    skips
        .into_iter()
        .fold(resource, Resource::with_checkov_skip)
}
