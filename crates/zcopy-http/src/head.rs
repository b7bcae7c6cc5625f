//! Formatting response heads into a reusable buffer, without per-request allocation.
//! (stub: signatures fixed, bodies to be written)

/// Builds one response head.
#[derive(Debug)]
pub struct Head<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Head<'a> {
    /// Starts a head in `buf` (cleared first) with the status line, Date and Server.
    pub fn start(buf: &'a mut Vec<u8>, status: u16) -> Head<'a> {
        buf.clear();
        let _ = status;
        Head { buf }
    }

    /// Appends one header field.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = (name, value);
        self
    }

    /// Appends a numeric header field (e.g. Content-Length).
    pub fn header_u64(&mut self, name: &str, value: u64) -> &mut Self {
        let _ = (name, value);
        self
    }

    /// Ends the head (blank line); returns its length.
    pub fn finish(self) -> usize {
        self.buf.len()
    }
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    let _ = status;
    ""
}

/// The Content-Type for a file name (by extension; `; charset=utf-8` for text).
pub fn content_type(name: &str) -> String {
    let _ = name;
    String::from("application/octet-stream")
}
