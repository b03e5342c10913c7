//! The Connector API client: wire types, requests, retry policy and rate limit.
//!
//! - [`types`] — the JSON of the export operations, secrets and URL redaction.
//! - [`client`] — [`ApiClient`]: `exports/add`, `exports/getAll`, signed-file downloads.
//! - [`retry`] — [`RetryPolicy`]: what is retried, how long to wait, when to give up.
//! - [`limit`] — [`RequestLimiter`]: requests per sliding window, as the API counts them.
//! - [`error`] — [`ApiError`]: operation, status, message and request id; never a token.

pub mod client;
pub mod error;
pub mod limit;
pub mod retry;
pub mod types;

#[cfg(test)]
pub(crate) mod test_server;

pub use client::{
    ApiClient, ApiConfig, DEFAULT_REQUESTS_PER_WINDOW, DEFAULT_REQUEST_TIMEOUT, DEFAULT_WINDOW,
    DEMO_PLATFORM_URL,
};
pub use error::ApiError;
pub use limit::RequestLimiter;
pub use retry::RetryPolicy;
pub use types::*;
