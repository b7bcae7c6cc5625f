//! Fuzzes `range::plan`: spans always lie within the representation, are non-empty,
//! never more than MAX_PARTS, and never add up to more than its length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zcopy_http::range::{MAX_PARTS, RangePlan, plan};

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (len_bytes, header) = data.split_at(8);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    let raw = u64::from_le_bytes(len_bytes.try_into().unwrap());
    // Half the runs use small lengths, where ranges interact with the end of the file.
    for len in [raw, raw % 1024] {
        if let RangePlan::Partial(spans) = plan(header, len) {
            assert!(!spans.is_empty() && spans.len() <= MAX_PARTS);
            let mut total: u64 = 0;
            for (start, end) in spans {
                assert!(start < end && end <= len, "{start}..{end} of {len}");
                total = total.checked_add(end - start).unwrap();
            }
            assert!(total <= len);
        }
    }
});
