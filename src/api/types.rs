//! Wire types of the two export operations, exactly as the Connector API reference spells
//! them (`operations/exports.md`): PascalCase JSON, optional members omitted when absent.
//! Shared by the client and the embedded mock, so both speak the same shape.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A credential: serialized as itself, but never shown by `Debug` or `Display`, so a token
/// cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Body of `exports/add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddExportRequest {
    /// Token identifying the client application.
    pub client_token: Secret,
    /// Access token of the property or portfolio.
    pub access_token: Secret,
    /// Name and version of the client application (`mews-etl/0.1.0`).
    pub client: String,
    /// The entity type to export (`OrderItem`, …).
    pub entity_type: String,
    /// Enterprises or chains to export; all in the token's scope when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ExportScope>,
    /// Filters on the exported rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<ExportFilters>,
}

/// Body of `exports/getAll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAllExportsRequest {
    /// Token identifying the client application.
    pub client_token: Secret,
    /// Access token of the property or portfolio.
    pub access_token: Secret,
    /// Name and version of the client application.
    pub client: String,
    /// At most [`MAX_IDS_PER_REQUEST`] export ids.
    pub export_ids: Vec<String>,
}

/// Most ids in one `ExportIds`, `EnterpriseIds` or `ChainIds` list (the API's limit).
pub const MAX_IDS_PER_REQUEST: usize = 1000;

/// Which enterprises or chains an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ExportScope {
    /// Enterprise ids, at most [`MAX_IDS_PER_REQUEST`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_ids: Option<Vec<String>>,
    /// Chain ids, at most [`MAX_IDS_PER_REQUEST`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_ids: Option<Vec<String>>,
}

/// Filters of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ExportFilters {
    /// Rows updated in this interval (end at least 5 minutes in the past, at most 180 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_utc: Option<TimeInterval>,
    /// Required for `LedgerEntry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_entry_filters: Option<LedgerEntryFilters>,
}

/// A UTC time interval, start inclusive, end exclusive (ISO-8601 text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeInterval {
    /// Start, e.g. `2020-11-04T00:00:00Z`.
    pub start_utc: String,
    /// End, e.g. `2020-11-05T00:00:00Z`.
    pub end_utc: String,
}

/// Ledger-entry filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LedgerEntryFilters {
    /// Posting dates, both ends inclusive.
    pub posting: DateInterval,
}

/// A date interval (ISO-8601 dates, both ends inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DateInterval {
    /// First date, e.g. `2024-01-01`.
    pub start: String,
    /// Last date, e.g. `2024-01-31`.
    pub end: String,
}

/// Status of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExportStatus {
    /// Accepted, not started.
    Pending,
    /// Being produced.
    Processing,
    /// Files are ready.
    Success,
    /// Production failed.
    Failed,
    /// Files are no longer available.
    Expired,
    /// A status this version does not know (the API is in beta); treated as still running.
    #[serde(other)]
    Unknown,
}

impl ExportStatus {
    /// Whether the export will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ExportStatus::Success | ExportStatus::Failed | ExportStatus::Expired
        )
    }
}

impl fmt::Display for ExportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One file of a successful export.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportFile {
    /// Signed download URL, valid for 10 minutes; its query string is a credential.
    pub url: String,
    /// Size of the file in bytes, as served.
    pub size_in_bytes: u64,
}

impl fmt::Debug for ExportFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportFile")
            .field("url", &redact_url(&self.url))
            .field("size_in_bytes", &self.size_in_bytes)
            .finish()
    }
}

/// An export as `exports/add` and `exports/getAll` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Export {
    /// The export's id.
    pub id: String,
    /// Its status.
    pub status: ExportStatus,
    /// The exported entity type.
    pub entity_type: String,
    /// The enterprises or chains covered.
    #[serde(default)]
    pub scope: Option<ExportScope>,
    /// Files, once `Success`; empty otherwise (absent or `null` before).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub files: Vec<ExportFile>,
    /// When the files stop being available.
    #[serde(default)]
    pub expires_utc: Option<String>,
    /// Filters applied.
    #[serde(default)]
    pub filters: Option<ExportFilters>,
}

/// Reads `null` as an empty list, as a pending export's `Files` may be sent.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ExportFile>, D::Error> {
    Ok(Option::<Vec<ExportFile>>::deserialize(d)?.unwrap_or_default())
}

/// Response of `exports/add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddExportResponse {
    /// The export created.
    pub export: Export,
}

/// Response of `exports/getAll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAllExportsResponse {
    /// The exports asked for.
    pub exports: Vec<Export>,
}

/// The body of an error response (`guidelines/responses.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    /// Description of the error.
    #[serde(default)]
    pub message: String,
    /// Identifier of the request, for support.
    #[serde(default)]
    pub request_id: Option<String>,
}

/// A URL as it may be shown: without its query string (which holds the signature) and
/// without user info.
pub fn redact_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or("");
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => no_query.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_signatures_never_show() {
        let req = AddExportRequest {
            client_token: Secret::new("CLIENT-SECRET"),
            access_token: Secret::new("ACCESS-SECRET"),
            client: "mews-etl/0".into(),
            entity_type: "OrderItem".into(),
            scope: None,
            filters: None,
        };
        let shown = format!("{req:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let body = serde_json::to_string(&req).unwrap();
        assert!(body.contains("\"ClientToken\":\"CLIENT-SECRET\""), "{body}");
        assert!(!body.contains("Scope"), "{body}");
        let file = ExportFile {
            url: "https://u:p@h.example/x/1.jsonl?sig=SIGNATURE".into(),
            size_in_bytes: 3,
        };
        assert!(!format!("{file:?}").contains("SIGNATURE"));
        assert_eq!(redact_url(&file.url), "https://h.example/x/1.jsonl");
    }

    #[test]
    fn parses_the_reference_example() {
        let text = r#"{"Exports":[{"Id":"3fa8","Status":"Success","EntityType":"OrderItem","Scope":{"EnterpriseIds":["a"],"ChainIds":null},"Files":[{"Url":"https://example.com/1.jsonl?s=1","SizeInBytes":1215279}],"ExpiresUtc":"2023-10-26T11:42:28Z","Filters":{"UpdatedUtc":{"StartUtc":"2020-11-04T00:00:00Z","EndUtc":"2020-11-05T00:00:00Z"},"LedgerEntryFilters":null}},{"Id":"x","Status":"Archived","EntityType":"Company","Scope":null,"Files":[],"ExpiresUtc":null,"Filters":null}]}"#;
        let r: GetAllExportsResponse = serde_json::from_str(text).unwrap();
        assert_eq!(r.exports[0].status, ExportStatus::Success);
        assert_eq!(r.exports[0].files[0].size_in_bytes, 1_215_279);
        assert_eq!(r.exports[1].status, ExportStatus::Unknown);
        // A pending export may carry `"Files": null`, or no `Files` at all.
        let pending = r#"{"Exports":[{"Id":"p","Status":"Pending","EntityType":"Bill","Files":null},{"Id":"q","Status":"Processing","EntityType":"Bill"}]}"#;
        let r: GetAllExportsResponse = serde_json::from_str(pending).unwrap();
        assert!(r.exports.iter().all(|e| e.files.is_empty()));
    }
}
