//! Frames (RFC 9113 §4, §6): the 9-byte header, each type's payload checks, and
//! writers for the frames a server sends.

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Frame header length.
pub const HEADER_LEN: usize = 9;
/// The smallest (and default) SETTINGS_MAX_FRAME_SIZE.
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE.
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;
/// The largest flow-control window.
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// Frame types.
pub mod kind {
    /// DATA
    pub const DATA: u8 = 0;
    /// HEADERS
    pub const HEADERS: u8 = 1;
    /// PRIORITY
    pub const PRIORITY: u8 = 2;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 3;
    /// SETTINGS
    pub const SETTINGS: u8 = 4;
    /// PUSH_PROMISE
    pub const PUSH_PROMISE: u8 = 5;
    /// PING
    pub const PING: u8 = 6;
    /// GOAWAY
    pub const GOAWAY: u8 = 7;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u8 = 8;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 9;
    /// PRIORITY_UPDATE (RFC 9218 §7.1)
    pub const PRIORITY_UPDATE: u8 = 0x10;
}

/// Frame flags.
pub mod flag {
    /// END_STREAM (DATA, HEADERS)
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING)
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, CONTINUATION)
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED (DATA, HEADERS)
    pub const PADDED: u8 = 0x8;
    /// PRIORITY (HEADERS)
    pub const PRIORITY: u8 = 0x20;
}

/// Error codes (RFC 9113 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    /// Graceful.
    NoError = 0,
    /// A protocol violation.
    Protocol = 1,
    /// Our fault.
    Internal = 2,
    /// Flow control violated.
    FlowControl = 3,
    /// SETTINGS not acknowledged in time.
    SettingsTimeout = 4,
    /// A frame on a half-closed or closed stream.
    StreamClosed = 5,
    /// A frame of the wrong size.
    FrameSize = 6,
    /// The stream was refused before any processing.
    RefusedStream = 7,
    /// The stream is no longer needed.
    Cancel = 8,
    /// HPACK state lost.
    Compression = 9,
    /// CONNECT failed.
    Connect = 10,
    /// The peer is generating excessive load.
    EnhanceYourCalm = 11,
    /// Transport security too weak.
    InadequateSecurity = 12,
    /// Use HTTP/1.1.
    Http11Required = 13,
}

impl Code {
    /// The code of a wire value (unknown codes read as INTERNAL_ERROR).
    pub fn from_u32(v: u32) -> Code {
        use Code::*;
        [
            NoError,
            Protocol,
            Internal,
            FlowControl,
            SettingsTimeout,
            StreamClosed,
            FrameSize,
            RefusedStream,
            Cancel,
            Compression,
            Connect,
            EnhanceYourCalm,
            InadequateSecurity,
            Http11Required,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Internal)
    }
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length.
    pub len: u32,
    /// Type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (the reserved bit cleared).
    pub stream: u32,
}

impl Header {
    /// Reads a header from the first 9 bytes of `b` (`None`: fewer than 9).
    pub fn parse(b: &[u8]) -> Option<Header> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(Header {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        })
    }

    /// Appends this header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let l = self.len.to_be_bytes();
        out.extend_from_slice(&[l[1], l[2], l[3], self.kind, self.flags]);
        out.extend_from_slice(&(self.stream & 0x7fff_ffff).to_be_bytes());
    }

    /// The 9 bytes of this header.
    pub fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut v = Vec::with_capacity(HEADER_LEN);
        self.write(&mut v);
        let mut a = [0; HEADER_LEN];
        a.copy_from_slice(&v);
        a
    }
}

/// A malformed frame: the whole connection fails (`stream` 0) or one stream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// 0 for a connection error.
    pub stream: u32,
    /// What to send.
    pub code: Code,
}

fn conn_err(code: Code) -> FrameError {
    FrameError { stream: 0, code }
}

/// A parsed frame, borrowing its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// DATA: `data` is the payload without padding; `flow_len` counts against the
    /// windows (the whole payload, padding included).
    Data {
        /// Stream.
        stream: u32,
        /// Payload without padding.
        data: &'a [u8],
        /// Length counted by flow control.
        flow_len: u32,
        /// END_STREAM.
        end_stream: bool,
    },
    /// HEADERS: a header block fragment (padding and priority removed).
    Headers {
        /// Stream.
        stream: u32,
        /// Block fragment.
        block: &'a [u8],
        /// END_STREAM.
        end_stream: bool,
        /// END_HEADERS.
        end_headers: bool,
        /// The stream it depends on, if a priority was given.
        depends_on: Option<u32>,
    },
    /// PRIORITY.
    Priority {
        /// Stream.
        stream: u32,
        /// The stream it depends on.
        depends_on: u32,
    },
    /// RST_STREAM.
    RstStream {
        /// Stream.
        stream: u32,
        /// Why.
        code: Code,
    },
    /// SETTINGS: pairs of (identifier, value), or an acknowledgement.
    Settings {
        /// ACK.
        ack: bool,
        /// The raw 6-byte entries.
        entries: &'a [u8],
    },
    /// PUSH_PROMISE (a client may never send one).
    PushPromise {
        /// Stream.
        stream: u32,
    },
    /// PING.
    Ping {
        /// ACK.
        ack: bool,
        /// Opaque data.
        data: [u8; 8],
    },
    /// GOAWAY.
    GoAway {
        /// Last stream the peer processed.
        last_stream: u32,
        /// Why.
        code: Code,
    },
    /// WINDOW_UPDATE.
    WindowUpdate {
        /// Stream (0: the connection).
        stream: u32,
        /// Increment (0 is an error the caller reports).
        increment: u32,
    },
    /// CONTINUATION.
    Continuation {
        /// Stream.
        stream: u32,
        /// Block fragment.
        block: &'a [u8],
        /// END_HEADERS.
        end_headers: bool,
    },
    /// PRIORITY_UPDATE (RFC 9218 §7.1): a new priority for a request stream.
    PriorityUpdate {
        /// The stream it is for (the frame itself is on stream 0).
        prioritized: u32,
        /// The Priority field value.
        field: &'a [u8],
    },
    /// A frame of a type we don't know (ignored).
    Unknown {
        /// Its type.
        kind: u8,
    },
}

/// Removes padding from a PADDED payload.
fn unpad(p: &[u8], padded: bool) -> Result<&[u8], FrameError> {
    if !padded {
        return Ok(p);
    }
    let (&pad, rest) = p.split_first().ok_or(conn_err(Code::FrameSize))?;
    if pad as usize > rest.len() {
        return Err(conn_err(Code::Protocol));
    }
    Ok(&rest[..rest.len() - pad as usize])
}

impl<'a> Frame<'a> {
    /// Parses a frame of header `h` whose payload is `p` (exactly `h.len` bytes),
    /// checking what RFC 9113 §6 asks of each type's payload and stream.
    pub fn parse(h: Header, p: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        debug_assert_eq!(p.len(), h.len as usize);
        let s = h.stream;
        let need_stream = |s: u32| {
            if s == 0 {
                Err(conn_err(Code::Protocol))
            } else {
                Ok(())
            }
        };
        let need_zero = |s: u32| {
            if s != 0 {
                Err(conn_err(Code::Protocol))
            } else {
                Ok(())
            }
        };
        Ok(match h.kind {
            kind::DATA => {
                need_stream(s)?;
                Frame::Data {
                    stream: s,
                    data: unpad(p, h.flags & flag::PADDED != 0)?,
                    flow_len: h.len,
                    end_stream: h.flags & flag::END_STREAM != 0,
                }
            }
            kind::HEADERS => {
                need_stream(s)?;
                let mut b = unpad(p, h.flags & flag::PADDED != 0)?;
                let mut depends_on = None;
                if h.flags & flag::PRIORITY != 0 {
                    if b.len() < 5 {
                        return Err(conn_err(Code::FrameSize));
                    }
                    depends_on = Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
                    b = &b[5..];
                }
                Frame::Headers {
                    stream: s,
                    block: b,
                    end_stream: h.flags & flag::END_STREAM != 0,
                    end_headers: h.flags & flag::END_HEADERS != 0,
                    depends_on,
                }
            }
            kind::PRIORITY => {
                need_stream(s)?;
                if p.len() != 5 {
                    return Err(FrameError {
                        stream: s,
                        code: Code::FrameSize,
                    });
                }
                Frame::Priority {
                    stream: s,
                    depends_on: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                }
            }
            kind::RST_STREAM => {
                need_stream(s)?;
                if p.len() != 4 {
                    return Err(conn_err(Code::FrameSize));
                }
                Frame::RstStream {
                    stream: s,
                    code: Code::from_u32(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
                }
            }
            kind::SETTINGS => {
                need_zero(s)?;
                let ack = h.flags & flag::ACK != 0;
                if ack && !p.is_empty() || !p.len().is_multiple_of(6) {
                    return Err(conn_err(Code::FrameSize));
                }
                Frame::Settings { ack, entries: p }
            }
            kind::PUSH_PROMISE => Frame::PushPromise { stream: s },
            kind::PING => {
                need_zero(s)?;
                let data: [u8; 8] = p.try_into().map_err(|_| conn_err(Code::FrameSize))?;
                Frame::Ping {
                    ack: h.flags & flag::ACK != 0,
                    data,
                }
            }
            kind::GOAWAY => {
                need_zero(s)?;
                if p.len() < 8 {
                    return Err(conn_err(Code::FrameSize));
                }
                Frame::GoAway {
                    last_stream: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                    code: Code::from_u32(u32::from_be_bytes([p[4], p[5], p[6], p[7]])),
                }
            }
            kind::WINDOW_UPDATE => {
                if p.len() != 4 {
                    return Err(conn_err(Code::FrameSize));
                }
                Frame::WindowUpdate {
                    stream: s,
                    increment: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                }
            }
            kind::CONTINUATION => {
                need_stream(s)?;
                Frame::Continuation {
                    stream: s,
                    block: p,
                    end_headers: h.flags & flag::END_HEADERS != 0,
                }
            }
            kind::PRIORITY_UPDATE => {
                // On stream 0 only, at least the 4-byte stream id (RFC 9218 §7.1).
                need_zero(s)?;
                if p.len() < 4 {
                    return Err(conn_err(Code::FrameSize));
                }
                Frame::PriorityUpdate {
                    prioritized: u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff,
                    field: &p[4..],
                }
            }
            k => Frame::Unknown { kind: k },
        })
    }
}

/// Settings identifiers.
pub mod setting {
    /// SETTINGS_HEADER_TABLE_SIZE
    pub const HEADER_TABLE_SIZE: u16 = 1;
    /// SETTINGS_ENABLE_PUSH
    pub const ENABLE_PUSH: u16 = 2;
    /// SETTINGS_MAX_CONCURRENT_STREAMS
    pub const MAX_CONCURRENT_STREAMS: u16 = 3;
    /// SETTINGS_INITIAL_WINDOW_SIZE
    pub const INITIAL_WINDOW_SIZE: u16 = 4;
    /// SETTINGS_MAX_FRAME_SIZE
    pub const MAX_FRAME_SIZE: u16 = 5;
    /// SETTINGS_MAX_HEADER_LIST_SIZE
    pub const MAX_HEADER_LIST_SIZE: u16 = 6;
    /// SETTINGS_NO_RFC7540_PRIORITIES (RFC 9218 §2.1)
    pub const NO_RFC7540_PRIORITIES: u16 = 9;
}

/// Appends a SETTINGS frame with `entries`.
pub fn write_settings(out: &mut Vec<u8>, entries: &[(u16, u32)]) {
    Header {
        len: (entries.len() * 6) as u32,
        kind: kind::SETTINGS,
        flags: 0,
        stream: 0,
    }
    .write(out);
    for (id, v) in entries {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends a frame of `kind` with `flags` and `payload` on `stream`.
pub fn write_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    Header {
        len: payload.len() as u32,
        kind,
        flags,
        stream,
    }
    .write(out);
    out.extend_from_slice(payload);
}

/// Appends a WINDOW_UPDATE.
pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    write_frame(
        out,
        kind::WINDOW_UPDATE,
        0,
        stream,
        &increment.to_be_bytes(),
    );
}

/// Appends a RST_STREAM.
pub fn write_rst(out: &mut Vec<u8>, stream: u32, code: Code) {
    write_frame(
        out,
        kind::RST_STREAM,
        0,
        stream,
        &(code as u32).to_be_bytes(),
    );
}

/// Appends a GOAWAY.
pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, code: Code) {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&last_stream.to_be_bytes());
    p[4..].copy_from_slice(&(code as u32).to_be_bytes());
    write_frame(out, kind::GOAWAY, 0, 0, &p);
}

/// Appends a header block as HEADERS and as many CONTINUATION frames as
/// `max_frame` needs.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let max_frame = max_frame.max(1);
    let mut chunks = block.chunks(max_frame).peekable();
    let first = chunks.next().unwrap_or(&[]);
    let last = chunks.peek().is_none();
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if last {
        flags |= flag::END_HEADERS;
    }
    write_frame(out, kind::HEADERS, flags, stream, first);
    while let Some(c) = chunks.next() {
        let f = if chunks.peek().is_none() {
            flag::END_HEADERS
        } else {
            0
        };
        write_frame(out, kind::CONTINUATION, f, stream, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Frame<'_>, FrameError> {
        let h = Header::parse(bytes).unwrap();
        Frame::parse(h, &bytes[9..9 + h.len as usize])
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            len: 0x012345,
            kind: 7,
            flags: 0x25,
            stream: 0x7fff_fffe,
        };
        assert_eq!(Header::parse(&h.bytes()), Some(h));
        // The reserved bit is ignored on read.
        let mut b = h.bytes();
        b[5] |= 0x80;
        assert_eq!(Header::parse(&b), Some(h));
        assert_eq!(Header::parse(&b[..8]), None);
    }

    #[test]
    fn every_type_parses_and_bad_sizes_are_errors() {
        let mut out = Vec::new();
        write_frame(
            &mut out,
            kind::DATA,
            flag::PADDED | flag::END_STREAM,
            1,
            &[2, b'h', b'i', 0, 0],
        );
        assert_eq!(
            parse(&out),
            Ok(Frame::Data {
                stream: 1,
                data: b"hi",
                flow_len: 5,
                end_stream: true
            })
        );
        out.clear();
        write_frame(&mut out, kind::DATA, flag::PADDED, 1, &[9, b'h']);
        assert_eq!(parse(&out).unwrap_err().code, Code::Protocol);
        out.clear();
        write_frame(&mut out, kind::DATA, 0, 0, b"x");
        assert_eq!(parse(&out).unwrap_err().code, Code::Protocol);
        out.clear();
        write_frame(
            &mut out,
            kind::HEADERS,
            flag::PRIORITY | flag::END_HEADERS,
            3,
            &[0, 0, 0, 1, 16, 0x82],
        );
        assert_eq!(
            parse(&out),
            Ok(Frame::Headers {
                stream: 3,
                block: &[0x82],
                end_stream: false,
                end_headers: true,
                depends_on: Some(1)
            })
        );
        out.clear();
        write_frame(&mut out, kind::PRIORITY, 0, 3, &[0, 0, 0, 1]);
        assert_eq!(
            parse(&out).unwrap_err(),
            FrameError {
                stream: 3,
                code: Code::FrameSize
            }
        );
        out.clear();
        write_rst(&mut out, 5, Code::Cancel);
        assert_eq!(
            parse(&out),
            Ok(Frame::RstStream {
                stream: 5,
                code: Code::Cancel
            })
        );
        out.clear();
        write_settings(&mut out, &[(setting::MAX_FRAME_SIZE, 20000)]);
        assert!(
            matches!(parse(&out), Ok(Frame::Settings { ack: false, entries }) if entries.len() == 6)
        );
        out.clear();
        write_frame(&mut out, kind::SETTINGS, flag::ACK, 0, &[0; 6]);
        assert_eq!(parse(&out).unwrap_err().code, Code::FrameSize);
        out.clear();
        write_frame(&mut out, kind::SETTINGS, 0, 0, &[0; 5]);
        assert_eq!(parse(&out).unwrap_err().code, Code::FrameSize);
        out.clear();
        write_frame(&mut out, kind::PING, 0, 0, &[1; 8]);
        assert_eq!(
            parse(&out),
            Ok(Frame::Ping {
                ack: false,
                data: [1; 8]
            })
        );
        out.clear();
        write_frame(&mut out, kind::PING, 0, 0, &[1; 7]);
        assert_eq!(parse(&out).unwrap_err().code, Code::FrameSize);
        out.clear();
        write_frame(&mut out, kind::PING, 0, 1, &[1; 8]);
        assert_eq!(parse(&out).unwrap_err().code, Code::Protocol);
        out.clear();
        write_goaway(&mut out, 7, Code::EnhanceYourCalm);
        assert_eq!(
            parse(&out),
            Ok(Frame::GoAway {
                last_stream: 7,
                code: Code::EnhanceYourCalm
            })
        );
        out.clear();
        write_window_update(&mut out, 0, 1000);
        assert_eq!(
            parse(&out),
            Ok(Frame::WindowUpdate {
                stream: 0,
                increment: 1000
            })
        );
        out.clear();
        write_frame(&mut out, kind::WINDOW_UPDATE, 0, 0, &[0; 3]);
        assert_eq!(parse(&out).unwrap_err().code, Code::FrameSize);
        out.clear();
        write_frame(&mut out, kind::CONTINUATION, flag::END_HEADERS, 1, b"ab");
        assert_eq!(
            parse(&out),
            Ok(Frame::Continuation {
                stream: 1,
                block: b"ab",
                end_headers: true
            })
        );
        out.clear();
        write_frame(&mut out, kind::PRIORITY_UPDATE, 0, 0, b"\0\0\0\x05u=0");
        assert_eq!(
            parse(&out),
            Ok(Frame::PriorityUpdate {
                prioritized: 5,
                field: b"u=0"
            })
        );
        out.clear();
        write_frame(&mut out, kind::PRIORITY_UPDATE, 0, 1, b"\0\0\0\x05u=0");
        assert_eq!(parse(&out).unwrap_err(), conn_err(Code::Protocol));
        out.clear();
        write_frame(&mut out, kind::PRIORITY_UPDATE, 0, 0, b"\0\0\0");
        assert_eq!(parse(&out).unwrap_err(), conn_err(Code::FrameSize));
        out.clear();
        write_frame(&mut out, 0xee, 0, 0, b"ignored");
        assert_eq!(parse(&out), Ok(Frame::Unknown { kind: 0xee }));
    }

    #[test]
    fn a_large_header_block_is_split_into_continuations() {
        let mut out = Vec::new();
        let block = vec![7u8; 40_000];
        write_headers(&mut out, 1, &block, true, 16_384);
        let h1 = Header::parse(&out).unwrap();
        assert_eq!(
            (h1.kind, h1.flags, h1.len),
            (kind::HEADERS, flag::END_STREAM, 16_384)
        );
        let h2 = Header::parse(&out[9 + 16_384..]).unwrap();
        assert_eq!((h2.kind, h2.flags), (kind::CONTINUATION, 0));
        let h3 = Header::parse(&out[2 * (9 + 16_384)..]).unwrap();
        assert_eq!(
            (h3.kind, h3.flags, h3.len),
            (kind::CONTINUATION, flag::END_HEADERS, 40_000 - 2 * 16_384)
        );
    }
}
