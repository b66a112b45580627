//! The work message in an SQS record, checked before anything runs: a malformed message fails
//! on every delivery until it reaches the DLQ, so the checks say exactly what is wrong.

use aws_lambda_events::sqs::SqsMessage;
use sagaform_contract::message::{TRANSACTION_ID_ATTRIBUTE, WorkMessage};

/// The saga message in a record, or why it is not one.
pub(crate) fn parse_message(record: &SqsMessage) -> Result<WorkMessage, String> {
    let body = record.body.as_deref().ok_or("no body")?;
    let message =
        WorkMessage::from_body(body).map_err(|e| format!("body is not a saga message: {e}"))?;
    let id = uuid::Uuid::try_parse(&message.transaction_id)
        .map_err(|_| format!("transaction_id `{}` is not a UUID", message.transaction_id))?;
    if id.hyphenated().to_string() != message.transaction_id {
        return Err(format!(
            "transaction_id `{}` is not a lower-case hyphenated UUID",
            message.transaction_id
        ));
    }
    if !message.request.is_object() {
        return Err("request is not a JSON object".to_owned());
    }
    if let Some(attribute) = record.message_attributes.get(TRANSACTION_ID_ATTRIBUTE)
        && attribute.string_value.as_deref() != Some(message.transaction_id.as_str())
    {
        return Err("the transaction_id attribute differs from the body's".to_owned());
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body: &str) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.body = Some(body.to_owned());
        record
    }
    #[test]
    fn saga_messages_need_a_uuid_and_a_request_object() {
        let id = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
        let ok = parse_message(&record(&format!(
            r#"{{"transaction_id":"{id}","request":{{}}}}"#
        )))
        .unwrap();
        assert_eq!(ok.transaction_id, id);
        assert!(
            parse_message(&record("not json"))
                .unwrap_err()
                .starts_with("body is not a saga message")
        );
        assert!(
            parse_message(&record(r#"{"transaction_id":"x","request":{}}"#))
                .unwrap_err()
                .contains("not a UUID")
        );
        let no_request = parse_message(&record(&format!(
            r#"{{"transaction_id":"{id}","request":3}}"#
        )))
        .unwrap_err();
        assert_eq!(no_request, "request is not a JSON object");
    }
    #[test]
    fn a_transaction_attribute_must_match_the_body() {
        let id = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
        let mut message = record(&format!(r#"{{"transaction_id":"{id}","request":{{}}}}"#));
        let mut attribute = aws_lambda_events::sqs::SqsMessageAttribute::default();
        attribute.string_value = Some("0190a1b2-0000-7e5f-8a6b-7c8d9e0f1a2b".to_owned());
        message
            .message_attributes
            .insert(TRANSACTION_ID_ATTRIBUTE.to_owned(), attribute);
        assert_eq!(
            parse_message(&message).unwrap_err(),
            "the transaction_id attribute differs from the body's"
        );
    }
}
