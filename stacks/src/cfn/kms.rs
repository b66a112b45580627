//! `AWS::KMS::Key`: the customer managed keys sagaform creates where an AWS managed key cannot
//! do (a service such as CloudWatch must be let in through the key policy).

use serde::Serialize;

use super::Tag;
use super::iam::PolicyDocument;

/// `AWS::KMS::Key`, a symmetric encryption key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Key {
    /// What the key encrypts.
    pub description: String,
    /// Yearly rotation of the key material (AWS keeps the old material for decryption).
    pub enable_key_rotation: bool,
    /// Days between a deletion request and the deletion (7 to 30).
    pub pending_window_in_days: u32,
    /// Who may use and administer the key.
    pub key_policy: PolicyDocument,
    /// Tags.
    pub tags: Vec<Tag>,
}
