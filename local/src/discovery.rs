//! What a deployed stack asks the local environment to run, read from the emulator: its Lambda
//! functions (configuration resolved by the deployment, code in the artifact bucket), its HTTP
//! API routes (from the template: moto does not create API Gateway v2 resources) and its SQS
//! event source mappings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use sagaform_contract::template::function_of_code_key_parameter;
use sagaform_deploy::artifact;
use serde_yaml_ng::Value as Yaml;

use crate::LocalError;
use crate::async_invoke::AsyncInvokeConfig;
use crate::event_source::SqsMapping;
use crate::http_api::{HttpRoute, MAX_INTEGRATION_TIMEOUT};

/// The account id the emulator uses.
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";

/// SDK configuration for the emulator at `endpoint`: fixed dummy credentials (nothing is read
/// from the user's profile or environment credentials) and the given region.
pub async fn emulator_config(endpoint: &str, region: &str) -> SdkConfig {
    let credentials =
        aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "sagaform-local");
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(credentials)
        .load()
        .await
}

/// A function of the stack.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployedFunction {
    /// Logical id in the template.
    pub logical_id: String,
    /// Physical name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// The sagaform role (`api`, `worker`, `step`), from the code key parameter
    /// (`ApiCodeKey` → `api`), when the template follows the contract.
    pub role: Option<String>,
    /// Where its code zip is.
    pub code: Option<S3Location>,
    /// Environment variables as deployed.
    pub environment: BTreeMap<String, String>,
    /// Function timeout.
    pub timeout: Duration,
    /// Memory size in MB.
    pub memory_mb: u32,
    /// Reserved concurrency, if set.
    pub reserved_concurrency: Option<u32>,
    /// Its `AWS::Lambda::EventInvokeConfig` (Lambda's defaults without one).
    pub asynchronous: AsyncInvokeConfig,
}

/// An object in S3.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct S3Location {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

/// Everything the local environment serves for one stack.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployedStack {
    /// Stack name.
    pub stack_name: String,
    /// Its functions.
    pub functions: Vec<DeployedFunction>,
    /// Its HTTP API routes.
    pub routes: Vec<HttpRoute>,
    /// Its SQS event source mappings.
    pub mappings: Vec<SqsMapping>,
    /// How many Step Functions state machines it has (their Tasks need invoke forwarding).
    pub state_machines: usize,
}

/// A parsed CloudFormation template and the stack facts needed to resolve `Ref`s in it.
struct Template {
    source_name: String,
    resources: serde_yaml_ng::Mapping,
}

impl Template {
    fn parse(text: &str, source_name: &str) -> Result<Template, LocalError> {
        let fail = |reason: String| LocalError::Template {
            source_name: source_name.to_owned(),
            key: "Resources".to_owned(),
            reason,
        };
        let document: Yaml =
            serde_yaml_ng::from_str(text).map_err(|e| fail(format!("not YAML or JSON: {e}")))?;
        let resources = document
            .get("Resources")
            .and_then(Yaml::as_mapping)
            .cloned()
            .ok_or_else(|| fail("missing or not a mapping".to_owned()))?;
        Ok(Template {
            source_name: source_name.to_owned(),
            resources,
        })
    }

    fn resources_of_type<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Yaml)> {
        self.resources.iter().filter_map(move |(id, resource)| {
            let id = id.as_str()?;
            (resource.get("Type").and_then(Yaml::as_str) == Some(kind)).then_some((id, resource))
        })
    }

    fn type_of(&self, logical_id: &str) -> Option<&str> {
        self.resources
            .get(logical_id)
            .and_then(|r| r.get("Type"))
            .and_then(Yaml::as_str)
    }

    fn property<'a>(&self, resource: &'a Yaml, name: &str) -> Option<&'a Yaml> {
        resource.get("Properties").and_then(|p| p.get(name))
    }

    /// The logical ids of `kind` that `value` refers to (Ref, GetAtt or Sub, short or long form).
    fn referenced(&self, value: &Yaml, kind: &str) -> Vec<String> {
        let mut names = Vec::new();
        collect_references(value, &mut names);
        let mut seen = HashSet::new();
        names
            .into_iter()
            .filter(|name| self.type_of(name) == Some(kind) && seen.insert(name.clone()))
            .collect()
    }

    fn error(&self, key: &str, reason: &str) -> LocalError {
        LocalError::Template {
            source_name: self.source_name.clone(),
            key: key.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// Collects the names an intrinsic function refers to, anywhere inside `value`.
fn collect_references(value: &Yaml, out: &mut Vec<String>) {
    match value {
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.trim_start_matches('!'), &tagged.value) {
                ("Ref", Yaml::String(name)) => out.push(name.clone()),
                ("GetAtt", Yaml::String(path)) => {
                    out.push(path.split('.').next().unwrap_or(path).to_owned());
                }
                ("Sub", Yaml::String(text)) => sub_references(text, out),
                _ => {}
            }
            collect_references(&tagged.value, out);
        }
        Yaml::Mapping(mapping) => {
            for (key, inner) in mapping {
                match (key.as_str(), inner) {
                    (Some("Ref"), Yaml::String(name)) => out.push(name.clone()),
                    (Some("Fn::GetAtt"), Yaml::String(path)) => {
                        out.push(path.split('.').next().unwrap_or(path).to_owned());
                    }
                    (Some("Fn::Sub"), Yaml::String(text)) => sub_references(text, out),
                    _ => {}
                }
                collect_references(inner, out);
            }
        }
        Yaml::Sequence(items) => {
            // `Fn::GetAtt: [Name, Attr]` and `!GetAtt [Name, Attr]` name the resource first;
            // `Fn::Sub: [text, vars]` has its text first. Both are strings and collected here.
            if let Some(Yaml::String(first)) = items.first() {
                out.push(first.clone());
                sub_references(first, out);
            }
            for item in items {
                collect_references(item, out);
            }
        }
        _ => {}
    }
}

/// `${Name}` and `${Name.Attr}` in a `Sub` text.
fn sub_references(text: &str, out: &mut Vec<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let name = &after[..end];
        if !name.starts_with('!') {
            out.push(name.split('.').next().unwrap_or(name).to_owned());
        }
        rest = &after[end + 1..];
    }
}

/// Resolves a template value that must be a string: a literal, or a `Ref` to a parameter or a
/// resource of the stack.
fn resolve_string(
    value: &Yaml,
    parameters: &HashMap<String, String>,
    physical: &HashMap<String, String>,
) -> Option<(String, Option<String>)> {
    let reference = match value {
        Yaml::String(literal) => return Some((literal.clone(), None)),
        Yaml::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        Yaml::Mapping(mapping) => mapping.get("Ref").and_then(Yaml::as_str),
        _ => None,
    }?;
    parameters
        .get(reference)
        .or_else(|| physical.get(reference))
        .map(|resolved| (resolved.clone(), Some(reference.to_owned())))
}

/// Reads the stack `stack_name` from the emulator (or AWS) described by `config`. The template
/// comes from `template` when given (e.g. `templates/<pattern>/local.yaml`), otherwise from the
/// deployed stack (GetTemplate), which is what actually runs.
pub async fn discover(
    config: &SdkConfig,
    stack_name: &str,
    template: Option<&Path>,
) -> Result<DeployedStack, LocalError> {
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let lambda = aws_sdk_lambda::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);

    let parameters = stack_parameters(&cfn, stack_name).await?;
    let template = stack_template(&cfn, stack_name, template).await?;
    let ids = StackIds {
        parameters,
        physical: physical_ids(&cfn, stack_name).await?,
    };
    let mut functions = read_functions(&lambda, &template, &ids).await?;
    apply_event_invoke_configs(&template, &ids.physical, &mut functions)?;
    let routes = template
        .resources_of_type("AWS::ApiGatewayV2::Route")
        .map(|(logical_id, resource)| read_route(&template, &ids.physical, logical_id, resource))
        .collect::<Result<Vec<_>, _>>()?;
    let mappings = read_mappings(&lambda, &sqs, &functions).await?;
    let state_machines = template
        .resources_of_type("AWS::StepFunctions::StateMachine")
        .count();
    Ok(DeployedStack {
        stack_name: stack_name.to_owned(),
        functions,
        routes,
        mappings,
        state_machines,
    })
}

/// What a template's `Ref`s resolve to in the deployed stack: its parameter values and the
/// physical ids of its resources, by logical id.
struct StackIds {
    parameters: HashMap<String, String>,
    physical: HashMap<String, String>,
}

/// The parameter values the stack was deployed with.
async fn stack_parameters(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
) -> Result<HashMap<String, String>, LocalError> {
    let stack = cfn
        .describe_stacks()
        .stack_name(stack_name)
        .send()
        .await
        .map_err(|e| LocalError::aws(format!("DescribeStacks {stack_name}"), &e))?;
    Ok(stack
        .stacks()
        .first()
        .map(|s| {
            s.parameters()
                .iter()
                .filter_map(|p| {
                    Some((
                        p.parameter_key()?.to_owned(),
                        p.parameter_value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The template at `path`, or the deployed one when there is no path.
async fn stack_template(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
    path: Option<&Path>,
) -> Result<Template, LocalError> {
    let (template_text, source_name) = match path {
        Some(path) => (
            std::fs::read_to_string(path).map_err(LocalError::io("read", path))?,
            path.display().to_string(),
        ),
        None => {
            let body = cfn
                .get_template()
                .stack_name(stack_name)
                .send()
                .await
                .map_err(|e| LocalError::aws(format!("GetTemplate {stack_name}"), &e))?;
            (
                body.template_body().unwrap_or_default().to_owned(),
                format!("template of stack {stack_name}"),
            )
        }
    };
    Template::parse(&template_text, &source_name)
}

/// The physical id of every resource of the stack, by logical id (every page of
/// ListStackResources).
async fn physical_ids(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
) -> Result<HashMap<String, String>, LocalError> {
    let mut physical = HashMap::new();
    let mut next_token = None;
    loop {
        let page = cfn
            .list_stack_resources()
            .stack_name(stack_name)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| LocalError::aws(format!("ListStackResources {stack_name}"), &e))?;
        for summary in page.stack_resource_summaries() {
            if let (Some(logical), Some(id)) = (
                summary.logical_resource_id(),
                summary.physical_resource_id(),
            ) {
                physical.insert(logical.to_owned(), id.to_owned());
            }
        }
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(physical);
        }
    }
}

/// Every Lambda function of the template, as deployed.
async fn read_functions(
    lambda: &aws_sdk_lambda::Client,
    template: &Template,
    ids: &StackIds,
) -> Result<Vec<DeployedFunction>, LocalError> {
    let mut functions = Vec::new();
    for (logical_id, resource) in template.resources_of_type("AWS::Lambda::Function") {
        let Some(name) = ids.physical.get(logical_id) else {
            return Err(template.error(logical_id, "is not a resource of the deployed stack"));
        };
        functions.push(read_function(lambda, template, logical_id, resource, name, ids).await?);
    }
    Ok(functions)
}

async fn read_function(
    lambda: &aws_sdk_lambda::Client,
    template: &Template,
    logical_id: &str,
    resource: &Yaml,
    name: &str,
    ids: &StackIds,
) -> Result<DeployedFunction, LocalError> {
    let function = lambda
        .get_function()
        .function_name(name)
        .send()
        .await
        .map_err(|e| LocalError::aws(format!("GetFunction {name}"), &e))?;
    let configuration = function.configuration().ok_or_else(|| LocalError::Aws {
        operation: format!("GetFunction {name}"),
        detail: "no configuration in the answer".to_owned(),
    })?;
    let environment = configuration
        .environment()
        .and_then(|e| e.variables())
        .map(|vars| vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let (code, role) = code_and_role(template, resource, ids);
    let code = running_code(code, role.as_deref(), configuration.code_sha256());
    Ok(DeployedFunction {
        logical_id: logical_id.to_owned(),
        name: name.to_owned(),
        arn: configuration
            .function_arn()
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!("arn:aws:lambda:us-east-1:{LOCAL_ACCOUNT_ID}:function:{name}")
            }),
        role,
        code,
        environment,
        timeout: Duration::from_secs(configuration.timeout().unwrap_or(3).max(1) as u64),
        memory_mb: configuration.memory_size().unwrap_or(128).max(128) as u32,
        reserved_concurrency: function
            .concurrency()
            .and_then(|c| c.reserved_concurrent_executions())
            .map(|c| c.max(0) as u32),
        asynchronous: AsyncInvokeConfig::default(),
    })
}

/// Where a function's code is (its `Code` S3 bucket and key, resolved) and its sagaform role,
/// read from the parameter its key refers to.
fn code_and_role(
    template: &Template,
    resource: &Yaml,
    ids: &StackIds,
) -> (Option<S3Location>, Option<String>) {
    let code = template.property(resource, "Code");
    let resolved = |name: &str| {
        code.and_then(|c| c.get(name))
            .and_then(|v| resolve_string(v, &ids.parameters, &ids.physical))
    };
    let bucket = resolved("S3Bucket");
    let key = resolved("S3Key");
    let role = key
        .as_ref()
        .and_then(|(_, parameter)| parameter.as_deref())
        .and_then(function_of_code_key_parameter);
    let code = match (bucket, key) {
        (Some((bucket, _)), Some((key, _))) => Some(S3Location { bucket, key }),
        _ => None,
    };
    (code, role)
}

/// The package the function runs: the one the stack's parameters name, unless Lambda's
/// `CodeSha256` says it runs another of the deploy's content-addressed packages
/// (`<role>/<sha256>.zip` in the same bucket). `deploy --hotswap` updates a function's code
/// without the stack's parameters, and the local environment must run what Lambda runs.
fn running_code(
    code: Option<S3Location>,
    role: Option<&str>,
    code_sha256: Option<&str>,
) -> Option<S3Location> {
    use base64::Engine as _;
    let (code, role, code_sha256) = match (code, role, code_sha256) {
        (Some(code), Some(role), Some(sha)) => (code, role, sha),
        (code, _, _) => return code,
    };
    let Some(named) = artifact::sha256_of_package_key(role, &code.key) else {
        // Not a package the deploy uploaded (a test's own key): the parameters decide.
        return Some(code);
    };
    let running = match base64::engine::general_purpose::STANDARD.decode(code_sha256) {
        Ok(digest) if digest.len() == 32 => digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        _ => return Some(code),
    };
    if running == named {
        return Some(code);
    }
    Some(S3Location {
        key: artifact::package_key(role, &running),
        bucket: code.bucket,
    })
}

/// Applies the template's `AWS::Lambda::EventInvokeConfig` resources to their functions: retries,
/// event age and an SQS on-failure destination (the emulator keeps none of them).
fn apply_event_invoke_configs(
    template: &Template,
    physical: &HashMap<String, String>,
    functions: &mut [DeployedFunction],
) -> Result<(), LocalError> {
    for (logical_id, resource) in template.resources_of_type("AWS::Lambda::EventInvokeConfig") {
        let function_id = template
            .property(resource, "FunctionName")
            .map(|name| template.referenced(name, "AWS::Lambda::Function"))
            .and_then(|ids| ids.into_iter().next())
            .ok_or_else(|| {
                template.error(logical_id, "FunctionName names no AWS::Lambda::Function")
            })?;
        let Some(function) = functions.iter_mut().find(|f| f.logical_id == function_id) else {
            continue;
        };
        let defaults = AsyncInvokeConfig::default();
        let max_retries = template
            .property(resource, "MaximumRetryAttempts")
            .and_then(Yaml::as_u64)
            .map_or(defaults.max_retries, |n| n.min(2) as u32);
        let max_event_age = template
            .property(resource, "MaximumEventAgeInSeconds")
            .and_then(Yaml::as_u64)
            .map_or(defaults.max_event_age, Duration::from_secs);
        function.asynchronous = AsyncInvokeConfig {
            max_retries,
            max_event_age,
            on_failure_queue_url: on_failure_queue_url(template, physical, logical_id, resource)?,
        };
    }
    Ok(())
}

/// The queue URL of an `AWS::Lambda::EventInvokeConfig`'s on-failure destination, when it is an
/// SQS queue of the stack.
fn on_failure_queue_url(
    template: &Template,
    physical: &HashMap<String, String>,
    logical_id: &str,
    resource: &Yaml,
) -> Result<Option<String>, LocalError> {
    let Some(destination) = template
        .property(resource, "DestinationConfig")
        .and_then(|d| d.get("OnFailure"))
        .and_then(|d| d.get("Destination"))
    else {
        return Ok(None);
    };
    let Some(queue_id) = template
        .referenced(destination, "AWS::SQS::Queue")
        .into_iter()
        .next()
    else {
        tracing::warn!(
            config = logical_id,
            "the on-failure destination is not an SQS queue of the stack; failed asynchronous invocations are dropped locally"
        );
        return Ok(None);
    };
    physical
        .get(&queue_id)
        .cloned()
        .map(Some)
        .ok_or_else(|| template.error(&queue_id, "is not a resource of the deployed stack"))
}

/// The HTTP API route of an `AWS::ApiGatewayV2::Route`: its key, and the function and timeout
/// of the integration it targets.
fn read_route(
    template: &Template,
    physical: &HashMap<String, String>,
    logical_id: &str,
    resource: &Yaml,
) -> Result<HttpRoute, LocalError> {
    let route_key = template
        .property(resource, "RouteKey")
        .and_then(Yaml::as_str)
        .ok_or_else(|| template.error(logical_id, "RouteKey is missing or not a string"))?;
    let target = template
        .property(resource, "Target")
        .ok_or_else(|| template.error(logical_id, "Target is missing"))?;
    let integration_id = template
        .referenced(target, "AWS::ApiGatewayV2::Integration")
        .into_iter()
        .next()
        .ok_or_else(|| {
            template.error(logical_id, "Target names no AWS::ApiGatewayV2::Integration")
        })?;
    let integration = template
        .resources
        .get(integration_id.as_str())
        .expect("referenced() only returns resources of the template");
    let uri = template
        .property(integration, "IntegrationUri")
        .ok_or_else(|| template.error(&integration_id, "IntegrationUri is missing"))?;
    let function_id = template
        .referenced(uri, "AWS::Lambda::Function")
        .into_iter()
        .next()
        .ok_or_else(|| {
            template.error(
                &integration_id,
                "IntegrationUri names no AWS::Lambda::Function",
            )
        })?;
    let function = physical
        .get(&function_id)
        .ok_or_else(|| template.error(&function_id, "is not a resource of the deployed stack"))?;
    let timeout = template
        .property(integration, "TimeoutInMillis")
        .and_then(Yaml::as_u64)
        .map_or(MAX_INTEGRATION_TIMEOUT, Duration::from_millis)
        .min(MAX_INTEGRATION_TIMEOUT);
    Ok(HttpRoute {
        route_key: route_key.to_owned(),
        function: function.clone(),
        timeout,
    })
}

/// The SQS event source mappings of the functions (other event sources are not served locally).
async fn read_mappings(
    lambda: &aws_sdk_lambda::Client,
    sqs: &aws_sdk_sqs::Client,
    functions: &[DeployedFunction],
) -> Result<Vec<SqsMapping>, LocalError> {
    let mut mappings = Vec::new();
    for function in functions {
        let listed = lambda
            .list_event_source_mappings()
            .function_name(&function.name)
            .send()
            .await
            .map_err(|e| {
                LocalError::aws(format!("ListEventSourceMappings {}", function.name), &e)
            })?;
        for mapping in listed.event_source_mappings() {
            let Some(queue_arn) = mapping
                .event_source_arn()
                .filter(|a| a.starts_with("arn:aws:sqs:"))
            else {
                continue;
            };
            mappings.push(read_mapping(sqs, mapping, queue_arn, &function.name).await?);
        }
    }
    Ok(mappings)
}

async fn read_mapping(
    sqs: &aws_sdk_sqs::Client,
    mapping: &aws_sdk_lambda::types::EventSourceMappingConfiguration,
    queue_arn: &str,
    function: &str,
) -> Result<SqsMapping, LocalError> {
    // arn:aws:sqs:REGION:ACCOUNT:NAME
    let parts: Vec<&str> = queue_arn.split(':').collect();
    let (account, queue_name) = match parts.as_slice() {
        [.., account, name] => (*account, *name),
        _ => ("", queue_arn),
    };
    let url = sqs
        .get_queue_url()
        .queue_name(queue_name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| LocalError::aws(format!("GetQueueUrl {queue_name}"), &e))?
        .queue_url()
        .unwrap_or_default()
        .to_owned();
    let visibility = crate::event_source::visibility_timeout(sqs, &url)
        .await
        .ok();
    Ok(SqsMapping {
        uuid: mapping.uuid().unwrap_or_default().to_owned(),
        queue_arn: queue_arn.to_owned(),
        queue_url: url,
        function: function.to_owned(),
        batch_size: mapping.batch_size().unwrap_or(10).max(1) as u32,
        batching_window_seconds: mapping
            .maximum_batching_window_in_seconds()
            .unwrap_or(0)
            .max(0) as u32,
        report_batch_item_failures: mapping
            .function_response_types()
            .contains(&aws_sdk_lambda::types::FunctionResponseType::ReportBatchItemFailures),
        maximum_concurrency: mapping
            .scaling_config()
            .and_then(|s| s.maximum_concurrency())
            .map(|c| c.max(1) as u32),
        visibility_timeout_seconds: visibility,
        enabled: mapping
            .state()
            .is_none_or(|s| s == "Enabled" || s == "Creating"),
    })
}

/// Downloads a function's code zip and writes its `bootstrap` (mode 0755) to `dir`, replacing
/// an older one by rename so that a process still running the old binary is not disturbed.
pub async fn fetch_bootstrap(
    s3: &aws_sdk_s3::Client,
    code: &S3Location,
    dir: &Path,
) -> Result<PathBuf, LocalError> {
    let source = format!("s3://{}/{}", code.bucket, code.key);
    let object = s3
        .get_object()
        .bucket(&code.bucket)
        .key(&code.key)
        .send()
        .await
        .map_err(|e| LocalError::aws(format!("GetObject {source}"), &e))?;
    let archive = object
        .body
        .collect()
        .await
        .map_err(|e| LocalError::aws(format!("GetObject {source}"), &e))?
        .into_bytes();
    let binary = crate::zip::stored_entry(&archive, "bootstrap", &source)?;
    write_executable(&binary, dir)
}

fn write_executable(binary: &[u8], dir: &Path) -> Result<PathBuf, LocalError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(LocalError::io("create", dir))?;
    let path = dir.join("bootstrap");
    let partial = dir.join("bootstrap.partial");
    std::fs::write(&partial, binary).map_err(LocalError::io("write", &partial))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .map_err(LocalError::io("chmod", &partial))?;
    std::fs::rename(&partial, &path).map_err(LocalError::io("rename", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  ArtifactBucket: {Type: String}
  ApiCodeKey: {Type: String}
Resources:
  ApiFunction:
    Type: AWS::Lambda::Function
    Properties:
      Code:
        S3Bucket: !Ref ArtifactBucket
        S3Key: {Ref: ApiCodeKey}
  HttpApi:
    Type: AWS::ApiGatewayV2::Api
  ApiIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref HttpApi
      IntegrationUri: !GetAtt ApiFunction.Arn
      TimeoutInMillis: 29000
  PostRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref HttpApi
      RouteKey: POST /transactions
      Target: !Sub integrations/${ApiIntegration}
  GetRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      RouteKey: GET /transactions/{id}
      Target: {"Fn::Join": ["/", ["integrations", {"Ref": "ApiIntegration"}]]}
"#;

    #[test]
    fn an_event_invoke_config_gives_its_function_retries_age_and_on_failure_queue() {
        let template = Template::parse(
            r#"
Resources:
  ApiFunction: {Type: AWS::Lambda::Function}
  WorkerFunction: {Type: AWS::Lambda::Function}
  ResumeDeadLetterQueue: {Type: AWS::SQS::Queue}
  ApiFunctionEventInvokeConfig:
    Type: AWS::Lambda::EventInvokeConfig
    Properties:
      FunctionName: !Ref ApiFunction
      Qualifier: $LATEST
      MaximumRetryAttempts: 1
      MaximumEventAgeInSeconds: 600
      DestinationConfig:
        OnFailure:
          Destination: !GetAtt ResumeDeadLetterQueue.Arn
"#,
            "t.yaml",
        )
        .unwrap();
        let physical = HashMap::from([(
            "ResumeDeadLetterQueue".to_owned(),
            "http://127.0.0.1:4566/123456789012/resume-dlq".to_owned(),
        )]);
        let deployed = |logical_id: &str| DeployedFunction {
            logical_id: logical_id.to_owned(),
            name: logical_id.to_owned(),
            arn: String::new(),
            role: None,
            code: None,
            environment: BTreeMap::new(),
            timeout: Duration::from_secs(3),
            memory_mb: 128,
            reserved_concurrency: None,
            asynchronous: AsyncInvokeConfig::default(),
        };
        let mut functions = vec![deployed("ApiFunction"), deployed("WorkerFunction")];
        apply_event_invoke_configs(&template, &physical, &mut functions).unwrap();
        assert_eq!(
            functions[0].asynchronous,
            AsyncInvokeConfig {
                max_retries: 1,
                max_event_age: Duration::from_secs(600),
                on_failure_queue_url: Some(
                    "http://127.0.0.1:4566/123456789012/resume-dlq".to_owned()
                ),
            }
        );
        assert_eq!(functions[1].asynchronous, AsyncInvokeConfig::default());
    }

    #[test]
    fn routes_lead_through_their_integration_to_the_function() {
        let template = Template::parse(TEMPLATE, "t.yaml").unwrap();
        for (id, route) in template.resources_of_type("AWS::ApiGatewayV2::Route") {
            let target = template.property(route, "Target").unwrap();
            let integrations = template.referenced(target, "AWS::ApiGatewayV2::Integration");
            assert_eq!(integrations, ["ApiIntegration"], "{id}");
        }
        let integration = template.resources.get("ApiIntegration").unwrap();
        let uri = template.property(integration, "IntegrationUri").unwrap();
        assert_eq!(
            template.referenced(uri, "AWS::Lambda::Function"),
            ["ApiFunction"]
        );
    }

    #[test]
    fn the_running_package_wins_over_the_one_the_parameters_name() {
        use base64::Engine as _;
        let named = "a".repeat(64);
        let location = |key: String| S3Location {
            bucket: "artifacts".to_owned(),
            key,
        };
        let stack_says = location(format!("api/{named}.zip"));
        let sha = |byte: u8| base64::engine::general_purpose::STANDARD.encode([byte; 32]);
        // The function runs what the parameters name.
        assert_eq!(
            running_code(Some(stack_says.clone()), Some("api"), Some(&sha(0xaa))),
            Some(stack_says.clone())
        );
        // A hotswap left another package running: that one is served.
        assert_eq!(
            running_code(Some(stack_says.clone()), Some("api"), Some(&sha(0xbb))),
            Some(location(format!("api/{}.zip", "b".repeat(64))))
        );
        // Keys the deploy did not make, and answers without a digest, keep the parameters'.
        let own = location("api/abc.zip".to_owned());
        assert_eq!(
            running_code(Some(own.clone()), Some("api"), Some(&sha(0xbb))),
            Some(own)
        );
        assert_eq!(
            running_code(Some(stack_says.clone()), Some("api"), None),
            Some(stack_says)
        );
    }

    #[test]
    fn code_keys_resolve_through_parameters_in_short_and_long_form() {
        let template = Template::parse(TEMPLATE, "t.yaml").unwrap();
        let function = template.resources.get("ApiFunction").unwrap();
        let code = template.property(function, "Code").unwrap();
        let parameters = HashMap::from([
            ("ArtifactBucket".to_owned(), "artifacts".to_owned()),
            ("ApiCodeKey".to_owned(), "api/abc.zip".to_owned()),
        ]);
        let physical = HashMap::new();
        let bucket = resolve_string(code.get("S3Bucket").unwrap(), &parameters, &physical);
        let key = resolve_string(code.get("S3Key").unwrap(), &parameters, &physical);
        assert_eq!(
            bucket,
            Some(("artifacts".into(), Some("ArtifactBucket".into())))
        );
        assert_eq!(key, Some(("api/abc.zip".into(), Some("ApiCodeKey".into()))));
    }

    #[test]
    fn a_template_without_resources_is_refused_with_its_name() {
        let error = Template::parse("Parameters: {}", "templates/sqs/local.yaml")
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .starts_with("templates/sqs/local.yaml: Resources"),
            "{error}"
        );
    }
}
