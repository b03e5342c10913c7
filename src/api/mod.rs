//! The Connector API client: wire types, requests, retry policy and rate limit.

pub mod types;

pub use types::*;
