//! Errors of the Connector API client.
//!
//! Every variant names the operation (`exports/add`, `exports/getAll`, `download`) and, where
//! there is one, the URL — always passed through [`redact_url`](super::redact_url) first,
//! because the query string of a signed file URL is a credential. Tokens travel only in
//! request bodies, which no error keeps.

use std::fmt;
use std::time::Duration;

/// Why a call to the Connector API (or a file download) failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with a status the caller did not expect.
    #[error("{operation}: HTTP {status}: {message}{}", RequestIdSuffix(request_id.as_deref()))]
    Http {
        /// What was being done: `exports/add`, `exports/getAll` or `download`.
        operation: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The `Message` of the Mews error body, or a short prefix of a non-JSON body.
        message: String,
        /// The `RequestId` of the error body (or the `Request-Id` header), for support.
        request_id: Option<String>,
        /// The URL asked, redacted.
        url: String,
    },

    /// The request did not complete: connection refused or reset, timeout, broken body.
    #[error(
        "{operation}: transport error on {url}: {}",
        crate::with_causes(source)
    )]
    Transport {
        /// What was being done.
        operation: &'static str,
        /// The URL asked, redacted.
        url: String,
        /// The underlying error, stripped of its URL (see [`ApiError::transport`]).
        #[source]
        source: reqwest::Error,
    },

    /// The server answered with success, but the body is not what the operation returns.
    #[error("{operation}: unexpected response: {message}")]
    Decode {
        /// What was being done.
        operation: &'static str,
        /// What was wrong with the body.
        message: String,
    },

    /// A retryable failure persisted until the retry policy gave up.
    #[error("{operation}: giving up after {attempts} attempts in {elapsed:.1?}: {last}")]
    RetriesExhausted {
        /// What was being done.
        operation: &'static str,
        /// How many requests were made.
        attempts: u32,
        /// Time from the first attempt to giving up.
        elapsed: Duration,
        /// The failure of the last attempt.
        last: Box<ApiError>,
    },

    /// The client was configured with values it cannot work with.
    #[error("invalid API client configuration: {0}")]
    InvalidConfig(String),
}

impl ApiError {
    /// Wraps a transport error; the URL is removed from it because `reqwest` would print it
    /// with its query string, and the redacted one is kept beside it instead.
    pub fn transport(operation: &'static str, url: &str, source: reqwest::Error) -> Self {
        ApiError::Transport {
            operation,
            url: super::redact_url(url),
            source: source.without_url(),
        }
    }

    /// The HTTP status behind the error, looking through [`ApiError::RetriesExhausted`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Http { status, .. } => Some(*status),
            ApiError::RetriesExhausted { last, .. } => last.status(),
            ApiError::Transport { .. } | ApiError::Decode { .. } | ApiError::InvalidConfig(_) => {
                None
            }
        }
    }

    /// Whether trying the same request again may succeed: 408, 429 and 5xx answers, and
    /// transport failures (refused or reset connections, timeouts, bodies cut short).
    ///
    /// Other 4xx answers are not: the request itself is wrong, or the credentials are, and
    /// repeating it only spends rate limit. [`ApiError::RetriesExhausted`] is not retryable
    /// either: the policy has already said its last word.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Http { status, .. } => is_retryable_status(*status),
            ApiError::Transport { source, .. } => {
                source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
            }
            ApiError::Decode { .. }
            | ApiError::RetriesExhausted { .. }
            | ApiError::InvalidConfig(_) => false,
        }
    }
}

/// Statuses worth another attempt: the server was overloaded, slow, or failed on its side.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Formats ` (request id …)` when there is one, so the common case reads naturally.
struct RequestIdSuffix<'a>(Option<&'a str>);

impl fmt::Display for RequestIdSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (request id {id})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> ApiError {
        ApiError::Http {
            operation: "exports/add",
            status,
            message: "Invalid EntityType.".into(),
            request_id: Some("r-1".into()),
            url: "https://api.example/api/connector/v1/exports/add".into(),
        }
    }

    #[test]
    fn http_error_reads_like_the_reference() {
        assert_eq!(
            http(400).to_string(),
            "exports/add: HTTP 400: Invalid EntityType. (request id r-1)"
        );
        let mut no_id = http(400);
        if let ApiError::Http { request_id, .. } = &mut no_id {
            *request_id = None;
        }
        assert_eq!(
            no_id.to_string(),
            "exports/add: HTTP 400: Invalid EntityType."
        );
    }

    #[test]
    fn classifies_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(http(s).is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 413] {
            assert!(!http(s).is_retryable(), "{s}");
        }
        let exhausted = ApiError::RetriesExhausted {
            operation: "exports/add",
            attempts: 6,
            elapsed: Duration::from_secs(12),
            last: Box::new(http(503)),
        };
        assert_eq!(exhausted.status(), Some(503));
        assert!(!exhausted.is_retryable());
        assert!(exhausted.to_string().contains("6 attempts"), "{exhausted}");
    }
}
