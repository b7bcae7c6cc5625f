//! `Range: bytes=...` (RFC 9110 §14): single, suffix, open-ended and multiple ranges.

/// What to send for a request's Range header, given the representation length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangePlan {
    /// No (usable) Range header, invalid syntax, or ranges that add up to more than
    /// the file: 200 with the whole body.
    Full,
    /// 206 with these inclusive-exclusive byte spans (start, end), in request order;
    /// one span → single part, several → multipart/byteranges.
    Partial(Vec<(u64, u64)>),
    /// 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// Most parts we send in one multipart response; more → Full.
pub const MAX_PARTS: usize = 32;

/// One syntactically valid range-spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-last` (last saturated to u64::MAX on overflow).
    Closed(u64, u64),
    /// `first-`.
    From(u64),
    /// `-suffix`.
    Suffix(u64),
}

/// A run of ASCII digits as a number, saturating at u64::MAX; None if empty or not
/// all digits.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Compares two digit strings numerically without overflow.
fn digits_greater(a: &str, b: &str) -> bool {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    (a.len(), a) > (b.len(), b)
}

/// Parses one range-spec (no surrounding whitespace).
fn spec(s: &str) -> Option<Spec> {
    let (first, last) = s.split_once('-')?;
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => number(last).map(Spec::Suffix),
        (false, true) => number(first).map(Spec::From),
        (false, false) => {
            let (a, b) = (number(first)?, number(last)?);
            if digits_greater(first, last) {
                return None;
            }
            Some(Spec::Closed(a, b))
        }
    }
}

/// The span a spec selects in `len` bytes, or None when unsatisfiable.
fn span(spec: Spec, len: u64) -> Option<(u64, u64)> {
    match spec {
        Spec::Closed(a, b) if a < len => Some((a, b.min(len - 1) + 1)),
        Spec::From(a) if a < len => Some((a, len)),
        Spec::Suffix(n) if n > 0 && len > 0 => Some((len - n.min(len), len)),
        _ => None,
    }
}

/// Interprets a Range header value for a representation of `len` bytes. Numbers that
/// overflow u64 never wrap.
///
/// - The unit must be `bytes` (any case) directly followed by `=`; anything else, or
///   any malformed spec (including `a-b` with a > b), means the header is ignored:
///   [`RangePlan::Full`]. Empty list elements and whitespace around commas are allowed.
/// - An end beyond the file (or beyond u64) is clamped to `len - 1`; a start beyond
///   u64 is unsatisfiable; `-0` is unsatisfiable.
/// - More than [`MAX_PARTS`] specs, or satisfiable spans whose lengths add up to more
///   than `len` (overlapping or many small ranges, as nginx also refuses), → Full.
/// - No satisfiable spec → [`RangePlan::Unsatisfiable`]. For `len == 0` every range
///   is unsatisfiable (RFC 9110 §14.1.1), so a valid Range on an empty file is 416
///   (nginx answers 200 there; we follow the RFC).
pub fn plan(header: &str, len: u64) -> RangePlan {
    let Some(eq) = header.find('=') else {
        return RangePlan::Full;
    };
    let (unit, set) = (&header[..eq], &header[eq + 1..]);
    if !unit.eq_ignore_ascii_case("bytes") {
        return RangePlan::Full;
    }
    let mut spans = Vec::new();
    let mut specs = 0usize;
    let mut total = 0u64;
    for item in set.split(',') {
        let item = item.trim_matches(|c| c == ' ' || c == '\t');
        if item.is_empty() {
            continue;
        }
        let Some(spec) = spec(item) else {
            return RangePlan::Full;
        };
        specs += 1;
        if specs > MAX_PARTS {
            return RangePlan::Full;
        }
        if let Some((start, end)) = span(spec, len) {
            // The lengths may add up past u64 when `len` is near u64::MAX.
            let Some(sum) = total.checked_add(end - start) else {
                return RangePlan::Full;
            };
            total = sum;
            spans.push((start, end));
        }
    }
    if specs == 0 {
        RangePlan::Full
    } else if spans.is_empty() {
        RangePlan::Unsatisfiable
    } else if total > len {
        RangePlan::Full
    } else {
        RangePlan::Partial(spans)
    }
}

#[cfg(test)]
mod tests {
    use super::RangePlan::{Full, Partial, Unsatisfiable};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table() {
        let max = u64::MAX;
        let cases: Vec<(&str, u64, RangePlan)> = vec![
            ("bytes=0-0", 10, Partial(vec![(0, 1)])),
            ("bytes=0-9", 10, Partial(vec![(0, 10)])),
            ("bytes=0-99", 10, Partial(vec![(0, 10)])),
            ("bytes=5-", 10, Partial(vec![(5, 10)])),
            ("bytes=9-", 10, Partial(vec![(9, 10)])),
            ("bytes=-3", 10, Partial(vec![(7, 10)])),
            ("bytes=-10", 10, Partial(vec![(0, 10)])),
            ("bytes=-100", 10, Partial(vec![(0, 10)])),
            ("BYTES=1-2", 10, Partial(vec![(1, 3)])),
            ("Bytes=1-2", 10, Partial(vec![(1, 3)])),
            ("bytes=0-1,4-5", 10, Partial(vec![(0, 2), (4, 6)])),
            ("bytes=4-5, 0-1", 10, Partial(vec![(4, 6), (0, 2)])),
            ("bytes=0-1 ,\t-2", 10, Partial(vec![(0, 2), (8, 10)])),
            ("bytes=0-1,,2-3,", 10, Partial(vec![(0, 2), (2, 4)])),
            ("bytes=0-1,20-30", 10, Partial(vec![(0, 2)])),
            ("bytes=0-1,1-2", 10, Partial(vec![(0, 2), (1, 3)])),
            ("bytes=007-008", 10, Partial(vec![(7, 9)])),
            // Unsatisfiable.
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=-0,10-", 10, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=-5", 0, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            // Ignored.
            ("bytes=5-4", 10, Full),
            ("bytes=0-1,5-4", 10, Full),
            ("bytes=", 10, Full),
            ("bytes=,", 10, Full),
            ("bytes=-", 10, Full),
            ("bytes=1", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=1-2-3", 10, Full),
            ("bytes=+1-2", 10, Full),
            ("bytes=1 -2", 10, Full),
            ("bytes=0x1-2", 10, Full),
            ("bytes =0-1", 10, Full),
            ("bytes= 0-1", 10, Partial(vec![(0, 2)])), // OWS as in any list
            ("bytes", 10, Full),
            ("items=0-1", 10, Full),
            ("", 10, Full),
            ("bytes=0-1;2-3", 10, Full),
            ("bytes=0-1,junk", 10, Full),
            ("bytes=１-2", 10, Full),
            // Sum over length (overlap) → Full.
            ("bytes=0-9,0-9", 10, Full),
            ("bytes=0-5,5-9", 10, Full),
            ("bytes=-6,0-5", 10, Full),
            // Overflow.
            (
                "bytes=0-99999999999999999999999",
                10,
                Partial(vec![(0, 10)]),
            ),
            ("bytes=99999999999999999999999-", 10, Unsatisfiable),
            (
                "bytes=99999999999999999999999-99999999999999999999999",
                10,
                Unsatisfiable,
            ),
            (
                "bytes=99999999999999999999999-99999999999999999999998",
                10,
                Full,
            ),
            ("bytes=-99999999999999999999999", 10, Partial(vec![(0, 10)])),
            ("bytes=18446744073709551615-", max, Unsatisfiable),
            (
                "bytes=18446744073709551614-",
                max,
                Partial(vec![(max - 1, max)]),
            ),
            ("bytes=0-18446744073709551615", max, Partial(vec![(0, max)])),
            ("bytes=-18446744073709551615", max, Partial(vec![(0, max)])),
            // Found by fuzzing: the sum of lengths overflows u64 (was saturating to len).
            ("bytes=999999999999999999-,-4448444147419103267", max, Full),
            ("bytes=1-,-18446744073709551615", max, Full),
        ];
        for (h, len, want) in cases {
            assert_eq!(plan(h, len), want, "{h:?} len {len}");
        }
    }

    #[test]
    fn part_limit() {
        let specs: Vec<String> = (0..MAX_PARTS as u64).map(|i| format!("{i}-{i}")).collect();
        let h = format!("bytes={}", specs.join(","));
        match plan(&h, 1000) {
            Partial(s) => assert_eq!(s.len(), MAX_PARTS),
            other => panic!("{other:?}"),
        }
        let h = format!("bytes={},999-999", specs.join(","));
        assert_eq!(plan(&h, 1000), Full);
        // Unsatisfiable specs count towards the limit too.
        let h = format!("bytes={},5000-", specs.join(","));
        assert_eq!(plan(&h, 1000), Full);
    }

    proptest! {
        #[test]
        fn spans_are_sane(header in "(?i:bytes)=[0-9, -]{0,40}", len in 0u64..200) {
            if let Partial(spans) = plan(&header, len) {
                prop_assert!(!spans.is_empty() && spans.len() <= MAX_PARTS);
                let mut total = 0;
                for (s, e) in spans {
                    prop_assert!(s < e && e <= len, "{s}..{e} of {len}");
                    total += e - s;
                }
                prop_assert!(total <= len);
            }
        }

        #[test]
        fn single_closed(a in 0u64..300, b in 0u64..300, len in 0u64..200) {
            let got = plan(&format!("bytes={a}-{b}"), len);
            let want = if a > b {
                Full
            } else if a >= len {
                Unsatisfiable
            } else {
                Partial(vec![(a, b.min(len - 1) + 1)])
            };
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_text_never_panics(header in ".{0,60}", len in any::<u64>()) {
            let _ = plan(&header, len);
        }

        #[test]
        fn huge_lengths(a in any::<u64>(), b in any::<u64>(), len in any::<u64>()) {
            if let Partial(spans) = plan(&format!("bytes={a}-{b},-{b},{a}-"), len) {
                let mut total = 0u128;
                for (s, e) in spans {
                    prop_assert!(s < e && e <= len);
                    total += u128::from(e - s);
                }
                prop_assert!(total <= u128::from(len));
            }
        }
    }
}
