use super::*;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};

const ORDER_ITEM: &str = r#"{"Id":"bd11dc4a","EnterpriseId":"4d02","AccountId":"c173","AccountType":"Company","Notes":"Additional note","ServiceId":"0508","ServiceOrderId":"dd01","BillId":null,"AccountingCategoryId":"c581","UnitCount":1,"UnitAmount":{"Currency":"EUR","NetValue":93.46,"GrossValue":100,"TaxValues":[{"Code":"DE-2020-1-L","Value":6.54}],"Breakdown":{"Items":[{"TaxRateCode":"DE-2020-1-L","NetValue":93.46,"TaxValue":6.54}]}},"Amount":{"Currency":"EUR","NetValue":93.46,"GrossValue":100,"TaxValues":[],"Breakdown":{"Items":[]}},"OriginalAmount":{"Currency":"EUR","NetValue":93.46,"GrossValue":100,"TaxValues":[{"Code":"DE-2020-1-L","Value":6.54}],"Breakdown":{"Items":[]}},"RevenueType":"Service","CreatorProfileId":"3cd6","UpdaterProfileId":"3cd6","CreatedUtc":"2023-03-28T07:28:01Z","UpdatedUtc":"2023-03-28T07:28:04Z","ConsumedUtc":"2023-03-31T00:00:00Z","CanceledUtc":null,"ClosedUtc":null,"StartUtc":"2023-03-30T22:00:00Z","AccountingState":"Open","Type":"SpaceOrder","Options":{"CanceledWithReservation":false},"Data":{"Discriminator":"Product","Rebate":null,"Product":{"ProductId":"8c8d","AgeCategoryId":null}}}"#;

fn decoder() -> RecordDecoder {
    RecordDecoder::new(
        crate::schema::find("OrderItem").unwrap(),
        "exp-1",
        "file.jsonl",
    )
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a ArrayRef {
    b.column_by_name(name).unwrap()
}

#[test]
fn decodes_the_reference_example_exactly() {
    let mut d = decoder();
    d.decode_line(7, ORDER_ITEM.as_bytes());
    let out = d.flush();
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    let b = &out.batch;
    assert_eq!(b.num_rows(), 1);
    assert_eq!(col(b, "Id").as_string::<i32>().value(0), "bd11dc4a");
    assert!(col(b, "BillId").is_null(0));
    assert_eq!(col(b, "UnitCount").as_primitive::<Int64Type>().value(0), 1);
    let unit = col(b, "UnitAmount").as_struct();
    let net = unit
        .column_by_name("NetValue")
        .unwrap()
        .as_primitive::<Decimal128Type>();
    assert_eq!(net.value(0), 93_460_000_000);
    assert_eq!(net.value_as_string(0), "93.460000000");
    let taxes = unit.column_by_name("TaxValues").unwrap().as_list::<i32>();
    assert_eq!(taxes.value(0).len(), 1);
    let consumed = col(b, "ConsumedUtc").as_primitive::<TimestampMicrosecondType>();
    assert_eq!(consumed.value(0), 1_680_220_800_000_000);
    assert_eq!(col(b, "_line").as_primitive::<Int64Type>().value(0), 7);
    assert_eq!(col(b, "_export_id").as_string::<i32>().value(0), "exp-1");
    assert_eq!(col(b, "_file").as_string::<i32>().value(0), "file.jsonl");
    assert!(col(b, "_extra").is_null(0));
    assert_eq!(out.counts.rows_written, 1);
    assert!(out.counts.unknown_enum_values.is_empty());
    // The example omits documented-required-free optionals only; nothing required is missing.
    assert!(
        out.counts.missing_required.is_empty(),
        "{:?}",
        out.counts.missing_required
    );
}

fn reject_reason(line: &str) -> String {
    let mut d = decoder();
    d.decode_line(1, line.as_bytes());
    let out = d.flush();
    assert_eq!(out.batch.num_rows(), 0, "accepted {line}");
    assert_eq!(out.rejects.len(), 1);
    out.rejects[0].reason.clone()
}

#[test]
fn each_rejection_reason() {
    assert!(reject_reason("{\"Id\":").contains("unexpected end"));
    assert!(reject_reason("[1,2]").contains("not a JSON object"));
    assert!(reject_reason("\"x\"").contains("not a JSON object"));
    assert!(
        reject_reason(&ORDER_ITEM.replace("\"Notes\":\"Additional note\"", "\"Notes\":{}"))
            .contains("property Notes: expected a string, found an object")
    );
    assert!(
        reject_reason(&ORDER_ITEM.replace("\"UnitCount\":1", "\"UnitCount\":\"abc\""))
            .contains("property UnitCount")
    );
    let r = reject_reason(&ORDER_ITEM.replace(
        "\"Value\":6.54}],\"Breakdown\":{\"Items\":[{",
        "\"Value\":\"abc\"}],\"Breakdown\":{\"Items\":[{",
    ));
    assert!(
        r.contains("property UnitAmount.TaxValues[0].Value: expected a decimal"),
        "{r}"
    );
    assert!(
        reject_reason(&ORDER_ITEM.replace("2023-03-28T07:28:01Z", "yesterday"))
            .contains("property CreatedUtc")
    );
    assert!(reject_reason(&ORDER_ITEM.replace("\"Id\":\"bd11dc4a\",", "")).contains("no Id"));
    assert!(
        reject_reason(&ORDER_ITEM.replace("\"Id\":\"bd11dc4a\"", "\"Id\":null")).contains("no Id")
    );
    assert!(
        reject_reason(&ORDER_ITEM.replace("\"Id\":\"bd11dc4a\"", "\"Id\":\"\"")).contains("no Id")
    );
    assert!(reject_reason(
        &ORDER_ITEM.replace("\"UnitCount\":1", "\"UnitCount\":1,\"UnitCount\":2")
    )
    .contains("appears twice"));
    // Unknown properties too (a reader of `_extra` would keep one value), and a top-level
    // name that is the path of a nested one.
    let twice = reject_reason(
        &ORDER_ITEM.replace("\"UnitCount\":1", "\"UnitCount\":1,\"Foo\":1,\"Foo\":2"),
    );
    assert!(
        twice.contains("appears twice") && twice.contains("Foo"),
        "{twice}"
    );
    let clash = reject_reason(
        &ORDER_ITEM
            .replace("\"UnitCount\":1", "\"UnitCount\":1,\"Options.Bar\":1")
            .replace(
                "\"CanceledWithReservation\":false}",
                "\"CanceledWithReservation\":false,\"Bar\":2}",
            ),
    );
    assert!(
        clash.contains("appears twice") && clash.contains("Bar"),
        "{clash}"
    );
    // Either alone is kept in `_extra`.
    let mut d = decoder();
    let alone = ORDER_ITEM.replace("\"UnitCount\":1", "\"UnitCount\":1,\"Options.Bar\":1");
    d.decode_line(1, alone.as_bytes());
    assert_eq!(d.flush().batch.num_rows(), 1);
    assert!(reject_reason(&format!("{ORDER_ITEM} x")).contains("after the object"));
    assert!(reject_reason(&ORDER_ITEM.replace(
        "93.46,\"GrossValue\":100,\"TaxValues\":[{",
        "93.4600000001,\"GrossValue\":100,\"TaxValues\":[{"
    ))
    .contains("fractional digits"));
}

#[test]
fn invalid_utf8_is_rejected_with_its_bytes() {
    let mut d = decoder();
    let mut line = ORDER_ITEM.as_bytes().to_vec();
    line[10] = 0xff;
    d.decode_line(3, &line);
    let out = d.flush();
    assert_eq!(out.rejects[0].content, RejectedContent::Bytes(line));
    assert!(out.rejects[0].reason.contains("UTF-8"));
}

#[test]
fn a_rejected_line_leaves_no_trace_in_any_column() {
    let mut d = decoder();
    d.decode_line(1, ORDER_ITEM.as_bytes());
    // Fails deep inside the last object, after every other column was appended.
    d.decode_line(
        2,
        ORDER_ITEM
            .replace("\"ProductId\":\"8c8d\"", "\"ProductId\":5")
            .as_bytes(),
    );
    d.decode_line(3, ORDER_ITEM.replace("bd11dc4a", "second").as_bytes());
    let out = d.flush();
    assert_eq!(out.batch.num_rows(), 2);
    assert_eq!(out.rejects.len(), 1);
    assert_eq!(out.rejects[0].line, 2);
    assert_eq!(
        out.rejects[0].property.as_deref(),
        Some("Data.Product.ProductId")
    );
    let ids = col(&out.batch, "Id").as_string::<i32>();
    assert_eq!(ids.value(1), "second");
    let lines = col(&out.batch, "_line").as_primitive::<Int64Type>();
    assert_eq!(lines.values().to_vec(), vec![1, 3]);
    out.batch
        .column_by_name("Data")
        .unwrap()
        .to_data()
        .validate_full()
        .unwrap();
    assert!(out.counts.is_balanced(), "{:?}", out.counts);
    assert_eq!(out.counts.rows_written + out.counts.rejected, 3);
}

#[test]
fn drift_is_kept_and_counted() {
    let line = ORDER_ITEM
        .replace("\"RevenueType\":\"Service\"", "\"RevenueType\":\"Spa\"")
        .replace(
            "\"UnitCount\":1,",
            "\"UnitCount\":1,\"NewThing\":{\"a\":[1]},",
        )
        .replace(
            "\"Code\":\"DE-2020-1-L\",\"Value\":6.54}],\"Breakdown\":{\"Items\":[{",
            "\"Code\":\"DE-2020-1-L\",\"Value\":6.54,\"Rate\":0.07}],\"Breakdown\":{\"Items\":[{",
        )
        .replace("\"ServiceId\":\"0508\",", "");
    let mut d = decoder();
    d.decode_line(1, line.as_bytes());
    let out = d.flush();
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    let b = &out.batch;
    assert_eq!(col(b, "RevenueType").as_string::<i32>().value(0), "Spa");
    let extra: serde_json::Value =
        serde_json::from_str(col(b, "_extra").as_string::<i32>().value(0)).unwrap();
    assert_eq!(
        extra,
        serde_json::json!({"NewThing": {"a": [1]}, "UnitAmount.TaxValues[0].Rate": 0.07})
    );
    assert_eq!(
        out.counts.unknown_enum_values.get("RevenueType=Spa"),
        Some(&1)
    );
    assert_eq!(out.counts.unknown_properties.get("NewThing"), Some(&1));
    assert_eq!(
        out.counts
            .unknown_properties
            .get("UnitAmount.TaxValues[].Rate"),
        Some(&1)
    );
    assert_eq!(out.counts.missing_required.get("ServiceId"), Some(&1));
}

#[test]
fn every_entity_decodes_a_minimal_row() {
    for schema in crate::schema::all() {
        let mut d = RecordDecoder::new(schema, "e", "f");
        d.decode_line(1, br#"{"Id":"x"}"#);
        let out = d.flush();
        assert_eq!(out.batch.num_rows(), 1, "{}", schema.entity);
        out.batch
            .columns()
            .iter()
            .for_each(|c| c.to_data().validate_full().unwrap());
    }
}

#[test]
fn lineage_columns_fit_every_batch_size() {
    let mut d = decoder();
    let mut line = 0;
    for rows in [3usize, 1, 7, 0, 2, 9] {
        for _ in 0..rows {
            line += 1;
            d.decode_line(line, ORDER_ITEM.as_bytes());
        }
        let out = d.flush();
        let b = &out.batch;
        assert_eq!(b.num_rows(), rows);
        for (name, value) in [("_export_id", "exp-1"), ("_file", "file.jsonl")] {
            let c = col(b, name).as_string::<i32>();
            assert_eq!(c.len(), rows, "{name}");
            assert_eq!(c.null_count(), 0, "{name}");
            assert!(c.iter().all(|v| v == Some(value)), "{name}");
        }
        let lines = col(b, "_line").as_primitive::<Int64Type>();
        let want: Vec<i64> = (line + 1 - rows as u64..=line).map(|l| l as i64).collect();
        assert_eq!(lines.values().to_vec(), want);
    }
}

#[test]
fn utf8_is_checked_wherever_it_occurs_in_the_line() {
    // Valid non-ASCII text at every alignment within the string scan's words is kept exactly.
    for pad in 0..9 {
        let notes = format!("{}Žluťoučký kůň 😀 ú", "x".repeat(pad));
        let line = ORDER_ITEM.replace("Additional note", &notes);
        let mut d = decoder();
        d.decode_line(1, line.as_bytes());
        let out = d.flush();
        assert!(out.rejects.is_empty(), "{:?}", out.rejects);
        assert_eq!(col(&out.batch, "Notes").as_string::<i32>().value(0), notes);
    }
    // Invalid UTF-8 anywhere is rejected with the same reason and the line's bytes, whether
    // in a known string, an unknown property's value or key, or between tokens.
    // `from` in the example replaced by the bytes `to`, once.
    let with = |from: &str, to: &[u8]| -> Vec<u8> {
        let at = ORDER_ITEM.find(from).unwrap();
        let b = ORDER_ITEM.as_bytes();
        [&b[..at], to, &b[at + from.len()..]].concat()
    };
    let cases: Vec<Vec<u8>> = vec![
        with("Additional note", b"Additional \x01"),
        with("bd11dc4a", b"bd11\xc3dc4a"),
        with("{", b"{\"Unknown\":[\"a\xff\"],"),
        with("{", b"{\"Unkn\xff\":1,"),
        with("{", b"{\xff"),
        with("Additional note", b"Additional note \xed\xa0\x80"),
        with("Additional note", b"Additional note \xc3"),
        with("Additional note", b"\\\xc3\xa9"),
        [ORDER_ITEM.as_bytes(), b" \xff"].concat(),
    ];
    for (i, line) in cases.into_iter().enumerate() {
        let mut d = decoder();
        d.decode_line(1, &line);
        let out = d.flush();
        assert_eq!(out.batch.num_rows(), 0, "case {i}");
        if std::str::from_utf8(&line).is_ok() {
            // A control character, or a non-ASCII character escaped: not a UTF-8 problem,
            // but rejected all the same.
            let reason = &out.rejects[0].reason;
            assert!(
                reason.contains("control") || reason.contains("escape"),
                "{reason}"
            );
            continue;
        }
        assert_eq!(out.rejects[0].content, RejectedContent::Bytes(line.clone()));
        let valid = std::str::from_utf8(&line).unwrap_err().valid_up_to();
        assert_eq!(
            out.rejects[0].reason,
            format!("invalid UTF-8 (byte {})", valid + 1),
            "case {i}"
        );
        assert_eq!(out.rejects[0].property, None, "case {i}");
    }
}

#[test]
fn whitespace_between_tokens_changes_nothing() {
    // Whitespace before and after every structural character outside strings.
    let mut spaced = String::from(" \t");
    let mut in_string = false;
    let mut escaped = false;
    for c in ORDER_ITEM.chars() {
        if in_string {
            spaced.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '{' | '}' | '[' | ']' | ':' | ',' => {
                spaced.push_str(" \r");
                spaced.push(c);
                spaced.push_str("\n\t ");
            }
            '"' => {
                in_string = true;
                spaced.push(c);
            }
            _ => spaced.push(c),
        }
    }
    spaced.push_str("  ");
    let mut d = decoder();
    d.decode_line(1, ORDER_ITEM.as_bytes());
    let compact = d.flush();
    d.decode_line(1, spaced.as_bytes());
    let out = d.flush();
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    assert_eq!(out.batch, compact.batch);
    assert_eq!(out.counts, compact.counts);
}

/// `depth` containers opened with `open` (`[` or `{"k":`), a `1` inside, all closed again.
fn nest(open: &str, depth: usize) -> String {
    let close = if open == "[" { "]" } else { "}" };
    format!("{}1{}", open.repeat(depth), close.repeat(depth))
}

/// Decodes `line` on a thread with a small stack, so that any recursion in proportion to
/// the nesting would overflow it (and abort the test run) instead of passing.
fn decode_on_small_stack(entity: &'static str, line: String) -> DecodedBatch {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut d = RecordDecoder::new(crate::schema::find(entity).unwrap(), "e", "f");
            d.decode_line(1, line.as_bytes());
            d.flush()
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn lines_nested_ten_thousand_deep_are_rejected_with_a_reason() {
    let too_deep = format!("nested deeper than {} levels", json::MAX_DEPTH);
    for open in ["[", "{\"k\":"] {
        let deep = nest(open, 10_000);
        let cases = [
            // Unknown property, headed for _extra.
            (
                "OrderItem",
                format!(r#"{{"Id":"x","Unknown":{deep}}}"#),
                "Unknown",
                &*too_deep,
            ),
            // Unknown property inside a known object.
            (
                "OrderItem",
                format!(r#"{{"Id":"x","UnitAmount":{{"Currency":"EUR","New":{deep}}}}}"#),
                "UnitAmount.New",
                &too_deep,
            ),
            // Known property of a type that keeps any JSON.
            (
                "Bill",
                format!(r#"{{"Id":"x","Revenue":[{deep}]}}"#),
                "Revenue[0]",
                &too_deep,
            ),
            // Known property of another type: refused at the first bracket.
            (
                "OrderItem",
                format!(r#"{{"Id":"x","Notes":{deep}}}"#),
                "Notes",
                "expected a string",
            ),
        ];
        for (entity, line, property, reason) in cases {
            let out = decode_on_small_stack(entity, line);
            assert_eq!(out.batch.num_rows(), 0);
            assert_eq!(out.rejects.len(), 1);
            let r = &out.rejects[0];
            assert!(r.reason.contains(reason), "{property}: {}", r.reason);
            assert_eq!(r.property.as_deref(), Some(property), "{}", r.reason);
        }
        // The whole line one deep value: an array is not an object whatever is inside; an
        // object's unknown member is too deep.
        let out = decode_on_small_stack("OrderItem", deep);
        assert_eq!(out.rejects.len(), 1);
        let expected = if open == "[" {
            "not a JSON object"
        } else {
            &*too_deep
        };
        assert!(
            out.rejects[0].reason.contains(expected),
            "{}",
            out.rejects[0].reason
        );
    }
}

#[test]
fn nesting_up_to_the_limit_is_kept_in_extra() {
    for open in ["[", "{\"k\":"] {
        let ok = decode_on_small_stack(
            "OrderItem",
            format!(r#"{{"Id":"x","Unknown":{}}}"#, nest(open, json::MAX_DEPTH)),
        );
        assert_eq!(ok.batch.num_rows(), 1, "{:?}", ok.rejects);
        let extra = col(&ok.batch, "_extra").as_string::<i32>().value(0);
        // One level deeper than the value: serde_json's own limit (128) would refuse it.
        let expected = format!(r#"{{"Unknown":{}}}"#, nest(open, json::MAX_DEPTH));
        assert_eq!(extra, expected);
        let over = decode_on_small_stack(
            "OrderItem",
            format!(
                r#"{{"Id":"x","Unknown":{}}}"#,
                nest(open, json::MAX_DEPTH + 1)
            ),
        );
        assert_eq!(over.rejects.len(), 1, "{open}");
    }
}
