//! The DynamoDB store: one item per saga in the saga table (PK `transaction_id`, the sparse and
//! sharded index of open sagas [`OPEN_STATUS_INDEX`] described in
//! [`sagaform_contract::saga_table`], TTL `expires_at` set once the saga is finished) and one item per
//! idempotency key in the idempotency table (PK `id`, TTL `expiration`, the attribute names of
//! Powertools for AWS Lambda).
//!
//! Every write is conditional: a saga changes only from the version its writer read, and a saga
//! created by the API completes the API's idempotency record in the same transaction.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};

use crate::errors::{IdempotencyError, StoreError};
use crate::model::{SagaRecord, SagaStatus, StepRecord, epoch_millis, epoch_seconds, rfc3339};
use crate::store::{
    CLAIM_ATTEMPTS, ClaimOutcome, IdempotencyClaim, IdempotencyCompletion, IdempotencyRecord,
    IdempotencyStatus, IdempotencyStore, SagaStore, existing_claim_outcome, stored_response,
};

pub use sagaform_contract::saga_table::OPEN_STATUS_INDEX;
use sagaform_contract::saga_table::{
    CREATED_AT_ATTRIBUTE, OPEN_STATUS_ATTRIBUTE, STATUS_SHARDS, open_status_key, status_shard,
};

/// BatchGetItem reads at most this many keys per request.
const BATCH_GET_LIMIT: usize = 100;

const BACKEND: &str = "dynamodb";

/// The condition of a create: no saga with this id yet.
const SAGA_IS_NEW: &str = "attribute_not_exists(transaction_id)";

/// Sets up, on `$builder`, the write that marks the INPROGRESS idempotency record of
/// `$completion` COMPLETED in the idempotency table of `$store`. A macro because the write stands
/// alone (`UpdateItem`) or inside the saga-creating transaction (`Update`): two builder types with
/// the same methods, and the condition must be the same in both.
macro_rules! completing_idempotency {
    ($builder:expr, $store:expr, $completion:expr) => {
        $builder
            .table_name(&$store.idempotency_table)
            .key("id", s($completion.key))
            .update_expression("SET #status = :completed, #data = :data, expiration = :expiration")
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":completed", s(IdempotencyStatus::Completed.as_str()))
            .expression_attribute_values(":in_progress", s(IdempotencyStatus::InProgress.as_str()))
            .expression_attribute_values(":data", s(&$completion.response.to_string()))
            .expression_attribute_values(":expiration", n(epoch_seconds($completion.expiration)))
    };
}

/// Saga state and idempotency records in two DynamoDB tables.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    saga_table: String,
    idempotency_table: String,
    finished_saga_ttl: Duration,
}

impl DynamoStore {
    /// A store on existing tables; finished sagas expire `finished_saga_ttl` after their last
    /// change.
    pub fn new(
        client: Client,
        saga_table: impl Into<String>,
        idempotency_table: impl Into<String>,
        finished_saga_ttl: Duration,
    ) -> Self {
        DynamoStore {
            client,
            saga_table: saga_table.into(),
            idempotency_table: idempotency_table.into(),
            finished_saga_ttl,
        }
    }

    /// The saga table's name.
    pub fn saga_table(&self) -> &str {
        &self.saga_table
    }

    /// The idempotency table's name.
    pub fn idempotency_table(&self) -> &str {
        &self.idempotency_table
    }

    /// The client, for callers that need other DynamoDB calls.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates both tables with the contract's keys, index and TTL attributes, on-demand
    /// billing. For tests and the local emulator; deployed stacks get them from the template.
    pub async fn create_tables(&self) -> Result<(), StoreError> {
        self.create_saga_table().await?;
        self.create_idempotency_table().await?;
        for (table, attribute) in [
            (&self.saga_table, "expires_at"),
            (&self.idempotency_table, "expiration"),
        ] {
            self.enable_ttl(table, attribute).await?;
        }
        Ok(())
    }

    /// The saga table: keyed by `transaction_id`, with the index of open sagas.
    async fn create_saga_table(&self) -> Result<(), StoreError> {
        let open_index = GlobalSecondaryIndex::builder()
            .index_name(OPEN_STATUS_INDEX)
            .key_schema(key(OPEN_STATUS_ATTRIBUTE, KeyType::Hash)?)
            .key_schema(key(CREATED_AT_ATTRIBUTE, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::KeysOnly)
                    .build(),
            )
            .build()
            .map_err(config_error)?;
        self.client
            .create_table()
            .table_name(&self.saga_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attribute("transaction_id")?)
            .attribute_definitions(string_attribute(OPEN_STATUS_ATTRIBUTE)?)
            .attribute_definitions(string_attribute(CREATED_AT_ATTRIBUTE)?)
            .key_schema(key("transaction_id", KeyType::Hash)?)
            .global_secondary_indexes(open_index)
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    /// The idempotency table: keyed by `id`.
    async fn create_idempotency_table(&self) -> Result<(), StoreError> {
        self.client
            .create_table()
            .table_name(&self.idempotency_table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(string_attribute("id")?)
            .key_schema(key("id", KeyType::Hash)?)
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    /// Lets DynamoDB delete the items of `table` once the time in `attribute` has passed.
    async fn enable_ttl(&self, table: &str, attribute: &str) -> Result<(), StoreError> {
        let ttl = TimeToLiveSpecification::builder()
            .attribute_name(attribute)
            .enabled(true)
            .build()
            .map_err(config_error)?;
        self.client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    fn saga_item(&self, record: &SagaRecord, version: u64) -> HashMap<String, AttributeValue> {
        let mut item = HashMap::from([
            ("transaction_id".to_owned(), s(&record.transaction_id)),
            ("status".to_owned(), s(record.status.as_str())),
            ("version".to_owned(), n(version)),
            ("request".to_owned(), s(&record.request.to_string())),
            (
                "steps".to_owned(),
                AttributeValue::L(record.steps.iter().map(step_value).collect()),
            ),
            (CREATED_AT_ATTRIBUTE.to_owned(), s(&record.created_at)),
            ("updated_at".to_owned(), s(&record.updated_at)),
        ]);
        if let Some(key) = open_status(record) {
            item.insert(OPEN_STATUS_ATTRIBUTE.to_owned(), s(&key));
        }
        if let Some(error) = &record.error {
            item.insert("error".to_owned(), s(error));
        }
        if record.status.is_terminal() && !record.status.needs_a_human() {
            // Only finished sagas expire: an active one must stay findable as stuck, and one
            // waiting for a human stays until it is settled.
            let expires = SystemTime::now() + self.finished_saga_ttl;
            item.insert("expires_at".to_owned(), n(epoch_seconds(expires)));
        }
        item
    }

    fn saga_put(&self, record: &SagaRecord) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.saga_table)
            .set_item(Some(self.saga_item(record, 1)))
            .condition_expression(SAGA_IS_NEW)
            .build()
            .map_err(config_error)
    }

    /// The transaction ids of the open sagas in `status`, created before `created_before` if
    /// given, from every shard of the index.
    async fn open_ids(
        &self,
        status: SagaStatus,
        created_before: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::new();
        for shard in 0..STATUS_SHARDS {
            let mut start_key = None;
            loop {
                let mut query = self
                    .client
                    .query()
                    .table_name(&self.saga_table)
                    .index_name(OPEN_STATUS_INDEX)
                    .expression_attribute_names("#open", OPEN_STATUS_ATTRIBUTE)
                    .expression_attribute_values(
                        ":open",
                        s(&open_status_key(status.as_str(), shard)),
                    )
                    .set_exclusive_start_key(start_key);
                query = match created_before {
                    Some(cutoff) => query
                        .key_condition_expression("#open = :open AND #created < :cutoff")
                        .expression_attribute_names("#created", CREATED_AT_ATTRIBUTE)
                        .expression_attribute_values(":cutoff", s(cutoff)),
                    None => query.key_condition_expression("#open = :open"),
                };
                let page = query.send().await.map_err(backend_error)?;
                for item in page.items() {
                    ids.push(string(item, "transaction_id", "?")?);
                }
                start_key = page.last_evaluated_key().cloned();
                if start_key.is_none() {
                    break;
                }
            }
        }
        Ok(ids)
    }

    /// The sagas with these ids, read consistently (the index is eventually consistent and
    /// holds only keys); a saga deleted meanwhile is left out.
    async fn load_many(&self, ids: &[String]) -> Result<Vec<SagaRecord>, StoreError> {
        let mut records = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_GET_LIMIT) {
            let keys = chunk
                .iter()
                .map(|id| HashMap::from([("transaction_id".to_owned(), s(id))]))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(config_error)?,
            );
            while let Some(request) = pending.take() {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.saga_table, request)
                    .send()
                    .await
                    .map_err(backend_error)?;
                if let Some(items) = output
                    .responses()
                    .and_then(|tables| tables.get(&self.saga_table))
                {
                    for item in items {
                        records.push(saga_from_item(item)?);
                    }
                }
                // DynamoDB may leave keys unread under load; they are asked for again.
                pending = output
                    .unprocessed_keys()
                    .and_then(|tables| tables.get(&self.saga_table))
                    .filter(|rest| !rest.keys().is_empty())
                    .cloned();
            }
        }
        Ok(records)
    }

    /// Every saga in a finished `status`, by scanning the table: finished sagas are not in the
    /// index (that is what keeps it small), and listing them is an operator's occasional audit.
    async fn scan_status(&self, status: SagaStatus) -> Result<Vec<SagaRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.saga_table)
                .filter_expression("#status = :status")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(backend_error)?;
            for item in page.items() {
                records.push(saga_from_item(item)?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(records);
            }
        }
    }
}

/// The index partition key of `record`, when it is open (in the index).
fn open_status(record: &SagaRecord) -> Option<String> {
    record
        .status
        .is_open()
        .then(|| open_status_key(record.status.as_str(), status_shard(&record.transaction_id)))
}

/// How many writes DynamoDB makes to the index of open sagas when the saga table's item goes
/// from `before` (`None`: no item yet) to `after`, by DynamoDB's rules for a keys-only global
/// secondary index: one to add or remove an entry, two (a delete and a put) when its key
/// changes, none when neither image is in the index or the key is unchanged. What the engine
/// benchmark counts to show what the index costs per saga.
pub fn open_index_writes(before: Option<&SagaRecord>, after: &SagaRecord) -> u64 {
    let entry =
        |record: &SagaRecord| open_status(record).map(|key| (key, record.created_at.clone()));
    match (before.and_then(entry), entry(after)) {
        (None, None) => 0,
        (None, Some(_)) | (Some(_), None) => 1,
        (Some(old), Some(new)) => {
            if old == new {
                0
            } else {
                2
            }
        }
    }
}

impl DynamoStore {
    /// Whether the stored saga is `record` as written at `version`: the write a failed
    /// condition was about landed (its answer was lost and the SDK retried it).
    async fn holds_write(&self, record: &SagaRecord, version: u64) -> Result<bool, StoreError> {
        Ok(self
            .get(&record.transaction_id)
            .await?
            .is_some_and(|stored| is_write_of(&stored, record, version)))
    }

    /// Whether the idempotency record is completed with this completion's response.
    async fn holds_completion(
        &self,
        completion: &IdempotencyCompletion<'_>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .get_idempotency(completion.key)
            .await?
            .is_some_and(|stored| {
                stored.status == IdempotencyStatus::Completed
                    && stored.response.as_ref() == Some(completion.response)
            }))
    }
}

/// Whether `stored` is `record` written at `version`, field for field (a saga reads back as
/// written): the transaction id is unique and the record carries the write's own time, so no
/// other write looks the same.
fn is_write_of(stored: &SagaRecord, record: &SagaRecord, version: u64) -> bool {
    stored.version == version
        && *stored
            == SagaRecord {
                version,
                ..record.clone()
            }
}

impl SagaStore for DynamoStore {
    async fn create(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.saga_table)
            .set_item(Some(self.saga_item(record, 1)))
            .condition_expression(SAGA_IS_NEW)
            .send()
            .await;
        match result {
            Ok(_) => Ok(1),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // The SDK retries a write whose answer it did not get; the retry then finds the
                // first one's item. That is this write, not another saga.
                if self.holds_write(record, 1).await? {
                    return Ok(1);
                }
                Err(StoreError::AlreadyExists(record.transaction_id.clone()))
            }
            Err(e) => Err(backend_error(e)),
        }
    }

    async fn create_completing_idempotency(
        &self,
        record: &SagaRecord,
        completion: &IdempotencyCompletion<'_>,
    ) -> Result<u64, StoreError> {
        let complete = completing_idempotency!(Update::builder(), self, completion)
            .build()
            .map_err(config_error)?;
        let result = self
            .client
            .transact_write_items()
            // DynamoDB applies a transaction retried with the same token once (for ten minutes);
            // the transaction id, unique per saga, is that token.
            .client_request_token(&record.transaction_id)
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.saga_put(record)?)
                    .build(),
            )
            .transact_items(TransactWriteItem::builder().update(complete).build())
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(1),
            Err(e) => e,
        };
        let Some(canceled) = error.as_service_error().and_then(|e| match e {
            aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
            _ => None,
        }) else {
            return Err(backend_error(error));
        };
        // The reasons come in the order of the transaction's items: saga first, then the record.
        let failed = |index: usize| {
            canceled
                .cancellation_reasons()
                .get(index)
                .and_then(|reason| reason.code())
                .is_some_and(|code| code == "ConditionalCheckFailed")
        };
        if failed(0) {
            // A retry whose first attempt landed (where the token was not honoured) finds the
            // saga and the completed key both as it wrote them.
            if self.holds_write(record, 1).await? && self.holds_completion(completion).await? {
                return Ok(1);
            }
            Err(StoreError::AlreadyExists(record.transaction_id.clone()))
        } else if failed(1) {
            Err(StoreError::IdempotencyNotInProgress(
                completion.key.to_owned(),
            ))
        } else {
            Err(backend_error(error))
        }
    }

    async fn get(&self, transaction_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.saga_table)
            .key("transaction_id", s(transaction_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend_error)?;
        output.item().map(saga_from_item).transpose()
    }

    async fn transition(&self, record: &SagaRecord) -> Result<u64, StoreError> {
        let next_version = record.version + 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.saga_table)
            .set_item(Some(self.saga_item(record, next_version)))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(record.version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(next_version),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // A missing item fails the same condition, and so does the SDK's retry of this
                // very write when its answer was lost; one read tells them apart (only on this
                // rare path).
                match self.get(&record.transaction_id).await? {
                    None => Err(StoreError::NotFound(record.transaction_id.clone())),
                    Some(stored) if is_write_of(&stored, record, next_version) => Ok(next_version),
                    Some(_) => Err(StoreError::Conflict {
                        transaction_id: record.transaction_id.clone(),
                        expected: record.version,
                    }),
                }
            }
            Err(e) => Err(backend_error(e)),
        }
    }

    async fn list_by_status(
        &self,
        status: SagaStatus,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut records = if status.is_open() {
            self.load_many(&self.open_ids(status, None).await?).await?
        } else {
            self.scan_status(status).await?
        };
        // A saga read after the index listed it may have moved on.
        records.retain(|record| record.status == status);
        records.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        records.truncate(limit);
        Ok(records)
    }

    async fn list_stuck(
        &self,
        idle_for: Duration,
        limit: usize,
    ) -> Result<Vec<SagaRecord>, StoreError> {
        let cutoff = rfc3339(SystemTime::now() - idle_for);
        let mut stuck = Vec::new();
        for status in SagaStatus::ACTIVE {
            // A saga not updated since the cutoff was created before it: the index narrows by
            // creation time, the read by the last update.
            let candidates = self.open_ids(status, Some(&cutoff)).await?;
            stuck.extend(
                self.load_many(&candidates)
                    .await?
                    .into_iter()
                    .filter(|record| record.status == status && record.updated_at < cutoff),
            );
        }
        stuck.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        stuck.truncate(limit);
        Ok(stuck)
    }
}

impl IdempotencyStore for DynamoStore {
    async fn claim(&self, claim: &IdempotencyClaim<'_>) -> Result<ClaimOutcome, IdempotencyError> {
        let now = SystemTime::now();
        // Names this claim, so that the SDK's retry of a put whose answer was lost recognises
        // the claim it finds as its own, and another claimer's as not.
        let token = uuid::Uuid::now_v7().to_string();
        for _ in 0..CLAIM_ATTEMPTS {
            let result = self
                .client
                .put_item()
                .table_name(&self.idempotency_table)
                .item("id", s(claim.key))
                .item("status", s(IdempotencyStatus::InProgress.as_str()))
                .item("validation", s(claim.payload_hash))
                .item("expiration", n(epoch_seconds(claim.expiration)))
                .item(
                    "in_progress_expiration",
                    n(epoch_millis(claim.in_progress_until)),
                )
                .item("claim_token", s(&token))
                .condition_expression(
                    "attribute_not_exists(id) OR expiration < :now \
                     OR (#status = :in_progress AND in_progress_expiration < :now_ms)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":now", n(epoch_seconds(now)))
                .expression_attribute_values(":now_ms", n(epoch_millis(now)))
                .expression_attribute_values(
                    ":in_progress",
                    s(IdempotencyStatus::InProgress.as_str()),
                )
                .send()
                .await;
            match result {
                Ok(_) => return Ok(ClaimOutcome::Claimed),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    if let Some(existing) = self.get_idempotency(claim.key).await? {
                        if existing.status == IdempotencyStatus::InProgress
                            && existing.claim_token.as_deref() == Some(token.as_str())
                        {
                            return Ok(ClaimOutcome::Claimed);
                        }
                        return existing_claim_outcome(existing, claim);
                    }
                    // Released between the failed write and the read: claim again.
                }
                Err(e) => return Err(backend_error(e).into()),
            }
        }
        Err(IdempotencyError::InProgress(claim.key.to_owned()))
    }

    async fn complete(&self, completion: &IdempotencyCompletion<'_>) -> Result<(), StoreError> {
        let result = completing_idempotency!(self.client.update_item(), self, completion)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // The SDK's retry of this completion, after its answer was lost, finds it done.
                if self.holds_completion(completion).await? {
                    return Ok(());
                }
                Err(StoreError::IdempotencyNotInProgress(
                    completion.key.to_owned(),
                ))
            }
            Err(e) => Err(backend_error(e)),
        }
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.idempotency_table)
            .key("id", s(key))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s(IdempotencyStatus::InProgress.as_str()))
            .send()
            .await;
        // Nothing in progress to release (gone, or completed meanwhile): nothing to do.
        deleted_if_there(delete)
    }

    async fn forget(&self, key: &str, response: &serde_json::Value) -> Result<(), StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.idempotency_table)
            .key("id", s(key))
            .condition_expression("#status = :completed AND #data = :data")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#data", "data")
            .expression_attribute_values(":completed", s(IdempotencyStatus::Completed.as_str()))
            .expression_attribute_values(":data", s(&response.to_string()))
            .send()
            .await;
        // Gone already, or pointing at something else: nothing of ours to forget.
        deleted_if_there(delete)
    }

    async fn get_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.idempotency_table)
            .key("id", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend_error)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let id = key;
        let response = stored_response(id, "data", optional_string(item, "data", id)?)?;
        Ok(Some(IdempotencyRecord {
            id: id.to_owned(),
            status: IdempotencyStatus::parse(id, &string(item, "status", id)?)?,
            payload_hash: string(item, "validation", id)?,
            expiration: number(item, "expiration", id)?,
            in_progress_expiry: optional_number(item, "in_progress_expiration", id)?,
            response,
            claim_token: optional_string(item, "claim_token", id)?,
        }))
    }
}

/// The outcome of a conditional delete whose condition names what may be deleted: a failed
/// condition means there is nothing of the caller's to delete, which is done too.
fn deleted_if_there<R>(
    result: Result<R, SdkError<DeleteItemError, aws_sdk_dynamodb::config::http::HttpResponse>>,
) -> Result<(), StoreError> {
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(backend_error(e)),
    }
}

/// A key schema element of a table or index.
fn key(name: &str, key_type: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
        .map_err(config_error)
}

/// The definition of a string attribute used in a key.
fn string_attribute(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(config_error)
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn step_value(step: &StepRecord) -> AttributeValue {
    let mut map = HashMap::from([
        ("name".to_owned(), s(&step.name)),
        ("status".to_owned(), s(step.status.as_str())),
        ("attempts".to_owned(), n(step.attempts)),
        (
            "compensation_attempts".to_owned(),
            n(step.compensation_attempts),
        ),
    ]);
    if step.in_doubt {
        map.insert("in_doubt".to_owned(), AttributeValue::Bool(true));
    }
    if let Some(error) = &step.error {
        map.insert("error".to_owned(), s(error));
    }
    if let Some(updated_at) = &step.updated_at {
        map.insert("updated_at".to_owned(), s(updated_at));
    }
    AttributeValue::M(map)
}

fn saga_from_item(item: &HashMap<String, AttributeValue>) -> Result<SagaRecord, StoreError> {
    let id = string(item, "transaction_id", "?")?;
    let id = id.as_str();
    let request = serde_json::from_str(&string(item, "request", id)?)
        .map_err(|e| StoreError::corrupt(id, format!("request: {e}")))?;
    let steps = match item.get("steps") {
        Some(AttributeValue::L(steps)) => steps
            .iter()
            .map(|step| match step {
                AttributeValue::M(map) => Ok(StepRecord {
                    name: string(map, "name", id)?,
                    status: string(map, "status", id)?
                        .parse()
                        .map_err(|e| StoreError::corrupt(id, e))?,
                    attempts: u32::try_from(number(map, "attempts", id)?)
                        .map_err(|e| StoreError::corrupt(id, format!("attempts: {e}")))?,
                    // Absent from records written before compensations counted their attempts.
                    compensation_attempts: u32::try_from(
                        optional_number(map, "compensation_attempts", id)?.unwrap_or(0),
                    )
                    .map_err(|e| StoreError::corrupt(id, format!("compensation_attempts: {e}")))?,
                    // Written only when true, so records of every age read the same.
                    in_doubt: match map.get("in_doubt") {
                        None => false,
                        Some(AttributeValue::Bool(in_doubt)) => *in_doubt,
                        Some(_) => return Err(StoreError::corrupt(id, "in_doubt: not a boolean")),
                    },
                    error: optional_string(map, "error", id)?,
                    updated_at: optional_string(map, "updated_at", id)?,
                }),
                _ => Err(StoreError::corrupt(id, "a step is not a map")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(StoreError::corrupt(id, "steps: missing or not a list")),
    };
    Ok(SagaRecord {
        transaction_id: id.to_owned(),
        status: string(item, "status", id)?
            .parse()
            .map_err(|e| StoreError::corrupt(id, e))?,
        version: u64::try_from(number(item, "version", id)?)
            .map_err(|e| StoreError::corrupt(id, format!("version: {e}")))?,
        request,
        steps,
        created_at: string(item, "created_at", id)?,
        updated_at: string(item, "updated_at", id)?,
        error: optional_string(item, "error", id)?,
    })
}

fn string(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    id: &str,
) -> Result<String, StoreError> {
    optional_string(item, name, id)?
        .ok_or_else(|| StoreError::corrupt(id, format!("{name}: missing")))
}

fn optional_string(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value.clone())),
        Some(_) => Err(StoreError::corrupt(id, format!("{name}: not a string"))),
    }
}

fn number(item: &HashMap<String, AttributeValue>, name: &str, id: &str) -> Result<i64, StoreError> {
    optional_number(item, name, id)?
        .ok_or_else(|| StoreError::corrupt(id, format!("{name}: missing")))
}

fn optional_number(
    item: &HashMap<String, AttributeValue>,
    name: &str,
    id: &str,
) -> Result<Option<i64>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|e| StoreError::corrupt(id, format!("{name}: {e}"))),
        Some(_) => Err(StoreError::corrupt(id, format!("{name}: not a number"))),
    }
}

fn backend_error<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Backend {
        backend: BACKEND,
        message: DisplayErrorContext(&error).to_string(),
    }
}

fn config_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Config(format!("dynamodb request: {error}"))
}
