//! The access log: one line per response, in Common Log Format, Combined Log Format
//! or JSON. Workers format lines into their own buffer and hand it over once per loop
//! turn ([`AccessLogger::write_batch`]), so a response costs no lock and no syscall.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use std::path::PathBuf;
use zcopy_http1::json::string as json;

/// Where the access log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output.
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

/// The line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `host - - [time] "request" status bytes`.
    #[default]
    Common,
    /// Common, then `"referer" "user agent"`.
    Combined,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "common" => Ok(LogFormat::Common),
            "combined" => Ok(LogFormat::Combined),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown access log format '{s}' (known: common, combined, json)"
            )),
        }
    }
}

/// What is logged of one response.
#[derive(Debug)]
pub struct Entry<'a> {
    /// The client.
    pub ip: IpAddr,
    /// The request line (unprintable bytes already replaced).
    pub line: &'a str,
    /// Status sent.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// Request body bytes received into an upload's file (`None`: not an upload).
    pub received: Option<u64>,
    /// Referer header, if any.
    pub referer: &'a str,
    /// User-Agent header, if any.
    pub user_agent: &'a str,
    /// From request parsed to response done, by the loop's clock (read once a
    /// turn: a response done in the turn its request was parsed in took 0).
    pub took: Duration,
}

/// Writes access log lines to stdout or a file (reopened on request, for logrotate).
pub struct AccessLogger {
    dest: AccessLog,
    format: LogFormat,
    out: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for AccessLogger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogger")
            .field("dest", &self.dest)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

fn open(dest: &AccessLog) -> io::Result<Box<dyn Write + Send>> {
    Ok(match dest {
        AccessLog::Stdout => Box::new(io::stdout()),
        AccessLog::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
    })
}

impl AccessLogger {
    /// Opens the destination (a file is created or appended to).
    pub fn open(dest: &AccessLog, format: LogFormat) -> io::Result<AccessLogger> {
        Ok(AccessLogger {
            out: Mutex::new(open(dest)?),
            dest: dest.clone(),
            format,
        })
    }

    /// Whether lines carry the referer and user agent (so they must be kept).
    pub fn wants_headers(&self) -> bool {
        self.format != LogFormat::Common
    }

    /// Opens the file again (after logrotate moved it); on an error the old one stays.
    pub fn reopen(&self) -> io::Result<()> {
        if let AccessLog::File(_) = self.dest {
            let new = open(&self.dest)?;
            let mut out = crate::lock(&self.out);
            let _ = out.flush();
            *out = new;
        }
        Ok(())
    }

    /// Appends one formatted line for `e` to `buf`.
    pub fn format(&self, buf: &mut Vec<u8>, e: &Entry<'_>) {
        let mut s = String::with_capacity(160);
        let now = SystemTime::now();
        match self.format {
            LogFormat::Common | LogFormat::Combined => {
                let bytes = if e.bytes == 0 {
                    String::from("-")
                } else {
                    e.bytes.to_string()
                };
                let _ = write!(
                    s,
                    "{} - - [{}] \"{}\" {} {bytes}",
                    e.ip,
                    clf_time(now),
                    quoted(e.line),
                    e.status
                );
                if self.format == LogFormat::Combined {
                    let dash = |v: &str| if v.is_empty() { "-".into() } else { quoted(v) };
                    let _ = write!(s, " \"{}\" \"{}\"", dash(e.referer), dash(e.user_agent));
                }
                // An upload's line ends with the body bytes received (as Apache's
                // `%I` ends its `combinedio` lines); other lines stay plain CLF.
                if let Some(n) = e.received {
                    let _ = write!(s, " {n}");
                }
            }
            LogFormat::Json => {
                let _ = write!(
                    s,
                    "{{\"time\":\"{}\",\"remote\":\"{}\",\"request\":{},\"status\":{},\
                     \"bytes\":{},\"received\":{},\"referer\":{},\"user_agent\":{},\
                     \"duration_ms\":{:.3}}}",
                    rfc3339(now),
                    e.ip,
                    json(e.line),
                    e.status,
                    e.bytes,
                    e.received.unwrap_or(0),
                    json(e.referer),
                    json(e.user_agent),
                    e.took.as_secs_f64() * 1000.0
                );
            }
        }
        s.push('\n');
        buf.extend_from_slice(s.as_bytes());
    }

    /// Writes a worker's batch of lines.
    pub fn write_batch(&self, buf: &[u8]) {
        let mut out = crate::lock(&self.out);
        let _ = out.write_all(buf);
        let _ = out.flush();
    }
}

/// A field inside CLF double quotes: `"` and `\` escaped, control bytes as `\xNN`.
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(s, "\\x{:02x}", c as u32 & 0xff);
            }
            c => s.push(c),
        }
    }
    s
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

/// `2000-10-10T13:55:36.123Z`.
fn rfc3339(t: SystemTime) -> String {
    let millis = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis());
    format!(
        "{}.{millis:03}Z",
        crate::listing::iso_utc(t).replacen(' ', "T", 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_time_formats_known_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(971_186_136);
        assert_eq!(clf_time(t), "10/Oct/2000:13:55:36 +0000");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(clf_time(t), "29/Feb/2024:00:00:00 +0000");
    }

    #[test]
    fn rfc3339_formats_known_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(971_186_136_250);
        assert_eq!(rfc3339(t), "2000-10-10T13:55:36.250Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_164_800);
        assert_eq!(rfc3339(t), "2024-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn fields_are_escaped() {
        assert_eq!(quoted("a\"b\\c\u{1}"), "a\\\"b\\\\c\\x01");
        assert_eq!(json("a\"b\\\n"), "\"a\\\"b\\\\\\u000a\"");
        assert_eq!(
            json("\u{7f}\u{80}\u{9f}\u{a0}é"),
            "\"\\u007f\\u0080\\u009f\u{a0}é\""
        );
    }
}
