//! The access log: one Common Log Format line per response.

use std::fmt;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::AccessLog;

/// Writes one Common Log Format line per response.
pub struct AccessLogger {
    out: Mutex<Box<dyn Write + Send>>,
}

impl fmt::Debug for AccessLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogger").finish_non_exhaustive()
    }
}

impl AccessLogger {
    /// Opens the destination (a file is created or appended to).
    pub fn open(dest: &AccessLog) -> io::Result<AccessLogger> {
        let out: Box<dyn Write + Send> = match dest {
            AccessLog::Stdout => Box::new(io::stdout()),
            AccessLog::File(p) => Box::new(io::LineWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
        };
        Ok(AccessLogger {
            out: Mutex::new(out),
        })
    }

    /// Logs `host - - [time] "request line" status bytes`.
    pub fn log(&self, ip: IpAddr, line: &str, status: u16, bytes: u64) {
        let when = clf_time(SystemTime::now());
        let bytes = if bytes == 0 {
            String::from("-")
        } else {
            bytes.to_string()
        };
        let entry = format!("{ip} - - [{when}] \"{line}\" {status} {bytes}\n");
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(entry.as_bytes());
            let _ = out.flush();
        }
    }
}

/// `10/Oct/2000:13:55:36 +0000` (UTC), rearranged from the IMF-fixdate that
/// `httpdate` writes (`Tue, 10 Oct 2000 13:55:36 GMT`, fixed width).
fn clf_time(t: SystemTime) -> String {
    let d = httpdate::fmt_http_date(t);
    format!(
        "{}/{}/{}:{} +0000",
        &d[5..7],
        &d[8..11],
        &d[12..16],
        &d[17..25]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clf_time_formats_known_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(clf_time(t), "29/Feb/2024:00:00:00 +0000");
    }
}
