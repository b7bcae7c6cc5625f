//! What `--io auto` tries: the io_uring driver only where the calibration profile
//! (`zcopy bench --calibrate`, its `io` lines) measured it serving at least
//! [`MARGIN_PERCENT`] % of epoll's requests per server CPU-second at every file size
//! it measured both at; epoll everywhere else.

use zcopy::profile::Profile;

/// uring must reach this share of epoll's requests per CPU-second, at every size.
pub const MARGIN_PERCENT: u64 = 105;

/// Whether auto should try the io_uring driver: `Ok(why)` to try it (the probe and
/// the listeners still decide), `Err(why)` to run epoll.
pub fn from_profile(profile: Option<&Profile>) -> Result<String, String> {
    let Some(p) = profile.filter(|p| !p.io_figures().is_empty()) else {
        return Err("not calibrated for the event loop (zcopy bench --calibrate)".into());
    };
    let mut pairs: Vec<(u64, u64, u64)> = p
        .io_figures()
        .iter()
        .filter(|f| f.driver == "epoll")
        .filter_map(|e| Some((e.size, e.per_cpu_s, p.io_figure("uring", e.size)?)))
        .collect();
    if pairs.is_empty() {
        return Err(
            "the calibration has no io_uring figures to weigh against epoll's \
             (zcopy bench --calibrate)"
                .into(),
        );
    }
    pairs.sort_unstable();
    let ratios: Vec<String> = pairs
        .iter()
        .enumerate()
        .map(|(i, &(size, epoll, uring))| {
            let ratio = uring as f64 / epoll as f64;
            let vs = if i == 0 { " epoll" } else { "" };
            format!("{ratio:.2}x{vs} at {}", size_name(size))
        })
        .collect();
    let why = format!("calibration: uring {}", ratios.join(", "));
    let faster = pairs.iter().all(|&(_, epoll, uring)| {
        u128::from(uring) * 100 >= u128::from(epoll) * u128::from(MARGIN_PERCENT)
    });
    if faster { Ok(why) } else { Err(why) }
}

/// `1 KiB`, `64 KiB`, `1 MiB`; bytes when not a whole multiple.
fn size_name(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} B")
}

#[cfg(test)]
mod tests {
    use super::from_profile;
    use zcopy::profile::Profile;

    /// What the calibration measured: (epoll, uring) at 1 KiB, then at 64 KiB.
    fn decide(small: (u64, u64), large: (u64, u64)) -> Result<String, String> {
        let p = Profile::parse(&format!(
            "io epoll 1024 {}\nio uring 1024 {}\nio epoll 65536 {}\nio uring 65536 {}\n",
            small.0, small.1, large.0, large.1
        ));
        from_profile(Some(&p))
    }

    #[test]
    fn uring_only_when_it_measured_at_least_5_percent_better_at_every_size() {
        assert_eq!(
            decide((170000, 164900), (53000, 39220)),
            Err("calibration: uring 0.97x epoll at 1 KiB, 0.74x at 64 KiB".into())
        );
        assert_eq!(
            decide((100000, 105000), (50000, 60000)),
            Ok("calibration: uring 1.05x epoll at 1 KiB, 1.20x at 64 KiB".into())
        );
        // Faster at one size only: epoll.
        assert!(decide((100000, 104999), (50000, 60000)).is_err());
    }

    #[test]
    fn without_io_lines_epoll_and_says_so() {
        let why = from_profile(None).unwrap_err();
        assert!(why.contains("not calibrated"), "{why}");
        let engines_only = Profile::parse("file tcp max sendfile read-write\n");
        assert_eq!(from_profile(Some(&engines_only)).unwrap_err(), why);
        let epoll_only = Profile::parse("io epoll 1024 100000\nio uring 4096 900000\n");
        let why = from_profile(Some(&epoll_only)).unwrap_err();
        assert!(why.contains("no io_uring figures"), "{why}");
    }
}
