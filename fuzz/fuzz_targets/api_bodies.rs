//! The Connector API body parsers, exactly as the client calls them: `exports/getAll` and
//! `exports/add` success bodies and error bodies. Any input must give a value or a clean
//! error of the right kind; a parsed answer must survive a round trip; no error text may
//! show a credential or be unbounded when the body was not a Mews error.
//!
//! Input: byte 0 picks the parser, the rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mews_etl::api::client::{decode_response, error_from_body};
use mews_etl::api::{
    redact_url, AddExportResponse, ApiError, ErrorBody, Export, GetAllExportsResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A token as the client holds it; it must be masked in every error.
const SECRET: &str = "SecretToken";

fn check_export(export: &Export) {
    for file in &export.files {
        // The query string of a signed URL is a credential: never shown.
        let shown = redact_url(&file.url);
        assert!(!shown.contains(['?', '#']), "{shown}");
        let debug = format!("{file:?}");
        assert!(!debug.contains(['?', '#']), "{debug}");
    }
}

fn check_success<R>(operation: &'static str, body: &[u8]) -> Option<R>
where
    R: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    match decode_response::<R>(operation, body, &[SECRET]) {
        Ok(parsed) => {
            let again = serde_json::to_vec(&parsed).expect("parsed answers serialize");
            let back: R = decode_response(operation, &again, &[]).expect("round trip");
            assert_eq!(back, parsed);
            Some(parsed)
        }
        Err(error) => {
            assert!(
                matches!(&error, ApiError::Decode { operation: op, .. } if *op == operation),
                "{error:?}"
            );
            assert!(!error.to_string().contains(SECRET), "{error}");
            assert!(!error.is_retryable());
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [which, body @ ..] = data else {
        return;
    };
    match which % 3 {
        0 => {
            if let Some(r) = check_success::<GetAllExportsResponse>("exports/getAll", body) {
                r.exports.iter().for_each(check_export);
            }
        }
        1 => {
            if let Some(r) = check_success::<AddExportResponse>("exports/add", body) {
                check_export(&r.export);
            }
        }
        _ => {
            let status = 400 + u16::from(*which);
            let error =
                error_from_body("exports/add", status, body, None, "https://h/x", &[SECRET]);
            let ApiError::Http {
                status: shown_status,
                message,
                request_id,
                ..
            } = &error
            else {
                panic!("expected Http, got {error:?}");
            };
            assert_eq!(*shown_status, status);
            assert!(!message.is_empty());
            assert!(!message.contains(SECRET), "{message}");
            let is_mews_error =
                serde_json::from_slice::<ErrorBody>(body).is_ok_and(|b| !b.message.is_empty());
            if !is_mews_error {
                // Not a Mews error body: a short prefix of its text, never the body itself.
                assert!(message.chars().count() <= 201, "{message}");
                assert!(request_id.is_none());
            }
            let _ = error.to_string();
        }
    }
});
