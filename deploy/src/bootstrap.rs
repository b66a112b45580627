//! Per-environment bootstrap, like `cdk bootstrap` but implicit: the artifact bucket of an
//! account, region and env, created on first deploy with versioning, default encryption, every
//! public access blocked and a lifecycle rule that expires old versions; then content-addressed
//! uploads that skip what is already there.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketVersioningStatus, CreateBucketConfiguration, ExpirationStatus, LifecycleRule,
    LifecycleRuleFilter, NoncurrentVersionExpiration, PublicAccessBlockConfiguration,
    ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Tagging, VersioningConfiguration,
};
use serde::Serialize;

use crate::error::{ProvideMessage, aws_error};
use crate::{Artifact, DeployError, Progress, Session};

/// Tag marking a bucket as fully configured; written last, so a bootstrap interrupted halfway
/// is completed by the next deploy.
const BOOTSTRAP_TAG: &str = "sagaform:bootstrap-version";
/// Bump when the bucket configuration changes, so existing buckets are reconfigured.
const BOOTSTRAP_VERSION: &str = "1";
/// Days an overwritten or deleted artifact version is kept (rollbacks reuse recent keys).
const NONCURRENT_DAYS: i32 = 30;

/// The artifact bucket of an env: `sagaform-artifacts-<account>-<region>-<env>`.
pub fn bucket_name(account_id: &str, region: &str, env: &str) -> Result<String, DeployError> {
    let name = format!("sagaform-artifacts-{account_id}-{region}-{env}");
    if name.len() > 63 {
        return Err(DeployError::Config(format!(
            "env {env}: artifact bucket name {name} is over S3's 63 characters: use a shorter env name"
        )));
    }
    Ok(name)
}

/// Whether the bucket was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BucketState {
    /// Created (and configured) by this call.
    Created,
    /// Existed but its configuration was incomplete or outdated; configured now.
    Reconfigured,
    /// Existed and was configured.
    Ready,
}

/// Creates and configures the artifact bucket if needed.
pub async fn ensure_bucket(
    session: &Session,
    bucket: &str,
    progress: &Progress,
) -> Result<BucketState, DeployError> {
    let s3 = &session.s3;
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => {
            if configured(session, bucket).await {
                return Ok(BucketState::Ready);
            }
            progress.status(format!("bootstrap: configuring artifact bucket {bucket}"));
            configure(session, bucket).await?;
            progress.line(format!("bootstrap: artifact bucket {bucket} reconfigured"));
            Ok(BucketState::Reconfigured)
        }
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            progress.status(format!("bootstrap: creating artifact bucket {bucket}"));
            let mut create = s3.create_bucket().bucket(bucket);
            // us-east-1 is the one region that rejects an explicit location constraint.
            if session.region != "us-east-1" {
                create = create.create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(
                            session.region.as_str(),
                        ))
                        .build(),
                );
            }
            create.send().await.map_err(aws_error("S3.CreateBucket"))?;
            configure(session, bucket).await?;
            progress.line(format!(
                "bootstrap: created artifact bucket {bucket} (versioned, encrypted, public access blocked, old versions expire after {NONCURRENT_DAYS} days)"
            ));
            Ok(BucketState::Created)
        }
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
            Err(DeployError::Aws {
                operation: "S3.HeadBucket",
                message: format!(
                    "bucket {bucket} exists but is not accessible with these credentials (owned by another account?)"
                ),
            })
        }
        Err(e) => Err(DeployError::Aws {
            operation: "S3.HeadBucket",
            message: e.readable_message(),
        }),
    }
}

async fn configured(session: &Session, bucket: &str) -> bool {
    session
        .s3
        .get_bucket_tagging()
        .bucket(bucket)
        .send()
        .await
        .is_ok_and(|tags| {
            tags.tag_set()
                .iter()
                .any(|t| t.key() == BOOTSTRAP_TAG && t.value() == BOOTSTRAP_VERSION)
        })
}

/// Applies the bootstrap configuration to the bucket, then tags it as configured.
async fn configure(session: &Session, bucket: &str) -> Result<(), DeployError> {
    enable_versioning(&session.s3, bucket).await?;
    enable_encryption(&session.s3, bucket).await?;
    block_public_access(&session.s3, bucket).await?;
    expire_old_versions(&session.s3, bucket).await?;
    tag_configured(&session.s3, bucket, &session.env_name).await
}

async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), DeployError> {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(aws_error("S3.PutBucketVersioning"))?;
    Ok(())
}

/// Server-side encryption with S3-managed keys (AES-256) by default.
async fn enable_encryption(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), DeployError> {
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .expect("algorithm is set"),
        )
        .build();
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .expect("rules are set"),
        )
        .send()
        .await
        .map_err(aws_error("S3.PutBucketEncryption"))?;
    Ok(())
}

async fn block_public_access(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), DeployError> {
    s3.put_public_access_block()
        .bucket(bucket)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(aws_error("S3.PutPublicAccessBlock"))?;
    Ok(())
}

/// Expires replaced artifacts after [`NONCURRENT_DAYS`] and abandoned multipart uploads after a
/// day.
async fn expire_old_versions(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), DeployError> {
    let lifecycle = LifecycleRule::builder()
        .id("expire-noncurrent-artifacts")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(NONCURRENT_DAYS)
                .build(),
        )
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(1)
                .build(),
        )
        .build()
        .expect("status is set");
    s3.put_bucket_lifecycle_configuration()
        .bucket(bucket)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(lifecycle)
                .build()
                .expect("rules are set"),
        )
        .send()
        .await
        .map_err(aws_error("S3.PutBucketLifecycleConfiguration"))?;
    Ok(())
}

/// Tags the bucket with its env and the bootstrap version, which [`configured`] checks.
async fn tag_configured(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    env_name: &str,
) -> Result<(), DeployError> {
    let tag = |key: &str, value: &str| {
        Tag::builder()
            .key(key)
            .value(value)
            .build()
            .expect("key and value are set")
    };
    s3.put_bucket_tagging()
        .bucket(bucket)
        .tagging(
            Tagging::builder()
                .tag_set(tag("env", env_name))
                .tag_set(tag(BOOTSTRAP_TAG, BOOTSTRAP_VERSION))
                .build()
                .expect("tags are set"),
        )
        .send()
        .await
        .map_err(aws_error("S3.PutBucketTagging"))?;
    Ok(())
}

/// One artifact's upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upload {
    /// Function name.
    pub function: String,
    /// S3 key.
    pub key: String,
    /// Zip size.
    pub bytes: usize,
    /// False when the key was already in the bucket and the upload was skipped.
    pub uploaded: bool,
}

/// Uploads every artifact whose content-addressed key is not in the bucket yet.
pub async fn upload_artifacts(
    session: &Session,
    bucket: &str,
    artifacts: &[Artifact],
    progress: &Progress,
) -> Result<Vec<Upload>, DeployError> {
    let mut uploads = Vec::new();
    for artifact in artifacts {
        let key = artifact.key();
        let present = is_in_bucket(session, bucket, &key).await?;
        if present {
            progress.line(format!(
                "upload: {} unchanged ({key} already in the bucket)",
                artifact.function()
            ));
        } else {
            upload(session, bucket, &key, artifact, progress).await?;
        }
        uploads.push(Upload {
            function: artifact.function().to_owned(),
            key,
            bytes: artifact.zip().len(),
            uploaded: !present,
        });
    }
    Ok(uploads)
}

/// Whether `key` is in the bucket already.
async fn is_in_bucket(session: &Session, bucket: &str, key: &str) -> Result<bool, DeployError> {
    match session
        .s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(false),
        Err(e) => Err(DeployError::Aws {
            operation: "S3.HeadObject",
            message: e.readable_message(),
        }),
    }
}

/// Uploads one artifact's zip as `key`.
async fn upload(
    session: &Session,
    bucket: &str,
    key: &str,
    artifact: &Artifact,
    progress: &Progress,
) -> Result<(), DeployError> {
    let size = human_bytes(artifact.zip().len());
    progress.status(format!(
        "upload: uploading {} ({size}) to s3://{bucket}/{key}",
        artifact.function()
    ));
    session
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/zip")
        .body(ByteStream::from(artifact.zip().to_vec()))
        .send()
        .await
        .map_err(aws_error("S3.PutObject"))?;
    progress.line(format!(
        "upload: {} uploaded as {key} ({size})",
        artifact.function()
    ));
    Ok(())
}

/// Sizes for people: `12.3 MB`.
pub(crate) fn human_bytes(bytes: usize) -> String {
    let bytes = bytes as f64;
    if bytes >= 1_000_000.0 {
        format!("{:.1} MB", bytes / 1_000_000.0)
    } else if bytes >= 1_000.0 {
        format!("{:.1} kB", bytes / 1_000.0)
    } else {
        format!("{bytes} B")
    }
}

/// Deletes every version of the given keys (used when clearing a local env's artifacts).
pub async fn delete_keys(
    session: &Session,
    bucket: &str,
    keys: &[String],
) -> Result<usize, DeployError> {
    let mut deleted = 0;
    for key in keys {
        let versions = session
            .s3
            .list_object_versions()
            .bucket(bucket)
            .prefix(key)
            .send()
            .await
            .map_err(aws_error("S3.ListObjectVersions"))?;
        let ids: Vec<Option<String>> = versions
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key.as_str()))
            .map(|v| v.version_id().map(str::to_owned))
            .chain(
                versions
                    .delete_markers()
                    .iter()
                    .filter(|m| m.key() == Some(key.as_str()))
                    .map(|m| m.version_id().map(str::to_owned)),
            )
            .collect();
        for id in ids {
            session
                .s3
                .delete_object()
                .bucket(bucket)
                .key(key)
                .set_version_id(id)
                .send()
                .await
                .map_err(aws_error("S3.DeleteObject"))?;
        }
        deleted += 1;
    }
    Ok(deleted)
}
