//! `AWS::SecretsManager::Secret`: a secret whose password Secrets Manager generates, so that it
//! never appears in a template, a parameter or a log.

use serde::Serialize;

use super::Tag;

/// `AWS::SecretsManager::Secret`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Secret {
    /// What it is for.
    pub description: String,
    /// How Secrets Manager generates its value.
    pub generate_secret_string: GenerateSecretString,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// A generated secret value: a JSON template plus one generated field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateSecretString {
    /// The JSON object the generated field is added to (e.g. the user name).
    pub secret_string_template: String,
    /// The generated field's name.
    pub generate_string_key: String,
    /// The generated password's length.
    pub password_length: u32,
    /// Characters left out of the password.
    pub exclude_characters: String,
}
